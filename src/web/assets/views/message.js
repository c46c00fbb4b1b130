// A message: who, when, its parts behind tabs (Text, HTML, Headers, Raw),
// its attachments, and its path across the network's servers.
import { useEffect, useState } from '../vendor/hooks.mjs';
import { API, ConfirmButton, Failure, Loading, bytes, del, getText, html, route, useApi, useLive } from '../lib.js';
import { Path } from './path.js';
import { framePolicy, safeHtml, whenFramePolicy } from './sandbox.js';

function Tabs({ tabs, current, onSelect }) {
  const keys = tabs.map(t => t[0]);
  const onKey = e => {
    const i = keys.indexOf(current);
    const next = e.key === 'ArrowRight' ? keys[(i + 1) % keys.length]
      : e.key === 'ArrowLeft' ? keys[(i + keys.length - 1) % keys.length] : null;
    if (next) {
      e.preventDefault();
      onSelect(next);
      const el = document.getElementById(`tab-${next}`);
      if (el) el.focus();
    }
  };
  return html`
    <div class="tabs" role="tablist" aria-label="Message parts" onKeyDown=${onKey}>
      ${tabs.map(([key, label, empty]) => html`
        <button type="button" role="tab" id=${`tab-${key}`} aria-controls="tabpanel"
          aria-selected=${String(key === current)} tabindex=${key === current ? 0 : -1}
          class=${empty ? 'empty-part' : ''} onClick=${() => onSelect(key)}>${label}</button>`)}
    </div>`;
}

function HtmlPart({ source }) {
  const [policy, setPolicy] = useState(framePolicy());
  useEffect(() => {
    if (!policy) whenFramePolicy().then(setPolicy);
  }, [policy]);
  if (!policy) return html`<${Loading} />`;
  const prepared = safeHtml(source, policy);
  const notes = [];
  if (prepared.removed.scripts) notes.push(`${prepared.removed.scripts} script${prepared.removed.scripts === 1 ? '' : 's'} and event handler${prepared.removed.scripts === 1 ? '' : 's'} removed`);
  if (prepared.removed.remote) notes.push(`${prepared.removed.remote} remote resource${prepared.removed.remote === 1 ? '' : 's'} blocked`);
  if (prepared.removed.styles) notes.push(`its inline styles left out (the dashboard's Content-Security-Policy forbids them)`);
  if (prepared.removed.links) notes.push(`${prepared.removed.links} link${prepared.removed.links === 1 ? '' : 's'} not followed (hover for the address)`);
  return html`
    <p class="sandbox-note small">
      Shown in a sandboxed frame with its own Content-Security-Policy: no script runs and nothing is loaded from the network.
      ${notes.length > 0 && html` <strong>${notes.join('; ')}.</strong>`}
    </p>
    <iframe class="html-part" title="HTML part" sandbox="" referrerpolicy="no-referrer" srcdoc=${prepared.html}></iframe>`;
}

function Headers({ headers }) {
  return html`
    <table class="headers dense">
      <tbody>
        ${(headers || []).map(([name, value]) => html`<tr><th scope="row" class="mono">${name}</th><td class="mono wrap">${String(value).replace(/\r?\n[ \t]+/g, ' ')}</td></tr>`)}
      </tbody>
    </table>`;
}

function Raw({ id }) {
  const [state, setState] = useState({ id: null, text: null, error: null });
  useEffect(() => {
    let current = true;
    getText(`/messages/${encodeURIComponent(id)}/raw`).then(
      text => current && setState({ id, text, error: null }),
      error => current && setState({ id, text: null, error }),
    );
    return () => { current = false; };
  }, [id]);
  if (state.error) return html`<${Failure} error=${state.error} what="the raw message" />`;
  if (state.id !== id) return html`<${Loading} />`;
  return html`<pre class="raw">${state.text}</pre>`;
}

