// The "Advanced" panel: every remaining setting, built from one declarative table.
// Each control is labelled by its accessible name, mirrors the config (sync) and sends a patch.

const opt = (c, ...names) => names.includes(c.optimizer);
const sched = (c, ...names) => names.includes(c.lr_schedule);
const cls = (c) => c.problem === 'classification';
const MAX_CLASSES = 5; // core/config.py MAX_CLASSES
const augPatch = (c, k, v) => ({ augmentation: { jitter: 0, flip_x1: false, flip_x2: false, ...(c.augmentation || {}), [k]: v } });

/** One weight per class (config class_weight as a list), shown for the current classes. */
function classWeightItems() {
  return Array.from({ length: MAX_CLASSES }, (_, k) => ({
    id: `classWeight${k}`, name: `Class ${k} weight`, text: `Class ${k}`, kind: 'number', min: 0, max: 100, step: 0.1, cls: 'adv-weight',
    show: (c) => cls(c) && Array.isArray(c.class_weight) && k < c.classes,
    get: (c) => (Array.isArray(c.class_weight) ? c.class_weight[k] : undefined),
    patch: (c, v) => ({ class_weight: Array.from({ length: c.classes }, (_, j) => (j === k ? v : c.class_weight?.[j] ?? 1)) }),
  }));
}

/** kind: number | select | check (text: shorter visible label; cls: extra class). get(cfg) -> value; patch(cfg, value) -> patch; show(cfg) -> bool. */
export const ADVANCED = [
  { group: 'Optimizer', items: [
    { id: 'momentum', name: 'Momentum', kind: 'number', min: 0, max: 0.999, step: 0.01, field: 'momentum', show: (c) => opt(c, 'momentum') },
    { id: 'beta1', name: 'Beta 1', kind: 'number', min: 0, max: 0.999, step: 0.01, field: 'beta_1', show: (c) => opt(c, 'adam') },
    { id: 'beta2', name: 'Beta 2', kind: 'number', min: 0, max: 0.99999, step: 0.0001, field: 'beta_2', show: (c) => opt(c, 'adam') },
    { id: 'rho', name: 'Rho', kind: 'number', min: 0, max: 0.999, step: 0.01, field: 'rho', show: (c) => opt(c, 'rmsprop') },
    { id: 'epsilon', name: 'Epsilon', kind: 'number', min: 1e-10, max: 1, step: 'any', field: 'epsilon', show: (c) => opt(c, 'rmsprop', 'adam') },
    { id: 'sgdNote', name: 'SGD has no extra settings', kind: 'note', show: (c) => opt(c, 'sgd') },
  ] },
  { group: 'Schedule', items: [
    { id: 'lrSchedule', name: 'Learning rate schedule', kind: 'select', field: 'lr_schedule',
      options: [['constant', 'Constant'], ['step', 'Step'], ['exponential', 'Exponential'], ['cosine', 'Cosine'], ['warmup_cosine', 'Warm-up + cosine']] },
    { id: 'decayRate', name: 'Decay rate', kind: 'number', min: 0.01, max: 1, step: 0.05, field: 'decay_rate', show: (c) => sched(c, 'step', 'exponential') },
    { id: 'decayEpochs', name: 'Decay epochs', kind: 'number', min: 1, max: 100000, step: 1, int: true, field: 'decay_epochs', show: (c) => !sched(c, 'constant') },
    { id: 'warmupEpochs', name: 'Warmup epochs', kind: 'number', min: 0, max: 100000, step: 1, int: true, field: 'warmup_epochs', show: (c) => sched(c, 'warmup_cosine') },
    { id: 'cosineAlpha', name: 'Cosine alpha', kind: 'number', min: 0, max: 1, step: 0.05, field: 'cosine_alpha', show: (c) => sched(c, 'cosine', 'warmup_cosine') },
  ] },
  { group: 'Model', items: [
    { id: 'init', name: 'Initializer', kind: 'select', field: 'init',
      options: [['glorot_uniform', 'Glorot uniform'], ['he_normal', 'He normal'], ['uniform', 'Uniform'], ['zeros', 'Zeros']] },
    { id: 'outputActivation', name: 'Output activation', kind: 'select', field: 'output_activation', nullable: true,
      options: [['', 'Auto'], ['sigmoid', 'Sigmoid'], ['softmax', 'Softmax'], ['tanh', 'Tanh'], ['linear', 'Linear']] },
    { id: 'loss', name: 'Loss', kind: 'select', field: 'loss', nullable: true,
      options: [['', 'Auto'], ['binary_crossentropy', 'Binary cross-entropy'], ['categorical_crossentropy', 'Categorical cross-entropy'], ['mse', 'MSE'], ['mae', 'MAE']] },
  ] },
  { group: 'Regularisation', items: [
    { id: 'dropout', name: 'Dropout', kind: 'number', min: 0, max: 0.9, step: 0.05, field: 'dropout' },
    { id: 'inputNoise', name: 'Input noise', kind: 'number', min: 0, max: 3, step: 0.05, field: 'input_noise' },
    { id: 'patience', name: 'Early stopping patience', kind: 'number', min: 0, max: 100000, step: 1, int: true, field: 'early_stopping_patience' },
    { id: 'batchNorm', name: 'Batch norm', kind: 'check', field: 'batch_norm' },
    { id: 'layerNorm', name: 'Layer norm', kind: 'check', field: 'layer_norm' },
  ] },
  { group: 'Augmentation', items: [
    { id: 'jitter', name: 'Augmentation jitter', kind: 'number', min: 0, max: 2, step: 0.05,
      get: (c) => c.augmentation?.jitter ?? 0, patch: (c, v) => augPatch(c, 'jitter', v) },
    { id: 'flipX1', name: 'Flip x1', kind: 'check', get: (c) => !!c.augmentation?.flip_x1, patch: (c, v) => augPatch(c, 'flip_x1', v) },
    { id: 'flipX2', name: 'Flip x2', kind: 'check', get: (c) => !!c.augmentation?.flip_x2, patch: (c, v) => augPatch(c, 'flip_x2', v) },
  ] },
  { group: 'Data', items: [
    { id: 'classRatio', name: 'Class ratio', kind: 'number', min: 0.05, max: 0.95, step: 0.05, field: 'class_ratio', nullable: true,
      placeholder: 'balanced', show: cls },
    { id: 'classWeight', name: 'Class weights', kind: 'select', show: cls,
      options: [['none', 'None'], ['balanced', 'Balanced'], ['per_class', 'Per class']],
      get: (c) => (Array.isArray(c.class_weight) ? 'per_class' : c.class_weight === 'balanced' ? 'balanced' : 'none'),
      patch: (c, v) => ({ class_weight: v === 'none' ? null : v === 'per_class' ? Array(c.classes).fill(1) : v }) },
    ...classWeightItems(),
    { id: 'seed', name: 'Seed', kind: 'number', min: 0, max: 2147483647, step: 1, int: true, field: 'seed' },
    { id: 'nPoints', name: 'Number of points', kind: 'number', min: 10, max: 4000, step: 10, int: true, field: 'n_points' },
  ] },
];

