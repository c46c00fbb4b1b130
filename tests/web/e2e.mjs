// The dashboard in a real browser: Debian's chromium driven by playwright-core.
//
// Usage: node tests/web/e2e.mjs BASE_URL --subject S --body B --xss-subject X [--xss-marker M] [--shots DIR]
//   BASE_URL   the dashboard (`mailnet up --web`), with the network running and the mail already sent:
//   S, B       a plain-text message from usr1@mail.sustech.edu.cn to usr1@gmail.com (relayed by exmail.qq.com)
//   X, M       an HTML message to bob@gmail.com holding <script>alert(1)</script>, an <img onerror=alert(2)>
//              and the text M
// playwright-core is looked up in $PW_DIR (a folder holding node_modules/playwright-core), else in
// $TMPDIR/mailnet-playwright. Prints one JSON line ({"ok": ..., "checks": [...], ...}); exits 1 when a check fails.
//
// What it checks, clicking as a user would:
//   front      the network map lists gmail.com, exmail.qq.com and gmail.com's SMTP port (2125 unless --ephemeral;
//              read from /api/v1/servers)
//   mailbox    the link named exactly usr1@gmail.com opens that mailbox, which lists S
//   message    the link named S opens the message: subject, the text part B shown without a click (the Text tab
//              selected), and the path exmail.qq.com → gmail.com: received, relayed (with the reply), delivered
//   tabs       Headers shows the Subject header, Raw the stored message with B, Text goes back
//   live       the events panel shows its stream open; a message sent now over SMTP (exmail.qq.com's port, from
//              the API) then shows up in the open mailbox and in the events panel, with no reload
//   queue, sessions, transcript, runs   each page renders; a session's transcript has C:/S: lines and a pcap link
//   xss        bob@gmail.com → X → the tab named HTML: M is shown in an <iframe sandbox=""> (no allow-scripts) whose
//              srcdoc starts with a CSP meta; no dialog opens
//   sandbox    the frame's srcdoc replaced by a raw <script>alert(3)</script> in the page: still no dialog (the
//              sandbox holds by itself, without the dashboard's cleaning of the mail)
//   clean      no console error, no uncaught page error, no request to a host other than 127.0.0.1 (in any phase
//              but the sandbox probe, where chromium rightly reports the blocked script)
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
const opt = name => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const base = args[0];
const subject = opt('subject');
const body = opt('body');
const xssSubject = opt('xss-subject');
const xssMarker = opt('xss-marker');
const shots = opt('shots');
if (!base || !subject || !body || !xssSubject) {
  console.error('usage: node tests/web/e2e.mjs BASE_URL --subject S --body B --xss-subject X [--xss-marker M] [--shots DIR]');
  process.exit(2);
}

const out = { ok: false, checks: [], console_errors: [], page_errors: [], requests_off_loopback: [], dialogs: [] };
let phase = 'launch';
let browser = null;

function check(name, ok, detail = '') {
  out.checks.push({ name, ok: Boolean(ok), detail: String(detail).slice(0, 600) });
  return Boolean(ok);
}

async function finish(code) {
  out.ok = code === 0 && out.checks.length > 0 && out.checks.every(c => c.ok);
  process.stdout.write(JSON.stringify(out) + '\n');
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
  process.exit(out.ok ? 0 : 1);
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

function hostOf(u) {
  try {
    const x = new URL(u);
    return ['http:', 'https:', 'ws:', 'wss:', 'ftp:'].includes(x.protocol) ? x.hostname : null;
  } catch {
    return null;
  }
}

/** The visible text of the page and of every frame in it. */
async function allText(page) {
  let t = '';
  for (const f of page.frames()) {
    t += '\n' + await f.evaluate(() => (document.body ? document.body.innerText : '')).catch(() => '');
  }
  return t;
}

/** Waits until the page shows every string of `want`; returns the missing ones (none: ok). */
async function waitText(page, want, ms = 8000) {
  const end = Date.now() + ms;
  for (;;) {
    const t = await allText(page);
    const missing = want.filter(w => !t.includes(w));
    if (missing.length === 0 || Date.now() > end) return { ok: missing.length === 0, missing, text: t };
    await sleep(150);
  }
}

async function shot(page, name) {
  if (!shots) return;
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true }).catch(() => {});
}

