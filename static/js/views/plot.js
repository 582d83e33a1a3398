// A small x/y plot for the teaching views: linear or log axes, several series, vertical
// markers, a shaded band between two series, and an HTML legend (a list, so it is readable
// by screen readers and tests).
//   plot(canvas, {series: [{label, colour, points: [[x, y]], dash, width, marker}], logX, logY,
//                 xLabel, yLabel, marks: [{x, label, colour}], band: {lower, upper, colour}, xMin, xMax})

// Okabe–Ito, colour-blind safe
export const SAFE_COLOURS = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];

const tick = (v) => {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e4 || a < 1e-3) return v.toExponential(0).replace('e+', 'e');
  if (a >= 100) return v.toFixed(0);
  return String(Number(v.toPrecision(2)));
};

function niceTicks(lo, hi, n = 5) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const step0 = span / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) || mag * 10;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

function logTicks(lo, hi) {
  const out = [];
  const a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
  const every = Math.max(1, Math.ceil((b - a) / 6));
  for (let e = a; e <= b; e += every) { const v = 10 ** e; if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v); }
  return out.length ? out : [lo, hi];
}

/** Fit the canvas backing store to its CSS size; returns {ctx, W, H}. */
export function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const W = Math.max(60, canvas.clientWidth), H = Math.max(40, canvas.clientHeight);
  if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
    canvas.width = Math.round(W * dpr);
    canvas.height = Math.round(H * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  return { ctx, W, H };
}

