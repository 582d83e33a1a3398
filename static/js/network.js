// Network diagram: hidden-layer columns of live neuron heatmaps, links coloured and
// thickened by weight (SVG over the board), hover for values, click to edit a weight.
import { drawGrid } from './heatmap.js';
import { ORANGE, BLUE, rgb } from './palette.js';
import { splitWeights } from './frame.js';

const ACTIVATIONS = [
  ['relu', 'ReLU'], ['leaky_relu', 'Leaky ReLU'], ['elu', 'ELU'], ['gelu', 'GELU'], ['silu', 'SiLU'],
  ['tanh', 'Tanh'], ['sigmoid', 'Sigmoid'], ['linear', 'Linear'],
];
const SVGNS = 'http://www.w3.org/2000/svg';
const fmt = (v) => (v == null ? '–' : Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3));

export class Network {
  /**
   * els: {board, svg, layers, features, output, tooltip, editor, input}
   * cb: {setWeight(msg), changeUnits(layerIndex, delta)}
   */
  constructor(els, cb) {
    this.els = els;
    this.cb = cb;
    this.key = '';
    this.links = [];
    this.neurons = []; // [layer][unit] canvas
    this.weights = null;
    this.editing = null;
    this.maxUnits = 8;
    els.editor.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.commitEdit();
    });
    els.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') this.closeEditor();
    });
    // Close on blur unless focus came back; the target stays remembered (this.target) so an
    // Enter that races the blur still sends the edit.
    els.input.addEventListener('blur', () => setTimeout(() => {
      if (document.activeElement !== els.input) this.closeEditor();
    }, 100));
    new ResizeObserver(() => this.layout()).observe(els.board);
  }

  /** Rebuild columns and links when features / units / outputs change. */
  setStructure(features, units, outputs) {
    const key = `${features.join(',')}|${units.join(',')}|${outputs}`;
    if (key === this.key) return;
    this.key = key;
    this.features = features;
    this.units = units;
    this.outputs = outputs;
    this.weights = null;
    const root = this.els.layers;
    root.replaceChildren();
    this.neurons = [];
    this.actSelects = [];
    units.forEach((u, j) => {
      const col = document.createElement('div');
      col.className = 'layer';
      const head = document.createElement('div');
      head.className = 'layer-head';
      const plus = button('+', `Add neuron to layer ${j + 1}`, () => this.cb.changeUnits(j, +1));
      const minus = button('−', `Remove neuron from layer ${j + 1}`, () => this.cb.changeUnits(j, -1));
      plus.disabled = u >= this.maxUnits;
      minus.disabled = u <= 1;
      const label = document.createElement('span');
      label.className = 'layer-label';
      label.textContent = `${u} neuron${u === 1 ? '' : 's'}`;
      head.append(plus, minus, label);
      const act = document.createElement('select');
      act.className = 'layer-act';
      act.setAttribute('aria-label', `Activation of layer ${j + 1}`);
      act.title = `Activation of layer ${j + 1}`;
      for (const [v, t] of ACTIVATIONS) act.add(new Option(t, v));
      act.value = this.activations?.[j] ?? 'tanh';
      act.addEventListener('change', () => this.cb.changeActivation?.(j, act.value));
      this.actSelects[j] = act;
      const list = document.createElement('div');
      list.className = 'neurons';
      const cans = [];
      for (let k = 0; k < u; k++) {
        const c = document.createElement('canvas');
        c.width = c.height = 40;
        c.className = 'neuron';
        c.dataset.layer = String(j);
        c.dataset.unit = String(k);
        c.setAttribute('role', 'img');
        c.setAttribute('aria-label', `Layer ${j + 1} neuron ${k + 1}`);
        c.addEventListener('mouseenter', () => this.showTip(c, () => `Neuron ${k + 1} of layer ${j + 1}, bias ${fmt(this.weights?.[j]?.b[k])}`));
        c.addEventListener('mouseleave', () => this.hideTip());
        c.addEventListener('click', (ev) => this.openEditor(ev, { layer: j, kind: 'b', j: k }, this.weights?.[j]?.b[k]));
        list.append(c);
        cans.push(c);
      }
      this.neurons.push(cans);
      col.append(head, act, list);
      root.append(col);
    });
    this.buildLinks();
    requestAnimationFrame(() => this.layout());
  }

  /** Mirror the per-layer activations into the small selects. */
  setActivations(acts) {
    this.activations = acts;
    (this.actSelects || []).forEach((sel, j) => { if (acts[j] && sel.value !== acts[j]) sel.value = acts[j]; });
  }

  buildLinks() {
    const svg = this.els.svg;
    svg.replaceChildren();
    this.links = [];
    const L = this.units.length;
    for (let l = 0; l <= L; l++) {
      const nIn = l === 0 ? this.features.length : this.units[l - 1];
      const nOut = l === L ? this.outputs : this.units[l];
      for (let i = 0; i < nIn; i++) {
        for (let j = 0; j < nOut; j++) {
          const g = document.createElementNS(SVGNS, 'g');
          g.setAttribute('class', 'link');
          const vis = document.createElementNS(SVGNS, 'path');
          vis.setAttribute('class', 'link-line');
          vis.setAttribute('stroke', '#ccc');
          vis.setAttribute('stroke-width', '1');
          const hit = document.createElementNS(SVGNS, 'path');
          hit.setAttribute('class', 'link-hit');
          g.append(vis, hit);
          svg.append(g);
          const link = { l, i, j, vis, hit };
          const desc = () => {
            const from = l === 0 ? this.features[i] : `L${l} n${i + 1}`;
            const to = l === L ? `output${this.outputs > 1 ? ' ' + (j + 1) : ''}` : `L${l + 1} n${j + 1}`;
            return `Weight ${from} → ${to}: ${fmt(this.weights?.[l]?.w[i]?.[j])} (click to edit)`;
          };
          hit.addEventListener('mouseenter', () => { vis.classList.add('hover'); this.showTip(hit, desc); });
          hit.addEventListener('mousemove', (ev) => this.moveTip(ev));
          hit.addEventListener('mouseleave', () => { vis.classList.remove('hover'); this.hideTip(); });
          hit.addEventListener('click', (ev) => this.openEditor(ev, { layer: l, kind: 'w', i, j }, this.weights?.[l]?.w[i]?.[j]));
          this.links.push(link);
        }
      }
    }
  }

  anchor(el, side, frac = 0.5) {
    const b = this.els.board.getBoundingClientRect();
    const r = el.getBoundingClientRect();
    return [(side === 'right' ? r.right : r.left) - b.left, r.top - b.top + r.height * frac];
  }

  layout() {
    const { board, svg, features, output } = this.els;
    svg.setAttribute('width', board.clientWidth);
    svg.setAttribute('height', board.clientHeight);
    const featEls = this.features ? this.features.map((f) => features.querySelector(`[data-feature="${f}"] canvas`)) : [];
    const L = this.units ? this.units.length : 0;
    for (const link of this.links) {
      const src = link.l === 0 ? featEls[link.i] : this.neurons[link.l - 1]?.[link.i];
      if (!src || !src.isConnected || src.offsetParent === null) { link.vis.setAttribute('d', ''); link.hit.setAttribute('d', ''); continue; }
      const [x1, y1] = this.anchor(src, 'right');
      let x2, y2;
      if (link.l === L) {
        [x2, y2] = this.anchor(output, 'left', (link.j + 1) / (this.outputs + 1));
      } else {
        [x2, y2] = this.anchor(this.neurons[link.l][link.j], 'left');
      }
      const mx = (x1 + x2) / 2;
      const d = `M${x1.toFixed(1)},${y1.toFixed(1)} C${mx.toFixed(1)},${y1.toFixed(1)} ${mx.toFixed(1)},${y2.toFixed(1)} ${x2.toFixed(1)},${y2.toFixed(1)}`;
      link.vis.setAttribute('d', d);
      link.hit.setAttribute('d', d);
    }
  }

  /** Draw neuron heatmaps and recolour links from a frame. */
  update(frame, { discretize = false } = {}) {
    const { header, arrays } = frame;
    this.setStructure(header.features, header.units, header.outputs);
    const g = header.neuron_grid;
    header.units.forEach((u, j) => {
      const a = arrays[`layer${j}`];
      if (!a) return;
      for (let k = 0; k < u; k++) {
        const c = this.neurons[j]?.[k];
        if (c) drawGrid(c, a.subarray(k * g * g, (k + 1) * g * g), g, { discretize });
      }
    });
    if (arrays.weights) {
      this.weights = splitWeights(arrays.weights, header.features.length, header.units, header.outputs);
      for (const link of this.links) {
        const w = this.weights[link.l]?.w[link.i]?.[link.j] ?? 0;
        const thick = document.body.classList.contains('present') ? 2 : 1;
        const width = thick * Math.min(10, 0.6 + Math.abs(w) * 2);
        link.vis.setAttribute('stroke', rgb(w >= 0 ? BLUE : ORANGE, Math.min(1, 0.35 + Math.abs(w) / 2)));
        link.vis.setAttribute('stroke-width', width.toFixed(2));
        link.hit.setAttribute('data-weight', w.toFixed(4));
      }
      if (this.tipFn) this.els.tooltip.textContent = this.tipFn();
    }
  }

  showTip(el, fn) {
    this.tipFn = fn;
    const tip = this.els.tooltip;
    tip.textContent = fn();
    tip.hidden = false;
    const [x, y] = this.anchor(el, 'right', 0);
    tip.style.left = `${x + 6}px`;
    tip.style.top = `${y - 28}px`;
  }

  moveTip(ev) {
    const b = this.els.board.getBoundingClientRect();
    this.els.tooltip.style.left = `${ev.clientX - b.left + 12}px`;
    this.els.tooltip.style.top = `${ev.clientY - b.top - 30}px`;
  }

  hideTip() {
    this.tipFn = null;
    this.els.tooltip.hidden = true;
  }

  openEditor(ev, target, value) {
    const { editor, input, board } = this.els;
    const b = board.getBoundingClientRect();
    this.editing = target;
    this.target = target;
    editor.hidden = false;
    editor.style.left = `${ev.clientX - b.left}px`;
    editor.style.top = `${ev.clientY - b.top}px`;
    input.value = value == null ? '0' : value.toFixed(3);
    input.setAttribute('aria-label', target.kind === 'w' ? 'Weight value' : 'Bias value');
    input.focus();
    input.select();
  }

  commitEdit() {
    const v = parseFloat(this.els.input.value);
    const target = this.editing ?? this.target;
    if (target && Number.isFinite(v)) {
      this.cb.setWeight({ type: 'set_weight', ...target, value: Math.max(-100, Math.min(100, v)) });
    }
    this.target = null;
    this.closeEditor();
  }

  closeEditor() {
    this.editing = null;
    this.els.editor.hidden = true;
  }
}

function button(text, label, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'round tiny';
  b.textContent = text;
  b.setAttribute('aria-label', label);
  b.title = label;
  b.addEventListener('click', onClick);
  return b;
}
