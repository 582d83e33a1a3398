// Classroom, student side: `#room=CODE` in the URL joins that room on the session's socket
// (again after every reconnect), shows the banner (code, name, challenge, own status,
// leaderboard), applies the lecturer's pushes and disables the controls the lecturer locked.
// The server enforces the locks; disabling them here only says so before the student tries.
import { ADVANCED } from './advanced.js';

const NAME_KEY = 'nnplay-room-name';
const PUSH_KEY = (code) => `nnplay-room-push:${code}`;
// {room, member_id, secret}, per tab: a reload or reconnect takes up the same member again
const MEMBER_KEY = 'nnplay-room-member';
const NAME_MAX = 24;
const LOCK_TITLE = 'locked by the lecturer';
const BOARD_ROWS = 5;

/** Lock name (a config field or page control name) -> selectors of the controls it disables. */
const LOCK_TARGETS = {
  learning_rate: ['[data-ctl="learningRate"]'],
  activation: ['[data-ctl="activation"]', '.layer-act'],
  layers: ['[data-ctl="layers"]', '.layer-head', '.layer-act'],
  l1: ['[data-ctl="regularization"]', '[data-ctl="regularizationRate"]'],
  l2: ['[data-ctl="regularization"]', '[data-ctl="regularizationRate"]'],
  regularization: ['[data-ctl="regularization"]', '[data-ctl="regularizationRate"]'],
  problem: ['[data-ctl="problem"]'],
  optimizer: ['[data-ctl="optimizer"]'],
  dataset: ['[data-ctl="dataset"]', '[data-ctl="csv"]'],
  points: ['[data-ctl="csv"]'],
  features: ['[data-ctl="features"]'],
  classes: ['[data-ctl="classes"]'],
  noise: ['[data-ctl="noise"]'],
  train_ratio: ['[data-ctl="trainRatio"]'],
  batch_size: ['[data-ctl="batchSize"]'],
  speed: ['[data-ctl="speed"]'],
  preset: ['[data-ctl="preset"]'],
};
for (const g of ADVANCED) {
  for (const it of g.items) {
    if (it.field) LOCK_TARGETS[it.field] = [...(LOCK_TARGETS[it.field] || []), `[data-ctl="${it.id}"]`];
  }
}
LOCK_TARGETS.augmentation = ['[data-ctl="jitter"]', '[data-ctl="flipX1"]', '[data-ctl="flipX2"]'];
LOCK_TARGETS.class_weight = [...(LOCK_TARGETS.class_weight || []), '[data-ctl="classWeight"]'];

const FIELDS = 'select, input, button, textarea';

const METRIC = {
  test_loss: { label: 'test loss', title: 'Test loss', better: (v, t) => v <= t, fmt: (v) => v.toFixed(3), cmp: '≤' },
  test_accuracy: { label: 'test accuracy', title: 'Test accuracy', better: (v, t) => v >= t, fmt: (v) => `${(v * 100).toFixed(1)} %`, cmp: '≥' },
};

/** A short sentence for a challenge's goal, e.g. "test loss ≤ 0.050 · fewest parameters win". */
export function goalText(ch) {
  const m = METRIC[ch.metric] || { label: ch.metric, fmt: String, cmp: '→' };
  const rank = ch.rank_by === 'params' ? 'fewest parameters win' : 'fastest wins';
  return `${m.label} ${m.cmp} ${m.fmt(Number(ch.target))} · ${rank}${ch.dataset ? ` · dataset ${ch.dataset}` : ''}`;
}

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

