// Gradients view: per-layer gradient norms over epochs (log scale), from the frames' history
// metrics (grad_norm_0.. = hidden layer slots, the last one the output layer). Kept
// client-side; cleared on Reset or when the depth changes.
import { h, plot, legend, SAFE_COLOURS } from './plot.js';

const MAX_ROWS = 3000;

export class GradientsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.rows = []; // [epoch, g0, g1, ...]
    this.canvas = h('canvas', { class: 'view-chart tall', role: 'img', 'aria-label': 'Gradient norm per layer over epochs (log scale)' });
    this.legendEl = h('ul', { class: 'plot-legend', 'aria-label': 'Gradients legend' });
    this.note = h('p', { class: 'hint small' });
    this.el = h('div', { class: 'view-gradients' },
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h3', { text: 'Gradient norm per layer' })),
        h('p', { class: 'hint small', text: 'The size ‖∂E/∂W‖ of each layer’s gradient. With deep sigmoid networks the layers near the input get gradients orders of magnitude smaller: they learn slowly (vanishing gradients).' }),
        this.canvas, this.legendEl, this.note));
  }

  depth() { return (this.ctx.app.cfg?.layers.length ?? 0) + 1; }

  onFrame(frame) {
    // the history rows do not carry gradient norms: one point per frame from its metrics
    const hdr = frame.header;
    const m = hdr.metrics || {};
    const e = hdr.epoch;
    const last = this.rows[this.rows.length - 1];
    if (last && (e < last[0] || last.length !== this.depth() + 1)) this.rows = [];
    else if (last && e === last[0]) return;
    if (e === 0) return;
    // grad_norm_0..grad_norm_{max_layers}: hidden layer slots, then the output (always last)
    const count = Object.keys(m).filter((k) => k.startsWith('grad_norm_')).length;
    const norms = Array.from({ length: count }, (_, i) => m[`grad_norm_${i}`] ?? null);
    this.rows.push([e, ...norms.slice(0, this.depth() - 1), norms[count - 1]]);
    if (this.rows.length > MAX_ROWS) this.rows = this.rows.filter((_, k) => k % 2 === 0 || k > this.rows.length / 2);
  }

  reset() { this.rows = []; this.draw(); }
  show() { this.draw(); }

  draw() {
    const n = this.depth();
    const names = Array.from({ length: n }, (_, i) => (i === n - 1 ? 'output layer' : `hidden layer ${i + 1}`));
    const series = names.map((label, i) => ({
      label, colour: SAFE_COLOURS[i % SAFE_COLOURS.length], points: this.rows.map((r) => [r[0], r[i + 1]]),
    }));
    const allZero = this.rows.length > 0 && this.rows.every((r) => r.slice(1).every((v) => !v));
    plot(this.canvas, {
      series, logY: true, xLabel: 'epoch', yLabel: 'gradient norm',
      empty: allZero ? 'No gradients yet: press Play or Step' : 'Press Play to train',
    });
    const last = this.rows[this.rows.length - 1];
    legend(this.legendEl, names.map((label, i) => ({
      label, colour: series[i].colour, note: last?.[i + 1] != null ? last[i + 1].toExponential(1) : '',
    })));
    if (last && n > 1 && last[1] > 0 && last[n] > 0) {
      const ratio = last[n] / last[1];
      this.note.textContent = `Epoch ${last[0]}: output layer ${last[n].toExponential(1)}, first hidden layer ${last[1].toExponential(1)} (ratio ${ratio.toPrecision(2)}).`;
    } else this.note.textContent = '';
  }
}