export function plot(canvas, opts) {
  if (!canvas.clientWidth) return null;
  const { ctx, W, H } = fitCanvas(canvas);
  const { series = [], logX = false, logY = false, xLabel = '', yLabel = '', marks = [], band = null, empty = '' } = opts;
  const ok = (v, log) => v != null && Number.isFinite(v) && (!log || v > 0);
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of series) for (const [x, y] of s.points) {
    if (!ok(x, logX) || !ok(y, logY)) continue;
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (opts.xMin != null) x0 = opts.xMin;
  if (opts.xMax != null) x1 = opts.xMax;
  if (opts.yMin != null) y0 = Math.min(y0, opts.yMin);
  if (opts.yMax != null) y1 = Math.max(y1, opts.yMax);
  const L = 50, R = 12, T = 10, B = xLabel ? 34 : 22;
  const pw = W - L - R, ph = H - T - B;
  ctx.font = '11px Helvetica, Arial, sans-serif';
  if (!Number.isFinite(x0) || !Number.isFinite(y0)) {
    ctx.fillStyle = '#888';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(empty || 'no data yet', W / 2, H / 2);
    return null;
  }
  if (x1 <= x0) x1 = logX ? x0 * 10 : x0 + 1;
  if (y1 <= y0) { if (logY) { y0 /= 2; y1 = y0 * 4; } else { y1 = y0 + (Math.abs(y0) || 1); } }
  if (logY) { y0 /= 1.15; y1 *= 1.15; } else if (!opts.tightY) { const pad = (y1 - y0) * 0.05; y1 += pad; if (y0 !== 0) y0 -= pad; }
  const fx = logX ? (v) => Math.log10(v) : (v) => v;
  const fy = logY ? (v) => Math.log10(v) : (v) => v;
  const X = (v) => L + (fx(v) - fx(x0)) / (fx(x1) - fx(x0)) * pw;
  const Y = (v) => T + ph - (fy(Math.min(y1, Math.max(y0, v))) - fy(y0)) / (fy(y1) - fy(y0)) * ph;
  // grid + ticks
  ctx.strokeStyle = '#eee';
  ctx.fillStyle = '#666';
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const v of (logY ? logTicks(y0, y1) : niceTicks(y0, y1, 4))) {
    const y = Math.round(Y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(L + pw, y); ctx.stroke();
    ctx.fillText(tick(v), L - 5, y);
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const v of (logX ? logTicks(x0, x1) : niceTicks(x0, x1, 6))) {
    const x = Math.round(X(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(x, T); ctx.lineTo(x, T + ph); ctx.stroke();
    ctx.fillText(tick(v), x, T + ph + 4);
  }
  ctx.strokeStyle = '#999';
  ctx.beginPath(); ctx.moveTo(L + 0.5, T); ctx.lineTo(L + 0.5, T + ph + 0.5); ctx.lineTo(L + pw, T + ph + 0.5); ctx.stroke();
  if (xLabel) { ctx.fillStyle = '#444'; ctx.fillText(xLabel, L + pw / 2, T + ph + 18); }
  if (yLabel) {
    ctx.save(); ctx.translate(11, T + ph / 2); ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = 'middle'; ctx.fillStyle = '#444'; ctx.fillText(yLabel, 0, 0); ctx.restore();
  }
  ctx.save();
  ctx.beginPath(); ctx.rect(L, T - 2, pw + 2, ph + 4); ctx.clip();
  if (band) {
    // shade between two series sampled at the same x
    const lo = band.lower, hi = band.upper;
    ctx.fillStyle = band.colour || 'rgba(213,94,0,.18)';
    for (let i = 1; i < Math.min(lo.length, hi.length); i++) {
      const pts = [lo[i - 1], lo[i], hi[i], hi[i - 1]];
      if (pts.some(([x, y]) => !ok(x, logX) || !ok(y, logY))) continue;
      ctx.beginPath();
      pts.forEach(([x, y], k) => (k ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
      ctx.closePath(); ctx.fill();
    }
  }
  for (const s of series) {
    ctx.strokeStyle = s.colour;
    ctx.lineWidth = s.width || 1.8;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let on = false;
    for (const [x, y] of s.points) {
      if (!ok(x, logX) || !ok(y, logY)) { on = false; continue; }
      if (on) ctx.lineTo(X(x), Y(y)); else { ctx.moveTo(X(x), Y(y)); on = true; }
    }
    ctx.stroke();
    ctx.setLineDash([]);
    if (s.dots) {
      ctx.fillStyle = s.colour;
      for (const [x, y] of s.points) if (ok(x, logX) && ok(y, logY)) { ctx.beginPath(); ctx.arc(X(x), Y(y), 2, 0, 2 * Math.PI); ctx.fill(); }
    }
    if (s.endMarker && s.points.length) {
      const last = [...s.points].reverse().find(([x, y]) => ok(x, logX) && ok(y, logY));
      if (last) {
        ctx.fillStyle = s.colour;
        ctx.font = 'bold 13px Helvetica, Arial, sans-serif';
        ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
        ctx.fillText(s.endMarker, X(last[0]), Y(last[1]));
        ctx.font = '11px Helvetica, Arial, sans-serif';
      }
    }
  }
  ctx.restore();
  for (const m of marks) {
    if (!ok(m.x, logX)) continue;
    const x = Math.round(X(m.x)) + 0.5;
    ctx.strokeStyle = m.colour || '#D55E00';
    ctx.lineWidth = 1.5;
    ctx.setLineDash([5, 3]);
    ctx.beginPath(); ctx.moveTo(x, T); ctx.lineTo(x, T + ph); ctx.stroke();
    ctx.setLineDash([]);
    if (m.label) {
      ctx.fillStyle = m.colour || '#D55E00';
      ctx.textBaseline = 'top';
      ctx.textAlign = x > L + pw * 0.7 ? 'right' : 'left';
      ctx.fillText(m.label, x + (ctx.textAlign === 'left' ? 4 : -4), T + 2);
    }
  }
  return { X, Y, L, T, pw, ph };
}

/** Fill a <ul> legend: entries [{label, colour, dash, note}]. */
export function legend(ul, entries) {
  ul.replaceChildren(...entries.map((e) => {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = e.dash ? 'sw dashed' : 'sw';
    sw.setAttribute('aria-hidden', 'true');
    sw.style.borderColor = e.colour;
    li.append(sw, document.createTextNode(e.label));
    if (e.note) {
      const n = document.createElement('span');
      n.className = `note ${e.noteClass || ''}`;
      n.textContent = e.note;
      li.append(n);
    }
    return li;
  }));
}

/** Tiny DOM helper: h('div', {class: 'x', text: 'hi'}, ...children). */
export function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...kids.filter((k) => k != null));
  return el;
}

/** POST JSON; resolves {ok, data} — data.error carries the server's 422 message. */
export async function postJSON(url, body) {
  const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body ?? {}) });
  let data = null;
  try { data = await r.json(); } catch { data = { error: `${url}: HTTP ${r.status}` }; }
  if (!r.ok && !data?.error) data = { error: `${url}: HTTP ${r.status}` };
  return { ok: r.ok, data };
}
