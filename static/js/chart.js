// Line charts over epochs, drawn by the vendored uPlot (static/vendor/uplot), fed by
// incremental history rows. Axes, grid and a hover read-out (uPlot's live legend, shown as a
// tip beside the cursor); colours come from the page's CSS custom properties so the charts
// follow its theme, and present mode (body.present) gets large fonts and thick strokes.
//   new LineChart(el, {series: [{field, label, colour}], format, tick, yMax, yMin})
// `el` is an empty container (a div with role="img" and an aria-label); `colour` is a CSS
// colour or a custom property name ('--chart-test'). LossChart is the training / test loss chart.
import uPlot from '../vendor/uplot/uPlot.esm.js';

const MAX_POINTS = 4000;
const niceNum = (v) => (Math.abs(v) >= 1000 ? `${Math.round(v / 100) / 10}k` : Math.abs(v) >= 10 ? v.toFixed(0)
  : v === 0 ? '0' : String(Number(v.toPrecision(2))));

/** A colour given as a custom property ('--x') resolved against the element's styles. */
function resolve(el, colour, fallback) {
  if (!colour?.startsWith('--')) return colour || fallback;
  return getComputedStyle(el).getPropertyValue(colour).trim() || fallback;
}

export class LineChart {
  constructor(el, { series, format = (v) => v.toFixed(3), tick = niceNum, yMax = null, yMin = 0 } = {}) {
    this.el = el;
    this.series = series;
    this.format = format;
    this.tick = tick;
    this.yMax = yMax;
    this.yMin = yMin;
    this.present = document.body.classList.contains('present');
    this._lineWidth = this.present ? 3 : 1.5;
    this.u = null;
    this.clear();
    // the container may be hidden (closed <details>, embed mode) or resized: (re)size then
    new ResizeObserver(() => this.resize()).observe(el);
    window.matchMedia?.('(prefers-color-scheme: dark)').addEventListener?.('change', () => this.rebuild());
  }

  /** Stroke width of the series (present mode sets 3). */
  get lineWidth() { return this._lineWidth; }
  set lineWidth(w) { this._lineWidth = w; this.rebuild(); }

  clear() {
    this.epochs = [];
    this.values = this.series.map(() => []);
    this.dirty = true;
  }

  /** rows: [[epoch, ...]] in `fields` order. */
  add(rows, fields) {
    const ie = fields.indexOf('epoch');
    const idx = this.series.map((s) => fields.indexOf(s.field));
    for (const r of rows) {
      const e = r[ie];
      if (this.epochs.length && e <= this.epochs[this.epochs.length - 1]) this.clear();
      this.epochs.push(e);
      idx.forEach((i, k) => {
        const v = i >= 0 ? r[i] : null;
        this.values[k].push(v != null && Number.isFinite(v) ? v : null);
      });
    }
    if (this.epochs.length > MAX_POINTS) {
      // keep every other point of the older half
      const keep = (a) => a.filter((_, k) => k % 2 === 0 || k >= a.length / 2);
      this.epochs = keep(this.epochs);
      this.values = this.values.map(keep);
    }
    if (rows.length) this.dirty = true;
  }

  /** The y range: the data's, widened to include yMin / yMax. */
  range(lo, hi) {
    if (lo == null || !Number.isFinite(lo)) { lo = 0; hi = 1; }
    if (this.yMin != null) lo = Math.min(this.yMin, lo);
    if (this.yMax != null) hi = Math.max(this.yMax, hi);
    if (hi - lo < 1e-12) hi = lo + (Math.abs(lo) || 1);
    return [lo, hi];
  }

  options(width, height) {
    const el = this.el;
    const ink = resolve(el, '--ink', '#222');
    const muted = resolve(el, '--muted', '#666');
    const line = resolve(el, '--line', '#ddd');
    const px = this.present ? 15 : height < 70 ? 10 : 11;
    const font = `${px}px Helvetica, Arial, sans-serif`;
    const axis = { stroke: muted, font, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1, size: 3 } };
    return {
      width, height,
      legend: { show: true, live: true, markers: { width: 0 }, mount: (u, tbl) => { tbl.classList.add('chart-tip'); tbl.hidden = true; el.append(tbl); } },
      cursor: { y: false, drag: { x: false, y: false, setScale: false }, points: { size: this.present ? 10 : 6 } },
      select: { show: false },
      scales: { x: { time: false }, y: { range: (u, lo, hi) => this.range(lo, hi) } },
      axes: [
        { ...axis, size: px + 10, space: px * 5, values: (u, splits) => splits.map((v) => String(Math.round(v))) },
        // a short chart labels its range's ends (too few pixels for evenly spaced ticks)
        { ...axis, size: px * 3.2 + 4, space: px * 2.2, values: (u, splits) => splits.map((v) => this.tick(v)),
          ...(height < 100 ? { splits: (u, i, lo, hi) => [lo, hi] } : {}) },
      ],
      series: [
        { label: 'epoch', value: (u, v) => (v == null ? '–' : String(v)) },
        ...this.series.map((s) => ({
          label: s.label, stroke: resolve(el, s.colour, ink), width: this._lineWidth, points: { show: false },
          spanGaps: false, value: (u, v) => (v == null ? '–' : this.format(v)),
        })),
      ],
      hooks: { setCursor: [(u) => this.placeTip(u)] },
    };
  }

  /** Show the live legend beside the cursor while it is over the plot. */
  placeTip(u) {
    const tip = u.root.querySelector('.chart-tip') || this.el.querySelector('.chart-tip');
    if (!tip) return;
    const { left, top, idx } = u.cursor;
    if (idx == null || left == null || left < 0) { tip.hidden = true; return; }
    tip.hidden = false;
    const ox = u.over.offsetLeft, oy = u.over.offsetTop;
    const w = tip.offsetWidth;
    let x = left < u.over.clientWidth / 2 ? ox + left + 12 : ox + left - w - 12;
    // keep it inside the window (charts in the side column are narrower than the tip)
    const box = this.el.getBoundingClientRect();
    x = Math.max(4 - box.left, Math.min(document.documentElement.clientWidth - 4 - box.left - w, x));
    tip.style.left = `${x}px`;
    tip.style.top = `${oy + Math.min(top, u.over.clientHeight) - tip.offsetHeight - 8}px`;
  }

  size() {
    return [Math.floor(this.el.clientWidth), Math.floor(this.el.clientHeight)];
  }

  resize() {
    const [w, h] = this.size();
    if (w < 50 || h < 30) return;
    if (!this.u) { this.build(); return; }
    if (w !== this.u.width || h !== this.u.height) this.u.setSize({ width: w, height: h });
  }

  build() {
    const [w, h] = this.size();
    if (w < 50 || h < 30) return;
    this.u = new uPlot(this.options(w, h), this.data(), this.el);
    this.dirty = false;
  }

  rebuild() {
    if (!this.u) return;
    this.u.destroy();
    this.u = null;
    this.build();
  }

  data() {
    return [this.epochs, ...this.values];
  }

  draw() {
    if (!this.u) this.build();
    if (!this.dirty || !this.u) return;
    this.dirty = false;
    this.u.setData(this.data());
  }
}

export class LossChart extends LineChart {
  constructor(el) {
    super(el, { series: [{ field: 'train_loss', label: 'train', colour: '--chart-train' }, { field: 'test_loss', label: 'test', colour: '--chart-test' }] });
  }
}
