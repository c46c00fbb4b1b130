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
          <div class="scroll">
          <table class="dense queue">
            <thead><tr>
              <th scope="col">Recipient</th><th scope="col">From</th><th scope="col" class="num">Attempts</th>
              <th scope="col">Next retry</th><th scope="col">Queued</th>
            </tr></thead>
            ${s.entries.map(e => html`
              <tbody key=${`${e.id}/${e.recipient}`}>
                <tr>
                  <td><span class="mono strong">${e.recipient}</span><br /><span class="mono muted small" title="queue id">${e.id}</span></td>
                  <td class="mono">${e.from || '<>'}</td>
                  <td class="num">${e.attempts}</td>
                  <td class="nowrap" title=${e.next_retry || ''}>${e.next_retry ? relative(e.next_retry, now) : html`<span class="muted">—</span>`}</td>
                  <td class="nowrap" title=${e.queued_at || ''}>${stamp(e.queued_at)}</td>
                </tr>
                <tr class="reply-row">
                  <td colspan="5"><span class="muted small">Last reply </span>${e.last_reply ? html`<span class="mono wrap">${e.last_reply}</span>` : html`<span class="muted">not tried yet</span>`}</td>
                </tr>
              </tbody>`)}
          </table>
          </div>
        </article>`)}
      ${servers.length > 0 && html`
        <p class="muted small">Queues of ${servers.map(s => s.server).join(', ')}.</p>`}
    </section>`;
}
