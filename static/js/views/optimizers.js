// Optimizers view: SGD, momentum, RMSProp and Adam on a 2-D loss surface (POST /api/paths):
// contour lines of the surface (log-spaced levels), gradient arrows and the four paths.
import { h, legend, postJSON, fitCanvas } from './plot.js';

const SURFACES = [['bowl', 'Bowl'], ['elongated', 'Elongated bowl'], ['rosenbrock', 'Rosenbrock'], ['saddle', 'Saddle']];
// Okabe–Ito: distinct for the common colour-vision deficiencies
const PATHS = [['sgd', 'SGD', '#0072B2'], ['momentum', 'Momentum', '#E69F00'], ['rmsprop', 'RMSProp', '#009E73'], ['adam', 'Adam', '#CC79A7']];
const LR_STEPS = [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2];
const MOM_STEPS = [0, 0.5, 0.8, 0.9, 0.95, 0.99];

/** Marching squares: line segments of the level `lv` of grid g (n x n, row 0 = top). */
function contour(ctx, g, n, lv, X, Y) {
  ctx.beginPath();
  for (let r = 0; r < n - 1; r++) {
    for (let c = 0; c < n - 1; c++) {
      const v = [g[r][c], g[r][c + 1], g[r + 1][c + 1], g[r + 1][c]];
      const corners = [[c, r], [c + 1, r], [c + 1, r + 1], [c, r + 1]];
      const pts = [];
      for (let k = 0; k < 4; k++) {
        const a = v[k], b = v[(k + 1) % 4];
        if ((a < lv) !== (b < lv)) {
          const t = (lv - a) / (b - a);
          const [ca, ra] = corners[k], [cb, rb] = corners[(k + 1) % 4];
          pts.push([ca + (cb - ca) * t, ra + (rb - ra) * t]);
        }
      }
      for (let k = 0; k + 1 < pts.length; k += 2) {
        ctx.moveTo(X(pts[k][0]), Y(pts[k][1]));
        ctx.lineTo(X(pts[k + 1][0]), Y(pts[k + 1][1]));
      }
    }
  }
  ctx.stroke();
}

