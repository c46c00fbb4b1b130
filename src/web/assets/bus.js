// The live event stream (Server-Sent Events on /api/v1/events), shared by
// every view: the events panel lists what arrives, and views reload the data
// an event changes.

export const TYPES = ['received', 'queued', 'relayed', 'delivered', 'bounced', 'session_opened', 'session_closed'];
const KEEP = 300;

const listeners = new Set();
const statusListeners = new Set();
let recent = [];
let status = 'connecting';
let source = null;
let seq = 0;
let wasDown = false;

/** Calls `f(event)` for every event from now on; returns the unsubscribe function. */
export function subscribe(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

/** Calls `f(status)` when the connection opens or drops: 'connecting' | 'live' | 'down'. */
export function onStatus(f) {
  statusListeners.add(f);
  return () => statusListeners.delete(f);
}

/** The latest events, newest first. */
export const latest = () => recent;
export const currentStatus = () => status;

export function clear() {
  recent = [];
  emit({ type: '*', cleared: true });
}

function emit(ev) {
  for (const f of [...listeners]) {
    try { f(ev); } catch (e) { setTimeout(() => { throw e; }); }
  }
}

function setStatus(s) {
  if (s === status) return;
  status = s;
  for (const f of [...statusListeners]) f(s);
}

function receive(type, raw) {
  let data = {};
  try { data = JSON.parse(raw) || {}; } catch { data = { text: raw }; }
  const ev = { ...data, type: data.type || type, key: ++seq, arrived: Date.now() };
  recent = [ev, ...recent].slice(0, KEEP);
  emit(ev);
}

/** Opens the stream once; the browser reconnects by itself when it drops. */
export function start() {
  if (source || typeof EventSource === 'undefined') return;
  source = new EventSource('/api/v1/events');
  for (const t of TYPES) source.addEventListener(t, e => receive(t, e.data));
  source.onmessage = e => receive('message', e.data);
  source.onopen = () => {
    setStatus('live');
    // after a drop, views reload: events may have been missed meanwhile
    if (wasDown) emit({ type: '*' });
    wasDown = false;
  };
  source.onerror = () => {
    wasDown = true;
    if (source.readyState === EventSource.CLOSED) {
      // the browser gave up (the server answered with an error): try again later
      setStatus('down');
      source.close();
      source = null;
      setTimeout(start, 5000);
    } else {
      setStatus('connecting');
    }
  };
}