/** One message over SMTP, as a client would send it: `mailnet`'s own servers need no login for this. */
function smtpSend(port, from, to, text) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const steps = [
      [null, 220], ['EHLO e2e.test', 250], [`MAIL FROM:<${from}>`, 250], [`RCPT TO:<${to}>`, 250],
      ['DATA', 354], [text.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..') + '\r\n.', 250], ['QUIT', 221],
    ];
    let buf = '';
    let step = 0;
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`SMTP timeout at step ${step}`)); }, 10000);
    const next = () => {
      if (step >= steps.length) { clearTimeout(timer); sock.end(); resolve(); return; }
      const [line] = steps[step];
      if (line !== null) sock.write(line + '\r\n');
    };
    sock.on('data', d => {
      buf += d.toString('utf8');
      // a reply is complete at a line "NNN text" (not "NNN-text")
      const lines = buf.split('\r\n');
      const last = lines.findIndex(l => /^\d{3}( |$)/.test(l));
      if (last < 0) return;
      const code = Number(lines[last].slice(0, 3));
      buf = lines.slice(last + 1).join('\r\n');
      if (code !== steps[step][1]) {
        clearTimeout(timer);
        sock.destroy();
        reject(new Error(`SMTP step ${step}: wanted ${steps[step][1]}, got ${lines[last]}`));
        return;
      }
      step += 1;
      next();
    });
    sock.on('error', e => { clearTimeout(timer); reject(e); });
    next();
  });
}

