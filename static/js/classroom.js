// Lecturer page (/classroom): create a room or open one with a token, then the dashboard:
// push presets and links, lock controls, run challenges, reveal the leaderboard, watch a live
// wall of the students' decision boundaries (≤ 2 fps), a scatter of test loss against
// parameter count, and spotlight one student for the projector. The token lives only in this
// browser's localStorage and in Authorization headers / the socket's first message.
import { readHash, hashOf } from './state.js';
import { drawGrid } from './heatmap.js';
import { DATASETS } from './thumbs.js';
import { goalText, leaderboardTable } from './room.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = (code) => `nnplay-lecturer-token:${code}`;
const WALL_MS = 500; // the wall and scatter redraw at most twice a second

/** Lock checkboxes: label -> lock names (the server takes config fields and a few page control names). */
const LOCKS = [
  ['Learning rate', ['learning_rate']], ['Activation', ['activation']], ['Layers and neurons', ['layers']],
  ['Regularization', ['regularization']], ['Optimizer', ['optimizer']], ['Dataset', ['dataset']],
  ['Features', ['features']], ['Batch size', ['batch_size']], ['Noise', ['noise']],
  ['Problem type', ['problem']], ['Ratio of training data', ['train_ratio']],
];

const TEMPLATES = [
  { label: 'Spiral: test loss below 0.05, fewest parameters', title: 'Spiral: test loss below 0.05 with the fewest parameters',
    metric: 'test_loss', target: 0.05, rank_by: 'params', dataset: 'spiral' },
  { label: 'Fastest to 95 % test accuracy', title: 'Fastest to 95 % test accuracy',
    metric: 'test_accuracy', target: 0.95, rank_by: 'time', dataset: '' },
  { label: 'Custom', custom: true },
];

const room = {
  code: null, token: null, ws: null, attempt: 0, timer: null, state: null,
  members: new Map(), // member_id -> {report, order, tile, dirty}
  order: 0, hideNames: false, revealed: false, challenge: null, spotlight: null, locks: [],
  boardBusy: false, boardAgain: false, // a leaderboard fetch runs; another is due after it
};

// ---- small helpers ----------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k in e) e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

function showError(text) {
  const e = $('cr-error');
  e.textContent = text || '';
  e.hidden = !text;
  clearTimeout(showError.t);
  if (text) showError.t = setTimeout(() => { e.hidden = true; }, 10000);
}

function setStatus(text, kind = 'ok') {
  $('cr-status').textContent = text;
  $('cr-status').dataset.kind = kind;
}

/** The server's error detail as one sentence (FastAPI: a string or a list of {loc, msg}). */
function detailText(body, status) {
  const d = body?.detail ?? body?.message ?? body?.error;
  if (typeof d === 'string') return d;
  if (Array.isArray(d)) return d.map((e) => (typeof e === 'string' ? e : `${(e.loc || []).filter((x) => x !== 'body').join('.')}: ${e.msg}`)).join('; ');
  return `request failed (${status})`;
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (room.token) headers.Authorization = `Bearer ${room.token}`;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  let data = null;
  try { data = await r.json(); } catch { /* empty body */ }
  if (!r.ok) {
    const err = new Error(detailText(data, r.status));
    err.status = r.status;
    throw err;
  }
  return data;
}

/** Run a lecturer action; report its error in the status bar instead of throwing. */
async function act(fn, done) {
  try {
    const out = await fn();
    if (done) setStatus(done);
    return out;
  } catch (err) {
    showError(err.message);
    return null;
  }
}

async function copy(input, button) {
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select();
    document.execCommand?.('copy');
  }
  const text = button.textContent;
  button.textContent = 'Copied';
  setTimeout(() => { button.textContent = text; }, 1500);
}

// ---- setup: new room, or an existing one with a token -----------------------------------

