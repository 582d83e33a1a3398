// Form controls: fill the selects, mirror a config into them, turn user input into patches.
import { DATASETS, FEATURES, drawDatasetThumb, drawFeatureThumb } from './thumbs.js';

const LEARNING_RATES = [0.00001, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10];
const REG_RATES = [0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10];
const ACTIVATIONS = [
  ['relu', 'ReLU'], ['leaky_relu', 'Leaky ReLU'], ['elu', 'ELU'], ['gelu', 'GELU'], ['silu', 'SiLU'],
  ['tanh', 'Tanh'], ['sigmoid', 'Sigmoid'], ['linear', 'Linear'],
];
const MULTICLASS = ['blobs', 'spiral', 'custom'];
const $ = (id) => document.getElementById(id);

function fillSelect(sel, items) {
  sel.replaceChildren(...items.map(([v, t]) => new Option(t, String(v))));
}

function ensureOption(sel, value) {
  const v = String(value);
  if (![...sel.options].some((o) => o.value === v)) sel.add(new Option(v, v));
  sel.value = v;
}

export class Controls {
  /** emit(patch) sends a config patch; act(type) sends a plain message; view(k, v) changes a view option. */
  constructor({ emit, act, view }) {
    this.emit = emit;
    this.act = act;
    this.setView = view;
    this.cfg = null;
    this.maxLayers = 6;
    this.maxUnits = 8;
    fillSelect($('learningRate'), LEARNING_RATES.map((v) => [v, String(v)]));
    fillSelect($('activation'), ACTIVATIONS);
    fillSelect($('regularizationRate'), REG_RATES.map((v) => [v, String(v)]));
    this.buildFeatures();
    this.bind();
  }

