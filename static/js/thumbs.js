// Client-side pictures: dataset thumbnails (procedural look-alikes) and feature functions.
import { drawPoints, drawFunction } from './heatmap.js';

export const FEATURES = [
  { name: 'x1', label: 'X₁', f: (a) => a },
  { name: 'x2', label: 'X₂', f: (a, b) => b },
  { name: 'x1_sq', label: 'X₁²', f: (a) => a * a },
  { name: 'x2_sq', label: 'X₂²', f: (a, b) => b * b },
  { name: 'x1x2', label: 'X₁X₂', f: (a, b) => a * b },
  { name: 'sin_x1', label: 'sin(X₁)', f: (a) => Math.sin(a) },
  { name: 'sin_x2', label: 'sin(X₂)', f: (a, b) => Math.sin(b) },
];

export const DATASETS = {
  classification: [
    ['circle', 'Circle'], ['xor', 'Exclusive or'], ['gauss', 'Gaussian'], ['spiral', 'Spiral'],
    ['moons', 'Moons'], ['checkerboard', 'Checkerboard'], ['blobs', 'Blobs'],
  ],
  regression: [['plane', 'Plane'], ['multigauss', 'Multi Gaussian']],
};

// deterministic pseudo-random numbers so thumbnails never flicker
function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 4294967296);
}

function sample(name) {
  const r = rng(7);
  const u = (a, b) => a + (b - a) * r();
  const g = () => Math.sqrt(-2 * Math.log(r() + 1e-9)) * Math.cos(2 * Math.PI * r());
  const pts = [];
  const N = 120;
  for (let k = 0; k < N; k++) {
    switch (name) {
      case 'circle': {
        const inner = k % 2 === 0;
        const rad = inner ? u(0, 2.5) : u(3.5, 5);
        const t = u(0, 2 * Math.PI);
        pts.push([rad * Math.sin(t), rad * Math.cos(t), inner ? 1 : 0]);
        break;
      }
      case 'xor': {
        const x = u(-5, 5), y = u(-5, 5);
        pts.push([x + Math.sign(x) * 0.3, y + Math.sign(y) * 0.3, x * y >= 0 ? 1 : 0]);
        break;
      }
      case 'gauss': {
        const c = k % 2 ? 2 : -2;
        pts.push([c + g(), c + g(), k % 2]);
        break;
      }
      case 'spiral': {
        const i = k >> 1, d = k % 2 ? 0 : Math.PI;
        const rad = i / (N / 2) * 5, t = 1.75 * i / (N / 2) * 2 * Math.PI + d;
        pts.push([rad * Math.sin(t), rad * Math.cos(t), k % 2]);
        break;
      }
      case 'moons': {
        const t = u(0, Math.PI);
        pts.push(k % 2 ? [2.5 * Math.cos(t) - 1.2, 2.5 * Math.sin(t) - 0.6, 1] : [2.5 - 2.5 * Math.cos(t) - 1.3, 0.6 - 2.5 * Math.sin(t) + 0.6, 0]);
        break;
      }
      case 'checkerboard': {
        const x = u(-5.5, 5.5), y = u(-5.5, 5.5);
        pts.push([x, y, (Math.floor(x / 2.75) + Math.floor(y / 2.75)) % 2 === 0 ? 1 : 0]);
        break;
      }
      case 'blobs': {
        const c = k % 4, cx = [-3, 3, -3, 3][c], cy = [3, 3, -3, -3][c];
        pts.push([cx + g() * 0.9, cy + g() * 0.9, c]);
        break;
      }
      case 'plane': {
        const x = u(-5, 5), y = u(-5, 5);
        pts.push([x, y, Math.max(-1, Math.min(1, (x + y) / 10))]);
        break;
      }
      case 'multigauss': {
        const c = k % 4, cx = [-3, 3, -3, 3][c], cy = [3, 3, -3, -3][c];
        pts.push([cx + g(), cy + g(), [1, -1, -1, 1][c] * 0.8]);
        break;
      }
      default:
        break;
    }
  }
  return pts;
}

export function drawDatasetThumb(canvas, name, problem) {
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#f7f7f7';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  drawPoints(canvas, sample(name), { problem, radius: canvas.width / 28, stroke: 0 });
}

export function drawFeatureThumb(canvas, f) {
  drawFunction(canvas, f);
}
