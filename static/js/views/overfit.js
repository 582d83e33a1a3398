// Overfitting view: train / test loss with the gap shaded, the early-stopping best epoch, a
// histogram of the weights with the count of (L1-)zeroed weights, and an A/B mode: the server
// trains the current setup without (A) and with (B) one regularizer from the same initial
// weights (POST /api/ab) and both are drawn side by side.
import { h, plot, legend, postJSON } from './plot.js';
import { splitWeights } from '../frame.js';
import { drawGrid, drawPoints } from '../heatmap.js';

const REGULARIZERS = [
  ['l1', 'L1', [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1], 0.003],
  ['l2', 'L2', [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1], 0.003],
  ['dropout', 'Dropout', [0.1, 0.2, 0.3, 0.5], 0.2],
  ['input_noise', 'Input noise', [0.1, 0.2, 0.5, 1], 0.5],
  ['batch_norm', 'Batch norm', [], null],
  ['augmentation', 'Augmentation (jitter)', [0.1, 0.2, 0.3, 0.5, 1], 0.3],
];
const AB_EPOCHS = [100, 300, 1000];

/** The regularizer the config already uses (and its strength), to start the A/B choice from. */
function activeRegularizer(cfg) {
  if (!cfg) return ['l2', null];
  if (cfg.l1 > 0) return ['l1', cfg.l1];
  if (cfg.l2 > 0) return ['l2', cfg.l2];
  if (cfg.dropout > 0) return ['dropout', cfg.dropout];
  if (cfg.input_noise > 0) return ['input_noise', cfg.input_noise];
  if (cfg.augmentation?.jitter > 0) return ['augmentation', cfg.augmentation.jitter];
  if (cfg.batch_norm) return ['batch_norm', null];
  return ['l2', null];
}

const f3 = (v) => (v == null ? '–' : v.toFixed(3));
const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

