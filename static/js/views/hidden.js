// Hidden-space view (as in ConvNetJS's 2-D demo): two chosen neurons of a chosen hidden layer
// span a plane; the server maps a grid of input lines and the training points through the
// live weights (websocket `hidden` message) and the page draws how the layer bends the grid
// and where the data land. Requested again while training, at most every 300 ms.
import { h, legend, fitCanvas } from './plot.js';
import { pointColour } from '../heatmap.js';
import { rgb } from '../palette.js';

const PERIOD = 300; // ms between requests while training
const TIMEOUT = 3000; // a request unanswered this long is given up
const H_COLOUR = '#4d4d4d', V_COLOUR = '#009E73'; // neutral: the points carry the class colours
// activations with a known range get fixed axes (the grid is seen squashing into them)
const BOUNDS = { tanh: [-1, 1], sigmoid: [0, 1] };

export class HiddenView {
  constructor(ctx) {
    this.ctx = ctx;
    this.res = null;
    this.pending = 0; // time the unanswered request was sent (0: none)
    this.sentKey = '';
    this.layer = h('select', { 'aria-label': 'Hidden layer' });
    this.ni = h('select', { 'aria-label': 'Neuron on the x axis' });
    this.nj = h('select', { 'aria-label': 'Neuron on the y axis' });
    this.layer.addEventListener('change', () => { this.fillNeurons(0, 1); this.request(true); });
    for (const s of [this.ni, this.nj]) s.addEventListener('change', () => this.request(true));
    this.canvas = h('canvas', { class: 'hidden-space', role: 'img', 'aria-label': 'Input grid lines and training points mapped into the two chosen neurons’ activations' });
    this.legendEl = h('ul', { class: 'plot-legend', 'aria-label': 'Hidden space legend' });
    this.note = h('p', { class: 'hint small', 'aria-live': 'polite' });
    legend(this.legendEl, [
      { label: 'input lines x2 = const', colour: H_COLOUR },
      { label: 'input lines x1 = const', colour: V_COLOUR },
    ]);
    this.el = h('div', { class: 'view-hidden' },
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h3', { text: 'Hidden space' })),
        h('p', { class: 'hint small', text: 'Each axis is one neuron’s activation. The grid of the input plane (x1, x2 in −6..6) is bent by the layers up to this one; a good last hidden layer moves the classes apart so that the output can separate them with a straight line.' }),
        h('div', { class: 'ab-controls' },
          h('label', { class: 'ctl' }, h('span', { text: 'Hidden layer' }), this.layer),
          h('label', { class: 'ctl' }, h('span', { text: 'x axis' }), this.ni),
          h('label', { class: 'ctl' }, h('span', { text: 'y axis' }), this.nj)),
        this.canvas, this.legendEl, this.note));
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  get units() { return (this.ctx.app.cfg?.layers || []).map((l) => l.units); }

  /** Rebuild the selectors for the current network, keeping valid choices. */
  syncSelectors() {
    const units = this.units;
    const key = units.join(',');
    if (key === this.unitsKey) return;
    this.unitsKey = key;
    const keep = Number(this.layer.value || units.length - 1);
    this.layer.replaceChildren(...units.map((u, k) => new Option(`Layer ${k + 1} (${u} neurons)`, String(k))));
    this.layer.value = String(Math.min(Math.max(keep, 0), units.length - 1));
    this.layer.disabled = !units.length;
    this.fillNeurons(Number(this.ni.value || 0), Number(this.nj.value || 1));
  }

  fillNeurons(i, j) {
    const u = this.units[Number(this.layer.value)] || 0;
    for (const [sel, want] of [[this.ni, i], [this.nj, j]]) {
      sel.replaceChildren(...Array.from({ length: u }, (_, k) => new Option(`Neuron ${k + 1}`, String(k))));
      sel.value = String(Math.min(want, Math.max(u - 1, 0)));
      sel.disabled = !u;
    }
  }

  /** Ask for the current activations unless the same ones are pending or already here. */
  request(force = false) {
    const app = this.ctx.app;
    if (!this.el.isConnected || !app.cfg) return;
    this.syncSelectors(); // the page's config may be ahead of the last state (a pending patch)
    if (!this.units.length) return;
    const now = performance.now();
    if (this.pending && now - this.pending < TIMEOUT) {
      this.again ||= force; // a new choice while waiting: ask again when the answer comes
      return;
    }
    if (this.pending) { // unanswered (lost with a reconnect, or refused): ask again
      this.pending = 0;
      this.sentKey = '';
    }
    if (!force && now - (this.sentAt || 0) < PERIOD) {
      // Too soon: look again when the period is over, frames or not. A short run (30
      // epochs take a fraction of a second here) can end, and its frames stop, within one
      // period: the picture would otherwise stay at the network before it.
      this.later(PERIOD - (now - this.sentAt));
      return;
    }
    const msg = { type: 'hidden', layer: Number(this.layer.value), i: Number(this.ni.value), j: Number(this.nj.value) };
    const key = `${app.epoch}|${app.lastFrame?.header.version}|${msg.layer}|${msg.i}|${msg.j}`;
    if (!force && key === this.sentKey) return;
    if (this.ctx.send(msg)) {
      this.sentKey = key;
      this.pending = this.sentAt = now;
      this.later(TIMEOUT + 10); // and again if no answer comes
    }
  }

