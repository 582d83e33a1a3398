// Colours shared by the heatmaps, points, links and chart (TensorFlow Playground's palette).
export const ORANGE = [245, 147, 34];
export const WHITE = [232, 234, 235];
export const BLUE = [8, 119, 189];
export const CLASS_COLOURS = [[245, 147, 34], [8, 119, 189], [44, 160, 44], [214, 39, 40], [148, 103, 189]];

// 256-entry lookup: byte 0 = -1 (orange), 128 = 0 (white), 255 = +1 (blue).
export const DIVERGING = (() => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let v = 0; v < 256; v++) {
    const t = v / 255 * 2 - 1;
    const [a, b, k] = t < 0 ? [WHITE, ORANGE, -t] : [WHITE, BLUE, t];
    for (let c = 0; c < 3; c++) lut[v * 3 + c] = a[c] + (b[c] - a[c]) * k;
  }
  return lut;
})();

export const rgb = (c, a = 1) => `rgba(${c[0]},${c[1]},${c[2]},${a})`;

/** Colour of a value in [-1, 1] on the diverging palette. */
export function diverging(t) {
  const v = Math.max(0, Math.min(255, Math.round((t + 1) / 2 * 255)));
  return [DIVERGING[v * 3], DIVERGING[v * 3 + 1], DIVERGING[v * 3 + 2]];
}
