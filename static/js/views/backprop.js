// Backprop view: one backpropagation step of a small network with every number (POST
// /api/backprop). The network is drawn in SVG with values on nodes and edges; a step list
// walks forward → loss → backward → update, highlighting the node / edge of the current step.
import { h, postJSON } from './plot.js';

const SVGNS = 'http://www.w3.org/2000/svg';
const HIDDEN_ACTS = ['sigmoid', 'tanh', 'relu', 'leaky_relu', 'elu', 'gelu', 'silu', 'linear'];
const OUTPUT_ACTS = ['linear', 'sigmoid', 'softmax', 'tanh', 'relu', 'leaky_relu', 'elu', 'gelu', 'silu'];
const LOSSES = ['half_squared_error', 'mse', 'mae', 'binary_crossentropy', 'categorical_crossentropy'];
const PHASE_NAMES = { forward: 'Forward pass', loss: 'Loss', backward: 'Backward pass', update: 'Update' };

const n4 = (v) => (v == null ? '–' : Math.abs(v) >= 1000 || (Math.abs(v) < 1e-4 && v !== 0) ? v.toExponential(2) : String(Number(v.toPrecision(4))));

const lecture = () => ({
  inputs: [1, 1], target: [0.5], weights: [{ w: [[0.5, 0.5], [0.5, 0.5]] }, { w: [[0.5], [0.5]] }],
  hidden_activation: 'sigmoid', output_activation: 'linear', loss: 'half_squared_error', learning_rate: 0.01,
});

/** What a step's left-hand side names: a node {l, j} (l = 0 inputs), an edge {l, i, j} or the loss. */
export function stepTarget(text) {
  const lhs = text.split(' = ')[0].trim();
  let m = lhs.match(/^(?:dE\/d)?w(\d+)_(\d)(\d)$/);
  if (m) return { kind: 'edge', l: +m[1], i: +m[2] - 1, j: +m[3] - 1 };
  m = lhs.match(/^(?:dE\/d|d)?([zab])(\d+)_(\d+)/);
  if (m) return { kind: 'node', l: +m[2], j: +m[3] - 1 };
  if (/^E\b/.test(lhs)) return { kind: 'loss' };
  return null;
}

export class BackpropView {
  constructor(ctx) {
    this.ctx = ctx;
    this.req = lecture();
    this.res = null;
    this.k = 0;
    this.seq = 0;
    this.build();
  }

  build() {
    const embedTip = this.ctx.flags.embed
      ? 'Embedded in slides: the arrow keys go to the slide deck — use this button'
      : 'Keyboard: ← / →';
    this.prev = h('button', { type: 'button', class: 'text-btn', title: `Previous step (${embedTip})`, onclick: () => this.go(-1) }, '← Previous step');
    this.next = h('button', { type: 'button', class: 'text-btn primary', title: `Next step (${embedTip})`, onclick: () => this.go(1) }, 'Next step →');
    this.counter = h('span', { class: 'bp-counter' });
    this.eq = h('p', { class: 'bp-eq', 'aria-live': 'polite', id: 'bp-current' });
    this.phase = h('p', { class: 'bp-phase' });
    this.svg = document.createElementNS(SVGNS, 'svg');
    this.svg.setAttribute('class', 'bp-net');
    this.svg.setAttribute('role', 'img');
    this.svg.setAttribute('aria-label', 'The network with the numbers of this step');
    this.list = h('ol', { class: 'bp-steps', 'aria-label': 'Steps' });
    this.form = h('form', { class: 'bp-form', 'aria-label': 'Example' });
    this.form.addEventListener('submit', (e) => e.preventDefault());
    this.summary = h('p', { class: 'bp-summary' });
    this.el = h('div', { class: 'view-backprop' },
      h('div', { class: 'bp-left' },
        h('h2', { text: 'Backpropagation, one step' }),
        this.svg,
        h('p', { class: 'bp-key' }, 'z = weighted input · a = activation · δ = ∂E/∂z · ∂ on an edge = ∂E/∂w · orange = this step'),
        h('div', { class: 'bp-nav' }, this.prev, this.counter, this.next),
        this.phase, this.eq, this.summary,
        this.form),
      h('div', { class: 'bp-right' }, h('h3', { text: 'All steps' }), this.list));
    this.buildForm();
  }

