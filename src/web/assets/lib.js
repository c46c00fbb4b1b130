// Shared pieces of the dashboard: the html`` tag, API calls, hooks, formatting.
import { h } from './vendor/preact.mjs';
import { useEffect, useRef, useState } from './vendor/hooks.mjs';
import htm from './vendor/htm.mjs';
import { subscribe } from './bus.js';

export const html = htm.bind(h);

export const API = '/api/v1';

/** An API answer that was not 2xx: its status and the server's `error` text. */
export class ApiError extends Error {
  constructor(status, text) {
    super(text || `HTTP ${status}`);
    this.status = status;
  }
}

async function check(r) {
  if (r.ok) return r;
  let text = '';
  try {
    const body = await r.json();
    text = body && body.error;
  } catch { /* not JSON */ }
  throw new ApiError(r.status, text || `${r.status} ${r.statusText}`);
}

export async function getJSON(path) {
  const r = await check(await fetch(API + path, { headers: { Accept: 'application/json' } }));
  return r.json();
}

export async function getText(path) {
  const r = await check(await fetch(API + path));
  return r.text();
}

export async function del(path) {
  await check(await fetch(API + path, { method: 'DELETE' }));
}

/** `#/mailbox/<address>` and friends: every part encoded on its own. */
export const route = (...parts) => '#/' + parts.map(p => encodeURIComponent(p)).join('/');

/**
 * GET `path` as JSON again whenever `refresh` changes. Keeps showing the last
 * answer for the same path while a new one loads, so live updates do not flicker.
 */
export function useApi(path, refresh = 0) {
  const [state, setState] = useState({ path: null, data: null, error: null });
  useEffect(() => {
    if (path == null) return undefined;
    let current = true;
    getJSON(path).then(
      data => current && setState({ path, data, error: null }),
      error => current && setState(s => ({ path, data: s.path === path ? s.data : null, error })),
    );
    return () => { current = false; };
  }, [path, refresh]);
  const mine = state.path === path;
  return { data: mine ? state.data : null, error: mine ? state.error : null, loading: !mine };
}

/**
 * A counter that goes up (at most every `delay` ms) when a live event
 * matching `match` arrives, or when the event stream reconnects (events may
 * have been missed then). Give it to useApi as `refresh`.
 */
export function useLive(match, delay = 250) {
  const [n, setN] = useState(0);
  const matcher = useRef(match);
  matcher.current = match;
  useEffect(() => {
    let timer = null;
    const off = subscribe(ev => {
      if (timer || !(ev.type === '*' || matcher.current(ev))) return;
      timer = setTimeout(() => { timer = null; setN(x => x + 1); }, delay);
    });
    return () => { off(); clearTimeout(timer); };
  }, [delay]);
  return n;
}

/** The current time, ticking every `ms` (for "in 12 s" countdowns). */
export function useNow(ms = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** 10:00:00.123 in local time, or '' */
export function clock(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** 2026-11-23 10:00:00 in local time */
export function stamp(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "in 12 s", "3 min ago" */
export function relative(iso, now = Date.now()) {
  if (!iso) return '';
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return String(iso);
  const s = Math.round((t - now) / 1000);
  const a = Math.abs(s);
  const span = a < 60 ? `${a} s` : a < 3600 ? `${Math.round(a / 60)} min` : a < 86400 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  if (a === 0) return 'now';
  return s > 0 ? `in ${span}` : `${span} ago`;
}

export function bytes(n) {
  if (n == null) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** A short error box for a failed API call: what could not be loaded (404s: not found), or done. */
export function Failure({ error, what, action }) {
  if (!error) return null;
  const said = action ? `Could not ${action}`
    : error.status === 404 ? `${what || 'This'} was not found` : `Could not load ${what || 'this page'}`;
  return html`<div class="alert error" role="alert">${said}: ${error.message}</div>`;
}

export function Loading() {
  return html`<p class="muted">Loading…</p>`;
}

/** A button that asks once more before it acts (no window.confirm). */
export function ConfirmButton({ label, confirm, onConfirm, busy }) {
  const [armed, setArmed] = useState(false);
  useEffect(() => {
    if (!armed) return undefined;
    const t = setTimeout(() => setArmed(false), 4000);
    return () => clearTimeout(t);
  }, [armed]);
  return armed
    ? html`<button type="button" class="danger" disabled=${busy} onClick=${onConfirm}>${confirm}</button>`
    : html`<button type="button" class="subtle" onClick=${() => setArmed(true)}>${label}</button>`;
}