const getOf = (it) => it.get || ((c) => c[it.field] ?? (it.nullable ? '' : undefined));
const patchOf = (it) => it.patch || ((c, v) => ({ [it.field]: v }));

export class Advanced {
  /** root: the panel's content element; emit(patch) sends a patch. */
  constructor(root, emit) {
    this.emit = emit;
    this.cfg = null;
    this.els = new Map();
    for (const g of ADVANCED) {
      const fs = document.createElement('fieldset');
      fs.className = 'adv-group';
      const lg = document.createElement('legend');
      lg.textContent = g.group;
      fs.append(lg);
      for (const it of g.items) fs.append(this.build(it));
      root.append(fs);
    }
  }

  build(it) {
    const wrap = document.createElement(it.kind === 'note' ? 'p' : 'label');
    wrap.className = `adv-item adv-${it.kind}${it.cls ? ` ${it.cls}` : ''}`;
    wrap.dataset.ctl = it.id;
    if (it.kind === 'note') {
      wrap.textContent = it.name;
      this.els.set(it.id, { it, wrap });
      return wrap;
    }
    const text = document.createElement('span');
    text.textContent = it.text ?? it.name; // a shorter visible text is part of the accessible name
    let input;
    if (it.kind === 'select') {
      input = document.createElement('select');
      for (const [v, t] of it.options) input.add(new Option(t, v));
    } else {
      input = document.createElement('input');
      input.type = it.kind === 'check' ? 'checkbox' : 'number';
      if (it.kind === 'number') {
        input.min = String(it.min);
        input.max = String(it.max);
        input.step = String(it.step);
        if (it.placeholder) input.placeholder = it.placeholder;
      }
    }
    input.id = `adv-${it.id}`;
    input.setAttribute('aria-label', it.name);
    // typed but not yet committed: a state message arriving meanwhile must not overwrite it
    input.addEventListener('input', () => { input.dataset.pending = '1'; });
    input.addEventListener('change', () => { delete input.dataset.pending; this.onChange(it, input); });
    if (it.kind === 'check') wrap.append(input, text); else wrap.append(text, input);
    this.els.set(it.id, { it, wrap, input });
    return wrap;
  }

  onChange(it, input) {
    if (!this.cfg) return;
    let v;
    if (it.kind === 'check') v = input.checked;
    else if (it.kind === 'select') v = input.value === '' && it.nullable ? null : input.value;
    else {
      const s = input.value.trim();
      if (s === '' && it.nullable) v = null;
      else {
        v = Number(s);
        if (s === '' || !Number.isFinite(v)) { this.sync(this.cfg); return; }
        if (it.int) v = Math.round(v);
      }
    }
    this.emit(patchOf(it)(this.cfg, v));
  }

  /** Mirror a config into the panel; show only the settings relevant to it. */
  sync(cfg, { maxPoints, force = false } = {}) {
    this.cfg = cfg;
    for (const { it, wrap, input } of this.els.values()) {
      wrap.hidden = it.show ? !it.show(cfg) : false;
      if (!input) continue;
      if (force) delete input.dataset.pending;
      if (input.dataset.pending) continue;
      const v = getOf(it)(cfg);
      if (it.kind === 'check') input.checked = !!v;
      else input.value = v == null ? '' : String(v);
    }
    if (maxPoints) this.els.get('nPoints').input.max = String(maxPoints);
  }
}