/** The leaderboard as a table (names through textContent only). */
export function leaderboardTable(rows, { metric = 'test_loss', caption = 'Leaderboard' } = {}) {
  const fmt = METRIC[metric]?.fmt || ((v) => String(v));
  const head = el('tr', {}, ...['#', 'Name', 'Parameters', METRIC[metric]?.title || 'Value', 'Time'].map((t) => el('th', { scope: 'col', text: t })));
  const body = rows.map((r) => el('tr', { class: r.you ? 'you' : '' },
    el('td', { text: String(r.rank) }),
    el('td', { text: r.name ?? '' }),
    el('td', { text: r.params == null ? '–' : String(r.params) }),
    el('td', { text: r.value == null ? '–' : fmt(Number(r.value)) }),
    el('td', { text: r.seconds == null ? '–' : `${Number(r.seconds).toFixed(1)} s` })));
  return el('table', { class: 'leaderboard' }, el('caption', { text: caption }), el('thead', {}, head), el('tbody', {}, ...body));
}

/**
 * ctx: {code, send(msg) -> bool, applyPush(msg), refresh() (re-sync the controls, then
 * lockControls runs), metrics() -> latest frame metrics, params() -> parameter count}
 */
export function setupRoom(ctx) {
  const code = ctx.code.toUpperCase();
  const state = { joined: false, joining: false, closed: false, left: false, locks: new Set(), challenge: null, reached: null,
    result: null, leaderboard: null, memberId: null };

  const nameInput = el('input', { type: 'text', id: 'room-name', maxLength: NAME_MAX, autocomplete: 'nickname',
    placeholder: 'anonymous', 'aria-label': 'Your name (optional)' });
  nameInput.value = (localStorage.getItem(NAME_KEY) || '').slice(0, NAME_MAX);
  const codeEl = el('span', { class: 'room-code', text: code });
  const statusEl = el('span', { class: 'room-state', role: 'status', text: 'joining…' });
  const leave = el('button', { type: 'button', class: 'text-btn', text: 'Leave room' });
  const challengeEl = el('div', { class: 'room-challenge', hidden: true });
  const boardEl = el('div', { class: 'room-board', hidden: true });
  const banner = el('section', { class: 'room-banner', id: 'room-banner', 'aria-label': `Classroom ${code}` },
    el('div', { class: 'room-line' },
      el('span', { class: 'room-label', text: 'Classroom' }), codeEl, statusEl,
      el('label', { class: 'room-name' }, el('span', { text: 'Your name (optional)' }), nameInput),
      leave),
    challengeEl, boardEl);
  document.querySelector('.brand').after(banner);

  function stored() {
    try {
      const m = JSON.parse(sessionStorage.getItem(MEMBER_KEY) || 'null');
      return m?.room === code && typeof m.member_id === 'string' && typeof m.secret === 'string' ? m : null;
    } catch {
      return null;
    }
  }

  function join() {
    if (state.closed || state.left) return;
    state.joining = true;
    const name = nameInput.value.trim();
    const me = stored();
    ctx.send({ type: 'join_room', room: code, ...(name ? { name } : {}),
      ...(me ? { member_id: me.member_id, secret: me.secret } : {}) });
  }

  nameInput.addEventListener('change', () => {
    const name = nameInput.value.trim().slice(0, NAME_MAX);
    nameInput.value = name;
    localStorage.setItem(NAME_KEY, name);
    join(); // joining again with a name renames this member
  });
  leave.addEventListener('click', () => {
    state.left = true;
    sessionStorage.removeItem(MEMBER_KEY);
    ctx.send({ type: 'leave_room' });
    const p = new URLSearchParams(location.hash.replace(/^#/, ''));
    p.delete('room');
    history.replaceState(null, '', `#${p.toString().replace(/%2C/g, ',')}`);
    setLocks([]);
    banner.remove();
  });

  function setStatus(text, kind = 'ok') {
    statusEl.textContent = text;
    statusEl.dataset.kind = kind;
  }

  function setLocks(names) {
    state.locks = new Set(names);
    unlockAll();
    ctx.refresh();
  }

  function unlockAll() {
    for (const e of document.querySelectorAll('[data-room-locked]')) {
      if (e.dataset.roomLocked === 'disabled') e.disabled = false;
      if (e.dataset.roomTitle !== undefined) {
        if (e.dataset.roomTitle) e.title = e.dataset.roomTitle; else e.removeAttribute('title');
      }
      delete e.dataset.roomLocked;
      delete e.dataset.roomTitle;
      e.classList.remove('room-locked');
    }
  }

  function mark(e, disable) {
    if (e.dataset.roomLocked) return;
    // remember whether the lock disabled it (unlocking must not enable what was disabled anyway)
    e.dataset.roomLocked = disable && !e.disabled ? 'disabled' : 'wrap';
    e.dataset.roomTitle = e.getAttribute('title') || '';
    e.title = LOCK_TITLE;
    if (disable) e.disabled = true;
    else e.classList.add('room-locked');
  }

  /** Disable the locked controls (called after every sync of the controls, which may re-enable them). */
  function lockControls() {
    for (const name of state.locks) {
      for (const sel of LOCK_TARGETS[name] || [`[data-ctl="${name}"]`]) {
        for (const root of document.querySelectorAll(sel)) {
          if (root.matches(FIELDS)) mark(root, true);
          else {
            mark(root, false);
            for (const f of root.querySelectorAll(FIELDS)) mark(f, true);
          }
        }
      }
    }
  }

  function renderChallenge() {
    const ch = state.challenge;
    challengeEl.hidden = !ch;
    if (!ch) return;
    const own = el('p', { class: 'room-own' });
    const m = METRIC[ch.metric];
    const v = ctx.metrics()?.[ch.metric];
    if (state.result) {
      const r = state.result;
      const value = m && r.value != null ? `${m.label} ${m.fmt(Number(r.value))}` : '';
      const rank = state.leaderboard?.find((row) => state.memberId && row.member_id === state.memberId)?.rank;
      own.textContent = ch.rank_by === 'time'
        ? `Target reached after ${Number(r.seconds).toFixed(1)} s (${r.params} parameters)`
        : `Your best: ${r.params} parameters${value ? `, ${value}` : ''}`;
      if (rank) own.textContent += ` · rank ${rank}`;
      own.dataset.kind = 'done';
    } else if (ch.active && m && v != null) {
      const hit = m.better(v, Number(ch.target));
      own.textContent = `Your ${m.label}: ${m.fmt(v)}${hit ? ' — target reached ✓' : ''}`;
      own.dataset.kind = hit ? 'done' : '';
    } else {
      own.textContent = ch.active ? 'Press play to take part.' : '';
    }
    challengeEl.replaceChildren(
      el('span', { class: 'room-label', text: ch.active ? 'Challenge' : 'Challenge ended' }),
      el('strong', { class: 'room-ch-title', text: ch.title || 'Challenge' }),
      el('span', { class: 'room-goal', text: goalText(ch) }),
      own,
    );
  }

  function renderBoard() {
    const lb = state.leaderboard;
    boardEl.hidden = !lb;
    if (!lb) return;
    const rows = lb.map((r) => ({ ...r, you: r.you || (state.memberId && r.member_id === state.memberId) }));
    // the top of the board and the student's own row: a long table would push the playground away
    const shown = rows.filter((r, k) => k < BOARD_ROWS || r.you);
    const caption = shown.length < rows.length ? `Leaderboard (top ${BOARD_ROWS} of ${rows.length})` : 'Leaderboard';
    boardEl.replaceChildren(rows.length
      ? leaderboardTable(shown, { metric: state.challenge?.metric, caption })
      : el('p', { class: 'hint', text: 'Leaderboard: nobody has reached the target yet.' }));
  }

  function applyRoom(room) {
    if (!room) return;
    if (room.title) banner.setAttribute('aria-label', `Classroom ${code}: ${room.title}`);
    if (Array.isArray(room.locks)) setLocks(room.locks);
    if ('challenge' in room) state.challenge = room.challenge || null;
    if ('leaderboard' in room) state.leaderboard = Array.isArray(room.leaderboard) ? room.leaderboard : null;
    // a late joiner (or a new tab) gets the last push once; a reconnect does not undo own tweaks
    if (room.pushed?.config && String(room.pushed.at) !== sessionStorage.getItem(PUSH_KEY(code))) push(room.pushed, `${statusEl.textContent} · `);
    renderChallenge();
    renderBoard();
  }

  /** Apply a push; `prefix` keeps the status line's start (e.g. "joined · 3 in the room"). */
  function push(msg, prefix = '') {
    sessionStorage.setItem(PUSH_KEY(code), String(msg.at));
    ctx.applyPush(msg);
    const title = msg.preset && [...document.querySelectorAll('#preset option')].find((o) => o.value === msg.preset)?.textContent;
    setStatus(`${prefix}the lecturer sent ${msg.preset ? `“${title || msg.preset}”` : 'a new setup'}`);
  }

  function close(text) {
    state.closed = true;
    state.joined = false;
    setLocks([]);
    setStatus(text, 'bad');
    banner.classList.add('closed');
  }

  // re-render the own status at most twice a second while a challenge runs
  setInterval(() => { if (state.challenge?.active && !state.result) renderChallenge(); }, 500);

  return {
    code,
    banner,
    lockControls,
    isLocked: (name) => state.locks.has(name),
    /** A (re)connection got its first state (and the URL's settings were sent): join (again). */
    onOpen() {
      state.joined = false;
      if (!state.closed && !state.left) setStatus('joining…');
      join();
    },
    /** The socket closed: this session left the room; the next connection joins again. */
    onClose() {
      state.joined = false;
      if (!state.closed && !state.left) setStatus('disconnected — rejoining when the connection is back', 'warn');
    },
    /** A server error while joining belongs in the banner (returns true when handled). */
    onError(msg) {
      if (msg.of !== 'join_room' && !(state.joining && /room|name|join/i.test(msg.message || ''))) return false;
      state.joining = false;
      if (!state.joined) {
        setStatus(`could not join: ${msg.message}`, 'bad');
        if (/not found|expired/.test(msg.message)) state.closed = true;
      }
      return true;
    },
    /** room_* messages; returns true when handled. */
    onMessage(msg) {
      if (state.left) return msg.type.startsWith('room_');
      switch (msg.type) {
        case 'room_joined':
          state.joining = false;
          state.joined = true;
          state.memberId = msg.member_id ?? null;
          if (typeof msg.secret === 'string') sessionStorage.setItem(MEMBER_KEY, JSON.stringify({ room: code, member_id: msg.member_id, secret: msg.secret }));
          if (msg.rejoined) state.result = msg.result || null;
          if (typeof msg.name === 'string' && document.activeElement !== nameInput) nameInput.value = msg.name;
          setStatus(`joined · ${msg.room?.members ?? '?'} in the room`);
          applyRoom(msg.room);
          return true;
        case 'room_push':
          push(msg);
          return true;
        case 'room_locks':
          setLocks(msg.locks || []);
          return true;
        case 'room_challenge':
          if (msg.challenge?.id !== state.challenge?.id) state.result = null;
          state.challenge = msg.challenge || null;
          renderChallenge();
          return true;
        case 'room_result':
          state.result = msg.result || msg;
          renderChallenge();
          return true;
        case 'room_leaderboard': {
          const rows = msg.leaderboard ?? msg.rows ?? [];
          state.leaderboard = msg.revealed === false ? null : rows;
          renderBoard();
          renderChallenge();
          return true;
        }
        case 'room_closed':
          close(msg.message || 'the lecturer closed this room');
          return true;
        case 'room_left':
          if (msg.reason === 'replaced') { // a duplicate of this tab took up our member: join as a new one
            sessionStorage.removeItem(MEMBER_KEY);
            state.joined = false;
            join();
          }
          return true;
        default:
          return false;
      }
    },
  };
}