  /** Call ``request`` after ``ms`` (one timer at a time; the latest wins). */
  later(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { this.timer = null; this.request(); }, Math.max(ms, 0) + 5);
  }

  onMessage(msg) {
    if (msg.type !== 'hidden') return;
    this.pending = 0;
    this.res = msg;
    if (this.el.isConnected) this.draw();
    if (this.again) {
      this.again = false;
      this.request(true);
    }
  }

  onState() { this.syncSelectors(); if (!this.units.length) { this.res = null; this.draw(); } else this.request(true); }
  onFrame() { if (this.el.isConnected) this.request(); }
  show() { this.syncSelectors(); this.request(true); this.draw(); }
  tick() { this.request(); }

  draw() {
    if (!this.canvas.clientWidth) return;
    const { ctx, W, H } = fitCanvas(this.canvas);
    const r = this.res;
    ctx.font = '11px Helvetica, Arial, sans-serif';
    if (!this.units.length || !r) {
      ctx.fillStyle = '#888';
      ctx.textAlign = 'center';
      ctx.fillText(this.units.length ? 'waiting for the activations…' : 'Add a hidden layer to see its space', W / 2, H / 2);
      this.note.textContent = '';
      return;
    }
    let [x0, x1] = BOUNDS[r.activation] || [Infinity, -Infinity];
    let [y0, y1] = [x0, x1];
    if (!BOUNDS[r.activation]) { // unbounded (ReLU…): fit the data, lines may leave the plot
      for (const [a, b] of r.points) { x0 = Math.min(x0, a); x1 = Math.max(x1, a); y0 = Math.min(y0, b); y1 = Math.max(y1, b); }
      if (!Number.isFinite(x0)) [x0, x1, y0, y1] = [-1, 1, -1, 1];
    }
    const padX = Math.max((x1 - x0) * 0.08, 0.05), padY = Math.max((y1 - y0) * 0.08, 0.05);
    x0 -= padX; x1 += padX; y0 -= padY; y1 += padY;
    const L = 40, B = 30, T = 8, R = 8;
    const size = Math.min(W - L - R, H - T - B);
    const X = (v) => L + (v - x0) / (x1 - x0) * size;
    const Y = (v) => T + size - (v - y0) / (y1 - y0) * size;
    ctx.strokeStyle = '#999';
    ctx.strokeRect(L + 0.5, T + 0.5, size, size);
    ctx.fillStyle = '#666';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const fmt = (v) => String(Number(v.toPrecision(2)));
    for (const v of [x0 + padX, (x0 + x1) / 2, x1 - padX]) ctx.fillText(fmt(v), X(v), T + size + 4);
    ctx.fillStyle = '#444';
    ctx.fillText(`neuron ${r.i + 1} of layer ${r.layer + 1}`, L + size / 2, T + size + 17);
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.fillStyle = '#666';
    for (const v of [y0 + padY, (y0 + y1) / 2, y1 - padY]) ctx.fillText(fmt(v), L - 4, Y(v));
    ctx.save();
    ctx.translate(10, T + size / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center'; ctx.fillStyle = '#444';
    ctx.fillText(`neuron ${r.j + 1}`, 0, 0);
    ctx.restore();
    ctx.save();
    ctx.beginPath(); ctx.rect(L, T, size, size); ctx.clip();
    const n = r.lines.length / 2;
    r.lines.forEach((line, k) => {
      const middle = k % n === (n - 1) / 2;
      ctx.strokeStyle = k < n ? H_COLOUR : V_COLOUR;
      ctx.globalAlpha = middle ? 0.9 : 0.45;
      ctx.lineWidth = middle ? 2 : 1;
      ctx.beginPath();
      line.forEach(([a, b], p) => (p ? ctx.lineTo(X(a), Y(b)) : ctx.moveTo(X(a), Y(b))));
      ctx.stroke();
    });
    ctx.globalAlpha = 1;
    const problem = this.ctx.app.cfg?.problem || 'classification';
    for (const [a, b, label] of r.points) {
      ctx.beginPath();
      ctx.arc(X(a), Y(b), 3.2, 0, Math.PI * 2);
      ctx.fillStyle = rgb(pointColour(label, problem));
      ctx.fill();
      ctx.lineWidth = 1;
      ctx.strokeStyle = '#fff';
      ctx.stroke();
    }
    ctx.restore();
    this.note.textContent = `Epoch ${r.epoch}: layer ${r.layer + 1} (${r.activation}), neurons ${r.i + 1} and ${r.j + 1}; thick lines are x1 = 0 and x2 = 0.${r.diverged ? ' The run diverged.' : ''}`;
  }
}
