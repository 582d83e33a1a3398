// Export menu: model code (Keras / PyTorch / JAX) and weights (JSON / .npz) from the server
// over the websocket ({type: "export", format}), and the output heatmap as a PNG.
import { h } from './plot.js';

const FORMATS = [
  ['keras', 'Keras code', 'nnplay_keras.py', 'text/x-python'],
  ['pytorch', 'PyTorch code', 'nnplay_pytorch.py', 'text/x-python'],
  ['jax', 'JAX code', 'nnplay_jax.py', 'text/x-python'],
  ['json', 'Weights (JSON)', 'nnplay_weights.json', 'application/json'],
  ['npz', 'Weights (.npz)', 'nnplay_weights.npz', 'application/octet-stream'],
];

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** root: the <details> element; send(msg); canvas: the output canvas. Returns {onMessage}. */
export function setupExport(root, { send, canvas, showError }) {
  const list = h('div', { class: 'export-list', role: 'group', 'aria-label': 'Export formats' });
  for (const [format, label] of FORMATS) {
    list.append(h('button', { type: 'button', class: 'text-btn', onclick: () => { send({ type: 'export', format }); root.open = false; } }, label));
  }
  list.append(h('button', {
    type: 'button', class: 'text-btn',
    onclick: () => {
      root.open = false;
      canvas.toBlob((b) => (b ? saveBlob(b, 'nnplay_output.png') : showError('could not encode the PNG')), 'image/png');
    },
  }, 'Output (PNG)'));
  root.append(list);
  return {
    onMessage(msg) {
      const f = FORMATS.find((x) => x[0] === msg.format);
      if (!f) return;
      const [, , name, mime] = f;
      let blob;
      if (msg.format === 'npz') {
        const bin = atob(msg.content);
        const bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        blob = new Blob([bytes], { type: mime });
      } else {
        blob = new Blob([msg.content], { type: mime });
      }
      saveBlob(blob, name.replace('nnplay_', `nnplay_epoch${msg.epoch}_`));
    },
  };
}