export class OptimizersView {
  constructor(ctx) {
    this.ctx = ctx;
    this.p = { surface: 'bowl', learning_rate: 0.05, momentum: 0.9, steps: 100, x0: -1.5, y0: 1.5 };
    this.res = null;
    this.seq = 0;
    this.surface = h('select', { 'aria-label': 'Surface' });
    for (const [v, t] of SURFACES) this.surface.append(new Option(t, v));
    this.surface.addEventListener('change', () => { this.p.surface = this.surface.value; this.fetch(); });
    this.lr = h('input', { type: 'range', min: '0', max: String(LR_STEPS.length - 1), step: '1', value: String(LR_STEPS.indexOf(0.05)), 'aria-label': 'Surface learning rate' });
    this.lrOut = h('output', { text: '0.05' });
    this.lr.addEventListener('input', () => { this.p.learning_rate = LR_STEPS[+this.lr.value]; this.lrOut.textContent = String(this.p.learning_rate); this.lr.setAttribute('aria-valuetext', String(this.p.learning_rate)); this.fetch(); });
    this.mom = h('input', { type: 'range', min: '0', max: String(MOM_STEPS.length - 1), step: '1', value: String(MOM_STEPS.indexOf(0.9)), 'aria-label': 'Surface momentum' });
    this.momOut = h('output', { text: '0.9' });
    this.mom.addEventListener('input', () => { this.p.momentum = MOM_STEPS[+this.mom.value]; this.momOut.textContent = String(this.p.momentum); this.mom.setAttribute('aria-valuetext', String(this.p.momentum)); this.fetch(); });
    this.canvas = h('canvas', { class: 'surface', role: 'img', 'aria-label': 'Loss surface with the four optimizers’ paths; click to set the start point', title: 'Click to set the start point' });
    this.canvas.addEventListener('click', (ev) => this.click(ev));
    this.legendEl = h('ul', { class: 'plot-legend vertical', 'aria-label': 'Optimizers legend' });
    this.formula = h('p', { class: 'formula' });
    this.note = h('p', { class: 'hint small', text: 'Click the surface to move the start point (●). Arrows point downhill (−gradient).' });
    this.el = h('div', { class: 'view-optimizers' },
      h('div', { class: 'opt-plot' }, this.canvas),
      h('div', { class: 'opt-side' },
        h('h2', { text: 'Optimizers on a loss surface' }),
        h('label', { class: 'ctl' }, h('span', { text: 'Surface' }), this.surface),
        h('label', { class: 'ctl slider' }, h('span', {}, 'Surface learning rate: ', this.lrOut), this.lr),
        h('label', { class: 'ctl slider' }, h('span', {}, 'Surface momentum: ', this.momOut), this.mom),
        this.formula, this.legendEl, this.note));
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  show() { if (!this.res) this.fetch(); else this.draw(); }

  async fetch() {
    const seq = ++this.seq;
    this.formula.textContent = 'computing the paths…';
    const { ok, data } = await postJSON('/api/paths', this.p);
    if (seq !== this.seq) return;
    if (!ok) { this.ctx.showError(data.error); return; }
    this.res = data;
    this.formula.textContent = `f(x, y) = ${data.formula}`;
    legend(this.legendEl, PATHS.map(([k, label, colour]) => {
      const p = data.paths[k];
      return { label, colour, dash: k !== 'sgd', note: p.diverged ? 'diverged' : `final ${Number(p.final_value.toPrecision(3))}`, noteClass: p.diverged ? 'v-bad' : '' };
    }));
    this.draw();
  }

  geom() {
    const W = this.canvas.clientWidth, H = this.canvas.clientHeight;
    const S = Math.min(W - 40, H - 36);
    const ox = (W - S) / 2, oy = 8;
    const [lo, hi] = this.res?.range || [-2, 2];
    return { S, ox, oy, lo, hi, toX: (x) => ox + (x - lo) / (hi - lo) * S, toY: (y) => oy + (hi - y) / (hi - lo) * S };
  }

  click(ev) {
    const r = this.canvas.getBoundingClientRect();
    const { S, ox, oy, lo, hi } = this.geom();
    const x = lo + (ev.clientX - r.left - ox) / S * (hi - lo);
    const y = hi - (ev.clientY - r.top - oy) / S * (hi - lo);
    if (x < lo || x > hi || y < lo || y > hi) return;
    this.p.x0 = Math.round(x * 100) / 100;
    this.p.y0 = Math.round(y * 100) / 100;
    this.fetch();
  }

  draw() {
    if (!this.res || !this.canvas.clientWidth) return;
    const { ctx } = fitCanvas(this.canvas);
    const g = this.res.grid;
    const n = g.length;
    const { S, ox, oy, lo, hi, toX, toY } = this.geom();
    const cell = S / (n - 1);
    const X = (c) => ox + c * cell, Y = (r) => oy + r * cell;
    // background: log-scaled heat
    let mn = Infinity, mx = -Infinity;
    for (const row of g) for (const v of row) { mn = Math.min(mn, v); mx = Math.max(mx, v); }
    const shift = mn <= 0 ? -mn + 1e-3 : 0;
    const lmin = Math.log(mn + shift + 1e-6), lmax = Math.log(mx + shift + 1e-6);
    const norm = (v) => (Math.log(v + shift + 1e-6) - lmin) / Math.max(1e-9, lmax - lmin);
    for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {
      const t = norm(g[r][c]);
      // low = white, high = pale blue-grey
      ctx.fillStyle = `rgb(${Math.round(255 - 48 * t)},${Math.round(255 - 32 * t)},${Math.round(255 - 18 * t)})`;
      ctx.fillRect(X(c) - cell / 2, Y(r) - cell / 2, cell + 1, cell + 1);
    }
    ctx.strokeStyle = '#bbb';
    ctx.lineWidth = 1;
    ctx.strokeRect(ox, oy, S, S);
    // contour levels evenly spaced in log(value + shift)
    ctx.strokeStyle = 'rgba(60,60,60,.45)';
    for (let k = 1; k < 16; k++) {
      const lv = Math.exp(lmin + (lmax - lmin) * k / 16) - shift - 1e-6;
      contour(ctx, g, n, lv, X, Y);
    }
    // gradient arrows on a coarse grid (numerical gradient of the grid, row 0 = y top)
    const step = (hi - lo) / (n - 1);
    ctx.strokeStyle = 'rgba(90,90,90,.55)';
    ctx.fillStyle = 'rgba(90,90,90,.55)';
    const arrows = [];
    let gmax = 0;
    for (let r = 4; r < n - 2; r += 8) for (let c = 4; c < n - 2; c += 8) {
      const gx = (g[r][c + 1] - g[r][c - 1]) / (2 * step);
      const gy = (g[r - 1][c] - g[r + 1][c]) / (2 * step);
      const m = Math.hypot(gx, gy);
      gmax = Math.max(gmax, m);
      arrows.push([c, r, gx, gy, m]);
    }
    for (const [c, r, gx, gy, m] of arrows) {
      if (m < 1e-9) continue;
      // length grows with sqrt(|grad|) so that steep regions do not dominate
      const len = 4 + 12 * Math.sqrt(m / gmax);
      const dx = -gx / m * len, dy = gy / m * len; // downhill; canvas y points down
      const x0 = X(c), y0 = Y(r);
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x0 + dx, y0 + dy); ctx.stroke();
      const a = Math.atan2(dy, dx);
      ctx.beginPath();
      ctx.moveTo(x0 + dx, y0 + dy);
      ctx.lineTo(x0 + dx - 5 * Math.cos(a - 0.45), y0 + dy - 5 * Math.sin(a - 0.45));
      ctx.lineTo(x0 + dx - 5 * Math.cos(a + 0.45), y0 + dy - 5 * Math.sin(a + 0.45));
      ctx.fill();
    }
    // axes ticks
    ctx.fillStyle = '#666';
    ctx.font = '11px Helvetica, Arial, sans-serif';
    ctx.textAlign = 'center'; ctx.textBaseline = 'top';
    for (const v of [lo, 0, hi]) ctx.fillText(String(v), toX(v), oy + S + 3);
    ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
    for (const v of [lo, 0, hi]) ctx.fillText(String(v), ox - 3, toY(v));
    // paths
    ctx.save();
    ctx.beginPath(); ctx.rect(ox, oy, S, S); ctx.clip();
    PATHS.forEach(([k, , colour], idx) => {
      const pts = this.res.paths[k].points;
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2.5;
      ctx.setLineDash([[], [7, 3], [2, 3], [9, 3, 2, 3]][idx]);
      ctx.beginPath();
      pts.forEach(([x, y], i) => (i ? ctx.lineTo(toX(x), toY(y)) : ctx.moveTo(toX(x), toY(y))));
      ctx.stroke();
      ctx.setLineDash([]);
      const last = pts[pts.length - 1];
      if (last) { ctx.fillStyle = colour; ctx.beginPath(); ctx.arc(toX(last[0]), toY(last[1]), 4, 0, 2 * Math.PI); ctx.fill(); }
    });
    ctx.restore();
    ctx.fillStyle = '#111';
    ctx.beginPath(); ctx.arc(toX(this.p.x0), toY(this.p.y0), 6, 0, 2 * Math.PI); ctx.fill();
    ctx.strokeStyle = '#fff'; ctx.lineWidth = 2; ctx.stroke();
  }
}
