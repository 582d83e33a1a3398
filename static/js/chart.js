// Line charts over epochs with axes and a hover read-out, fed by incremental history rows.
//   new LineChart(canvas, {series: [{field, label, colour}], format, yMax})
// LossChart is the training (grey) / test (black) loss chart of the output column.

const MAX_POINTS = 4000;
const niceNum = (v) => (Math.abs(v) >= 1000 ? `${Math.round(v / 100) / 10}k` : Math.abs(v) >= 10 ? v.toFixed(0) : v.toPrecision(2));

export class LineChart {
  constructor(canvas, { series, format = (v) => v.toFixed(3), yMax = null, yMin = 0 } = {}) {
    this.canvas = canvas;
    this.series = series;
    this.format = format;
    this.yMax = yMax;
    this.yMin = yMin;
    this.lineWidth = 1.5;
    this.hover = null; // index under the mouse
    this.tip = document.createElement('div');
    this.tip.className = 'chart-tip';
    this.tip.hidden = true;
    document.body.append(this.tip);
    canvas.addEventListener('mousemove', (ev) => this.onMove(ev));
    canvas.addEventListener('mouseleave', () => { this.hover = null; this.tip.hidden = true; this.dirty = true; this.draw(); });
    this.clear();
  }

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
      idx.forEach((i, k) => this.values[k].push(i >= 0 ? r[i] : null));
    }
    if (this.epochs.length > MAX_POINTS) {
      // keep every other point of the older half
      const keep = (a) => a.filter((_, k) => k % 2 === 0 || k >= a.length / 2);
      this.epochs = keep(this.epochs);
      this.values = this.values.map(keep);
    }
    if (rows.length) this.dirty = true;
  }

  geometry() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const cw = Math.max(50, c.clientWidth), ch = Math.max(30, c.clientHeight);
    if (c.width !== Math.round(cw * dpr) || c.height !== Math.round(ch * dpr)) {
      c.width = Math.round(cw * dpr);
      c.height = Math.round(ch * dpr);
    }
    const font = ch < 50 ? 9 : 10;
    return { dpr, W: cw, H: ch, font, left: 34, right: 6, top: 5, bottom: font + 6 };
  }

  range() {
    let lo = Infinity, hi = -Infinity;
    for (const s of this.values) for (const v of s) if (v != null && Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (!Number.isFinite(hi)) { lo = 0; hi = 1; }
    if (this.yMin != null) lo = Math.min(this.yMin, lo);
    if (this.yMax != null) hi = Math.max(this.yMax, hi);
    if (hi - lo < 1e-12) hi = lo + (Math.abs(lo) || 1);
    return [lo, hi];
  }

  draw() {
    if (!this.dirty) return;
    this.dirty = false;
    const c = this.canvas, ctx = c.getContext('2d');
    if (!c.clientWidth) return;
    const g = this.geometry();
    ctx.setTransform(g.dpr, 0, 0, g.dpr, 0, 0);
    ctx.clearRect(0, 0, g.W, g.H);
    const n = this.epochs.length;
    const [lo, hi] = this.range();
    const e0 = n ? this.epochs[0] : 0, e1 = n > 1 ? this.epochs[n - 1] : e0 + 1;
    const pw = g.W - g.left - g.right, ph = g.H - g.top - g.bottom;
    const x = (e) => g.left + (e - e0) / Math.max(1e-9, e1 - e0) * pw;
    const y = (v) => g.top + ph - (Math.max(lo, Math.min(hi, v)) - lo) / (hi - lo) * ph;
    this.map = { x, e0, e1, g, pw };
    // axes
    ctx.strokeStyle = '#bbb';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(g.left + 0.5, g.top);
    ctx.lineTo(g.left + 0.5, g.top + ph + 0.5);
    ctx.lineTo(g.left + pw, g.top + ph + 0.5);
    ctx.stroke();
    ctx.fillStyle = '#666';
    ctx.font = `${g.font}px Helvetica, Arial, sans-serif`;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'top';
    ctx.fillText(niceNum(hi), g.left - 4, g.top - 1);
    ctx.textBaseline = 'bottom';
    ctx.fillText(niceNum(lo), g.left - 4, g.top + ph + 1);
    ctx.textBaseline = 'top';
    ctx.textAlign = 'left';
    ctx.fillText(String(Math.round(e0)), g.left, g.top + ph + 3);
    ctx.textAlign = 'right';
    ctx.fillText(n > 1 ? `${Math.round(e1)} epochs` : 'epochs', g.left + pw, g.top + ph + 3);
    if (n < 2) return;
    this.series.forEach((s, k) => {
      const vals = this.values[k];
      ctx.beginPath();
      let started = false;
      for (let i = 0; i < n; i++) {
        const v = vals[i];
        if (v == null || !Number.isFinite(v)) { started = false; continue; }
        if (!started) { ctx.moveTo(x(this.epochs[i]), y(v)); started = true; } else ctx.lineTo(x(this.epochs[i]), y(v));
      }
      ctx.strokeStyle = s.colour;
      ctx.lineWidth = this.lineWidth;
      ctx.stroke();
    });
    if (this.hover != null && this.hover < n) {
      const hx = x(this.epochs[this.hover]);
      ctx.strokeStyle = 'rgba(0,0,0,.35)';
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(hx, g.top);
      ctx.lineTo(hx, g.top + ph);
      ctx.stroke();
    }
  }

  onMove(ev) {
    const n = this.epochs.length;
    if (n < 2 || !this.map) return;
    const r = this.canvas.getBoundingClientRect();
    const { e0, e1, g, pw } = this.map;
    const e = e0 + (ev.clientX - r.left - g.left) / pw * (e1 - e0);
    let best = 0;
    for (let i = 1; i < n; i++) if (Math.abs(this.epochs[i] - e) < Math.abs(this.epochs[best] - e)) best = i;
    this.hover = best;
    const parts = [`epoch ${this.epochs[best]}`];
    this.series.forEach((s, k) => {
      const v = this.values[k][best];
      parts.push(`${s.label} ${v == null ? '–' : this.format(v)}`);
    });
    this.tip.textContent = parts.join(' · ');
    this.tip.hidden = false;
    this.tip.style.left = `${Math.min(window.innerWidth - this.tip.offsetWidth - 4, ev.clientX + 12) + window.scrollX}px`;
    this.tip.style.top = `${ev.clientY - 30 + window.scrollY}px`;
    this.dirty = true;
    this.draw();
  }
}

export class LossChart extends LineChart {
  constructor(canvas) {
    super(canvas, { series: [{ field: 'train_loss', label: 'train', colour: '#9a9a9a' }, { field: 'test_loss', label: 'test', colour: '#111' }] });
  }
}
