// Learning-rate view: (a) a sweep of log-spaced learning rates trained on the server
// (POST /api/sweep), (b) a range test (POST /api/lr_range) with its suggestion, (c) the
// current schedule computed client-side with the formulas of core/optim.py schedule().
import { h, plot, legend, postJSON, SAFE_COLOURS } from './plot.js';

/** Learning rate at `epoch` — the same formulas as core/optim.py schedule(). */
export function scheduleAt(cfg, epoch) {
  const lr = cfg.learning_rate;
  const T = Math.max(cfg.decay_epochs ?? 100, 1);
  const W = cfg.warmup_epochs ?? 10;
  const a = cfg.cosine_alpha ?? 0;
  const r = cfg.decay_rate ?? 0.5;
  const cosine = (t, len) => { const f = Math.min(1, Math.max(0, t / Math.max(len, 1))); return (1 - a) * 0.5 * (1 + Math.cos(Math.PI * f)) + a; };
  switch (cfg.lr_schedule || 'constant') {
    case 'step': return lr * r ** Math.floor(epoch / T);
    case 'exponential': return lr * r ** (epoch / T);
    case 'cosine': return lr * cosine(epoch, T);
    case 'warmup_cosine': return epoch < W ? lr * epoch / Math.max(W, 1) : lr * cosine(epoch - W, T);
    default: return lr;
  }
}

const VERDICT_CLASS = { 'too low': 'v-low', right: 'v-right', high: 'v-high', 'too high': 'v-bad' };
const fmtLr = (v) => (v >= 0.01 ? String(Number(v.toPrecision(2))) : v.toExponential(1));

export class LrView {
  constructor(ctx) {
    this.ctx = ctx;
    this.sweep = null;
    this.range = null;
    this.sweepEpochs = 200;
    this.rangeEpochs = 100;
    const btn = (label, fn) => h('button', { type: 'button', class: 'text-btn', onclick: fn }, label);
    this.sweepBtn = btn('Run sweep', () => this.runSweep());
    this.rangeBtn = btn('Range test', () => this.runRange());
    this.useBtn = btn('Use suggested learning rate', () => this.useSuggested());
    this.useBtn.disabled = true;
    this.sweepCanvas = h('canvas', { class: 'view-chart', role: 'img', 'aria-label': 'Test loss over epochs, one curve per learning rate (log scale)' });
    this.sweepLegend = h('ul', { class: 'plot-legend', 'aria-label': 'Sweep legend' });
    this.sweepNote = h('p', { class: 'hint small', 'aria-live': 'polite', text: 'Trains a copy of the current setup with 6 learning rates from 0.001 to 3.' });
    this.rangeCanvas = h('canvas', { class: 'view-chart short', role: 'img', 'aria-label': 'Training loss against learning rate (log scale)' });
    this.rangeNote = h('p', { class: 'hint small', 'aria-live': 'polite', text: 'One run whose learning rate grows exponentially each epoch.' });
    this.schedCanvas = h('canvas', { class: 'view-chart short', role: 'img', 'aria-label': 'Learning-rate schedule' });
    this.schedNote = h('p', { class: 'hint small' });
    this.el = h('div', { class: 'view-lr' },
      h('section', { class: 'card', 'aria-labelledby': 'lr-h1' },
        h('div', { class: 'card-head' }, h('h3', { id: 'lr-h1', text: 'Learning-rate sweep' }), this.sweepBtn),
        this.sweepNote, this.sweepCanvas, this.sweepLegend),
      h('div', { class: 'card-row' },
        h('section', { class: 'card', 'aria-labelledby': 'lr-h2' },
          h('div', { class: 'card-head' }, h('h3', { id: 'lr-h2', text: 'Range test' }), this.rangeBtn, this.useBtn),
          this.rangeNote, this.rangeCanvas),
        h('section', { class: 'card', 'aria-labelledby': 'lr-h3' },
          h('div', { class: 'card-head' }, h('h3', { id: 'lr-h3', text: 'Schedule' })),
          this.schedNote, this.schedCanvas)));
  }

