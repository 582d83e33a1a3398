// "Share" dialog: the current link, an <iframe> snippet (embed=1) and which controls to hide.

/** Controls that a shared page can hide: [data-ctl name, label]. */
const HIDEABLE = [
  ['learningRate', 'Learning rate'], ['activation', 'Activation'], ['regularization', 'Regularization'],
  ['regularizationRate', 'Regularization rate'], ['problem', 'Problem type'], ['optimizer', 'Optimizer'],
  ['speed', 'Speed'], ['advanced', 'Advanced'], ['classes', 'Classes'], ['trainRatio', 'Ratio of training data'],
  ['noise', 'Noise'], ['batchSize', 'Batch size'], ['regenerate', 'Regenerate'], ['csv', 'Data download and upload'],
  ['layers', 'Add and remove layers'], ['showTest', 'Show test data'], ['discretize', 'Discretize output'],
];

export class ShareDialog {
  constructor(dialog) {
    this.dialog = dialog;
    const $ = (sel) => dialog.querySelector(sel);
    this.link = $('#share-link');
    this.snippet = $('#share-snippet');
    this.copied = $('#share-copied');
    const list = $('#share-hide');
    for (const [name, label] of HIDEABLE) {
      const l = document.createElement('label');
      l.className = 'check';
      const cb = document.createElement('input');
      cb.type = 'checkbox';
      cb.value = name;
      cb.addEventListener('change', () => this.render());
      l.append(cb, ` Hide ${label}`);
      list.append(l);
    }
    this.boxes = [...list.querySelectorAll('input')];
    $('#share-copy').addEventListener('click', () => this.copy());
    $('#share-close').addEventListener('click', () => dialog.close());
  }

  open() {
    this.render();
    this.copied.textContent = '';
    this.dialog.showModal();
  }

  /** The page's hash without flags that only make sense locally, plus the chosen _hide keys. */
  params(embed) {
    const p = new URLSearchParams(location.hash.replace(/^#/, ''));
    for (const k of [...p.keys()]) if (k.endsWith('_hide') || k === 'embed' || k === 'room') p.delete(k);
    for (const b of this.boxes) if (b.checked) p.set(`${b.value}_hide`, 'true');
    if (embed) p.set('embed', '1');
    return p.toString().replace(/%2C/g, ',');
  }

  render() {
    const base = `${location.origin}${location.pathname}`;
    this.link.value = `${base}#${this.params(false)}`;
    const src = `${base}#${this.params(true)}`.replace(/"/g, '%22');
    this.snippet.value = `<iframe src="${src}" width="960" height="540" title="nnplay neural network playground" loading="lazy"></iframe>`;
  }

  async copy() {
    const text = this.snippet.value;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      this.snippet.select();
      document.execCommand?.('copy');
    }
    this.copied.textContent = 'Copied';
  }
}