export class OverfitView {
  constructor(ctx) {
    this.ctx = ctx;
    this.rows = []; // [epoch, train, test]
    this.canvas = h('canvas', { class: 'view-chart', role: 'img', 'aria-label': 'Training and test loss over epochs; the gap is shaded' });
    this.legendEl = h('ul', { class: 'plot-legend', 'aria-label': 'Loss legend' });
    this.stop = h('p', { class: 'hint small', 'aria-live': 'polite' });
    this.hist = h('canvas', { class: 'view-chart short', role: 'img', 'aria-label': 'Histogram of the weights' });
    this.zeroed = h('p', { class: 'big-number' });
    this.ab = null;
    this.abCard = this.buildAB();
    this.el = h('div', { class: 'view-overfit' },
      this.abCard,
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h3', { text: 'Training vs test loss' })),
        this.canvas, this.legendEl, this.stop),
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h3', { text: 'Weights' })),
        this.hist, this.zeroed));
  }

  buildAB() {
    this.reg = h('select', { 'aria-label': 'A/B regularizer' });
    for (const [v, t] of REGULARIZERS) this.reg.append(new Option(t, v));
    this.strength = h('select', { 'aria-label': 'A/B strength' });
    this.epochs = h('select', { 'aria-label': 'A/B epochs' });
    for (const e of AB_EPOCHS) this.epochs.append(new Option(`${e} epochs`, String(e)));
    this.epochs.value = '300';
    this.reg.addEventListener('change', () => this.fillStrengths());
    this.runBtn = h('button', { type: 'button', class: 'text-btn primary', onclick: () => this.runAB() }, 'Run A/B');
    this.abNote = h('p', { class: 'hint small', 'aria-live': 'polite', text: 'Trains the current setup twice from the same initial weights: A without, B with the regularizer.' });
    this.sides = ['a', 'b'].map((k) => {
      const side = {
        title: h('h4', { text: k === 'a' ? 'A: without' : 'B: with' }),
        boundary: h('canvas', { class: 'ab-boundary', width: '200', height: '200', role: 'img', 'aria-label': `Decision boundary ${k.toUpperCase()}` }),
        chart: h('canvas', { class: 'view-chart ab-chart', role: 'img', 'aria-label': `Training and test loss ${k.toUpperCase()}; the gap is shaded` }),
        stats: h('dl', { class: 'metric-list ab-stats', 'aria-label': `Result ${k.toUpperCase()}` }),
      };
      side.el = h('figure', { class: 'ab-side', 'aria-label': `Run ${k.toUpperCase()}` }, side.title, side.boundary, side.chart, side.stats);
      return side;
    });
    this.abHist = h('canvas', { class: 'view-chart short', role: 'img', 'aria-label': 'Weight histograms of A and B' });
    this.abLegend = h('ul', { class: 'plot-legend', 'aria-label': 'A/B weights legend' });
    this.abResult = h('div', { class: 'ab-result', hidden: true },
      h('div', { class: 'ab-pair' }, this.sides[0].el, this.sides[1].el),
      h('h4', { text: 'Weights' }), this.abHist, this.abLegend);
    this.syncReg(true);
    return h('section', { class: 'card', 'aria-label': 'A/B regularizer comparison' },
      h('div', { class: 'card-head' }, h('h3', { text: 'A/B: with and without a regularizer' })),
      h('div', { class: 'ab-controls' },
        h('label', { class: 'ctl' }, h('span', { text: 'Regularizer' }), this.reg),
        h('label', { class: 'ctl' }, h('span', { text: 'Strength' }), this.strength),
        h('label', { class: 'ctl' }, h('span', { text: 'Epochs' }), this.epochs),
        this.runBtn),
      this.abNote, this.abResult);
  }

  /** Start from the regularizer the config uses (once, and after a preset changes it). */
  syncReg(force = false) {
    const [reg, strength] = activeRegularizer(this.ctx.app.cfg);
    const key = `${reg}|${strength}`;
    if (!force && key === this.regKey) return;
    this.regKey = key;
    this.reg.value = reg;
    this.fillStrengths(strength);
  }

  fillStrengths(want = null) {
    const spec = REGULARIZERS.find(([v]) => v === this.reg.value);
    const values = [...spec[2]];
    if (want != null && !values.includes(want)) {
      values.push(want);
      values.sort((a, b) => a - b);
    }
    this.strength.replaceChildren(...(values.length ? values.map((v) => new Option(String(v), String(v))) : [new Option('—', '')]));
    this.strength.value = String(want ?? spec[3] ?? '');
    this.strength.disabled = !values.length;
  }

  onState() { this.syncReg(); }

  async runAB() {
    const cfg = this.ctx.app.cfg;
    if (!cfg) return;
    const body = { config: cfg, regularizer: this.reg.value, epochs: Number(this.epochs.value) };
    if (!this.strength.disabled) body.strength = Number(this.strength.value);
    this.runBtn.disabled = true;
    this.abNote.textContent = `Training A and B for ${body.epochs} epochs…`;
    try {
      const { ok, data } = await postJSON('/api/ab', body);
      if (!ok) { this.ctx.showError(data.error); this.abNote.textContent = data.error; return; }
      this.ab = data;
      const [a, b] = [data.a, data.b];
      const verdict = a.gap != null && b.gap != null
        ? (b.gap < a.gap ? `B narrows the train/test gap (${f3(a.gap)} → ${f3(b.gap)})` : `B does not narrow the gap (${f3(a.gap)} → ${f3(b.gap)})`)
        : 'a run diverged';
      this.abNote.textContent = `${data.epochs} epochs, same initial weights. ${verdict}. Ringed points: test set.`;
      this.abResult.hidden = false;
      this.drawAB();
    } catch (err) {
      this.ctx.showError(`A/B failed: ${err}`);
    } finally {
      this.runBtn.disabled = false;
    }
  }

  drawAB() {
    const d = this.ab;
    if (!d || this.abResult.hidden) return;
    const app = this.ctx.app;
    const runs = [d.a, d.b];
    const losses = runs.flatMap((r) => r.history.flatMap(([, tr, te]) => [tr, te])).filter((v) => v != null && v > 0);
    const yMin = Math.min(...losses), yMax = Math.max(...losses);
    const gaps = runs.map((r) => r.gap);
    runs.forEach((r, k) => {
      const side = this.sides[k];
      side.title.textContent = `${k ? 'B' : 'A'}: ${r.label}`;
      const n = r.grid_size;
      drawGrid(side.boundary, bytes(r.grid), n, r.grid_class ? { classes: bytes(r.grid_class), k: app.cfg?.classes || 2 } : {});
      const problem = app.cfg?.problem || 'classification';
      drawPoints(side.boundary, app.points.train, { problem, radius: 2.5, stroke: 1 });
      drawPoints(side.boundary, app.points.test, { problem, test: true, radius: 2.5, stroke: 1 });
      const train = r.history.map(([e, tr]) => [e, tr]), test = r.history.map(([e, , te]) => [e, te]);
      const marks = (app.cfg?.early_stopping_patience || 0) > 0 && r.best_epoch ? [{ x: r.best_epoch, label: `best ${r.best_epoch}`, colour: '#009E73' }] : [];
      plot(side.chart, {
        series: [{ label: 'train', colour: '#0072B2', points: train }, { label: 'test', colour: '#D55E00', points: test }],
        band: { lower: train, upper: test, colour: 'rgba(213,94,0,.2)' },
        logY: true, yMin, yMax, xLabel: 'epoch', yLabel: 'loss', marks,
      });
      const other = gaps[1 - k];
      const gapClass = r.gap != null && other != null ? (r.gap <= other ? 'gap-small' : 'gap-large') : '';
      const rows = [['Training loss', f3(r.final_train_loss)], ['Test loss', f3(r.final_test_loss)],
        ['Gap (test − train)', f3(r.gap), gapClass], ['Test accuracy', r.test_accuracy == null ? '–' : `${(r.test_accuracy * 100).toFixed(1)}%`],
        ['Zeroed weights', `${r.weights.zeroed} of ${r.weights.n}`]];
      if (r.diverged) rows.push(['Diverged', 'yes', 'gap-large']);
      side.stats.replaceChildren(...rows.flatMap(([key, v, cls]) => [h('dt', { text: key }), h('dd', { text: v, class: cls || null })]));
    });
    const hist = (r) => {
      const pts = [];
      r.weights.counts.forEach((c, k) => { const a = r.weights.edges[k], b = r.weights.edges[k + 1]; pts.push([a, c], [b, c]); });
      return pts;
    };
    plot(this.abHist, {
      series: [{ label: 'A', colour: '#0072B2', points: hist(d.a), width: 1.5 }, { label: 'B', colour: '#D55E00', points: hist(d.b), width: 1.5 }],
      xLabel: 'weight value', yLabel: 'count', yMin: 0, tightY: true,
    });
    legend(this.abLegend, runs.map((r, k) => ({ label: `${k ? 'B' : 'A'}: ${r.label}`, colour: k ? '#D55E00' : '#0072B2', note: `${r.weights.zeroed} zeroed` })));
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
  show() { this.draw(); this.drawAB(); }

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
