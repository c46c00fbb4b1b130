// Recorded SMTP and POP3 sessions, their transcripts, and pcap downloads
// Wireshark opens.
import { useState } from '../vendor/hooks.mjs';
import { API, Failure, Loading, bytes, clock, html, route, stamp, useApi, useLive } from '../lib.js';

function duration(s) {
  if (!s.end) return null;
  const ms = Date.parse(s.end) - Date.parse(s.start);
  if (Number.isNaN(ms)) return null;
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

const pcapHref = id => `${API}/sessions/${encodeURIComponent(id)}/pcap`;
const pcapName = s => `mailnet-${s.server}-${s.protocol}-${s.id}.pcapng`.replace(/[^A-Za-z0-9._-]/g, '_');

function Protocol({ s }) {
  return html`<span class=${`proto ${s.protocol}`}>${String(s.protocol).toUpperCase()}</span>${s.tls && !String(s.protocol).endsWith('s') ? html` <span class="badge muted">TLS</span>` : ''}`;
}

export function Sessions() {
  const live = useLive(ev => ev.type === 'session_opened' || ev.type === 'session_closed', 400);
  const { data, error } = useApi('/sessions', live);
  const [filter, setFilter] = useState('');
  const [all, setAll] = useState(false);
  if (error && !data) return html`<${Failure} error=${error} what="the sessions" />`;
  if (!data) return html`<${Loading} />`;
  const f = filter.trim().toLowerCase();
  const list = [...(data.sessions || [])]
    .sort((a, b) => String(b.start).localeCompare(String(a.start)))
    .filter(s => !f || [s.server, s.protocol, s.peer, s.local, s.id].some(v => String(v || '').toLowerCase().includes(f)));
  const shown = all ? list : list.slice(0, 200);
  return html`
    <section>
      <div class="page-head">
        <h1>Sessions</h1>
        <p class="muted">Every SMTP and POP3 connection the servers took, newest first. Open one for its transcript; <em>pcap</em> downloads it for Wireshark (sessions over TLS come decrypted).</p>
      </div>
      <div class="toolbar">
        <label>Filter <input type="search" value=${filter} placeholder="server, protocol, peer…" onInput=${e => setFilter(e.currentTarget.value)} /></label>
        <span class="muted small">${list.length} session${list.length === 1 ? '' : 's'}</span>
      </div>
      ${list.length === 0
        ? html`<p class="empty">No sessions recorded yet.</p>`
        : html`
        <table class="dense sessions">
          <thead><tr>
            <th scope="col">Started</th><th scope="col">Server</th><th scope="col">Protocol</th><th scope="col">Peer</th><th scope="col">Local</th>
            <th scope="col">Duration</th><th scope="col" class="num">Bytes</th><th scope="col">Transcript</th><th scope="col">Capture</th>
          </tr></thead>
          <tbody>
            ${shown.map(s => html`
              <tr key=${s.id}>
                <td class="nowrap" title=${s.start}>${stamp(s.start)}</td>
                <td>${s.server}</td>
                <td><${Protocol} s=${s} /></td>
                <td class="mono">${s.peer}</td>
                <td class="mono">${s.local}</td>
                <td class="nowrap">${duration(s) || html`<span class="badge live">open</span>`}</td>
                <td class="num">${bytes(s.bytes)}</td>
                <td class="nowrap"><a href=${route('session', s.id)} title=${`session ${s.id}`}>transcript</a></td>
                <td><a href=${pcapHref(s.id)} download=${pcapName(s)}>pcap</a></td>
              </tr>`)}
          </tbody>
        </table>
        ${!all && list.length > shown.length && html`<p><button type="button" class="subtle" onClick=${() => setAll(true)}>Show all ${list.length}</button></p>`}`}
    </section>`;
}

export function Session({ id }) {
  const live = useLive(ev => ev.session != null && String(ev.session) === String(id), 300);
  const { data: s, error } = useApi(`/sessions/${encodeURIComponent(id)}`, live);
  if (error && !s) return html`<section><nav class="crumbs"><a href="#/sessions">Sessions</a></nav><${Failure} error=${error} what=${`session ${id}`} /></section>`;
  if (!s) return html`<${Loading} />`;
  const lines = [];
  for (const entry of s.transcript || []) {
    const parts = String(entry.text).replace(/\r\n/g, '\n').replace(/\n$/, '').split('\n');
    parts.forEach((text, i) => lines.push({ dir: entry.dir, time: i === 0 ? entry.time : null, text }));
  }
  return html`
    <section>
      <nav class="crumbs" aria-label="Breadcrumbs"><a href="#/sessions">Sessions</a> › <span>session ${s.id}</span></nav>
      <div class="page-head">
        <h1>${String(s.protocol).toUpperCase()} session on ${s.server}</h1>
        <div class="head-actions"><a class="button" href=${pcapHref(s.id)} download=${pcapName(s)}>pcap</a></div>
      </div>
      <dl class="meta">
        <dt>Session</dt><dd class="mono">${s.id}</dd>
        <dt>Client</dt><dd class="mono">${s.peer}</dd>
        <dt>Server</dt><dd class="mono">${s.local} (${s.server})</dd>
        <dt>Started</dt><dd title=${s.start}>${stamp(s.start)}</dd>
        <dt>Ended</dt><dd title=${s.end || ''}>${s.end ? `${stamp(s.end)} (${duration(s)})` : html`<span class="badge live">open</span>`}</dd>
        <dt>TLS</dt><dd>${s.tls ? 'yes (the transcript and pcap show the decrypted dialogue)' : 'no'}</dd>
        <dt>Bytes</dt><dd>${bytes(s.bytes)}</dd>
      </dl>
      <h2>Transcript</h2>
      ${s.truncated && html`<p class="alert">The recording stopped at its size limit: the end of this session is not shown.</p>`}
      ${lines.length === 0
        ? html`<p class="muted">Nothing was said.</p>`
        : html`<div class="transcript mono" aria-label="Transcript: C is the client, S the server">
            ${lines.map(l => html`<div class=${`tline ${l.dir === 'C' ? 'c' : 's'}`}><span class="ttime">${l.time ? clock(l.time) : ''}</span> <span class="tdir">${l.dir}:</span> <span class="ttext">${l.text}</span></div>`)}
          </div>`}
    </section>`;
}