  buildForm() {
    const r = this.req;
    const num = (label, value, set, attrs = {}) => {
      const inp = h('input', { type: 'number', step: 'any', value: String(value), 'aria-label': label, ...attrs });
      inp.addEventListener('change', () => {
        const v = Number(inp.value);
        if (inp.value.trim() === '' || !Number.isFinite(v)) { this.ctx.showError(`${label}: not a number`); return; }
        set(v);
        this.compute();
      });
      return h('label', { class: 'bp-field' }, h('span', { text: label }), inp);
    };
    const select = (label, options, value, set) => {
      const s = h('select', { 'aria-label': label });
      for (const o of options) s.append(new Option(o.replace(/_/g, ' '), o, false, o === value));
      s.addEventListener('change', () => { set(s.value); this.compute(); });
      return h('label', { class: 'bp-field' }, h('span', { text: label }), s);
    };
    const target = h('input', { type: 'text', value: r.target.join(', '), 'aria-label': 'Target', title: 'One value per output unit, comma-separated (e.g. 1, 0 for two outputs)' });
    target.addEventListener('change', () => {
      const t = target.value.split(/[,\s]+/).filter(Boolean).map(Number);
      if (!t.length || t.some((v) => !Number.isFinite(v))) { this.ctx.showError('Target: numbers separated by commas'); return; }
      r.target = t;
      // the output layer has one unit per target value
      const out = r.weights[r.weights.length - 1];
      out.w = out.w.map((row) => t.map((_, j) => row[j] ?? 0.5));
      this.buildForm();
      this.compute();
    });
    const weights = h('div', { class: 'bp-weights' });
    r.weights.forEach((layer, l) => {
      layer.w.forEach((row, i) => row.forEach((v, j) => {
        weights.append(num(`w${l + 1}_${i + 1}${j + 1}`, v, (x) => { layer.w[i][j] = x; }, { title: `Weight of layer ${l + 1} from ${l ? 'hidden unit' : 'input'} ${i + 1} to unit ${j + 1}` }));
      }));
    });
    this.form.replaceChildren(
      h('fieldset', {}, h('legend', { text: 'Example' }),
        num('x1', r.inputs[0], (v) => { r.inputs[0] = v; }),
        num('x2', r.inputs[1], (v) => { r.inputs[1] = v; }),
        h('label', { class: 'bp-field' }, h('span', { text: 'Target' }), target),
        num('Backprop learning rate', r.learning_rate, (v) => { r.learning_rate = v; }, { min: '0', max: '10' })),
      h('fieldset', {}, h('legend', { text: 'Functions' }),
        select('Hidden activation', HIDDEN_ACTS, r.hidden_activation, (v) => { r.hidden_activation = v; }),
        select('Output activation', OUTPUT_ACTS, r.output_activation, (v) => { r.output_activation = v; }),
        select('Loss', LOSSES, r.loss, (v) => { r.loss = v; })),
      h('fieldset', {}, h('legend', { text: 'Weights' }), weights),
      h('button', { type: 'button', class: 'text-btn', onclick: () => { this.req = lecture(); this.buildForm(); this.compute(); } }, 'Lecture example'));
  }

  async compute() {
    const seq = ++this.seq;
    const { ok, data } = await postJSON('/api/backprop', this.req);
    if (seq !== this.seq) return;
    if (!ok) { this.ctx.showError(data.error); return; }
    this.ctx.showError('');
    const keep = this.res ? this.k : 0;
    this.res = data;
    this.k = Math.min(keep, data.steps.length - 1);
    this.renderList();
    this.render();
  }

  show() {
    if (!this.res) this.compute();
    else this.render();
  }

  go(d) {
    if (!this.res) return;
    this.k = Math.max(0, Math.min(this.res.steps.length - 1, this.k + d));
    this.render();
    this.list.children[this.k]?.scrollIntoView({ block: 'nearest' });
  }

  onKey(ev) {
    if (ev.key === 'ArrowRight') { this.go(1); return true; }
    if (ev.key === 'ArrowLeft') { this.go(-1); return true; }
    return false;
  }

  renderList() {
    let phase = null;
    const items = [];
    this.res.steps.forEach((s, k) => {
      const li = h('li', { class: `bp-step ph-${s.phase}`, 'data-k': String(k) });
      if (s.phase !== phase) { li.classList.add('first'); li.dataset.phase = PHASE_NAMES[s.phase] || s.phase; phase = s.phase; }
      li.append(h('button', { type: 'button', class: 'bp-step-btn', onclick: () => { this.k = k; this.render(); } }, s.text));
      items.push(li);
    });
    this.list.replaceChildren(...items);
  }

  render() {
    const res = this.res;
    if (!res) return;
    const s = res.steps[this.k];
    this.counter.textContent = `Step ${this.k + 1} of ${res.steps.length}`;
    this.prev.disabled = this.k === 0;
    this.next.disabled = this.k === res.steps.length - 1;
    this.phase.textContent = `${PHASE_NAMES[s.phase] || s.phase} · layer ${s.layer}`;
    this.phase.dataset.phase = s.phase;
    this.eq.textContent = s.text;
    this.summary.textContent = `Output ${res.output.map(n4).join(', ')} · target ${res.target.map(n4).join(', ')} · ${res.loss_name.replace(/_/g, ' ')} = ${n4(res.loss)}`;
    for (const li of this.list.children) {
      const cur = Number(li.dataset.k) === this.k;
      li.classList.toggle('current', cur);
      li.classList.toggle('done', Number(li.dataset.k) < this.k);
      if (cur) li.setAttribute('aria-current', 'step'); else li.removeAttribute('aria-current');
    }
    this.drawNet(stepTarget(s.text), s.phase);
  }

