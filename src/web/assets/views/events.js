// The live events panel: every event the network reports, newest first.
import { useEffect, useState } from '../vendor/hooks.mjs';
import { clear, currentStatus, latest, onStatus, subscribe } from '../bus.js';
import { clock, html, route } from '../lib.js';

const STATUS = { live: 'live', connecting: 'connecting…', down: 'disconnected' };

function What({ ev }) {
  const bits = [];
  if (ev.from) bits.push(html`<span>from ${ev.from}</span>`);
  if (ev.recipient) {
    bits.push(ev.type === 'delivered'
      ? html`<span>to <a href=${route('mailbox', ev.recipient)}>${ev.recipient}</a></span>`
      : html`<span>to ${ev.recipient}</span>`);
  }
  if (ev.session && ev.type.startsWith('session')) {
    bits.push(html`<a href=${route('session', ev.session)}>session ${ev.session}</a>`);
  }
  return html`<div class="ev-what">${bits.map((b, i) => html`${i ? ' ' : ''}${b}`)}</div>`;
}

export function EventsPanel() {
  const [, setTick] = useState(0);
  const [status, setStatus] = useState(currentStatus());
  useEffect(() => {
    const offEvents = subscribe(() => setTick(t => t + 1));
    const offStatus = onStatus(setStatus);
    // the stream may have opened (or spoken) between the first render and now
    setStatus(currentStatus());
    setTick(t => t + 1);
    return () => { offEvents(); offStatus(); };
  }, []);
  const events = latest();
  return html`
    <aside class="events" aria-label="Live events">
      <div class="events-head">
        <h2>Live events</h2>
        <span class=${`status ${status}`} title="Server-Sent Events from /api/v1/events">${STATUS[status] || status}</span>
        ${events.length > 0 && html`<button type="button" class="subtle small" onClick=${clear}>Clear</button>`}
      </div>
      ${events.length === 0
        ? html`<p class="muted small">Nothing yet. Send a message and watch it hop: received, queued, relayed, delivered.</p>`
        : html`<ol class="event-list">
            ${events.map(ev => html`
              <li key=${ev.key} class=${`ev ev-${ev.type}`}>
                <div class="ev-line">
                  <span class=${`badge ${ev.type}`}>${ev.type.replace('_', ' ')}</span>
                  <span class="ev-server">${ev.server || ''}</span>
                  <time datetime=${ev.time} class="ev-time">${clock(ev.time || new Date(ev.arrived).toISOString())}</time>
                </div>
                <${What} ev=${ev} />
                ${ev.reply && html`<div class="ev-reply mono">${ev.reply}</div>`}
              </li>`)}
          </ol>`}
    </aside>`;
}