async function main() {
  const dir = process.env.PW_DIR || path.join(os.tmpdir(), 'mailnet-playwright');
  const require = createRequire(path.join(dir, 'package.json'));
  const { chromium } = require('playwright-core');
  try {
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      timeout: 30000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  } catch (e) {
    check('launch', false, String(e.message).split('\n').slice(0, 3).join(' | '));
    return finish(1);
  }
  out.browser = browser.version();
  out.playwright = require('playwright-core/package.json').version;
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(8000);
  page.on('console', m => { if (m.type() === 'error') out.console_errors.push({ phase, text: m.text(), at: m.location().url }); });
  page.on('pageerror', e => out.page_errors.push({ phase, text: String(e) }));
  page.on('request', r => {
    const h = hostOf(r.url());
    if (h !== null && h !== '127.0.0.1') out.requests_off_loopback.push({ phase, url: r.url() });
  });
  page.on('dialog', async d => {
    out.dialogs.push({ phase, type: d.type(), message: d.message() });
    await d.dismiss().catch(() => {});
  });

  // front: the network map
  phase = 'front';
  const servers = await fetch(new URL('api/v1/servers', base)).then(r => r.json());
  const port = name => (servers.servers.find(s => s.name === name) || {}).smtp;
  const want = ['gmail.com', 'exmail.qq.com', String(port('gmail.com'))];
  await page.goto(base, { waitUntil: 'load' });
  let v = await waitText(page, want);
  check('front', v.ok, v.ok ? want.join(', ') : `missing ${JSON.stringify(v.missing)}: ${v.text.slice(0, 300)}`);
  await shot(page, 'front');

  // mailbox: by the link named exactly the address
  phase = 'mailbox';
  await page.getByRole('link', { name: 'usr1@gmail.com', exact: true }).first().click();
  v = await waitText(page, [subject]);
  check('mailbox', v.ok && page.url().includes('#/mailbox/usr1%40gmail.com'), `${page.url()} ${v.ok ? 'lists' : 'lacks'} ${subject}`);
  await shot(page, 'mailbox');

  // message: by the link named exactly the subject
  phase = 'message';
  await page.getByRole('link', { name: subject, exact: true }).first().click();
  v = await waitText(page, [subject, body, 'exmail.qq.com', 'gmail.com']);
  const textTab = await page.getByRole('tab', { name: 'Text', exact: true }).getAttribute('aria-selected').catch(e => String(e));
  check('message', v.ok && textTab === 'true' && page.url().includes('#/message/'),
    `${page.url()}; Text tab selected: ${textTab}; ${v.ok ? 'subject, body and servers shown' : `missing ${JSON.stringify(v.missing)}`}`);
  const route = await page.locator('.path .route').innerText().catch(e => String(e));
  const heads = await page.locator('.path .seq-head').allInnerTexts().catch(() => []);
  const events = await page.locator('.path .seq .badge').allInnerTexts().catch(() => []);
  const replies = await page.locator('.path .seq .seq-reply').allInnerTexts().catch(() => []);
  const ordered = route.indexOf('exmail.qq.com') >= 0 && route.indexOf('exmail.qq.com') < route.indexOf('gmail.com', route.indexOf('exmail.qq.com') + 13);
  const kinds = events.map(e => e.toLowerCase());
  check('path', ordered && heads.some(h => h.includes('exmail.qq.com')) && heads.some(h => h.trim() === 'gmail.com')
    && ['received', 'relayed', 'delivered'].every(k => kinds.includes(k)) && replies.some(r => /^2\d\d/.test(r)),
  `route ${JSON.stringify(route)}; columns ${JSON.stringify(heads)}; hops ${JSON.stringify(kinds)}; replies ${JSON.stringify(replies)}`);
  await shot(page, 'message');

  // tabs
  phase = 'tabs';
  await page.getByRole('tab', { name: 'Headers', exact: true }).click();
  const headers = await waitText(page, ['Subject', subject], 4000);
  await page.getByRole('tab', { name: 'Raw', exact: true }).click();
  const raw = await page.locator('pre.raw').innerText({ timeout: 8000 }).catch(e => String(e));
  await page.getByRole('tab', { name: 'Text', exact: true }).click();
  const back = await waitText(page, [body], 4000);
  check('tabs', headers.ok && raw.includes(body) && raw.includes(`Subject: ${subject}`) && back.ok,
    `headers ${headers.ok}; raw has the body ${raw.includes(body)}; text again ${back.ok}`);

  // live: a new message appears in the open mailbox and in the events panel without a reload
  phase = 'live';
  await page.getByRole('link', { name: 'usr1@gmail.com', exact: true }).first().click();
  await waitText(page, [subject]);
  // the events panel says the stream is open before anything happens on it
  let status = '';
  for (const end = Date.now() + 5000; Date.now() < end && status !== 'live'; await sleep(100)) {
    status = await page.locator('.events .status').innerText().catch(() => '');
  }
  const liveSubject = `live ${Date.now()}`;
  let sent = '';
  try {
    await smtpSend(port('exmail.qq.com'), 'usr1@mail.sustech.edu.cn', 'usr1@gmail.com',
      `From: usr1@mail.sustech.edu.cn\nTo: usr1@gmail.com\nSubject: ${liveSubject}\n\nsent while the page was open\n`);
    sent = `sent to exmail.qq.com:${port('exmail.qq.com')}`;
  } catch (e) {
    sent = `send failed: ${e.message}`;
  }
  const navigations = [];
  page.on('framenavigated', f => { if (f === page.mainFrame()) navigations.push(f.url()); });
  v = await waitText(page, [liveSubject], 15000);
  const panel = await page.locator('.events .event-list').innerText().catch(() => '');
  check('live', status === 'live' && v.ok && /delivered/i.test(panel) && panel.includes('usr1@gmail.com'),
    `${sent}; event stream ${JSON.stringify(status)}; mailbox shows it: ${v.ok}; panel ${JSON.stringify(panel.slice(0, 200))}; navigations ${navigations.length}`);

  // the other pages render
  phase = 'queue';
  await page.getByRole('link', { name: 'Queue', exact: true }).click();
  v = await waitText(page, ['Queue'], 4000);
  const queueOk = v.ok && await page.locator('main h1').innerText().then(t => t === 'Queue').catch(() => false);
  phase = 'sessions';
  await page.getByRole('link', { name: 'Sessions', exact: true }).click();
  const sessionLink = page.locator('a[href^="#/session/"]').first();
  await sessionLink.waitFor({ timeout: 8000 }).catch(() => {});
  const pcap = await page.getByRole('link', { name: 'pcap', exact: true }).first().getAttribute('href').catch(() => null);
  phase = 'transcript';
  await sessionLink.click().catch(() => {});
  await page.locator('.transcript').waitFor({ timeout: 8000 }).catch(() => {});
  const transcript = await page.locator('.transcript').innerText().catch(() => '');
  phase = 'runs';
  await page.getByRole('link', { name: 'Runs', exact: true }).click();
  v = await waitText(page, ['Scenario runs'], 4000);
  const runsText = await page.locator('main').innerText().catch(() => '');
  check('pages', queueOk && pcap && /\/api\/v1\/sessions\/[^/]+\/pcap$/.test(pcap) && /C: (EHLO|MAIL FROM)/.test(transcript) && /S: 2\d\d/.test(transcript) && v.ok,
    `queue ${queueOk}; pcap link ${pcap}; transcript ${JSON.stringify(transcript.slice(0, 160))}; runs ${JSON.stringify(runsText.slice(0, 100))}`);
  await shot(page, 'runs');

  // xss: the HTML part runs no script
  phase = 'xss';
  await page.getByRole('link', { name: 'Network', exact: true }).click();
  await waitText(page, ['bob@gmail.com']);
  await page.getByRole('link', { name: 'bob@gmail.com', exact: true }).first().click();
  await waitText(page, [xssSubject]);
  await page.getByRole('link', { name: xssSubject, exact: true }).first().click();
  await waitText(page, [xssSubject]);
  await page.getByRole('tab', { name: 'HTML', exact: true }).click();
  const frame = page.locator('iframe.html-part');
  await frame.waitFor({ timeout: 8000 }).catch(() => {});
  v = await waitText(page, xssMarker ? [xssMarker] : [], 6000);
  const sandbox = await frame.getAttribute('sandbox').catch(() => null);
  const srcdoc = (await frame.getAttribute('srcdoc').catch(() => null)) || '';
  await sleep(1500);
  const dialogsNow = out.dialogs.length;
  check('xss', v.ok && sandbox === '' && /^<!doctype html>\s*<html[^>]*><head><meta http-equiv="Content-Security-Policy" content="default-src 'none'/i.test(srcdoc) && dialogsNow === 0,
    `marker shown ${v.ok}; sandbox=${JSON.stringify(sandbox)}; srcdoc starts ${JSON.stringify(srcdoc.slice(0, 140))}; dialogs ${JSON.stringify(out.dialogs)}`);
  await shot(page, 'xss');

  // sandbox: even a raw script put into the frame does not run
  phase = 'sandbox-probe';
  await frame.evaluate(f => { f.srcdoc = '<p>probe</p><script>alert(3)</script><img src="data:," onerror="alert(4)">'; });
  await waitText(page, ['probe'], 4000);
  await sleep(1000);
  check('sandbox', out.dialogs.length === 0, `dialogs ${JSON.stringify(out.dialogs)}`);

  phase = 'done';
  const errors = [...out.console_errors, ...out.page_errors].filter(e => e.phase !== 'sandbox-probe');
  check('clean', errors.length === 0 && out.requests_off_loopback.length === 0,
    `errors ${JSON.stringify(errors.slice(0, 5))}; off loopback ${JSON.stringify(out.requests_off_loopback.slice(0, 5))}`);
  return finish(0);
}

setTimeout(() => { check('deadline', false, `gave up after 120 s in phase ${phase}`); finish(1); }, 120000).unref();
main().catch(e => { check(phase, false, String(e && e.stack || e).slice(0, 800)); finish(1); });
