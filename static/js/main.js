// Page entry: wires the socket, the controls, the URL hash and the drawings together.
import { Socket } from './socket.js';
import { readHash, writeHash, applyPatch } from './state.js';
import { Controls } from './controls.js';
import { Network } from './network.js';
import { setupExtras } from './extras.js';
import { drawGrid, drawPoints, fromCanvas } from './heatmap.js';
import { setupViews } from './views/index.js';
import { setupExport } from './views/export.js';
import { setupRoom } from './room.js';

const $ = (id) => document.getElementById(id);
const initial = readHash();
const flags = initial.flags;
const view = { showTest: false, discretize: false, cbPalette: false, view: 'playground', ...initial.view };

if (flags.embed) document.body.classList.add('embed');
if (flags.present) document.body.classList.add('present');
for (const name of initial.hidden) {
  for (const el of document.querySelectorAll(`[data-ctl="${name}"]`)) el.hidden = true;
}

const app = {
  cfg: null, // the config as the page believes it (server state + pending patches)
  serverCfg: null,
  points: { train: [], test: [] },
  historyFields: [],
  playing: false,
  diverged: false,
  epoch: 0,
  ready: false,
  connected: false,
  lastFrame: null,
  closeInfo: null,
  awaitingFirstState: true,
  // Messages sent that the server answers with a `state` (or an error). While any is in
  // flight, a `state` describes an older config than the page shows: do not roll back to it.
  inFlight: 0,
};
const STATEFUL = new Set(['config', 'patch', 'regenerate', 'reset', 'add_points', 'remove_point']);

const outCanvas = $('output-canvas');

const socket = new Socket({
  onOpen() {
    app.connected = true;
    app.closeInfo = null;
    app.awaitingFirstState = true;
    app.inFlight = 0;
    pollHealth();
    renderStatus();
  },
  onMessage: handleMessage,
  onFrame: handleFrame,
  onClose({ code, reason, retryIn }) {
    // a restarted server's session starts paused: resume it (not after an idle close)
    if (app.connected) app.resume = app.playing && code !== 1000;
    app.connected = false;
    app.closeInfo = { code, reason, retryIn, at: performance.now() };
    room?.onClose();
    renderStatus();
  },
});

{
  const rawSend = socket.send.bind(socket);
  socket.send = (msg) => {
    if (STATEFUL.has(msg.type)) app.inFlight += 1;
    return rawSend(msg);
  };
}

const controls = new Controls({
  emit: patch,
  act: (type) => socket.send({ type }),
  view: (k, v) => {
    view[k] = v;
    if (app.cfg) writeHash(app.cfg, view);
    drawOutput();
  },
});

const network = new Network(
  {
    board: $('board'), svg: $('links'), layers: $('layers'), features: $('features'), output: outCanvas,
    tooltip: $('tooltip'), editor: $('weight-editor'), input: $('weight-input'),
  },
  {
    setWeight: (msg) => socket.send(msg),
    changeUnits: (j, d) => controls.changeUnits(j, d),
    changeActivation: (j, a) => patch({ layers: app.cfg.layers.map((l, k) => (k === j ? { ...l, activation: a } : l)) }),
  },
);

const extras = setupExtras({
  app, view, send: (msg) => socket.send(msg), patch, showError,
  setView: (k, v) => { view[k] = v; if (app.cfg) writeHash(app.cfg, view); drawOutput(); },
});

const views = setupViews(
  {
    app, flags, patch, showError, send: (msg) => socket.send(msg),
    onChange(name) { view.view = name; if (app.cfg) writeHash(app.cfg, view); },
  },
  { tabs: $('view-tabs'), panel: $('view-panel'), board: $('board') },
);
views.open(view.view, { silent: true });

const exporter = setupExport($('export'), { send: (msg) => socket.send(msg), canvas: outCanvas, showError });

// classroom (#room=CODE): joins after every (re)connection, applies the lecturer's pushes and locks
const roomCode = initial.params.get('room');
const room = roomCode ? setupRoom({
  code: roomCode,
  send: (msg) => socket.send(msg),
  applyPush(msg) {
    // the preset menu's path: the config goes to this page's own session, the hash follows
    writeHash(msg.config, view);
    socket.send({ type: 'config', config: msg.config });
    if (msg.view) views.open(msg.view);
  },
  refresh: () => { if (app.cfg) syncAll(true); else room?.lockControls(); },
  metrics: () => app.metrics,
}) : null;

// test hooks (no effect on the page)
window.__nnplay_views = views;
window.__nnplay_socket_close_for_test = () => socket.closeForTest(1000, 'idle timeout (test)');

function syncAll(force = false) {
  controls.sync(app.cfg, view);
  extras.sync(view, { force });
  network.setActivations(app.cfg.layers.map((l) => l.activation));
  room?.lockControls();
}

