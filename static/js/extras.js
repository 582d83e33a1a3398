// Wires the panels beyond TensorFlow Playground's core: Advanced settings, metrics and charts,
// speed, CSV data, the share dialog and the palette. main.js calls the returned hooks.
import { Advanced } from './advanced.js';
import { MetricsPanel } from './metrics.js';
import { LossChart, LineChart } from './chart.js';
import { toCSV, download, parseCSV } from './csvdata.js';
import { ShareDialog } from './share.js';
import { setPalette } from './palette.js';
import { forwardKeys } from './embed.js';

const $ = (id) => document.getElementById(id);

/**
 * ctx: {app, send(msg), patch(p), showError(text), view, setView(k, v), redraw()}
 */
export function setupExtras(ctx) {
  const { app } = ctx;
  const advanced = new Advanced($('advanced-panel'), ctx.patch);
  const metrics = new MetricsPanel($('metrics'));
  const charts = [
    new LossChart($('chart')),
    new LineChart($('acc-chart'), {
      series: [{ field: 'train_accuracy', label: 'train', colour: '--chart-train' }, { field: 'test_accuracy', label: 'test', colour: '--chart-test' }],
      format: (v) => `${(v * 100).toFixed(1)}%`, tick: (v) => `${Math.round(v * 100)}%`, yMin: 0, yMax: 1,
    }),
    new LineChart($('lr-chart'), {
      series: [{ field: 'learning_rate', label: 'learning rate', colour: '--blue' }],
      format: (v) => v.toPrecision(3), yMin: 0,
    }),
  ];

  // speed: a page setting kept in the URL (view.speed); the server is told on every (re)connect
  const speedOf = () => ctx.view.speed ?? 'auto';
  const sendSpeed = () => ctx.send({ type: 'speed', epochs_per_frame: speedOf() });
  $('speed').addEventListener('change', (e) => {
    const v = e.target.value;
    ctx.setView('speed', v === 'auto' ? 'auto' : Number(v));
    sendSpeed();
  });

  if (document.body.classList.contains('embed')) forwardKeys();

  // CSV
  $('csv-download').addEventListener('click', () => {
    download(`nnplay-${app.cfg?.dataset || 'data'}.csv`, toCSV(app.points));
  });
  $('csv-upload').addEventListener('change', async (e) => {
    const file = e.target.files?.[0];
    e.target.value = '';
    if (!file || !app.cfg) return;
    const problem = app.cfg.problem;
    const { points, classes, errors } = parseCSV(await file.text(), { problem, maxPoints: app.maxPoints || 1000 });
    if (errors.length) { ctx.showError(`CSV: ${errors.join('; ')}`); return; }
    const config = { ...app.cfg, dataset: 'custom', points, classes };
    if (classes !== app.cfg.classes) Object.assign(config, { output_activation: undefined, loss: undefined });
    if (Array.isArray(config.class_weight)) delete config.class_weight;
    for (const k of Object.keys(config)) if (config[k] === undefined || config[k] === null) delete config[k];
    ctx.send({ type: 'config', config });
  });

  // share
  const share = new ShareDialog($('share-dialog'));
  $('share').addEventListener('click', () => share.open());

  // palette
  $('cbPalette').addEventListener('change', (e) => {
    setPalette(e.target.checked);
    metrics.recolour();
    ctx.setView('cbPalette', e.target.checked);
  });
  if (ctx.view.cbPalette) setPalette(true);

  let pendingBatch = null; // slider moved but not yet released
  function syncBatch() {
    const n = app.points.train.length || 1;
    const el = $('batchSize');
    el.max = String(n);
    if (pendingBatch != null) { el.value = pendingBatch; return; }
    const full = app.cfg.batch_size >= n;
    el.value = String(Math.min(n, app.cfg.batch_size));
    $('batchSize-out').textContent = full ? 'full batch' : String(app.cfg.batch_size);
  }
  $('batchSize').addEventListener('change', () => { pendingBatch = null; });
  $('batchSize').addEventListener('input', (e) => {
    pendingBatch = e.target.value;
    if (Number(e.target.value) >= Number(e.target.max)) $('batchSize-out').textContent = 'full batch';
  });

  return {
    charts,
    /** After controls.sync: mirror the config into the extra controls. */
    sync(view, { force = false } = {}) {
      if (force) pendingBatch = null;
      advanced.sync(app.cfg, { maxPoints: app.maxPoints, force });
      $('cbPalette').checked = !!view.cbPalette;
      syncBatch();
    },
    onState(msg) {
      if (msg.server?.chunk) {
        for (const o of $('speed').options) o.disabled = o.value !== 'auto' && Number(o.value) > msg.server.chunk;
      }
      // the page's speed wins: a fresh (or restarted) server session starts at 'auto'
      if (app.awaitingFirstState && String(msg.speed) !== String(speedOf())) sendSpeed();
      $('speed').value = String(speedOf());
    },
    onFrame(h) {
      if (h.history?.length) for (const c of charts) c.add(h.history, app.historyFields);
      if (h.epoch === 0 && !h.history?.length) for (const c of charts) c.clear();
    },
    render() {
      metrics.update(app.metrics || {}, app.cfg?.problem || 'classification', app.lastFrame?.header.classes || app.cfg?.classes);
      for (const c of charts) c.draw();
    },
    clearCharts() {
      for (const c of charts) { c.clear(); c.draw(); }
    },
  };
}
