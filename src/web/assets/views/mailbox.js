// A mailbox: its messages, newest first; the list follows deliveries live.
import { useState } from '../vendor/hooks.mjs';
import { ConfirmButton, Failure, Loading, bytes, del, html, route, useApi, useLive } from '../lib.js';

function when(m) {
  const t = Date.parse(m.date);
  return Number.isNaN(t) ? 0 : t;
}

export function Mailbox({ address }) {
  const [deleted, setDeleted] = useState(0);
  const [busy, setBusy] = useState(null);
  const [problem, setProblem] = useState(null);
  const live = useLive(ev => ['delivered', 'bounced', 'received'].includes(ev.type));
  const { data, error } = useApi(`/mailboxes/${encodeURIComponent(address)}/messages`, live + deleted);
  const remove = async id => {
    setBusy(id);
    setProblem(null);
    try {
      await del(`/messages/${encodeURIComponent(id)}`);
    } catch (e) {
      setProblem(e);
    }
    setBusy(null);
    setDeleted(n => n + 1);
  };
  const messages = data ? [...(data.messages || [])].map((m, i) => [m, i]) : [];
  messages.sort(([a, i], [b, j]) => (when(b) - when(a)) || (j - i));
  const server = messages.length ? messages[0][0].server : null;
  return html`
    <section>
      <nav class="crumbs" aria-label="Breadcrumbs"><a href="#/">Network</a> › ${server ? html`${server} › ` : ''}<span>${address}</span></nav>
      <div class="page-head">
        <h1>${address}</h1>
        ${data && html`<p class="muted">${messages.length} message${messages.length === 1 ? '' : 's'} · updates live</p>`}
      </div>
      <${Failure} error=${error} what=${`the mailbox ${address}`} />
      <${Failure} error=${problem} action="delete the message" />
      ${!data && !error && html`<${Loading} />`}
      ${data && messages.length === 0 && html`<p class="empty">No messages in this mailbox.</p>`}
      ${messages.length > 0 && html`
        <table class="messages">
          <thead><tr>
            <th scope="col">Date</th><th scope="col">From</th><th scope="col">Subject</th><th scope="col">To</th>
            <th scope="col" class="num">Size</th><th scope="col"><span class="sr-only">Actions</span></th>
          </tr></thead>
          <tbody>
            ${messages.map(([m]) => html`
              <tr key=${m.id}>
                <td class="nowrap">${m.date || ''}</td>
                <td class="mono">${m.from || ''}</td>
                <td class="subject"><a href=${route('message', m.id)}>${m.subject || '(no subject)'}</a></td>
                <td class="mono">${(m.to || []).join(', ')}</td>
                <td class="num nowrap">${bytes(m.size)}</td>
                <td class="actions"><${ConfirmButton} label="Delete" confirm="Delete?" busy=${busy === m.id} onConfirm=${() => remove(m.id)} /></td>
              </tr>`)}
          </tbody>
        </table>`}
    </section>`;
}
