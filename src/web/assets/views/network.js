// The front page: the network's servers, their ports and DNS records, and
// links to every mailbox.
import { Failure, Loading, html, route, useApi, useLive } from '../lib.js';

const PORTS = [
  ['SMTP', 'smtp', 'smtp_host'],
  ['POP3', 'pop3', 'pop3_host'],
  ['SMTPS', 'smtps', 'smtp_host'],
  ['POP3S', 'pop3s', 'pop3_host'],
];

function Ports({ server }) {
  return html`
    <table class="ports">
      <thead><tr><th scope="col">Service</th><th scope="col">Host name</th><th scope="col" class="num">Port</th></tr></thead>
      <tbody>
        ${PORTS.filter(([, key]) => server[key] != null && server[key] !== 0).map(([label, key, host]) => html`
          <tr><th scope="row">${label}</th><td class="mono">${server[host] || ''}</td><td class="num mono">${server[key]}</td></tr>`)}
      </tbody>
    </table>`;
}

function Records({ records }) {
  if (!records || records.length === 0) return html`<p class="muted small">No DNS records published.</p>`;
  return html`
    <details class="records">
      <summary>DNS records (${records.length}: ${[...new Set(records.map(r => r.type))].join(', ')})</summary>
      <table class="dense records-table">
        <colgroup><col class="c-name" /><col class="c-type" /><col /></colgroup>
        <thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Data</th></tr></thead>
        <tbody>
          ${records.map(r => html`<tr><td class="mono wrap">${r.name}</td><td><span class="rtype">${r.type}</span></td><td class="mono wrap">${r.data}</td></tr>`)}
        </tbody>
      </table>
    </details>`;
}

function Users({ server, counts }) {
  const users = server.users || [];
  if (users.length === 0) return html`<p class="muted small">No users (accepts no local mail).</p>`;
  if (server.running_here === false) {
    // its mailboxes live with the process that runs it (--only): that one's dashboard shows them
    return html`<ul class="users elsewhere" title="this server runs in another mailnet process">${users.map(u => html`<li>${u}</li>`)}</ul>`;
  }
  return html`
    <ul class="users">
      ${users.map(u => {
        const n = counts[u.toLowerCase()];
        return html`<li>
          <a href=${route('mailbox', u)}>${u}</a>
          ${n != null && html` <span class=${n ? 'count' : 'count zero'} title="messages in this mailbox">${n}</span>`}
        </li>`;
      })}
    </ul>`;
}

function ServerCard({ server, counts }) {
  const here = server.running_here !== false;
  return html`
    <article class="card server" id=${`server-${server.name}`}>
      <header class="card-head">
        <h2>${server.name}</h2>
        <span class="mono muted">${server.address || ''}</span>
        ${!here && html`<span class="badge muted" title="this server runs in another process (--only)">elsewhere</span>`}
      </header>
      <dl class="facts">
        <dt>Domains</dt>
        <dd>${(server.domains || []).map(d => html`<span class="chip">${d}</span>`)}</dd>
        ${server.mx && html`<dt>MX</dt><dd class="mono">${server.mx}</dd>`}
      </dl>
      <${Ports} server=${server} />
      <h3>Mailboxes</h3>
      <${Users} server=${server} counts=${counts} />
      <${Records} records=${server.dns} />
    </article>`;
}

export function Network() {
  const servers = useApi('/servers');
  const refresh = useLive(ev => ev.type === 'delivered' || ev.type === 'bounced');
  const boxes = useApi('/mailboxes', refresh);
  if (servers.error) return html`<${Failure} error=${servers.error} what="the network" />`;
  if (!servers.data) return html`<${Loading} />`;
  const list = servers.data.servers || [];
  const counts = {};
  for (const b of (boxes.data && boxes.data.mailboxes) || []) counts[String(b.address).toLowerCase()] = b.messages;
  const dns = servers.data.dns;
  if (list.length === 0) {
    return html`
      <section>
        <div class="page-head"><h1>Network</h1></div>
        <p class="empty">No network runs in this process. <a href="#/runs">Scenario runs</a> shows the results of <code>mailnet test --web</code>.</p>
      </section>`;
  }
  return html`
    <section>
      <div class="page-head">
        <h1>Network</h1>
        <p class="muted">${list.length} server${list.length === 1 ? '' : 's'} · ${dns ? html`fake DNS on <span class="mono">${dns}</span>` : 'no DNS in this process'}</p>
      </div>
      <table class="overview">
        <thead>
          <tr><th scope="col">Server</th><th scope="col">Domains</th><th scope="col" class="num">SMTP</th><th scope="col" class="num">POP3</th>
            <th scope="col" class="num">SMTPS</th><th scope="col" class="num">POP3S</th><th scope="col" class="num">Users</th></tr>
        </thead>
        <tbody>
          ${list.map(s => html`
            <tr class=${s.running_here === false ? 'elsewhere' : ''}>
              <th scope="row"><a href=${`#/`} onClick=${e => { e.preventDefault(); const el = document.getElementById(`server-${s.name}`); if (el) el.scrollIntoView({ behavior: 'smooth' }); }}>${s.name}</a></th>
              <td>${(s.domains || []).join(', ')}</td>
              <td class="num mono">${s.smtp || ''}</td>
              <td class="num mono">${s.pop3 || ''}</td>
              <td class="num mono">${s.smtps || ''}</td>
              <td class="num mono">${s.pop3s || ''}</td>
              <td class="num">${(s.users || []).length}</td>
            </tr>`)}
        </tbody>
      </table>
      <div class="cards">
        ${list.map(s => html`<${ServerCard} key=${s.name} server=${s} counts=${counts} />`)}
      </div>
    </section>`;
}