  buildFeatures() {
    const root = $('features');
    for (const f of FEATURES) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'feature';
      b.dataset.feature = f.name;
      b.setAttribute('aria-pressed', 'false');
      b.setAttribute('aria-label', `Feature ${f.label}`);
      b.title = `Use ${f.label} as an input`;
      const c = document.createElement('canvas');
      c.width = c.height = 48;
      drawFeatureThumb(c, f.f);
      const s = document.createElement('span');
      s.textContent = f.label;
      s.setAttribute('aria-hidden', 'true');
      b.append(s, c);
      b.addEventListener('click', () => this.toggleFeature(f.name));
      root.append(b);
    }
  }

  buildDatasets(problem) {
    const root = $('datasets');
    if (root.dataset.problem === problem) return;
    root.dataset.problem = problem;
    root.replaceChildren();
    for (const [name, title] of DATASETS[problem]) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'dataset';
      b.dataset.dataset = name;
      b.setAttribute('aria-label', `Dataset ${title}`);
      b.setAttribute('aria-pressed', 'false');
      b.title = title;
      const c = document.createElement('canvas');
      c.width = c.height = 80;
      drawDatasetThumb(c, name, problem);
      b.append(c);
      b.addEventListener('click', () => this.chooseDataset(name));
      root.append(b);
    }
  }

  bind() {
    $('learningRate').addEventListener('change', (e) => this.emit({ learning_rate: Number(e.target.value) }));
    $('activation').addEventListener('change', (e) => {
      this.emit({ layers: this.cfg.layers.map((l) => ({ ...l, activation: e.target.value })) });
    });
    const reg = () => {
      const kind = $('regularization').value;
      const rate = Number($('regularizationRate').value);
      $('regularizationRate').disabled = kind === 'none';
      this.emit({ l1: kind === 'L1' ? rate : 0, l2: kind === 'L2' ? rate : 0 });
    };
    $('regularization').addEventListener('change', reg);
    $('regularizationRate').addEventListener('change', reg);
    $('problem').addEventListener('change', (e) => {
      const p = e.target.value;
      this.emit({ problem: p, dataset: p === 'regression' ? 'plane' : 'circle', classes: 2, points: null,
        output_activation: null, loss: null, class_weight: null, class_ratio: null });
    });
    $('optimizer').addEventListener('change', (e) => this.emit({ optimizer: e.target.value }));
    $('classes').addEventListener('change', (e) => {
      const k = Number(e.target.value);
      this.emit({ classes: k, output_activation: null, loss: null, class_weight: null });
    });
    const slider = (id, fmt, toPatch) => {
      const el = $(id);
      el.addEventListener('input', () => { $(`${id}-out`).textContent = fmt(Number(el.value)); });
      el.addEventListener('change', () => this.emit(toPatch(Number(el.value))));
    };
    slider('trainRatio', (v) => `${v}%`, (v) => ({ train_ratio: v / 100 }));
    slider('noise', (v) => String(v), (v) => ({ noise: v / 100 }));
    slider('batchSize', (v) => String(v), (v) => ({ batch_size: v }));
    $('regenerate').addEventListener('click', () => this.act('regenerate'));
    $('add-layer').addEventListener('click', () => {
      const layers = this.cfg.layers;
      if (layers.length >= this.maxLayers) return;
      const activation = layers[0]?.activation || $('activation').value || 'tanh';
      this.emit({ layers: [...layers, { units: 2, activation }] });
    });
    $('remove-layer').addEventListener('click', () => {
      if (!this.cfg.layers.length) return;
      this.emit({ layers: this.cfg.layers.slice(0, -1) });
    });
    for (const k of ['showTest', 'discretize']) $(k).addEventListener('change', (e) => this.setView(k, e.target.checked));
  }

  changeUnits(j, delta) {
    const layers = this.cfg.layers.map((l) => ({ ...l }));
    const u = layers[j].units + delta;
    if (u < 1 || u > this.maxUnits) return;
    layers[j].units = u;
    this.emit({ layers });
  }

  toggleFeature(name) {
    const on = new Set(this.cfg.features);
    if (on.has(name)) {
      if (on.size === 1) return;
      on.delete(name);
    } else on.add(name);
    this.emit({ features: FEATURES.map((f) => f.name).filter((n) => on.has(n)) });
  }

  chooseDataset(name) {
    const patch = { dataset: name, points: null };
    if (!MULTICLASS.includes(name) && this.cfg.classes !== 2) Object.assign(patch, { classes: 2, output_activation: null, loss: null, class_weight: null });
    this.emit(patch);
  }

  /** Mirror a config (and view options) into every control. */
  sync(cfg, view) {
    this.cfg = cfg;
    ensureOption($('learningRate'), cfg.learning_rate);
    $('activation').value = cfg.layers[0]?.activation ?? $('activation').value;
    $('activation').disabled = cfg.layers.length === 0;
    const kind = cfg.l1 > 0 ? 'L1' : cfg.l2 > 0 ? 'L2' : 'none';
    $('regularization').value = kind;
    if (kind !== 'none') ensureOption($('regularizationRate'), kind === 'L1' ? cfg.l1 : cfg.l2);
    $('regularizationRate').disabled = kind === 'none';
    $('problem').value = cfg.problem;
    $('optimizer').value = cfg.optimizer;
    $('classes').value = String(cfg.classes);
    $('classes').disabled = cfg.problem === 'regression' || !MULTICLASS.includes(cfg.dataset);
    const set = (id, v, text) => { $(id).value = String(v); $(`${id}-out`).textContent = text; };
    set('trainRatio', Math.round(cfg.train_ratio * 100), `${Math.round(cfg.train_ratio * 100)}%`);
    set('noise', Math.round(cfg.noise * 100), String(Math.round(cfg.noise * 100)));
    set('batchSize', Math.min(30, cfg.batch_size), String(cfg.batch_size));
    this.buildDatasets(cfg.problem);
    for (const b of document.querySelectorAll('.dataset')) {
      b.setAttribute('aria-pressed', String(b.dataset.dataset === cfg.dataset));
    }
    for (const b of document.querySelectorAll('.feature')) {
      b.setAttribute('aria-pressed', String(cfg.features.includes(b.dataset.feature)));
    }
    $('n-layers').textContent = String(cfg.layers.length);
    $('h-network').lastChild.textContent = cfg.layers.length === 1 ? ' hidden layer' : ' hidden layers';
    $('add-layer').disabled = cfg.layers.length >= this.maxLayers;
    $('remove-layer').disabled = cfg.layers.length === 0;
    $('showTest').checked = !!view.showTest;
    $('discretize').checked = !!view.discretize;
  }
}