  drawNet(target, phase) {
    const res = this.res;
    const svg = this.svg;
    const sizes = [res.inputs.length, ...res.layers.map((l) => l.w[0].length)];
    const W = 720, H = Math.max(250, 110 * Math.max(...sizes) + 50);
    const R = 30;
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.replaceChildren();
    const colX = (l) => 50 + l * (W - 190) / (sizes.length - 1);
    const rowY = (l, j) => (H - 20) / 2 + (j - (sizes[l] - 1) / 2) * 120;
    const el = (tag, attrs, text) => {
      const e = document.createElementNS(SVGNS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text != null) e.textContent = text;
      svg.append(e);
      return e;
    };
    const backDone = phase === 'backward' || phase === 'update';
    // edges
    res.layers.forEach((layer, li) => {
      const l = li + 1;
      layer.w.forEach((row, i) => row.forEach((w, j) => {
        const xa = colX(l - 1) + R, ya = rowY(l - 1, i), xb = colX(l) - R, yb = rowY(l, j);
        const cur = target?.kind === 'edge' && target.l === l && target.i === i && target.j === j;
        el('line', { x1: xa, y1: ya, x2: xb, y2: yb, class: `bp-edge${cur ? ' current' : ''}` });
        // straight-ish edges labelled in the middle, crossing ones near their source (apart)
        const t = i === j ? 0.5 : 0.3;
        const lx = xa + (xb - xa) * t, ly = ya + (yb - ya) * t - 6;
        const name = `w${l}_${i + 1}${j + 1}`;
        let label = `${name} ${n4(w)}`;
        if (backDone && layer.dE_dW) label += ` · ∂ ${n4(layer.dE_dW[i][j])}`;
        if (phase === 'update' && layer.w_new) label = `${name}: ${n4(w)} → ${n4(layer.w_new[i][j])}`;
        el('text', { x: lx, y: ly, class: `bp-edge-label${cur ? ' current' : ''}`, 'text-anchor': 'middle' }, label);
      }));
    });
    // nodes
    sizes.forEach((n, l) => {
      for (let j = 0; j < n; j++) {
        const x = colX(l), y = rowY(l, j);
        const cur = target?.kind === 'node' && target.l === l && target.j === j
          || target?.kind === 'loss' && l === sizes.length - 1;
        el('circle', { cx: x, cy: y, r: R, class: `bp-node${l === 0 ? ' input' : ''}${cur ? ' current' : ''}` });
        const lines = [];
        if (l === 0) lines.push(`x${j + 1}`, n4(res.inputs[j]));
        else {
          const L = res.layers[l - 1];
          lines.push(`z ${n4(L.z[j])}`, `a ${n4(L.a[j])}`);
          if (backDone) lines.push(`δ ${n4(L.dE_dz[j])}`);
        }
        lines.forEach((t, k) => el('text', {
          x, y: y + (k - (lines.length - 1) / 2) * 13 + 4, class: 'bp-node-text', 'text-anchor': 'middle',
        }, t));
      }
    });
    // activation names under each layer
    res.layers.forEach((L, li) => el('text', { x: colX(li + 1), y: H - 8, class: 'bp-caption', 'text-anchor': 'middle' }, L.activation));
    el('text', { x: colX(0), y: H - 8, class: 'bp-caption', 'text-anchor': 'middle' }, 'inputs');
    // loss box
    const lx = colX(sizes.length - 1) + R + 22, ly = rowY(sizes.length - 1, (sizes[sizes.length - 1] - 1) / 2);
    const curLoss = target?.kind === 'loss';
    el('rect', { x: lx, y: ly - 26, width: 74, height: 52, rx: 6, class: `bp-loss${curLoss ? ' current' : ''}` });
    el('text', { x: lx + 37, y: ly - 6, class: 'bp-node-text', 'text-anchor': 'middle' }, `t ${res.target.map(n4).join(',')}`);
    el('text', { x: lx + 37, y: ly + 12, class: 'bp-node-text', 'text-anchor': 'middle' }, `E ${n4(res.loss)}`);
    const hl = target?.kind === 'node' ? `node ${target.l === 0 ? 'input' : `layer ${target.l}`} unit ${target.j + 1}`
      : target?.kind === 'edge' ? `edge w${target.l}_${target.i + 1}${target.j + 1}` : target?.kind === 'loss' ? 'loss' : 'nothing';
    svg.setAttribute('aria-label', `Network 2-2-${res.target.length}; this step highlights ${hl}`);
  }
}