$('cr-create').addEventListener('click', async () => {
  room.token = null;
  const title = $('cr-title').value.trim();
  const made = await act(() => api('POST', '/api/rooms', title ? { title } : {}));
  if (!made) return;
  localStorage.setItem(TOKEN_KEY(made.code), made.token);
  history.replaceState(null, '', `#room=${made.code}`);
  $('cr-token-value').value = made.token;
  $('cr-token-card').hidden = false;
  openRoom(made.code, made.token, made);
});
$('cr-token-done').addEventListener('click', () => {
  $('cr-token-card').hidden = true;
  $('cr-token-value').value = '';
});
$('cr-copy-token').addEventListener('click', () => copy($('cr-token-value'), $('cr-copy-token')));
$('cr-open').addEventListener('click', () => {
  const code = $('cr-code').value.trim().toUpperCase();
  const token = $('cr-token').value.trim();
  if (!/^[A-Z0-9]{4,8}$/.test(code)) { showError('room code: 6 letters and digits, as shown on the lecturer page'); return; }
  if (!token) { showError('lecturer token: paste the token you copied when the room was created'); return; }
  localStorage.setItem(TOKEN_KEY(code), token);
  history.replaceState(null, '', `#room=${code}`);
  $('cr-token').value = '';
  openRoom(code, token);
});

async function openRoom(code, token, made = null) {
  room.code = code;
  room.token = token;
  let st;
  try {
    st = await api('GET', `/api/rooms/${code}`);
  } catch (err) {
    showError(err.message);
    backToSetup(code);
    return;
  }
  room.state = st;
  $('cr-setup').hidden = true;
  $('cr-room').hidden = false;
  $('cr-heading').textContent = st.title ? `${st.title} · ${code}` : `Room ${code}`;
  document.title = `nnplay classroom ${code}`;
  const link = new URL(made?.student_url || `/#room=${code}`, location.origin).href;
  for (const id of ['cr-room-code', 'cr-js-code']) $(id).textContent = code;
  $('cr-student-link').value = link;
  $('cr-js-link').textContent = link;
  for (const id of ['cr-qr', 'cr-js-qr']) $(id).src = `/api/rooms/${code}/qr.svg`;
  applyState(st);
  connect();
}

function backToSetup(code) {
  $('cr-room').hidden = true;
  $('cr-setup').hidden = false;
  if (code) $('cr-code').value = code;
  $('cr-token').focus();
}

function applyState(st) {
  if (Array.isArray(st.locks)) setLockBoxes(st.locks);
  if ('challenge' in st) setChallenge(st.challenge);
  if (typeof st.hide_names === 'boolean') { room.hideNames = st.hide_names; $('cr-hide-names').checked = st.hide_names; }
  if (typeof st.leaderboard_revealed === 'boolean') setRevealed(st.leaderboard_revealed);
  else if (Array.isArray(st.leaderboard)) setRevealed(true);
}

// ---- dashboard socket -------------------------------------------------------------------

