// Loss chart: training (grey) and test (black) loss over epochs, from incremental history rows.
export class LossChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.clear();
    this.lineWidth = 1.5;
  }

  clear() {
    this.epochs = [];
    this.train = [];
    this.test = [];
    this.dirty = true;
  }

  /** rows: [[epoch, train_loss, test_loss, ...]] in `fields` order. */
  add(rows, fields) {
    const ie = fields.indexOf('epoch'), itr = fields.indexOf('train_loss'), ite = fields.indexOf('test_loss');
    for (const r of rows) {
      const e = r[ie];
      if (this.epochs.length && e <= this.epochs[this.epochs.length - 1]) this.clear();
      this.epochs.push(e);
      this.train.push(r[itr]);
      this.test.push(r[ite]);
    }
    if (this.epochs.length > 4000) {
      // keep every other point of the older half
      const keep = (a) => a.filter((_, k) => k % 2 === 0 || k >= a.length / 2);
      this.epochs = keep(this.epochs); this.train = keep(this.train); this.test = keep(this.test);
    }
    if (rows.length) this.dirty = true;
  }

  draw() {
    if (!this.dirty) return;
    this.dirty = false;
    const c = this.canvas, ctx = c.getContext('2d');
    const W = c.width, H = c.height, pad = 4;
    ctx.clearRect(0, 0, W, H);
    const n = this.epochs.length;
    if (n < 2) return;
    let max = 0;
    for (let k = 0; k < n; k++) {
      for (const v of [this.train[k], this.test[k]]) if (v != null && Number.isFinite(v)) max = Math.max(max, v);
    }
    max = max || 1;
    const e0 = this.epochs[0], e1 = this.epochs[n - 1] || 1;
    const x = (e) => pad + (e - e0) / Math.max(1e-9, e1 - e0) * (W - 2 * pad);
    const y = (v) => H - pad - Math.min(1, v / max) * (H - 2 * pad);
    for (const [series, colour] of [[this.train, '#9a9a9a'], [this.test, '#111']]) {
      ctx.beginPath();
      let started = false;
      for (let k = 0; k < n; k++) {
        const v = series[k];
        if (v == null || !Number.isFinite(v)) { started = false; continue; }
        if (!started) { ctx.moveTo(x(this.epochs[k]), y(v)); started = true; } else ctx.lineTo(x(this.epochs[k]), y(v));
      }
      ctx.strokeStyle = colour;
      ctx.lineWidth = this.lineWidth * (W / c.clientWidth || 1);
      ctx.stroke();
    }
  }
}
