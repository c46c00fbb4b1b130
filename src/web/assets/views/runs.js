// Scenario runs (`mailnet test --web`): each scenario's outcome as it
// finishes, its steps (expected, actual, error) and the dialogue of each step.
import { Failure, Loading, html, useApi, useNow } from '../lib.js';

const show = v => (v == null ? '' : typeof v === 'string' ? v : JSON.stringify(v));
const passed = o => String(o.status || '').toUpperCase() === 'PASSED';

function Step({ s }) {
  const lines = s.transcript || [];
  return html`
    <tr class=${s.error ? 'bad' : ''}>
      <td>${s.name}</td>
      <td class="mono wrap">${show(s.expect)}</td>
      <td class="mono wrap">${show(s.actual)}</td>
      <td class="mono wrap">
        ${s.error || ''}
        ${lines.length > 0 && html`
          <details class="step-dialogue">
            <summary>dialogue (${lines.length} line${lines.length === 1 ? '' : 's'})</summary>
            <pre class="raw">${lines.join('\n')}</pre>
          </details>`}
      </td>
    </tr>`;
}

function Outcome({ o }) {
  const good = passed(o);
  const status = String(o.status || '').replace(/_/g, ' ');
  return html`
    <details class=${`card outcome ${good ? 'passed' : 'failed'}`} open=${!good}>
      <summary>
        <span class=${`badge ${good ? 'delivered' : status.startsWith('PARTIALLY') ? 'queued' : 'bounced'}`}>${status}</span>
        <strong> ${o.scenario || o.name || 'scenario'}</strong>
        ${o.credit != null && html`<span class="muted"> · ${o.earned}/${o.credit} points</span>`}
        ${o.millis != null && html`<span class="muted small"> · ${o.millis} ms</span>`}
      </summary>
      ${o.file && html`<p class="muted small mono">${o.file}</p>`}
      ${o.message && html`<p class="alert error">${o.message}</p>`}
      ${(o.played_by_mailnet || []).length > 0 && html`<p class="small muted">Played by mailnet's own servers: ${o.played_by_mailnet.join(', ')}</p>`}
      ${o.confirmed_at_course_timing && html`<p class="small muted">Confirmed by a second run with the course's full waits.</p>`}
      ${(o.steps || []).length > 0 && html`
        <table class="dense">
          <thead><tr><th scope="col">Step</th><th scope="col">Expect</th><th scope="col">Actual</th><th scope="col">Error</th></tr></thead>
          <tbody>${o.steps.map(s => html`<${Step} s=${s} />`)}</tbody>
        </table>`}
      ${(o.student_output || []).map(([name, text]) => html`
        <details class="step-dialogue"><summary>${name}: last output</summary><pre class="raw">${text}</pre></details>`)}
    </details>`;
}

/** One item of /runs: a scenario's outcome, or a whole summary ({score, total, scenarios}). */
function outcomes(runs) {
  return runs.flatMap(r => (r && Array.isArray(r.scenarios) ? r.scenarios : [r]));
}

export function Runs() {
  // results arrive without an event of their own: look again every few seconds
  const poll = Math.floor(useNow(3000) / 3000);
  const { data, error } = useApi('/runs', poll);
  if (error && !data) return html`<${Failure} error=${error} what="the scenario runs" />`;
  if (!data) return html`<${Loading} />`;
  const list = outcomes(data.runs || []);
  const score = list.reduce((n, o) => n + (o.earned || 0), 0);
  const total = list.reduce((n, o) => n + (o.credit || 0), 0);
  const good = list.filter(passed).length;
  return html`
    <section>
      <div class="page-head">
        <h1>Scenario runs</h1>
        ${list.length > 0 && html`<p class="muted">${list.length} scenario${list.length === 1 ? '' : 's'} finished · <span class=${good === list.length ? 'ok' : 'bad'}>${good} passed</span> · ${score}/${total} points · updates as scenarios finish</p>`}
      </div>
      ${list.length === 0
        ? html`<p class="empty">No scenario runs. <code>mailnet test --web</code> shows its scenarios' results here as they finish.</p>`
        : list.map((o, i) => html`<${Outcome} key=${i} o=${o} />`)}
    </section>`;
}
