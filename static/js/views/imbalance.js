// Imbalance view: the confusion matrix and precision / recall / F1 (MetricsPanel), and a
// decision threshold applied client-side: the output heatmap (P(class 1)·255) re-coloured at
// the threshold, precision / recall at it from the points vs the nearest output cell, and
// the precision–recall curve over thresholds. A switch trains with balanced class weights
// (Keras / scikit-learn: n / (classes · n_c), from the training points' class counts).
import { h, plot } from './plot.js';
import { MetricsPanel } from '../metrics.js';
import { ORANGE, BLUE, WHITE } from '../palette.js';
import { drawPoints } from '../heatmap.js';

/** P(class 1) at each point from the nearest cell of the (n x n) output grid. */
function probsAt(points, out, n) {
  return points.map(([x1, x2]) => {
    const c = Math.max(0, Math.min(n - 1, Math.round((x1 + 6) / 12 * (n - 1))));
    const r = Math.max(0, Math.min(n - 1, Math.round((6 - x2) / 12 * (n - 1))));
    return out[r * n + c] / 255;
  });
}

function prAt(probs, labels, thr) {
  let tp = 0, fp = 0, fn = 0, tn = 0;
  probs.forEach((p, k) => {
    const pos = p >= thr, y = labels[k] === 1;
    if (pos && y) tp += 1; else if (pos) fp += 1; else if (y) fn += 1; else tn += 1;
  });
  const precision = tp + fp ? tp / (tp + fp) : null;
  const recall = tp + fn ? tp / (tp + fn) : null;
  const f1 = precision != null && recall != null && precision + recall > 0 ? 2 * precision * recall / (precision + recall) : null;
  return { tp, fp, fn, tn, precision, recall, f1 };
}

const f3 = (v) => (v == null ? '–' : v.toFixed(3));

