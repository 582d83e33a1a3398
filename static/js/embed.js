// embed=1: the page sits in someone else's page (a slide deck, a course page). Its keyboard
// shortcuts are off, and every keydown it does not use is forwarded to the parent window, so
// a presentation keeps its ←, →, space, PageUp and PageDown while the embed has the focus:
//   window.parent.postMessage({type: 'nnplay:key', key, code, shiftKey, ctrlKey, altKey, metaKey, repeat}, '*')
// Keys typed into a text field, a select or a slider are the control's and are not forwarded
// (nothing typed leaves the page). Space on a button is forwarded instead of pressing it
// (Enter still presses buttons).

/** Whether a keydown belongs to the focused control (typing, choosing, sliding). */
function usedByControl(ev) {
  const t = ev.target;
  if (!(t instanceof HTMLElement)) return false;
  if (t.isContentEditable || t.matches('textarea, select')) return true;
  if (t.matches('input')) return !['checkbox', 'radio', 'button', 'submit', 'reset', 'file'].includes(t.type) || ev.key === ' ';
  if (t.closest('dialog')) return true; // the share dialog: Escape, Tab, Enter are its own
  return ev.key === 'Enter' || ev.key === 'Tab';
}

export function forwardKeys(target = window.parent) {
  if (target === window) return; // not framed: nobody to forward to
  document.addEventListener('keydown', (ev) => {
    if (ev.defaultPrevented || usedByControl(ev)) return;
    if (ev.key === ' ') ev.preventDefault(); // do not press the focused button (or scroll)
    const { key, code, shiftKey, ctrlKey, altKey, metaKey, repeat } = ev;
    target.postMessage({ type: 'nnplay:key', key, code, shiftKey, ctrlKey, altKey, metaKey, repeat }, '*');
  });
}