function patch(p) {
  if (!app.cfg) return;
  app.cfg = applyPatch(app.cfg, p);
  writeHash(app.cfg, view);
  syncAll();
  socket.send({ type: 'patch', patch: p });
}

function showError(text) {
  const el = $('error');
  el.textContent = text || '';
  el.hidden = !text;
  clearTimeout(showError.t);
  if (text) showError.t = setTimeout(() => { el.hidden = true; }, 8000);
}

function handleMessage(msg) {
  switch (msg.type) {
    case 'state': {
      if (msg.server) {
        controls.maxLayers = msg.server.max_layers;
        controls.maxUnits = msg.server.max_units;
        network.maxUnits = msg.server.max_units;
        app.maxPoints = msg.server.max_points;
      }
      window.__nnplay_last_state = msg;
      app.serverCfg = msg.config;
      // A state carries points only when the data changed since the last one (docs/protocol.md):
      // keep them even from a state that is skipped below, as the next ones will not repeat them.
      app.points = msg.points || app.points;
      window.__nnplay_points = app.points;
      if (!msg.server) app.inFlight = Math.max(0, app.inFlight - 1);
      if (app.inFlight > 0 && !app.awaitingFirstState) break; // a newer change is on its way
      extras.onState(msg);
      app.cfg = msg.config;
      views.onState(msg);
      app.historyFields = msg.history_fields || app.historyFields;
      app.playing = msg.playing;
      app.epoch = msg.epoch;
      $('params').textContent = `${msg.n_params} parameters`;
      if (app.awaitingFirstState) {
        // a (re)connection: apply the settings of the URL
        app.awaitingFirstState = false;
        const hashCfg = readHash().config;
        if (Object.keys(hashCfg).length) socket.send({ type: 'config', config: hashCfg });
        room?.onOpen(); // join after restoring the page's own settings: a reconnect keeps them under locks
        if (app.resume && !msg.playing) { socket.send({ type: 'play' }); app.playing = true; }
        app.resume = false;
      } else {
        writeHash(app.cfg, view);
      }
      network.setStructure(app.cfg.features, app.cfg.layers.map((l) => l.units), outputsOf(app.cfg));
      syncAll();
      drawOutput();
      renderStatus();
      break;
    }
    case 'ack':
      if (typeof msg.playing === 'boolean') app.playing = msg.playing;
      renderStatus();
      break;
    case 'error':
      showError(msg.messages?.length ? msg.messages.join('; ') : msg.message);
      if (room?.onError(msg)) break; // a refused join changed no config
      app.inFlight = Math.max(0, app.inFlight - 1);
      if (app.serverCfg && app.inFlight === 0) {
        app.cfg = app.serverCfg;
        writeHash(app.cfg, view);
        syncAll(true);
      }
      break;
    case 'notice':
      showError(msg.message);
      break;
    case 'export':
      exporter.onMessage(msg);
      break;
    case 'hidden':
      views.onMessage(msg);
      break;
    default:
      room?.onMessage(msg);
      break;
  }
}

function outputsOf(cfg) {
  const out = cfg.output_activation ?? (cfg.problem === 'regression' ? 'linear' : cfg.classes > 2 ? 'softmax' : 'sigmoid');
  return out === 'softmax' ? cfg.classes : 1;
}

let pendingDraw = false;
function handleFrame(frame) {
  const h = frame.header;
  app.lastFrame = frame;
  app.ready = true;
  app.playing = h.playing;
  app.diverged = h.diverged;
  app.epoch = h.epoch;
  extras.onFrame(h);
  app.metrics = h.metrics || {};
  views.onFrame(frame);
  if (!pendingDraw) {
    pendingDraw = true;
    requestAnimationFrame(() => {
      pendingDraw = false;
      render();
    });
  }
}

const fmtLoss = (v) => (v == null ? '–' : v.toFixed(3));

function render() {
  const f = app.lastFrame;
  if (!f) return;
  $('epoch').textContent = String(app.epoch).padStart(6, '0').replace(/(\d{3})(\d{3})$/, '$1,$2');
  $('train-loss').textContent = fmtLoss(app.metrics.train_loss);
  $('test-loss').textContent = fmtLoss(app.metrics.test_loss);
  network.update(f, { discretize: view.discretize });
  extras.render();
  drawOutput();
  views.render();
  renderStatus();
}

function drawOutput() {
  const f = app.lastFrame;
  const ctx = outCanvas.getContext('2d');
  if (f && f.arrays.output) {
    drawGrid(outCanvas, f.arrays.output, f.header.grid, {
      discretize: view.discretize,
      classes: f.arrays.output_class || null,
      k: f.header.outputs,
    });
  } else {
    ctx.fillStyle = '#e8eaeb';
    ctx.fillRect(0, 0, outCanvas.width, outCanvas.height);
  }
  const problem = app.cfg?.problem || 'classification';
  const present = document.body.classList.contains('present');
  const radius = outCanvas.width / (present ? 70 : 100);
  drawPoints(outCanvas, app.points.train, { problem, radius, stroke: present ? 2 : 1.2 });
  if (view.showTest) drawPoints(outCanvas, app.points.test, { problem, test: true, radius, stroke: present ? 2 : 1.2 });
}

