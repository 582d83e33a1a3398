// Metrics panel: accuracy / precision / recall / F1 and the confusion matrix (classification),
// MSE / MAE / R² (regression), from each frame's `metrics`.
import { CLASS_COLOURS, rgb } from './palette.js';

const f3 = (v) => (v == null || !Number.isFinite(v) ? '–' : v.toFixed(3));
const pct = (v) => (v == null || !Number.isFinite(v) ? '–' : `${(v * 100).toFixed(1)}%`);

function cell(tag, text, cls) {
  const c = document.createElement(tag);
  c.textContent = text;
  if (cls) c.className = cls;
  return c;
}

export class MetricsPanel {
  constructor(root) {
    this.root = root;
    this.key = '';
    this.stats = document.createElement('dl');
    this.stats.className = 'metric-list';
    this.matrix = document.createElement('table');
    this.matrix.className = 'confusion';
    this.matrix.setAttribute('aria-label', 'Confusion matrix');
    root.append(this.stats, this.matrix);
  }

  build(problem, k) {
    const key = `${problem}|${k}`;
    if (key === this.key) return;
    this.key = key;
    const rows = problem === 'regression'
      ? [['mse', 'MSE (test)'], ['mae', 'MAE (test)'], ['r2', 'R² (test)']]
      : [['train_accuracy', 'Accuracy (train)'], ['test_accuracy', 'Accuracy (test)'], ['precision', 'Precision'],
        ['recall', 'Recall'], ['f1', 'F1']];
    this.cells = {};
    this.stats.replaceChildren();
    for (const [name, label] of rows) {
      const dt = cell('dt', label);
      const dd = cell('dd', '–');
      dd.dataset.metric = name;
      this.cells[name] = dd;
      this.stats.append(dt, dd);
    }
    this.matrix.replaceChildren();
    this.matrix.hidden = problem === 'regression';
    this.mcells = [];
    if (problem === 'regression') return;
    const cap = document.createElement('caption');
    cap.textContent = 'Confusion matrix (test set)';
    const head = document.createElement('tr');
    head.append(cell('th', 'true ↓ pred →', 'corner'));
    for (let j = 0; j < k; j++) head.append(this.classHead(j, 'col'));
    const thead = document.createElement('thead');
    thead.append(head);
    const tbody = document.createElement('tbody');
    for (let i = 0; i < k; i++) {
      const tr = document.createElement('tr');
      tr.append(this.classHead(i, 'row'));
      const r = [];
      for (let j = 0; j < k; j++) {
        const td = cell('td', '0', i === j ? 'diag' : '');
        r.push(td);
        tr.append(td);
      }
      this.mcells.push(r);
      tbody.append(tr);
    }
    this.matrix.append(cap, thead, tbody);
  }

  classHead(j, scope) {
    const th = cell('th', `${j}`);
    th.scope = scope;
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.setAttribute('aria-hidden', 'true');
    sw.style.backgroundColor = rgb(CLASS_COLOURS[j % CLASS_COLOURS.length]);
    th.prepend(sw);
    return th;
  }

  update(metrics, problem, classes) {
    const k = problem === 'regression' ? 0 : Math.max(2, classes || 2);
    this.build(problem, k);
    for (const [name, el] of Object.entries(this.cells)) {
      const v = metrics[name];
      const t = name.includes('accuracy') ? pct(v) : f3(v);
      if (el.textContent !== t) el.textContent = t;
    }
    const conf = metrics.confusion || [];
    this.mcells.forEach((r, i) => r.forEach((td, j) => {
      const t = String(conf[i]?.[j] ?? 0);
      if (td.textContent !== t) td.textContent = t;
    }));
  }

  /** Recolour the class swatches (palette change). */
  recolour() { this.key = ''; }
}
