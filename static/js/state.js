// URL hash <-> config: ONE declarative table. Keys are readable (camelCase), values short.
//   #dataset=spiral&layers=4,2&activation=tanh&learningRate=0.03&regularization=L2&regularizationRate=0.001
// View-only keys (showTest, discretize, view, speed) and flags (embed, present, <key>_hide) live beside them.

const num = { parse: Number, fmt: (v) => String(v) };
const int = { parse: (s) => parseInt(s, 10), fmt: (v) => String(v) };
const str = { parse: (s) => s, fmt: (v) => String(v) };
const list = { parse: (s) => (s ? s.split(',') : []), fmt: (v) => v.join(',') };
const bool = { parse: (s) => s === 'true' || s === '1', fmt: (v) => String(!!v) };

/** A plain top-level config field, left out of the hash while it has its default value. */
const plain = (key, field, type, def) => ({
  key, ...type, get: (c) => (c[field] === undefined || c[field] === def ? undefined : c[field]), set: (c, v) => { c[field] = v; },
});
/** A field of config.augmentation. */
const aug = (key, field, type, def) => ({
  key, ...type,
  get: (c) => { const v = c.augmentation?.[field]; return v === undefined || v === def ? undefined : v; },
  set: (c, v) => { c.augmentation = { ...(c.augmentation || {}), [field]: v }; },
});

/** key: hash key; get(cfg) -> value | undefined; set(cfg, value) mutates a partial config. */
export const HASH_FIELDS = [
  { key: 'problem', ...str, get: (c) => c.problem, set: (c, v) => { c.problem = v; } },
  { key: 'dataset', ...str, get: (c) => (c.dataset === 'custom' ? undefined : c.dataset), set: (c, v) => { c.dataset = v; } },
  { key: 'classes', ...int, get: (c) => c.classes, set: (c, v) => { c.classes = v; } },
  { key: 'nPoints', ...int, get: (c) => c.n_points, set: (c, v) => { c.n_points = v; } },
  { key: 'noise', ...num, get: (c) => c.noise, set: (c, v) => { c.noise = v; } },
  { key: 'trainRatio', ...num, get: (c) => c.train_ratio, set: (c, v) => { c.train_ratio = v; } },
  { key: 'seed', ...int, get: (c) => c.seed, set: (c, v) => { c.seed = v; } },
  { key: 'features', ...list, get: (c) => c.features, set: (c, v) => { c.features = v; } },
  {
    key: 'layers', parse: (s) => (s ? s.split(',').map((u) => parseInt(u, 10)) : []), fmt: (v) => v.join(','),
    get: (c) => c.layers && c.layers.map((l) => l.units),
    set: (c, v) => { const a = c.layers?.[0]?.activation || 'tanh'; c.layers = v.map((units) => ({ units, activation: a })); },
  },
  {
    key: 'activation', ...str,
    get: (c) => c.layers?.[0]?.activation,
    set: (c, v) => { c.layers = (c.layers ?? [{ units: 4 }, { units: 2 }]).map((l) => ({ ...l, activation: v })); },
  },
  { key: 'outputActivation', ...str, get: (c) => c.output_activation ?? undefined, set: (c, v) => { c.output_activation = v; } },
  { key: 'loss', ...str, get: (c) => c.loss ?? undefined, set: (c, v) => { c.loss = v; } },
  { key: 'optimizer', ...str, get: (c) => c.optimizer, set: (c, v) => { c.optimizer = v; } },
  { key: 'learningRate', ...num, get: (c) => c.learning_rate, set: (c, v) => { c.learning_rate = v; } },
  { key: 'batchSize', ...int, get: (c) => c.batch_size, set: (c, v) => { c.batch_size = v; } },
  {
    key: 'regularization', ...str,
    get: (c) => (c.l1 > 0 ? 'L1' : c.l2 > 0 ? 'L2' : 'none'),
    set: (c, v) => { c._reg = v; },
  },
  {
    key: 'regularizationRate', ...num,
    get: (c) => (c.l1 > 0 ? c.l1 : c.l2 > 0 ? c.l2 : undefined),
    set: (c, v) => { c._regRate = v; },
  },
  {
    // per-layer activations, only when they differ from layer 1's (after 'layers' and 'activation')
    key: 'activations', ...list,
    get: (c) => (c.layers?.some((l) => l.activation !== c.layers[0].activation) ? c.layers.map((l) => l.activation) : undefined),
    set: (c, v) => { c.layers = (c.layers ?? [{ units: 4 }, { units: 2 }]).map((l, k) => ({ ...l, activation: v[k] ?? l.activation })); },
  },
  { key: 'dropout', ...num, get: (c) => c.dropout, set: (c, v) => { c.dropout = v; } },
  // Advanced panel (omitted from the hash at their defaults)
  plain('momentum', 'momentum', num, 0.9),
  plain('beta1', 'beta_1', num, 0.9),
  plain('beta2', 'beta_2', num, 0.999),
  plain('rho', 'rho', num, 0.9),
  plain('epsilon', 'epsilon', num, 1e-7),
  plain('lrSchedule', 'lr_schedule', str, 'constant'),
  plain('decayRate', 'decay_rate', num, 0.5),
  plain('decayEpochs', 'decay_epochs', int, 100),
  plain('warmupEpochs', 'warmup_epochs', int, 10),
  plain('cosineAlpha', 'cosine_alpha', num, 0),
  plain('init', 'init', str, 'glorot_uniform'),
  plain('inputNoise', 'input_noise', num, 0),
  plain('batchNorm', 'batch_norm', bool, false),
  plain('layerNorm', 'layer_norm', bool, false),
  plain('patience', 'early_stopping_patience', int, 0),
  aug('jitter', 'jitter', num, 0),
  aug('flipX1', 'flip_x1', bool, false),
  aug('flipX2', 'flip_x2', bool, false),
  plain('classRatio', 'class_ratio', num, null),
  {
    // 'balanced' or one weight per class: classWeight=1,2.5
    key: 'classWeight', parse: (s) => (s === 'balanced' ? s : s.split(',').map(Number)), fmt: (v) => (Array.isArray(v) ? v.join(',') : v),
    get: (c) => c.class_weight ?? undefined, set: (c, v) => { c.class_weight = v; },
  },
];

