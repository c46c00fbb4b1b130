// An HTML mail made safe to show in <iframe sandbox="" srcdoc=...>.
//
// The guarantee is the frame itself: `sandbox` without allow-scripts means
// no script runs, whatever the mail holds, and the CSP put first in the
// document forbids every load but inline styles and data: images (the frame
// also inherits the dashboard's own CSP). On top of that the mail is
// cleaned here (parsed with DOMParser, which runs nothing and loads
// nothing): scripts, event handlers, frames, refreshes and remote resources
// are taken out, and links are kept as text with their address in a
// tooltip, so the frame never navigates anywhere and the browser has nothing
// to refuse (no console noise).
//
// Event handler attributes are renamed in the text before parsing: Chrome
// checks them against the page's CSP as soon as a parsed document holds
// them, and would log a refusal for each (the attributes never run either way).
// The same goes for inline styles when the page's own policy forbids them
// (the srcdoc frame inherits it): then they are left out, and the view says so.

export const FRAME_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

const DROP = 'script, noscript, iframe, frame, frameset, object, embed, applet, base, link, meta, portal, template';
const URL_ATTRS = ['src', 'srcset', 'background', 'poster', 'lowsrc', 'dynsrc', 'action', 'formaction', 'data', 'xlink:href', 'ping'];
const REMOTE_URL = /url\(\s*(['"]?)(?!\s*data:)[^)]*\1\s*\)/gi;

/** Whether a Content-Security-Policy header value lets inline styles apply. */
export function allowsInlineStyles(header) {
  if (!header) return true;
  // several policies (joined by commas) must all allow it
  return header.split(',').every(policy => {
    const directives = {};
    for (const d of policy.split(';')) {
      const [name, ...values] = d.trim().split(/\s+/);
      if (name) directives[name.toLowerCase()] = values;
    }
    const src = directives['style-src'] || directives['default-src'];
    return !src || src.includes("'unsafe-inline'");
  });
}

let policy = null;
const asked = fetch(location.pathname || '/', { cache: 'no-store' })
  .then(r => ({ inlineStyles: allowsInlineStyles(r.headers.get('content-security-policy')) }))
  .catch(() => ({ inlineStyles: false }))
  .then(p => { policy = p; return p; });

/** What the dashboard's own CSP allows the frame (it inherits it): null until known. */
export const framePolicy = () => policy;
export const whenFramePolicy = () => asked;

export function safeHtml(source, { inlineStyles = true } = {}) {
  const removed = { scripts: 0, remote: 0, links: 0, styles: 0 };
  let text = String(source);
  const rename = (re, to, count) => {
    for (let before = null; before !== text;) {
      before = text;
      text = text.replace(re, (...m) => { if (count) removed[count]++; return to(...m); });
    }
  };
  rename(/(<[a-z][^>]*?[\s/"'])on([a-z]+\s*=)/gi, (_, tag, rest) => `${tag}data-mailnet-blocked-on${rest}`);
  if (!inlineStyles) {
    text = text.replace(/<style[\s>][\s\S]*?<\/style\s*>/gi, () => { removed.styles++; return ''; });
    rename(/(<[a-z][^>]*?[\s/"'])style(\s*=)/gi, (_, tag, rest) => `${tag}data-mailnet-blocked-style${rest}`, 'styles');
  }
  const doc = new DOMParser().parseFromString(text, 'text/html');
  for (const el of doc.querySelectorAll(DROP)) {
    if (el.localName === 'script') removed.scripts++;
    el.remove();
  }
  for (const form of doc.querySelectorAll('form')) form.replaceWith(...form.childNodes);
  for (const el of doc.querySelectorAll('*')) {
    for (const attr of [...el.attributes]) {
      const name = attr.name.toLowerCase();
      const value = attr.value.trim();
      if (name.startsWith('data-mailnet-blocked-style')) {
        el.removeAttribute(attr.name);
      } else if (name.startsWith('on') || name.startsWith('data-mailnet-blocked-on')) {
        el.removeAttribute(attr.name);
        removed.scripts++;
      } else if (URL_ATTRS.includes(name)) {
        if (!/^data:image\//i.test(value)) {
          el.removeAttribute(attr.name);
          if (value) removed.remote++;
        }
      } else if (name === 'href') {
        el.removeAttribute(attr.name);
        if (el.localName === 'a' && value) {
          el.setAttribute('title', value);
          removed.links++;
        }
      } else if (name === 'style' && REMOTE_URL.test(value)) {
        el.setAttribute('style', value.replace(REMOTE_URL, 'none'));
        removed.remote++;
      }
      REMOTE_URL.lastIndex = 0;
    }
    if (el.localName === 'style' && REMOTE_URL.test(el.textContent)) {
      el.textContent = el.textContent.replace(REMOTE_URL, 'none').replace(/@import[^;]*;/gi, '');
      removed.remote++;
    }
    REMOTE_URL.lastIndex = 0;
  }
  const head = doc.head || doc.documentElement.insertBefore(doc.createElement('head'), doc.body);
  const csp = doc.createElement('meta');
  csp.setAttribute('http-equiv', 'Content-Security-Policy');
  csp.setAttribute('content', FRAME_CSP);
  const charset = doc.createElement('meta');
  charset.setAttribute('charset', 'utf-8');
  head.prepend(csp, charset);
  return { html: '<!doctype html>\n' + doc.documentElement.outerHTML, removed };
}
