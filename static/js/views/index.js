// Teaching views: a tab strip ("Playground", "Backprop", …) and one panel per view. Training
// views (lr, gradients, overfit, imbalance, hidden) replace the output column beside the network;
// self-contained ones (backprop, optimizers) take the whole board.
import { BackpropView } from './backprop.js';
import { LrView } from './lr.js';
import { OptimizersView } from './optimizers.js';
import { GradientsView } from './gradients.js';
import { OverfitView } from './overfit.js';
import { ImbalanceView } from './imbalance.js';
import { HiddenView } from './hidden.js';

export const VIEWS = [
  { name: 'playground', title: 'Playground' },
  { name: 'backprop', title: 'Backprop', make: (c) => new BackpropView(c), full: true },
  { name: 'lr', title: 'Learning rate', make: (c) => new LrView(c) },
  { name: 'optimizers', title: 'Optimizers', make: (c) => new OptimizersView(c), full: true },
  { name: 'gradients', title: 'Gradients', make: (c) => new GradientsView(c) },
  { name: 'overfit', title: 'Overfitting', make: (c) => new OverfitView(c) },
  { name: 'imbalance', title: 'Imbalance', make: (c) => new ImbalanceView(c) },
  { name: 'hidden', title: 'Hidden space', make: (c) => new HiddenView(c) },
];
// preset views without a tab of their own
const ALIASES = { metrics: 'imbalance' };

/**
 * ctx: {app, flags, patch(p), send(msg), showError(text), onChange(name)}
 * els: {tabs: the tablist element, panel: the tabpanel element, board}
 */
export function setupViews(ctx, els) {
  const live = new Map();
  const tabs = new Map();
  let current = 'playground';
  for (const v of VIEWS) {
    const b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('role', 'tab');
    b.id = `tab-${v.name}`;
    b.textContent = v.title;
    b.setAttribute('aria-controls', v.name === 'playground' ? els.board.id : els.panel.id);
    b.addEventListener('click', () => open(v.name));
    tabs.set(v.name, b);
    els.tabs.append(b);
  }
  els.tabs.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowRight' && ev.key !== 'ArrowLeft') return;
    if (ctx.flags.embed) return; // arrows belong to the slide deck
    const names = VIEWS.map((v) => v.name);
    const k = (names.indexOf(current) + (ev.key === 'ArrowRight' ? 1 : names.length - 1)) % names.length;
    ev.preventDefault();
    ev.stopPropagation();
    open(names[k]);
    tabs.get(names[k]).focus();
  });

  function get(name) {
    if (!live.has(name)) {
      const spec = VIEWS.find((v) => v.name === name);
      if (!spec?.make) return null;
      live.set(name, spec.make(ctx));
    }
    return live.get(name);
  }

  // views that keep a client-side history listen to frames from the start
  setTimeout(() => { for (const n of ['gradients', 'overfit']) get(n); });

  function open(name, { silent = false } = {}) {
    name = ALIASES[name] || name;
    const spec = VIEWS.find((v) => v.name === name) || VIEWS[0];
    current = spec.name;
    for (const [n, b] of tabs) {
      b.setAttribute('aria-selected', String(n === current));
      b.tabIndex = n === current ? 0 : -1;
    }
    document.body.dataset.view = current;
    document.body.classList.toggle('view-full', !!spec.full);
    document.body.classList.toggle('view-side', !!spec.make && !spec.full);
    const v = get(current);
    els.panel.hidden = !v;
    if (v) {
      els.panel.setAttribute('aria-labelledby', `tab-${current}`);
      els.panel.replaceChildren(v.el);
      requestAnimationFrame(() => v.show?.());
    }
    if (!silent) ctx.onChange(current);
  }

  return {
    open,
    get current() { return current; },
    get(name) { return live.get(name); },
    onFrame(frame) {
      for (const v of live.values()) v.onFrame?.(frame);
    },
    render() {
      const v = live.get(current);
      if (v?.tick) v.tick();
      else if (v?.draw && current !== 'backprop' && current !== 'optimizers') v.draw();
    },
    onState(msg) { for (const v of live.values()) v.onState?.(msg); },
    onMessage(msg) { for (const v of live.values()) v.onMessage?.(msg); },
    reset() { for (const v of live.values()) v.reset?.(); },
    onKey(ev) {
      if (ctx.flags.embed) return false; // embedded in slides: the deck owns the arrow keys
      const v = live.get(current);
      return !!v?.onKey?.(ev);
    },
  };
}