/** View-only keys (not config): booleans, and the teaching view's name (`view=backprop`). */
export const VIEW_FIELDS = [
  { key: 'showTest', ...bool },
  { key: 'discretize', ...bool },
  { key: 'cbPalette', ...bool },
  { key: 'view', ...str, omit: 'playground' },
  // epochs per frame (sent as the `speed` message, not config): 'auto' or 1..32
  { key: 'speed', parse: (s) => (s === 'auto' ? 'auto' : parseInt(s, 10)), fmt: (v) => String(v), omit: 'auto' },
];
export const VIEW_KEYS = VIEW_FIELDS.map((f) => f.key);
export const FLAG_KEYS = ['embed', 'present'];
/** Keys that stay in the hash untouched but are neither config nor view (the classroom code). */
export const KEEP_KEYS = ['room'];

const DEFAULT_REG_RATE = 0.001;

/** Resolve the pseudo-fields (regularization + rate) into l1 / l2. */
function finish(cfg) {
  if ('_reg' in cfg || '_regRate' in cfg) {
    const kind = cfg._reg ?? 'L2';
    const rate = cfg._regRate ?? DEFAULT_REG_RATE;
    cfg.l1 = kind === 'L1' ? rate : 0;
    cfg.l2 = kind === 'L2' ? rate : 0;
    delete cfg._reg;
    delete cfg._regRate;
  }
  return cfg;
}

export function readHash(hash = location.hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const config = {};
  // parse in table order so 'layers' is set before 'activation' applies to it
  for (const f of HASH_FIELDS) {
    if (!params.has(f.key)) continue;
    const v = f.parse(params.get(f.key));
    if (typeof v === 'number' && Number.isNaN(v)) continue;
    f.set(config, v);
  }
  finish(config);
  const view = {};
  for (const f of VIEW_FIELDS) {
    if (!params.has(f.key)) continue;
    const v = f.parse(params.get(f.key));
    if (!(typeof v === 'number' && Number.isNaN(v))) view[f.key] = v;
  }
  const flags = {};
  for (const k of FLAG_KEYS) flags[k] = params.get(k) === '1' || params.get(k) === 'true';
  const hidden = new Set();
  for (const [k, v] of params) if (k.endsWith('_hide') && v === 'true') hidden.add(k.slice(0, -5));
  return { config, view, flags, hidden, params };
}

/** The hash of a full config (+ view settings); `keep` holds flags, *_hide and room keys to carry over. */
export function hashOf(cfg, view, keep = new URLSearchParams()) {
  const out = new URLSearchParams();
  for (const f of HASH_FIELDS) {
    const v = f.get(cfg);
    if (v === undefined || v === null) continue;
    out.set(f.key, f.fmt(v));
  }
  for (const f of VIEW_FIELDS) if (view && f.key in view && view[f.key] !== f.omit) out.set(f.key, f.fmt(view[f.key]));
  for (const [k, v] of keep) if (FLAG_KEYS.includes(k) || KEEP_KEYS.includes(k) || k.endsWith('_hide')) out.set(k, v);
  return '#' + out.toString().replace(/%2C/g, ',');
}

/** Serialise a full config (+ view settings), keeping flags, room and *_hide keys of the current hash. */
export function writeHash(cfg, view) {
  const hash = hashOf(cfg, view, new URLSearchParams(location.hash.replace(/^#/, '')));
  if (hash !== location.hash) history.replaceState(null, '', hash);
  return hash;
}

/** Apply a patch locally (top-level keys replace), mirroring the server's patch semantics. */
export function applyPatch(cfg, patch) {
  const out = { ...cfg, ...patch };
  for (const k of Object.keys(out)) if (out[k] === null) delete out[k];
  return out;
}
