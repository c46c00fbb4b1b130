// The outgoing queues: what each server still has to relay, how often it
// tried, what the other side last said, and when it tries next.
import { Failure, Loading, html, relative, stamp, useApi, useLive, useNow } from '../lib.js';

export function Queue() {
  const live = useLive(ev => ['queued', 'relayed', 'delivered', 'bounced'].includes(ev.type));
  const now = useNow(1000);
  // a slow timer too: retries happen without an event of their own
  const poll = Math.floor(now / 5000);
  const { data, error } = useApi('/queue', `${live}/${poll}`);
  if (error && !data) return html`<${Failure} error=${error} what="the queue" />`;
  if (!data) return html`<${Loading} />`;
  const servers = data.servers || [];
  const total = servers.reduce((n, s) => n + (s.entries || []).length, 0);
  return html`
    <section>
      <div class="page-head">
        <h1>Queue</h1>
        <p class="muted">${total === 0 ? 'Nothing waiting: every accepted message has been relayed, delivered or bounced.' : `${total} waiting · updates live`}</p>
      </div>
      ${servers.filter(s => (s.entries || []).length > 0).map(s => html`
        <article class="card" key=${s.server}>
          <header class="card-head"><h2>${s.server}</h2><span class="muted">${s.entries.length} waiting</span></header>
          <table class="dense">
            <thead><tr>
              <th scope="col">Queue id</th><th scope="col">From</th><th scope="col">Recipient</th><th scope="col" class="num">Attempts</th>
              <th scope="col">Last reply</th><th scope="col">Next retry</th><th scope="col">Queued</th>
            </tr></thead>
            <tbody>
              ${s.entries.map(e => html`
                <tr key=${`${e.id}/${e.recipient}`}>
                  <td class="mono">${e.id}</td>
                  <td class="mono">${e.from || '<>'}</td>
                  <td class="mono">${e.recipient}</td>
                  <td class="num">${e.attempts}</td>
                  <td class="mono wrap">${e.last_reply || html`<span class="muted">not tried yet</span>`}</td>
                  <td class="nowrap" title=${e.next_retry || ''}>${e.next_retry ? relative(e.next_retry, now) : html`<span class="muted">—</span>`}</td>
                  <td class="nowrap" title=${e.queued_at || ''}>${stamp(e.queued_at)}</td>
                </tr>`)}
            </tbody>
          </table>
        </article>`)}
      ${servers.length > 0 && html`
        <p class="muted small">Queues of ${servers.map(s => s.server).join(', ')}.</p>`}
    </section>`;
}
