// A message's path across the network, drawn as a sequence diagram: one
// column (lifeline) per server, one row per hop, in order. A message
// submitted at A shows as an arrow from its sender into A, "queued" as a
// note on A, "relayed" as an arrow from A to B carrying B's reply, then
// "delivered" (or "bounced") as a note on the server where it ended.
import { clock, html, route, useApi } from '../lib.js';

const SENDER = '\u0000sender';

/** "gmail-smtp-in.l.google.com[127.0.0.1:2125]" → "gmail-smtp-in.l.google.com" */
const hostPart = name => String(name).replace(/\[[^\]]*\]$/, '').replace(/\.$/, '');

/** The server a hop names (by name, domain, MX or host name), as its column key. */
function resolver(servers) {
  return name => {
    if (!name) return null;
    const n = hostPart(name).toLowerCase();
    const hit = servers.find(s => s.name.toLowerCase() === n)
      || servers.find(s => (s.domains || []).some(d => d.toLowerCase() === n))
      || servers.find(s => [s.mx, s.smtp_host, s.pop3_host].some(h => h && h.toLowerCase() === n));
    return hit ? hit.name : hostPart(name);
  };
}

/** "from [127.0.0.1] for …", "from host ([127.0.0.1])" → the client's address for the sender column. */
function senderOf(path) {
  const hop = path.find(h => h.event === 'received' && h.detail);
  if (!hop) return null;
  const m = /\[([^\]]+)\]/.exec(hop.detail) || /^from\s+(\S+)/.exec(hop.detail);
  return m ? m[1] : null;
}

export function layout(path, servers) {
  const lane = resolver(servers || []);
  const relayedTo = new Set(path.filter(h => h.event === 'relayed' && h.to).map(h => lane(h.to)));
  const columns = [];
  const add = key => { if (key != null && !columns.includes(key)) columns.push(key); };
  const rows = path.map(hop => {
    const at = lane(hop.server) || '?';
    if (hop.event === 'received' && !relayedTo.has(at)) {
      add(SENDER);
      add(at);
      return { hop, kind: 'arrow', from: SENDER, to: at };
    }
    add(at);
    if (hop.event === 'relayed' && hop.to) {
      const to = lane(hop.to);
      add(to);
      return { hop, kind: 'arrow', from: at, to };
    }
    return { hop, kind: 'note', at };
  });
  return { columns, rows };
}

function Label({ hop }) {
  const target = hop.event === 'relayed' && hop.to ? html` to <span class="mono">${hop.to}</span>` : '';
  const rcpt = hop.recipient && hop.event !== 'received' ? html`<span class="seq-detail">${hop.event === 'delivered' ? 'into' : 'for'} ${hop.recipient}</span>` : '';
  return html`
    <span class=${`badge ${hop.event}`}>${hop.event}</span>${target}
    ${rcpt}${hop.detail && html`<span class="seq-detail">${hop.detail}</span>`}
    ${hop.reply && html`<span class="seq-reply mono">${hop.reply}</span>`}`;
}

export function Path({ path, mailbox, from }) {
  const servers = useApi('/servers');
  const known = (servers.data && servers.data.servers) || [];
  if (!path.length) {
    return html`
      <section class="path">
        <h2>Path</h2>
        <p class="muted">No hops recorded for this message (it arrived before this process started, or another process handled it).</p>
      </section>`;
  }
  const { columns, rows } = layout(path, known);
  const index = key => columns.indexOf(key);
  const first = Date.parse(path[0].time);
  const sender = senderOf(path);
  const route_ = columns.filter(c => c !== SENDER);
  const end = path[path.length - 1];
  const outcome = end.event === 'bounced' ? 'bounced' : end.event === 'delivered' ? 'delivered' : 'in transit';
  const grid = {
    gridTemplateColumns: `minmax(6.5rem, max-content) repeat(${columns.length}, minmax(10rem, 1fr))`,
  };
  return html`
    <section class="path">
      <h2>Path</h2>
      <p class="route">
        ${route_.map((c, i) => html`${i ? html`<span class="arrow" aria-hidden="true"> → </span>` : ''}<span class="route-server">${c}</span>`)}
        <span class=${`badge ${outcome === 'in transit' ? 'queued' : outcome}`}>${outcome}</span>
        ${mailbox && end.event === 'delivered' && html`<span class="muted small">into <a href=${route('mailbox', mailbox)}>${mailbox}</a></span>`}
      </p>
      <div class="seq-scroll">
        <div class="seq" style=${grid} aria-label="Sequence diagram of the message's hops">
          <div class="seq-corner" style=${{ gridColumn: '1', gridRow: '1' }}>time</div>
          ${columns.map((c, i) => html`
            <div class="seq-life" aria-hidden="true" style=${{ gridColumn: String(i + 2), gridRow: `1 / ${rows.length + 2}` }}></div>
            <div class=${c === SENDER ? 'seq-head sender' : 'seq-head'} style=${{ gridColumn: String(i + 2), gridRow: '1' }}>
              ${c === SENDER ? html`<span class="muted">sender</span>${from && html`<br /><span class="mono small">${from}</span>`}${sender && html`<br /><span class="mono small">${sender}</span>`}` : c}
            </div>`)}
          ${rows.map((r, n) => {
            const row = String(n + 2);
            const t = Date.parse(r.hop.time);
            const delta = Number.isNaN(t) || Number.isNaN(first) || n === 0 ? '' : `+${t - first} ms`;
            const time = html`<div class="seq-time" style=${{ gridColumn: '1', gridRow: row }} title=${r.hop.time}>
              <time datetime=${r.hop.time}>${clock(r.hop.time)}</time>${delta && html`<span class="muted small">${delta}</span>`}</div>`;
            if (r.kind === 'arrow') {
              const a = index(r.from), b = index(r.to);
              const lo = Math.min(a, b), hi = Math.max(a, b);
              const style = { gridColumn: `${lo + 2} / ${hi + 3}`, gridRow: row, '--span': String(hi - lo + 1) };
              return html`${time}<div class=${`seq-arrow ${b >= a ? 'right' : 'left'} ev-${r.hop.event}`} style=${style}><${Label} hop=${r.hop} /></div>`;
            }
            const style = { gridColumn: String(index(r.at) + 2), gridRow: row };
            return html`${time}<div class=${`seq-note ev-${r.hop.event}`} style=${style}><${Label} hop=${r.hop} /></div>`;
          })}
        </div>
      </div>
      <details class="hops">
        <summary>Hops as a table</summary>
        <table class="dense">
          <thead><tr><th scope="col">Time</th><th scope="col">Server</th><th scope="col">Event</th><th scope="col">Recipient</th><th scope="col">To</th><th scope="col">Detail</th><th scope="col">Reply</th></tr></thead>
          <tbody>
            ${path.map(h => html`<tr>
              <td class="mono nowrap" title=${h.time}>${clock(h.time)}</td><td>${h.server}</td><td><span class=${`badge ${h.event}`}>${h.event}</span></td>
              <td class="mono">${h.recipient || ''}</td><td class="mono wrap">${h.to || ''}</td><td class="wrap">${h.detail || ''}</td><td class="mono wrap">${h.reply || ''}</td>
            </tr>`)}
          </tbody>
        </table>
      </details>
    </section>`;
}
