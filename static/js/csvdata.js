import { saveBlob } from './views/export.js';
// Data as CSV: download the current points, parse an uploaded file (x1,x2,label[,subset]).

/** points: {train: [[x1, x2, label]], test: [...]} -> CSV text. */
export function toCSV(points) {
  const lines = ['x1,x2,label,subset'];
  for (const subset of ['train', 'test']) {
    for (const [x1, x2, label] of points[subset] || []) lines.push(`${x1},${x2},${label},${subset}`);
  }
  return lines.join('\n') + '\n';
}

export function download(name, text) {
  saveBlob(new Blob([text], { type: 'text/csv' }), name);
}

/**
 * Parse and validate CSV text. Returns {points, classes, errors}: errors name the line.
 * problem: 'classification' (labels are classes 0..4, -1 = class 0) or 'regression' (-1..1).
 */
export function parseCSV(text, { problem = 'classification', maxPoints = 1000 } = {}) {
  const errors = [];
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  if (!lines.length) return { points: [], classes: 2, errors: ['the file is empty'] };
  const head = lines[0].split(',').map((h) => h.trim().toLowerCase());
  const col = (n) => head.indexOf(n);
  if (col('x1') < 0 || col('x2') < 0 || col('label') < 0) {
    return { points: [], classes: 2, errors: ['the first line must be the header x1,x2,label[,subset]'] };
  }
  const points = [];
  let maxLabel = 0;
  for (let n = 1; n < lines.length && errors.length < 5; n++) {
    const parts = lines[n].split(',').map((p) => p.trim());
    const [x1, x2, label] = ['x1', 'x2', 'label'].map((k) => Number(parts[col(k)]));
    const where = `line ${n + 1}`;
    if (![x1, x2, label].every((v) => Number.isFinite(v)) || [x1, x2, label].some((v, k) => parts[col(['x1', 'x2', 'label'][k])] === '')) {
      errors.push(`${where}: x1, x2 and label must be numbers`);
      continue;
    }
    if (Math.abs(x1) > 6 || Math.abs(x2) > 6) { errors.push(`${where}: x1 and x2 must be in [-6, 6]`); continue; }
    if (problem === 'regression') {
      if (label < -1 || label > 1) { errors.push(`${where}: a regression label must be in [-1, 1]`); continue; }
    } else if (!Number.isInteger(label) || label < -1 || label > 4) {
      errors.push(`${where}: label must be a class 0..4 (or -1 for class 0)`);
      continue;
    }
    const p = { x1, x2, label };
    if (col('subset') >= 0 && parts[col('subset')]) {
      const s = parts[col('subset')].toLowerCase();
      if (s !== 'train' && s !== 'test') { errors.push(`${where}: subset must be train or test`); continue; }
      p.subset = s;
    }
    maxLabel = Math.max(maxLabel, label);
    points.push(p);
  }
  if (!errors.length && !points.length) errors.push('the file holds no points');
  if (points.length > maxPoints) errors.push(`at most ${maxPoints} points, got ${points.length}`);
  return { points, classes: problem === 'regression' ? 2 : Math.max(2, maxLabel + 1), errors };
}
