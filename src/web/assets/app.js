// The mailnet dashboard: a hash-routed Preact app (no build step).
//   #/                   the network: servers, ports, DNS records, mailboxes
//   #/mailbox/ADDRESS    a mailbox's messages
//   #/message/ID         a message: text, HTML, headers, raw, attachments, its path
//   #/queue              the outgoing queues with retry state
//   #/sessions           recorded SMTP/POP3 sessions; #/session/ID a transcript
//   #/runs               scenario runs (mailnet test --web)
import { render } from './vendor/preact.mjs';
import { useEffect, useState } from './vendor/hooks.mjs';
import { html } from './lib.js';
import { start } from './bus.js';
import { EventsPanel } from './views/events.js';
import { Network } from './views/network.js';
import { Mailbox } from './views/mailbox.js';
import { Message } from './views/message.js';
import { Queue } from './views/queue.js';
import { Session, Sessions } from './views/sessions.js';
import { Runs } from './views/runs.js';

function parse(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(p => p !== '');
  try {
    return parts.map(decodeURIComponent);
  } catch {
    return parts;
  }
}

function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const f = () => setHash(location.hash);
    addEventListener('hashchange', f);
    return () => removeEventListener('hashchange', f);
  }, []);
  return hash;
}

function page(parts) {
  const [name, arg] = parts;
  switch (name) {
    case undefined: return { nav: 'network', title: 'Network', view: html`<${Network} />` };
    case 'mailbox': return { nav: 'network', title: arg, view: html`<${Mailbox} address=${arg} />` };
    case 'message': return { nav: 'network', title: 'Message', view: html`<${Message} id=${arg} />` };
    case 'queue': return { nav: 'queue', title: 'Queue', view: html`<${Queue} />` };
    case 'sessions': return { nav: 'sessions', title: 'Sessions', view: html`<${Sessions} />` };
    case 'session': return { nav: 'sessions', title: 'Session', view: html`<${Session} id=${arg} />` };
    case 'runs': return { nav: 'runs', title: 'Scenario runs', view: html`<${Runs} />` };
    default: return {
      nav: null, title: 'Not found',
      view: html`<section><h1>Nothing here</h1><p>No page at <code>${location.hash}</code>. <a href="#/">Back to the network</a>.</p></section>`,
    };
  }
}

// the panel's state survives a reload (when the browser keeps local storage)
function remembered(key) {
  try { return localStorage.getItem(key); } catch { return null; }
}
function remember(key, value) {
  try { localStorage.setItem(key, value); } catch { /* not kept */ }
}

const NAV = [['network', '#/', 'Network'], ['queue', '#/queue', 'Queue'], ['sessions', '#/sessions', 'Sessions'], ['runs', '#/runs', 'Runs']];

function App() {
  const hash = useHash();
  const parts = parse(hash);
  const { nav, title, view } = page(parts);
  const [showEvents, setShowEvents] = useState(() => remembered('mailnet.events') !== 'hidden');
  const toggleEvents = () => {
    remember('mailnet.events', showEvents ? 'hidden' : 'shown');
    setShowEvents(!showEvents);
  };
  useEffect(() => { document.title = `${title} · mailnet`; }, [title]);
  useEffect(() => { window.scrollTo(0, 0); }, [hash]);
  return html`
    <header class="topbar">
      <a class="brand" href="#/"><img src="favicon.svg" alt="" width="22" height="22" /> mailnet</a>
      <nav aria-label="Main">
        ${NAV.map(([key, href, label]) => html`
          <a href=${href} class=${key === nav ? 'active' : ''} aria-current=${key === nav ? 'page' : undefined}>${label}</a>`)}
      </nav>
      <button type="button" class="events-toggle" aria-pressed=${String(showEvents)} onClick=${toggleEvents}>
        ${showEvents ? 'Hide events' : 'Show events'}
      </button>
    </header>
    <div class=${showEvents ? 'layout with-events' : 'layout'}>
      <main id="main">${view}</main>
      ${showEvents && html`<${EventsPanel} />`}
    </div>`;
}

start();
render(html`<${App} />`, document.getElementById('app'));