export class ImbalanceView {
  constructor(ctx) {
    this.ctx = ctx;
    this.thr = 0.5;
    this.metricsRoot = h('div', { class: 'metrics-body' });
    this.metrics = new MetricsPanel(this.metricsRoot);
    this.slider = h('input', { type: 'range', min: '0.01', max: '0.99', step: '0.01', value: '0.5', 'aria-label': 'Decision threshold' });
    this.out = h('output', { text: '0.50' });
    this.slider.addEventListener('input', () => { this.thr = Number(this.slider.value); this.out.textContent = this.thr.toFixed(2); this.draw(); });
    this.heat = h('canvas', { class: 'thr-heat', width: '300', height: '300', role: 'img', 'aria-label': 'Output re-coloured at the decision threshold' });
    this.atThr = h('dl', { class: 'metric-list', 'aria-label': 'At this threshold' });
    this.pr = h('canvas', { class: 'view-chart short', role: 'img', 'aria-label': 'Precision–recall curve over thresholds' });
    this.note = h('p', { class: 'hint small' });
    this.weights = h('input', { type: 'checkbox', 'aria-label': 'Class weights' });
    this.weights.addEventListener('change', () => this.ctx.patch({ class_weight: this.weights.checked ? 'balanced' : null }));
    this.weightsNote = h('span', { class: 'hint small' });
    this.el = h('div', { class: 'view-imbalance' },
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h3', { text: 'Server metrics (threshold 0.5)' })),
        h('div', { class: 'class-weights' },
          h('label', { class: 'check' }, this.weights, ' Class weights (balanced)'), this.weightsNote),
        this.metricsRoot),
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h3', { text: 'Decision threshold' })),
        h('label', { class: 'ctl slider' }, h('span', {}, 'Decision threshold: ', this.out), this.slider),
        h('div', { class: 'thr-row' }, this.heat, h('div', {}, h('h4', { text: 'At this threshold (test set)' }), this.atThr, this.note)),
        h('h4', { text: 'Precision–recall curve' }), this.pr));
  }

  show() { this.draw(); }
  onState(msg) { this.syncWeights(msg.points?.train); }

  /** The switch follows the config; the note shows the weights n / (classes · n_c). */
  syncWeights(train = this.ctx.app.points.train) {
    const cfg = this.ctx.app.cfg;
    if (!cfg) return;
    const cls = cfg.problem === 'classification';
    this.weights.disabled = !cls;
    this.weights.checked = cls && cfg.class_weight != null;
    const k = cfg.classes || 2;
    const counts = new Array(k).fill(0);
    for (const p of train) {
      const c = p[2] < 0 ? 0 : Math.round(p[2]); // binary labels may be -1 for class 0
      if (c < k) counts[c] += 1;
    }
    const n = counts.reduce((a, b) => a + b, 0);
    const w = Array.isArray(cfg.class_weight) ? cfg.class_weight : counts.map((c) => n / (k * Math.max(c, 1)));
    const list = w.map((v, c) => `class ${c} × ${Number(v.toPrecision(3))}`).join(', ');
    this.weightsNote.textContent = !cls ? 'classification only'
      : this.weights.checked ? `loss weights: ${list}` : `balanced would weight ${list}`;
  }

  draw() {
    const app = this.ctx.app;
    const cfg = app.cfg;
    if (this.weightsKey !== cfg?.class_weight) { this.weightsKey = cfg?.class_weight; this.syncWeights(); }
    this.metrics.update(app.metrics || {}, cfg?.problem || 'classification', app.lastFrame?.header.classes || cfg?.classes);
    const f = app.lastFrame;
    const binary = cfg && cfg.problem === 'classification' && (f?.header.outputs ?? 1) === 1 && (cfg.classes ?? 2) === 2;
    this.slider.disabled = !binary;
    if (!binary || !f?.arrays.output) {
      this.note.textContent = binary ? 'Waiting for the first frame…' : 'The threshold applies to binary classification.';
      this.atThr.replaceChildren();
      plot(this.pr, { series: [], empty: binary ? 'no output yet' : 'binary classification only' });
      return;
    }
    const n = f.header.grid;
    const out = f.arrays.output;
    // re-colour: class by the threshold, intensity by the distance from it
    const ctx = this.heat.getContext('2d');
    const img = ctx.createImageData(n, n);
    const t255 = this.thr * 255;
    for (let p = 0; p < n * n; p++) {
      const v = out[p];
      const [col, k] = v >= t255 ? [BLUE, (v - t255) / Math.max(1, 255 - t255)] : [ORANGE, (t255 - v) / Math.max(1, t255)];
      const a = 0.25 + 0.75 * k;
      for (let ch = 0; ch < 3; ch++) img.data[p * 4 + ch] = WHITE[ch] + (col[ch] - WHITE[ch]) * a;
      img.data[p * 4 + 3] = 255;
    }
    const s = document.createElement('canvas');
    s.width = s.height = n;
    s.getContext('2d').putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(s, 0, 0, this.heat.width, this.heat.height);
    const pts = app.points.test.length ? app.points.test : app.points.train;
    drawPoints(this.heat, app.points.train, { radius: 3, stroke: 1 });
    const probs = probsAt(pts, out, n);
    const labels = pts.map((p) => p[2]);
    const r = prAt(probs, labels, this.thr);
    const rows = [['Precision', f3(r.precision)], ['Recall', f3(r.recall)], ['F1', f3(r.f1)],
      ['True positives', r.tp], ['False positives', r.fp], ['False negatives', r.fn], ['True negatives', r.tn]];
    this.atThr.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: String(v) })]));
    const pos = labels.filter((y) => y === 1).length;
    this.note.textContent = `${pos} of ${labels.length} points are class 1 (blue).`;
    const curve = [];
    for (let t = 0.01; t < 1; t += 0.01) {
      const q = prAt(probs, labels, t);
      if (q.precision != null && q.recall != null) curve.push([q.recall, q.precision]);
    }
    const cur = r.precision != null && r.recall != null ? [[r.recall, r.precision]] : [];
    plot(this.pr, {
      series: [{ label: 'PR', colour: '#0072B2', points: curve, dots: true }, { label: 'now', colour: '#D55E00', points: cur, endMarker: '●' }],
      xMin: 0, xMax: 1, yMin: 0, yMax: 1, tightY: true, xLabel: 'recall', yLabel: 'precision',
    });
  }
}