  async runSweep() {
    const cfg = this.ctx.app.cfg;
    if (!cfg) return;
    this.sweepBtn.disabled = true;
    this.sweepNote.textContent = `Training 6 runs for ${this.sweepEpochs} epochs…`;
    try {
      const { ok, data } = await postJSON('/api/sweep', { config: cfg, epochs: this.sweepEpochs, count: 6, lr_min: 0.001, lr_max: 3 });
      if (!ok) { this.ctx.showError(data.error); this.sweepNote.textContent = data.error; return; }
      this.sweep = data;
      const best = data.runs[data.best];
      this.sweepNote.textContent = `${data.runs.length} runs, ${data.epochs} epochs. Best final test loss: learning rate ${fmtLr(best.learning_rate)}.`;
      this.draw();
    } catch (err) {
      this.ctx.showError(`sweep failed: ${err}`);
    } finally {
      this.sweepBtn.disabled = false;
    }
  }

  async runRange() {
    const cfg = this.ctx.app.cfg;
    if (!cfg) return;
    this.rangeBtn.disabled = true;
    this.rangeNote.textContent = 'Running the range test…';
    try {
      const { ok, data } = await postJSON('/api/lr_range', { config: cfg, epochs: this.rangeEpochs });
      if (!ok) { this.ctx.showError(data.error); this.rangeNote.textContent = data.error; return; }
      this.range = data;
      const s = data.suggested_learning_rate;
      this.useBtn.disabled = s == null;
      this.rangeNote.textContent = s == null ? 'No suggestion (too few finite points).' : `Suggested learning rate ${fmtLr(s)} (steepest descent of the smoothed loss, before its minimum).`;
      this.draw();
    } catch (err) {
      this.ctx.showError(`range test failed: ${err}`);
    } finally {
      this.rangeBtn.disabled = false;
    }
  }

  useSuggested() {
    const s = this.range?.suggested_learning_rate;
    if (s == null) return;
    this.ctx.patch({ learning_rate: Number(s.toPrecision(2)) });
  }

  show() { this.draw(); }
  onState() { this.drawSchedule(); }
  tick() { if (this.ctx.app.epoch !== this.lastEpoch) { this.lastEpoch = this.ctx.app.epoch; this.drawSchedule(); } }

  draw() {
    if (this.sweep) {
      const runs = this.sweep.runs;
      const series = runs.map((r, k) => ({
        label: fmtLr(r.learning_rate), colour: SAFE_COLOURS[k % SAFE_COLOURS.length], dash: r.diverged ? [4, 3] : null,
        points: r.history.map(([e, , te]) => [e, te]), endMarker: r.diverged ? '✕' : null,
      }));
      plot(this.sweepCanvas, { series, logY: true, xLabel: 'epoch', yLabel: 'test loss' });
      legend(this.sweepLegend, runs.map((r, k) => ({
        label: `lr ${fmtLr(r.learning_rate)}`, colour: series[k].colour, dash: r.diverged,
        note: r.diverged ? `${r.verdict} · diverged` : r.verdict, noteClass: VERDICT_CLASS[r.verdict],
      })));
    } else {
      plot(this.sweepCanvas, { series: [], empty: 'Press “Run sweep”' });
    }
    if (this.range) {
      const s = this.range.suggested_learning_rate;
      plot(this.rangeCanvas, {
        series: [{ label: 'loss', colour: '#0072B2', points: this.range.points }], logX: true, logY: true,
        xLabel: 'learning rate', yLabel: 'train loss',
        marks: s != null ? [{ x: s, label: `suggested ${fmtLr(s)}` }] : [],
      });
    } else {
      plot(this.rangeCanvas, { series: [], empty: 'Press “Range test”' });
    }
    this.drawSchedule();
  }

  drawSchedule() {
    const cfg = this.ctx.app.cfg;
    if (!cfg || !this.schedCanvas.isConnected) return;
    const kind = cfg.lr_schedule || 'constant';
    const n = kind === 'constant' ? 300 : (cfg.decay_epochs ?? 100) * 3 + (kind === 'warmup_cosine' ? (cfg.warmup_epochs ?? 10) : 0);
    const from = this.ctx.app.epoch || 0;
    const pts = [];
    const step = Math.max(1, Math.floor(n / 300));
    for (let e = from; e <= from + n; e += step) pts.push([e, scheduleAt(cfg, e)]);
    this.schedNote.textContent = `${kind.replace('_', ' ')} schedule, learning rate ${cfg.learning_rate}, next ${n} epochs from epoch ${from}.`;
    plot(this.schedCanvas, {
      series: [{ label: 'learning rate', colour: '#009E73', points: pts }], xLabel: 'epoch', yLabel: 'learning rate', yMin: 0,
      marks: [{ x: from, label: 'now', colour: '#666' }],
    });
  }
}