function connect() {
  clearTimeout(room.timer);
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${location.host}/ws/room/${room.code}`);
  room.ws = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: 'auth', token: room.token })); // never in the URL
    setStatus('dashboard connected');
  };
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    room.attempt = 0;
    onDashboard(msg);
  };
  ws.onclose = (ev) => {
    if (room.ws !== ws) return;
    room.ws = null;
    if (ev.code === 1008 && /token/.test(ev.reason)) {
      // a refused token: retrying cannot help; forget it so the page asks for another
      localStorage.removeItem(TOKEN_KEY(room.code));
      setStatus(`refused: ${ev.reason}`, 'bad');
      showError(`${ev.reason} — paste a valid token for room ${room.code}`);
      backToSetup(room.code);
      return;
    }
    if (ev.code === 1008) { // room closed, expired or not found: nothing to reconnect to
      setStatus(ev.reason || 'room closed', 'bad');
      return;
    }
    const wait = Math.min(15000, 500 * 2 ** room.attempt++);
    setStatus(`dashboard disconnected — reconnecting in ${Math.ceil(wait / 1000)} s…`, 'warn');
    room.timer = setTimeout(connect, wait);
  };
}

function sendWs(msg) {
  if (room.ws?.readyState === WebSocket.OPEN) room.ws.send(JSON.stringify(msg));
}

function onDashboard(msg) {
  switch (msg.type) {
    case 'dashboard':
      if (msg.room) { room.state = msg.room; applyState(msg.room); }
      for (const r of msg.members || []) upsert(r);
      if (Array.isArray(msg.leaderboard)) renderBoard(msg.leaderboard);
      if (room.spotlight) sendWs({ type: 'spotlight', member_id: room.spotlight });
      break;
    case 'report':
      upsert(msg);
      break;
    case 'member_joined':
      upsert(msg);
      break;
    case 'result':
      refreshBoard();
      break;
    case 'room_challenge':
      setChallenge(msg.challenge);
      refreshBoard();
      break;
    case 'member_left':
      drop(msg.member_id);
      break;
    case 'room_closed':
      setStatus(msg.message || 'room closed', 'bad');
      break;
    case 'error':
      showError(msg.message);
      break;
    default:
      break;
  }
}

// ---- wall of students -------------------------------------------------------------------

function displayName(m) {
  const n = typeof m.report.name === 'string' ? m.report.name.trim() : '';
  return room.hideNames || !n ? `Student ${m.order}` : n;
}

function upsert(report) {
  const id = report.member_id;
  if (id == null) return;
  if (report.left) { drop(id); return; }
  let m = room.members.get(id);
  if (!m) {
    m = { report, order: ++room.order, dirty: true };
    const canvas = el('canvas', { class: 'cr-thumb', width: 100, height: 100 });
    const name = el('span', { class: 'cr-tile-name' });
    const stat = el('span', { class: 'cr-tile-stat' });
    const button = el('button', { type: 'button', class: 'cr-tile' }, canvas, name, stat);
    button.addEventListener('click', () => openSpotlight(id));
    m.tile = el('li', {}, button);
    Object.assign(m, { canvas, name, stat, button });
    $('cr-wall').append(m.tile);
    room.members.set(id, m);
  }
  m.report = { ...m.report, ...report };
  m.dirty = true;
  if (room.spotlight === id) renderSpotlight();
}

function drop(id) {
  const m = room.members.get(id);
  if (!m) return;
  m.tile.remove();
  room.members.delete(id);
}

function thumbBytes(b64) {
  if (typeof b64 !== 'string' || !b64) return null;
  const s = atob(b64);
  const n = Math.round(Math.sqrt(s.length));
  if (n * n !== s.length) return null;
  const bytes = new Uint8Array(s.length);
  for (let k = 0; k < s.length; k++) bytes[k] = s.charCodeAt(k);
  return { bytes, n };
}

const fmtLoss = (v) => (v == null || !Number.isFinite(v) ? '–' : v.toFixed(3));
const fmtAcc = (v) => (v == null || !Number.isFinite(v) ? '–' : `${(v * 100).toFixed(0)} %`);

/** Draw a report's thumbnail (the frame's output channel; class indices when multi-class). */
function drawThumb(canvas, r) {
  const t = thumbBytes(r.thumb);
  if (!t) {
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#e8eaeb';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    return;
  }
  const cls = thumbBytes(r.thumb_class);
  drawGrid(canvas, t.bytes, t.n, cls && cls.n === t.n ? { classes: cls.bytes, k: r.classes || 2 } : {});
}

function drawTile(m) {
  const r = m.report;
  drawThumb(m.canvas, r);
  const name = displayName(m);
  m.name.textContent = name;
  m.stat.textContent = r.diverged ? 'diverged' : `${r.params ?? '–'} params · ${fmtLoss(r.test_loss)}`;
  m.button.dataset.kind = r.diverged ? 'bad' : r.playing ? 'playing' : 'paused';
  m.button.setAttribute('aria-label', `Spotlight ${name}`);
  m.button.title = `${name}: ${r.params ?? '?'} parameters, test loss ${fmtLoss(r.test_loss)}, epoch ${r.epoch ?? 0}${r.playing ? '' : ' (paused)'}`;
  m.dirty = false;
}

function renderWall() {
  for (const m of room.members.values()) if (m.dirty) drawTile(m);
  const n = room.members.size;
  $('cr-count').textContent = String(n);
  $('cr-wall-empty').hidden = n > 0;
  drawScatter();
}
setInterval(() => { if (room.code) renderWall(); }, WALL_MS);

// ---- scatter: test loss (log) against parameter count -----------------------------------

const scatter = { dots: [] };

function drawScatter() {
  const c = $('cr-scatter');
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth;
  const h = c.clientHeight;
  if (!w || !h) return;
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
  const ctx = c.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pts = [...room.members.values()].filter((m) => Number.isFinite(m.report.test_loss) && m.report.params != null);
  const pad = { l: 58, r: 16, t: 12, b: 42 };
  const maxP = Math.max(10, ...pts.map((m) => m.report.params)) * 1.1;
  const losses = pts.map((m) => Math.max(1e-3, m.report.test_loss));
  let lo = Math.log10(Math.min(0.01, ...losses));
  let hi = Math.log10(Math.max(1, ...losses));
  lo = Math.floor(lo); hi = Math.ceil(hi);
  const X = (p) => pad.l + p / maxP * (w - pad.l - pad.r);
  const Y = (v) => pad.t + (hi - Math.log10(Math.max(1e-3, v))) / (hi - lo) * (h - pad.t - pad.b);
  ctx.font = '13px system-ui, sans-serif';
  ctx.strokeStyle = '#ccc';
  ctx.fillStyle = '#333';
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let e = lo; e <= hi; e++) {
    const y = Y(10 ** e);
    ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
    ctx.fillText(String(10 ** e >= 1 ? 10 ** e : (10 ** e).toFixed(-e)), pad.l - 6, y);
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  const step = niceStep(maxP / 5);
  for (let p = 0; p <= maxP; p += step) {
    const x = X(p);
    ctx.beginPath(); ctx.moveTo(x, h - pad.b); ctx.lineTo(x, h - pad.b + 4); ctx.stroke();
    ctx.fillText(String(p), x, h - pad.b + 6);
  }
  ctx.fillText('parameters', pad.l + (w - pad.l - pad.r) / 2, h - 18);
  ctx.save();
  ctx.translate(14, pad.t + (h - pad.t - pad.b) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText('test loss', 0, -6);
  ctx.restore();
  ctx.strokeStyle = '#333';
  ctx.beginPath(); ctx.moveTo(pad.l, pad.t); ctx.lineTo(pad.l, h - pad.b); ctx.lineTo(w - pad.r, h - pad.b); ctx.stroke();
  if (room.challenge?.metric === 'test_loss') {
    const y = Y(Number(room.challenge.target));
    ctx.setLineDash([6, 4]);
    ctx.strokeStyle = '#1b6b3a';
    ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = '#1b6b3a';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'bottom';
    ctx.fillText(`target ${room.challenge.target}`, w - pad.r, y - 2);
  }
  scatter.dots = [];
  for (const m of pts) {
    const x = X(m.report.params);
    const y = Y(m.report.test_loss);
    const spot = room.spotlight === m.report.member_id;
    ctx.beginPath();
    ctx.arc(x, y, spot ? 9 : 6, 0, Math.PI * 2);
    ctx.fillStyle = m.report.diverged ? '#d62728' : spot ? '#f59322' : '#0877bd';
    ctx.fill();
    ctx.lineWidth = 2;
    ctx.strokeStyle = '#fff';
    ctx.stroke();
    scatter.dots.push({ x, y, id: m.report.member_id });
  }
}

function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(Math.max(raw, 1)));
  for (const k of [1, 2, 5, 10]) if (k * p >= raw) return k * p;
  return 10 * p;
}

$('cr-scatter').addEventListener('click', (ev) => {
  const r = ev.currentTarget.getBoundingClientRect();
  const x = ev.clientX - r.left;
  const y = ev.clientY - r.top;
  let best = null;
  let bd = 14 ** 2;
  for (const d of scatter.dots) {
    const dd = (d.x - x) ** 2 + (d.y - y) ** 2;
    if (dd < bd) { bd = dd; best = d; }
  }
  if (best) openSpotlight(best.id);
});

// ---- spotlight ----------------------------------------------------------------------------

function openSpotlight(id) {
  room.spotlight = id;
  sendWs({ type: 'spotlight', member_id: id });
  renderSpotlight();
  const d = $('cr-spotlight');
  if (!d.open) d.showModal();
}

$('cr-spotlight').addEventListener('close', () => {
  sendWs({ type: 'spotlight', member_id: null });
  room.spotlight = null;
});
$('cr-spot-close').addEventListener('click', () => $('cr-spotlight').close());

function configSummary(cfg) {
  const layers = cfg.layers?.length ? `${cfg.layers.map((l) => l.units).join(', ')} (${[...new Set(cfg.layers.map((l) => l.activation))].join(', ')})` : 'none';
  const reg = cfg.l1 > 0 ? `L1 ${cfg.l1}` : cfg.l2 > 0 ? `L2 ${cfg.l2}` : 'none';
  return [
    ['Dataset', `${cfg.dataset}${cfg.noise ? `, noise ${cfg.noise}` : ''}`], ['Features', (cfg.features || []).join(', ')],
    ['Hidden layers', layers], ['Optimizer', `${cfg.optimizer}, learning rate ${cfg.learning_rate}`],
    ['Batch size', String(cfg.batch_size)], ['Regularization', reg],
  ];
}

function renderSpotlight() {
  const m = room.members.get(room.spotlight);
  if (!m) return;
  const r = m.report;
  const name = displayName(m);
  $('h-spot').textContent = name;
  const c = $('cr-spot-canvas');
  c.setAttribute('aria-label', `Decision boundary of ${name}`);
  drawThumb(c, r);
  const rows = [
    ['Parameters', String(r.params ?? '–')], ['Epoch', String(r.epoch ?? 0)], ['Test loss', fmtLoss(r.test_loss)],
    ['Training loss', fmtLoss(r.train_loss)], ['Test accuracy', fmtAcc(r.test_accuracy)],
    ['Status', r.diverged ? 'diverged' : r.playing ? 'training' : 'paused'],
    ...(r.config ? configSummary(r.config) : []),
  ];
  $('cr-spot-summary').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
  $('cr-spot-open').disabled = !r.config;
  $('cr-spot-open').title = r.config ? '' : 'waiting for the student\'s config…';
}

$('cr-spot-open').addEventListener('click', () => {
  const r = room.members.get(room.spotlight)?.report;
  if (r?.config) window.open(`/${hashOf(r.config, {})}`, '_blank', 'noopener');
});

// ---- join screen (projector) --------------------------------------------------------------

$('cr-copy-link').addEventListener('click', () => copy($('cr-student-link'), $('cr-copy-link')));
$('cr-show-join').addEventListener('click', () => $('cr-joinscreen').showModal());
$('cr-js-close').addEventListener('click', () => $('cr-joinscreen').close());

// ---- push -------------------------------------------------------------------------------

async function loadPresets() {
  try {
    const presets = await api('GET', '/api/presets');
    const sel = $('cr-preset');
    const groups = new Map();
    for (const p of presets) {
      if (!groups.has(p.section)) groups.set(p.section, sel.appendChild(el('optgroup', { label: p.section })));
      groups.get(p.section).append(new Option(p.title, p.name));
    }
  } catch (err) {
    showError(`could not load presets: ${err.message}`);
  }
}

$('cr-push-preset').addEventListener('click', () => {
  const preset = $('cr-preset').value;
  if (!preset) { showError('preset: choose one to push'); return; }
  const title = $('cr-preset').selectedOptions[0].textContent;
  act(() => api('POST', `/api/rooms/${room.code}/push`, { preset }), `pushed “${title}” to everyone`);
});

$('cr-push-link').addEventListener('click', () => {
  const text = $('cr-link').value.trim();
  const i = text.indexOf('#');
  const config = i >= 0 ? readHash(text.slice(i)).config : {};
  if (!Object.keys(config).length) { showError('playground link: paste a link with settings after # (use Share in a playground)'); return; }
  act(() => api('POST', `/api/rooms/${room.code}/push`, { config }), 'pushed the link’s settings to everyone');
});

// ---- locks --------------------------------------------------------------------------------

for (const [label, names] of LOCKS) {
  const box = el('input', { type: 'checkbox', value: names.join(',') });
  box.addEventListener('change', sendLocks);
  $('cr-locks').append(el('label', { class: 'check' }, box, ` ${label}`));
}
const lockBoxes = () => [...$('cr-locks').querySelectorAll('input')];

function setLockBoxes(locks) {
  room.locks = locks;
  const on = new Set(locks);
  for (const b of lockBoxes()) b.checked = b.value.split(',').every((n) => on.has(n));
}

async function sendLocks() {
  const locks = lockBoxes().filter((b) => b.checked).flatMap((b) => b.value.split(','));
  const out = await act(() => api('POST', `/api/rooms/${room.code}/locks`, { locks }),
    locks.length ? `locked: ${lockBoxes().filter((b) => b.checked).map((b) => b.parentElement.textContent.trim()).join(', ')}` : 'all controls unlocked');
  if (out === null) setLockBoxes(room.locks); // refused: show what is really locked
  else room.locks = Array.isArray(out?.locks) ? out.locks : locks;
}

// ---- challenge ----------------------------------------------------------------------------

for (const [k, t] of TEMPLATES.entries()) $('cr-template').add(new Option(t.label, String(k)));
for (const [name, title] of DATASETS.classification) $('cr-dataset').add(new Option(title, name));

function fillTemplate() {
  const t = TEMPLATES[Number($('cr-template').value)];
  if (t.custom) { $('cr-ch-title').focus(); return; }
  $('cr-ch-title').value = t.title;
  $('cr-metric').value = t.metric;
  $('cr-target').value = String(t.target);
  $('cr-rank').value = t.rank_by;
  $('cr-dataset').value = t.dataset;
}
$('cr-template').addEventListener('change', fillTemplate);
fillTemplate();

$('cr-challenge').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const body = {
    title: $('cr-ch-title').value.trim(), metric: $('cr-metric').value, target: Number($('cr-target').value),
    rank_by: $('cr-rank').value,
  };
  if ($('cr-dataset').value) body.dataset = $('cr-dataset').value;
  const out = await act(() => api('POST', `/api/rooms/${room.code}/challenge`, body), `challenge started: ${body.title}`);
  if (out) { setChallenge(out.challenge || out); refreshBoard(); }
});

$('cr-stop').addEventListener('click', async () => {
  const out = await act(() => api('POST', `/api/rooms/${room.code}/challenge/stop`, {}), 'challenge stopped');
  if (out) setChallenge(out.challenge || { ...room.challenge, active: false });
});

function setChallenge(ch) {
  room.challenge = ch && ch.title ? ch : null;
  const s = $('cr-ch-status');
  $('cr-stop').disabled = !room.challenge?.active;
  if (!room.challenge) { s.textContent = 'No challenge running.'; return; }
  s.textContent = `${room.challenge.active ? 'Running' : 'Stopped'}: ${room.challenge.title} — ${goalText(room.challenge)}`;
  s.dataset.kind = room.challenge.active ? 'on' : 'off';
}

// ---- leaderboard, names, closing ----------------------------------------------------------

function setRevealed(on) {
  room.revealed = on;
  $('cr-reveal').setAttribute('aria-pressed', String(on));
}

$('cr-reveal').addEventListener('click', async () => {
  const revealed = !room.revealed;
  const out = await act(() => api('POST', `/api/rooms/${room.code}/leaderboard`, { revealed }),
    revealed ? 'leaderboard revealed to the students' : 'leaderboard hidden from the students');
  if (out) { setRevealed(revealed); refreshBoard(); }
});

$('cr-hide-names').addEventListener('change', async (ev) => {
  const hide = ev.target.checked;
  const out = await act(() => api('POST', `/api/rooms/${room.code}/settings`, { hide_names: hide }),
    hide ? 'names hidden' : 'names shown');
  if (out === null) { ev.target.checked = !hide; return; }
  room.hideNames = hide;
  for (const m of room.members.values()) m.dirty = true;
  renderWall();
  if (room.spotlight) renderSpotlight();
  refreshBoard();
});

$('cr-close-room').addEventListener('click', async () => {
  if (!window.confirm(`Close room ${room.code}? Students are told the room is closed.`)) return;
  const out = await act(() => api('DELETE', `/api/rooms/${room.code}`), `room ${room.code} closed`);
  if (out !== null) {
    localStorage.removeItem(TOKEN_KEY(room.code));
    room.ws?.close(1000, 'room closed');
  }
});

/** Fetch and show the leaderboard; calls while a fetch runs become one more fetch after it
 * (a burst of results from a full room is a couple of requests, not one per result). */
async function refreshBoard() {
  if (room.boardBusy) { room.boardAgain = true; return; }
  room.boardBusy = true;
  try {
    do {
      room.boardAgain = false;
      const out = await api('GET', `/api/rooms/${room.code}/leaderboard`);
      renderBoard(Array.isArray(out) ? out : out?.leaderboard ?? out?.rows ?? []);
    } while (room.boardAgain);
  } catch (err) {
    showError(err.message);
  } finally {
    room.boardBusy = false;
  }
}

function renderBoard(rows) {
  const root = $('cr-board');
  if (!room.challenge) { root.replaceChildren(el('p', { class: 'hint', text: 'No challenge yet.' })); return; }
  const named = rows.map((r) => {
    const m = room.members.get(r.member_id);
    return { ...r, name: m ? displayName(m) : room.hideNames ? `Student ${r.rank}` : r.name };
  });
  root.replaceChildren(named.length
    ? leaderboardTable(named, { metric: room.challenge.metric, caption: room.revealed ? 'Visible to students' : 'Only you see this' })
    : el('p', { class: 'hint', text: 'Nobody has reached the target yet.' }));
}

// ---- start ----------------------------------------------------------------------------------

loadPresets();
setChallenge(null);
{
  const code = new URLSearchParams(location.hash.replace(/^#/, '')).get('room')?.toUpperCase();
  const token = code && localStorage.getItem(TOKEN_KEY(code));
  if (code && token) openRoom(code, token);
  else if (code) backToSetup(code);
}
