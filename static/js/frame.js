// Parse a binary frame: [u32 LE header length][JSON header][payload] (docs/protocol.md).
const TYPED = { uint8: Uint8Array, float32: Float32Array, int32: Int32Array, float64: Float64Array };

/** The payload of a frame whose header says `payload: "deflate-raw"`, inflated (the browser's
 * own DecompressionStream: asynchronous, hence `parseFrame` is too). */
async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  return new Response(stream).arrayBuffer();
}

export async function parseFrame(buf) {
  const view = new DataView(buf);
  const n = view.getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  let body = buf.slice(4 + n);
  if (header.payload === 'deflate-raw') body = await inflate(body);
  const arrays = {};
  for (const s of header.sections || []) {
    const T = TYPED[s.dtype];
    if (!T) continue;
    const count = s.shape.reduce((a, b) => a * b, 1);
    // copy: typed arrays need their offset aligned to the element size
    arrays[s.name] = new T(body.slice(s.offset, s.offset + count * T.BYTES_PER_ELEMENT));
  }
  return { header, arrays };
}

/** Split the flat `weights` section into per-layer {w: [[...]], b: [...]} (inputs x units). */
export function splitWeights(flat, nFeatures, units, outputs) {
  const sizes = [nFeatures, ...units];
  const outs = [...units, outputs];
  const layers = [];
  let o = 0;
  for (let l = 0; l < outs.length; l++) {
    const w = [];
    for (let i = 0; i < sizes[l]; i++) {
      w.push(Array.from(flat.subarray(o, o + outs[l])));
      o += outs[l];
    }
    layers.push({ w, b: null });
  }
  for (let l = 0; l < outs.length; l++) {
    layers[l].b = Array.from(flat.subarray(o, o + outs[l]));
    o += outs[l];
  }
  return layers;
}
