// A small DOM builder: the page sets text with textContent only, never HTML, so nothing a
// server, a pod or an audit record says can become markup.
//
// A text or an attribute may be lazy (a function, as i18n.ts's L(key) makes): it is worded now
// and again whenever the page's language changes. Only fixed labels are lazy: text the page sets
// later by hand (textContent, setAttribute) is redrawn by the code that set it, never here.

import { onLanguageChange } from './i18n';

export type Lazy = () => string;
type Child = Node | string | Lazy | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | Lazy | undefined>;

// The lazy texts on the page: each redraws its node while the node lives.
const lazyTexts = new Set<{ node: WeakRef<Node>; draw: (node: Node) => void }>();

function track(node: Node, draw: (node: Node) => void): void {
  draw(node);
  lazyTexts.add({ node: new WeakRef(node), draw });
}

onLanguageChange(() => {
  for (const entry of lazyTexts) {
    const node = entry.node.deref();
    if (node) entry.draw(node);
    else lazyTexts.delete(entry);
  }
});

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v as EventListener);
    } else if (typeof v === 'function') {
      const text = v as Lazy;
      // The drawing gets the node: a closure over it would keep it alive through the set.
      track(el, (node) => (node as Element).setAttribute(k, text()));
    } else if (k === 'class') {
      el.className = String(v);
    } else if (k === 'value' && 'value' in el) {
      (el as HTMLInputElement).value = String(v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, ...children);
  return el;
}

export function append(el: Element, ...children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    if (typeof c === 'function') {
      const node = document.createTextNode('');
      track(node, (text) => ((text as Text).data = c()));
      el.append(node);
    } else {
      el.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}
