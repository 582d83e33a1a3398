// Draw uint8 grids onto canvases with the diverging palette; overlay data points.
import { DIVERGING, CLASS_COLOURS, WHITE, rgb, diverging } from './palette.js';

const DOMAIN = 6; // x1, x2 in [-6, 6]

/** Paint an (n, n) uint8 grid into an n x n ImageData; optional discretisation. */
export function gridImage(ctx, bytes, n, { discretize = false, classes = null, k = 2 } = {}) {
  const img = ctx.createImageData(n, n);
  const d = img.data;
  for (let p = 0; p < n * n; p++) {
    let v = bytes[p];
    if (classes) {
      const c = CLASS_COLOURS[classes[p] % CLASS_COLOURS.length];
      // confidence 1/k..1 -> 0..1 blend from white to the class colour
      let a = discretize ? 1 : Math.max(0, (v / 255 - 1 / k) / (1 - 1 / k));
      a = 0.15 + 0.85 * a;
      for (let ch = 0; ch < 3; ch++) d[p * 4 + ch] = WHITE[ch] + (c[ch] - WHITE[ch]) * a;
    } else {
      if (discretize) v = v >= 128 ? 255 : 0;
      d[p * 4] = DIVERGING[v * 3];
      d[p * 4 + 1] = DIVERGING[v * 3 + 1];
      d[p * 4 + 2] = DIVERGING[v * 3 + 2];
    }
    d[p * 4 + 3] = 255;
  }
  return img;
}

const scratch = new Map();
function scratchCanvas(n) {
  if (!scratch.has(n)) {
    const c = document.createElement('canvas');
    c.width = c.height = n;
    scratch.set(n, c);
  }
  return scratch.get(n);
}

/** Draw a grid scaled to fill `canvas` (smoothly interpolated). */
export function drawGrid(canvas, bytes, n, opts = {}) {
  const ctx = canvas.getContext('2d');
  const s = scratchCanvas(n);
  const sctx = s.getContext('2d');
  sctx.putImageData(gridImage(sctx, bytes, n, opts), 0, 0);
  ctx.imageSmoothingEnabled = !opts.discretize;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(s, 0, 0, canvas.width, canvas.height);
}

export function toCanvas(canvas, x1, x2) {
  return [(x1 + DOMAIN) / (2 * DOMAIN) * canvas.width, (DOMAIN - x2) / (2 * DOMAIN) * canvas.height];
}

export function fromCanvas(canvas, px, py) {
  return [px / canvas.width * 2 * DOMAIN - DOMAIN, DOMAIN - py / canvas.height * 2 * DOMAIN];
}

export function pointColour(label, problem) {
  if (problem === 'regression') return diverging(label);
  const c = label < 0 ? 0 : Math.round(label);
  return CLASS_COLOURS[c % CLASS_COLOURS.length];
}

/** Draw points [[x1, x2, label], ...]; test points get a dark ring. */
export function drawPoints(canvas, points, { problem = 'classification', test = false, radius = 3, stroke = 1 } = {}) {
  const ctx = canvas.getContext('2d');
  for (const [x1, x2, label] of points) {
    const [x, y] = toCanvas(canvas, x1, x2);
    ctx.beginPath();
    ctx.arc(x, y, radius, 0, Math.PI * 2);
    ctx.fillStyle = rgb(pointColour(label, problem));
    ctx.fill();
    if (stroke > 0) {
      ctx.lineWidth = stroke * (test ? 1.6 : 1);
      ctx.strokeStyle = test ? '#111' : '#fff';
      ctx.stroke();
    }
  }
}

/** A small procedural picture of a feature f(x1, x2), normalised to [-1, 1]. */
export function drawFunction(canvas, f) {
  const n = 24;
  const vals = new Float32Array(n * n);
  let m = 1e-9;
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      const x1 = (c + 0.5) / n * 2 * DOMAIN - DOMAIN;
      const x2 = DOMAIN - (r + 0.5) / n * 2 * DOMAIN;
      const v = f(x1, x2);
      vals[r * n + c] = v;
      m = Math.max(m, Math.abs(v));
    }
  }
  const bytes = new Uint8Array(n * n);
  for (let p = 0; p < n * n; p++) bytes[p] = Math.round((vals[p] / m + 1) / 2 * 255);
  drawGrid(canvas, bytes, n);
}
