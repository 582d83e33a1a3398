// Colours shared by the heatmaps, points, links and chart (TensorFlow Playground's palette),
// and a colour-blind-safe alternative (Okabe–Ito). setPalette() swaps them in place, so every
// module that imported the arrays sees the change.
const DEFAULT = {
  orange: [245, 147, 34], blue: [8, 119, 189],
  classes: [[245, 147, 34], [8, 119, 189], [44, 160, 44], [214, 39, 40], [148, 103, 189]],
};
const SAFE = {
  orange: [230, 159, 0], blue: [0, 114, 178],
  classes: [[230, 159, 0], [0, 114, 178], [0, 158, 115], [204, 121, 167], [86, 180, 233]],
};

export const ORANGE = [...DEFAULT.orange];
export const WHITE = [232, 234, 235];
export const BLUE = [...DEFAULT.blue];
export const CLASS_COLOURS = DEFAULT.classes.map((c) => [...c]);

// 256-entry lookup: byte 0 = -1 (orange), 128 = 0 (white), 255 = +1 (blue).
export const DIVERGING = new Uint8ClampedArray(256 * 3);
function buildLut() {
  for (let v = 0; v < 256; v++) {
    const t = v / 255 * 2 - 1;
    const [a, b, k] = t < 0 ? [WHITE, ORANGE, -t] : [WHITE, BLUE, t];
    for (let c = 0; c < 3; c++) DIVERGING[v * 3 + c] = a[c] + (b[c] - a[c]) * k;
  }
}
buildLut();

export const rgb = (c, a = 1) => `rgba(${c[0]},${c[1]},${c[2]},${a})`;

/** Switch between the default and the colour-blind-safe palette. */
export function setPalette(safe) {
  const p = safe ? SAFE : DEFAULT;
  ORANGE.splice(0, 3, ...p.orange);
  BLUE.splice(0, 3, ...p.blue);
  p.classes.forEach((c, k) => { CLASS_COLOURS[k] = [...c]; });
  buildLut();
  const root = document.documentElement.style;
  root.setProperty('--orange', `rgb(${ORANGE.join(',')})`);
  root.setProperty('--blue', `rgb(${BLUE.join(',')})`);
}

/** Colour of a value in [-1, 1] on the diverging palette. */
export function diverging(t) {
  const v = Math.max(0, Math.min(255, Math.round((t + 1) / 2 * 255)));
  return [DIVERGING[v * 3], DIVERGING[v * 3 + 1], DIVERGING[v * 3 + 2]];
}