function renderStatus() {
  const el = $('status');
  let text;
  let kind = 'ok';
  if (!app.connected) {
    const c = app.closeInfo;
    if (!c) text = 'connecting…';
    else {
      const why = c.code === 1008 ? 'origin not allowed' : c.code === 1013 ? `server busy: ${c.reason}`
        : c.reason ? `disconnected: ${c.reason}` : 'disconnected';
      const left = c.retryIn != null ? Math.max(0, Math.ceil((c.retryIn - (performance.now() - c.at)) / 1000)) : null;
      text = left != null ? `${why} — reconnecting in ${left} s…` : c.code === 1008 ? why : `${why} — press any control to reconnect`;
      kind = 'warn';
    }
  } else if (!app.ready) text = 'warming up…';
  else if (app.diverged) { text = 'diverged — lower the learning rate and reset'; kind = 'bad'; }
  else if (app.lastFrame?.header.stopped) text = `early stopping${app.playing ? '' : ' — paused'}`;
  else text = app.playing ? 'training' : 'paused';
  if (el.textContent !== text) el.textContent = text;
  el.dataset.kind = kind;
  const play = $('play');
  const label = app.playing ? 'Pause' : 'Play';
  if (play.getAttribute('aria-label') !== label) {
    play.setAttribute('aria-label', label);
    play.classList.toggle('playing', app.playing);
  }
}
setInterval(() => { if (!app.connected) renderStatus(); }, 500);

async function pollHealth() {
  for (;;) {
    try {
      const r = await fetch('/healthz', { cache: 'no-store' });
      if (r.ok) { if (!app.lastFrame) app.ready = true; break; }
    } catch { /* server restarting: the socket handles it */ }
    renderStatus();
    await new Promise((res) => setTimeout(res, 1000));
    if (!app.connected) return;
  }
  renderStatus();
}

function togglePlay() {
  app.playing = !app.playing;
  socket.send({ type: app.playing ? 'play' : 'pause' });
  renderStatus();
}
function step() { socket.send({ type: 'step', epochs: 1 }); }
function reset() {
  extras.clearCharts();
  views.reset();
  socket.send({ type: 'reset' });
}

$('play').addEventListener('click', togglePlay);
$('step').addEventListener('click', step);
$('reset').addEventListener('click', reset);

document.addEventListener('keydown', (ev) => {
  if (flags.embed || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t instanceof HTMLElement && (t.matches('input, select, textarea') || t.isContentEditable)) return;
  if (ev.key === ' ' && !(t instanceof HTMLButtonElement)) { ev.preventDefault(); togglePlay(); }
  else if (ev.key === 's') step();
  else if (ev.key === 'r') reset();
  else if ((ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') && views.onKey(ev)) ev.preventDefault();
});

outCanvas.addEventListener('click', (ev) => {
  const r = outCanvas.getBoundingClientRect();
  const px = (ev.clientX - r.left) / r.width * outCanvas.width;
  const py = (ev.clientY - r.top) / r.height * outCanvas.height;
  const [x1, x2] = fromCanvas(outCanvas, px, py).map((v) => Math.max(-6, Math.min(6, Math.round(v * 1000) / 1000)));
  if (ev.altKey) {
    ev.preventDefault();
    socket.send({ type: 'remove_point', x1, x2 });
    return;
  }
  const reg = app.cfg?.problem === 'regression';
  const label = ev.shiftKey ? (reg ? -1 : 0) : 1;
  socket.send({ type: 'add_points', points: [{ x1, x2, label }] });
});

async function loadPresets() {
  const sel = $('preset');
  try {
    const r = await fetch('/api/presets');
    const presets = await r.json();
    const groups = new Map();
    for (const p of presets) {
      if (!groups.has(p.section)) {
        const g = document.createElement('optgroup');
        g.label = p.section;
        groups.set(p.section, g);
        sel.append(g);
      }
      groups.get(p.section).append(new Option(p.title, p.name));
    }
    sel.addEventListener('change', () => {
      const p = presets.find((x) => x.name === sel.value);
      if (p) {
        socket.send({ type: 'config', config: p.config });
        if (p.view) views.open(p.view);
      }
    });
  } catch (err) {
    showError(`could not load presets: ${err}`);
  }
}

if (flags.present) for (const c of extras.charts) c.lineWidth = 3;
drawOutput();
loadPresets();
socket.connect();
