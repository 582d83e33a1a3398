// Overfitting view: train / test loss with the gap shaded, the early-stopping best epoch, and
// a histogram of the weights with the count of (L1-)zeroed weights.
import { h, plot, legend } from './plot.js';
import { splitWeights } from '../frame.js';

export class OverfitView {
  constructor(ctx) {
    this.ctx = ctx;
    this.rows = []; // [epoch, train, test]
    this.canvas = h('canvas', { class: 'view-chart', role: 'img', 'aria-label': 'Training and test loss over epochs; the gap is shaded' });
    this.legendEl = h('ul', { class: 'plot-legend', 'aria-label': 'Loss legend' });
    this.stop = h('p', { class: 'hint small', 'aria-live': 'polite' });
    this.hist = h('canvas', { class: 'view-chart short', role: 'img', 'aria-label': 'Histogram of the weights' });
    this.zeroed = h('p', { class: 'big-number' });
    this.el = h('div', { class: 'view-overfit' },
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h3', { text: 'Training vs test loss' })),
        this.canvas, this.legendEl, this.stop),
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h3', { text: 'Weights' })),
        this.hist, this.zeroed));
  }

  onFrame(frame) {
    const hdr = frame.header;
    const f = this.ctx.app.historyFields;
    const [ie, itr, ite] = ['epoch', 'train_loss', 'test_loss'].map((k) => f.indexOf(k));
    for (const r of hdr.history || []) {
      if (this.rows.length && r[ie] <= this.rows[this.rows.length - 1][0]) this.rows = [];
      this.rows.push([r[ie], r[itr], r[ite]]);
    }
    if (hdr.epoch === 0 && !hdr.history?.length) this.rows = [];
    if (this.rows.length > 3000) this.rows = this.rows.filter((_, k) => k % 2 === 0 || k > this.rows.length / 2);
  }

  reset() { this.rows = []; this.draw(); }
  show() { this.draw(); }

  draw() {
    const app = this.ctx.app;
    const m = app.metrics || {};
    const train = this.rows.map((r) => [r[0], r[1]]), test = this.rows.map((r) => [r[0], r[2]]);
    const patience = app.cfg?.early_stopping_patience || 0;
    const marks = [];
    if (patience > 0 && m.best_epoch != null && this.rows.length) marks.push({ x: m.best_epoch, label: `best epoch ${m.best_epoch}`, colour: '#009E73' });
    plot(this.canvas, {
      series: [{ label: 'train', colour: '#0072B2', points: train }, { label: 'test', colour: '#D55E00', points: test }],
      band: { lower: train, upper: test, colour: 'rgba(213,94,0,.15)' },
      logY: true, xLabel: 'epoch', yLabel: 'loss', marks, empty: 'Press Play to train',
    });
    const last = this.rows[this.rows.length - 1];
    const gap = last && last[1] != null && last[2] != null ? last[2] - last[1] : null;
    legend(this.legendEl, [
      { label: 'training loss', colour: '#0072B2', note: last?.[1] != null ? last[1].toFixed(3) : '' },
      { label: 'test loss', colour: '#D55E00', note: last?.[2] != null ? last[2].toFixed(3) : '' },
      { label: 'gap (test − train)', colour: 'rgba(213,94,0,.35)', note: gap != null ? gap.toFixed(3) : '' },
    ]);
    const stopped = app.lastFrame?.header.stopped || m.stopped;
    this.stop.textContent = patience > 0
      ? `Early stopping: patience ${patience} epochs; best test loss at epoch ${m.best_epoch ?? '–'}${stopped ? ' — stopped, best weights restored' : ''}.`
      : 'Early stopping is off (Advanced → patience).';
    this.drawWeights();
  }

  drawWeights() {
    const app = this.ctx.app;
    const f = app.lastFrame;
    if (!f?.arrays.weights || !app.cfg) { plot(this.hist, { series: [], empty: 'no weights yet' }); return; }
    const hdr = f.header;
    let layers;
    try {
      layers = splitWeights(f.arrays.weights, app.cfg.features.length, hdr.units || app.cfg.layers.map((l) => l.units), hdr.outputs || 1);
    } catch { return; }
    const ws = layers.flatMap((l) => l.w.flat());
    const zero = ws.filter((w) => Math.abs(w) < 1e-3).length;
    const lim = Math.max(1e-3, ...ws.map(Math.abs));
    const bins = 41;
    const counts = new Array(bins).fill(0);
    for (const w of ws) counts[Math.min(bins - 1, Math.floor((w + lim) / (2 * lim) * bins))] += 1;
    const pts = [];
    counts.forEach((c, k) => {
      const a = -lim + k * 2 * lim / bins, b = a + 2 * lim / bins;
      pts.push([a, 0], [a, c], [b, c], [b, 0]);
    });
    plot(this.hist, { series: [{ label: 'count', colour: '#56B4E9', points: pts, width: 1.5 }], xLabel: 'weight value', yLabel: 'count', yMin: 0, tightY: true });
    this.zeroed.textContent = `L1-zeroed weights (|w| < 1e-3): ${zero} of ${ws.length}`;
  }
}