function Attachments({ id, attachments }) {
  if (!attachments || attachments.length === 0) return null;
  return html`
    <section class="attachments">
      <h2>Attachments (${attachments.length})</h2>
      <ul>
        ${attachments.map(a => {
          const href = `${API}/messages/${encodeURIComponent(id)}/attachments/${a.index}`;
          const name = a.filename || `attachment-${a.index}`;
          const image = /^image\/(png|gif|jpeg|webp)$/i.test(a.content_type || '');
          return html`<li>
            ${image && html`<img class="thumb" src=${href} alt="" loading="lazy" />`}
            <a href=${href} download=${name}>${name}</a>
            <span class="muted small"> ${a.content_type || ''} · ${bytes(a.size)}</span>
          </li>`;
        })}
      </ul>
    </section>`;
}

export function Message({ id }) {
  const live = useLive(ev => ['queued', 'relayed', 'delivered', 'bounced'].includes(ev.type), 500);
  const [tab, setTab] = useState(null);
  const [deleted, setDeleted] = useState(null);
  const [problem, setProblem] = useState(null);
  // once deleted here, nothing asks for it again
  const { data: m, error } = useApi(deleted ? null : `/messages/${encodeURIComponent(id)}`, live);
  useEffect(() => { setTab(null); setDeleted(null); setProblem(null); }, [id]);
  if (deleted) {
    return html`<section><p class="alert">Deleted. <a href=${route('mailbox', deleted)}>Back to ${deleted}</a>.</p></section>`;
  }
  if (error && !m) return html`<section><nav class="crumbs"><a href="#/">Network</a></nav><${Failure} error=${error} what="the message" /></section>`;
  if (!m) return html`<${Loading} />`;
  const hasText = m.text != null && m.text !== '';
  const hasHtml = m.html != null && m.html !== '';
  const shown = tab || (hasText || !hasHtml ? 'text' : 'html');
  const tabs = [['text', 'Text', !hasText], ['html', 'HTML', !hasHtml], ['headers', 'Headers'], ['raw', 'Raw']];
  const remove = async () => {
    try {
      await del(`/messages/${encodeURIComponent(id)}`);
      setDeleted(m.mailbox);
    } catch (e) {
      setProblem(e);
    }
  };
  let panel;
  if (shown === 'text') panel = hasText ? html`<pre class="text-part">${m.text}</pre>` : html`<p class="muted">This message has no text part${hasHtml ? ': see HTML' : ''}.</p>`;
  else if (shown === 'html') panel = hasHtml ? html`<${HtmlPart} source=${m.html} />` : html`<p class="muted">This message has no HTML part.</p>`;
  else if (shown === 'headers') panel = html`<${Headers} headers=${m.headers} />`;
  else panel = html`<${Raw} id=${id} />`;
  return html`
    <section class="message">
      <nav class="crumbs" aria-label="Breadcrumbs">
        <a href="#/">Network</a> › ${m.server} › <a href=${route('mailbox', m.mailbox)}>${m.mailbox}</a>
      </nav>
      <div class="page-head">
        <h1>${m.subject || '(no subject)'}</h1>
        <div class="head-actions">
          <a class="button subtle" href=${`${API}/messages/${encodeURIComponent(id)}/raw`} download=${`${id}.eml`}>Download .eml</a>
          <${ConfirmButton} label="Delete" confirm="Delete for good?" onConfirm=${remove} />
        </div>
      </div>
      <${Failure} error=${problem} action="delete the message" />
      <dl class="meta">
        <dt>From</dt><dd class="mono">${m.from || ''}</dd>
        <dt>To</dt><dd class="mono">${(m.to || []).join(', ')}</dd>
        <dt>Date</dt><dd>${m.date || ''}</dd>
        <dt>Stored</dt><dd>${m.server} · <span class="mono">${m.mailbox}</span> · ${bytes(m.size)}</dd>
      </dl>
      <${Tabs} tabs=${tabs} current=${shown} onSelect=${setTab} />
      <div class="tabpanel" role="tabpanel" id="tabpanel" aria-labelledby=${`tab-${shown}`}>${panel}</div>
      <${Attachments} id=${id} attachments=${m.attachments} />
      <${Path} path=${m.path || []} mailbox=${m.mailbox} from=${m.from} />
    </section>`;
}
