#!/usr/bin/env node
// End-to-end browser test of the gateway's demo chat page (GET /), in Debian's chromium
// driven by playwright-core.
//
// Usage:
//   node tests/browser/demo_chat.mjs http://127.0.0.1:PORT/ [screenshot.png]
//
// The URL is the page; it connects to ws(s)://<same host>/ws unless the URL carries
// ?ws=ws://HOST:PORT/ws (to test a page served from elsewhere against a gateway).
// Install the dependencies first with scripts/install-browser-deps (chromium, npm ci here).
// Environment: CHROMIUM  the browser binary (default /usr/bin/chromium).
//
// What it checks: two pages in two browser contexts (two users) load the page, pick different
// names and join the same random room; both must show "connected". A sends a message with
// Enter (text full of HTML metacharacters); it must appear, as plain text, on B (as someone
// else's message) and on A (as its own). B replies with the Send button; A must show it.
// When the page says the gateway has presence, both pages list both names as in the room, and
// after B leaves, A lists only A. Then B leaves (status "disconnected"). No uncaught page errors
// are allowed. Screenshots of
// A and B, side by side, go to the screenshot path (default /tmp/demo_chat.png).
//
// Every wait is bounded (10 s) and the whole run by 60 s; the browser is always closed.
// Prints "demo chat browser test: OK" and exits 0, or prints the reason and exits 1.

import { randomBytes } from 'node:crypto';
import { writeSync } from 'node:fs';
import { chromium } from 'playwright-core';

const PREFIX = 'demo chat browser test';
const STEP_TIMEOUT_MS = 10_000;
const OVERALL_TIMEOUT_MS = 60_000;
const CLOSE_TIMEOUT_MS = 5_000;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const VIEWPORT = { width: 460, height: 640 };

const [url, screenshotPath = '/tmp/demo_chat.png', ...extra] = process.argv.slice(2);
if (!url || extra.length || url === '-h' || url === '--help') {
  writeSync(2, `usage: node demo_chat.mjs http://127.0.0.1:PORT/ [screenshot.png]\n`);
  process.exit(2);
}

let browser = null;
let finished = false;
const pages = {}; // label -> { page, errors: [], console: [] }

async function closeBrowser() {
  const b = browser;
  browser = null;
  if (!b) return;
  await Promise.race([b.close().catch(() => {}), new Promise(r => setTimeout(r, CLOSE_TIMEOUT_MS))]);
}

async function statusOf(label) {
  const p = pages[label];
  if (!p) return '(no page)';
  try {
    return await p.page.evaluate(() => {
      const s = document.getElementById('status');
      return s ? `[${s.dataset.state}] ${s.textContent.trim()}` : '(no #status)';
    });
  } catch (e) {
    return `(unavailable: ${e.message.split('\n')[0]})`;
  }
}

async function fail(reason) {
  if (finished) return;
  finished = true;
  const lines = [`${PREFIX}: FAIL: ${reason}`];
  for (const label of Object.keys(pages)) {
    const p = pages[label];
    lines.push(`  page ${label} status: ${await Promise.race([statusOf(label), new Promise(r => setTimeout(() => r('(timed out)'), 2000))])}`);
    for (const e of p.errors) lines.push(`  page ${label} error: ${e}`);
    for (const c of p.console.slice(-10)) lines.push(`  page ${label} console: ${c}`);
  }
  writeSync(2, lines.join('\n') + '\n');
  await closeBrowser();
  process.exit(1);
}

process.on('uncaughtException', err => fail(`unexpected exception: ${err && err.stack ? err.stack : err}`));
process.on('unhandledRejection', err => fail(`unhandled rejection: ${err && err.stack ? err.stack : err}`));
const overall = setTimeout(() => fail(`the whole run took longer than ${OVERALL_TIMEOUT_MS / 1000} s`), OVERALL_TIMEOUT_MS);

let currentStep = '';
async function step(name, fn) {
  currentStep = name;
  try {
    return await fn();
  } catch (e) {
    const msg = (e && e.message ? e.message : String(e)).split('\n').slice(0, 4).join(' | ');
    throw new Error(`${name}: ${msg}`);
  }
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

// Wait until #messages holds a .msg whose .text is exactly `text`; return what it shows.
async function waitForMessage(page, text) {
  await page.waitForFunction(
    t => [...document.querySelectorAll('#messages .msg')].some(li => li.querySelector('.text')?.textContent === t),
    text,
    { timeout: STEP_TIMEOUT_MS },
  );
  return page.evaluate(t => {
    const li = [...document.querySelectorAll('#messages .msg')].find(l => l.querySelector('.text')?.textContent === t);
    const textEl = li.querySelector('.text');
    return {
      user: li.querySelector('.user')?.textContent ?? null,
      own: li.classList.contains('own'),
      childElements: textEl.children.length, // > 0 would mean the text was parsed as HTML
      count: document.querySelectorAll('#messages .msg').length,
    };
  }, text);
}

async function openPage(label) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
  const page = await context.newPage();
  const entry = { page, errors: [], console: [] };
  pages[label] = entry;
  page.on('pageerror', err => entry.errors.push(String(err && err.message ? err.message : err)));
  page.on('console', msg => entry.console.push(`${msg.type()}: ${msg.text()}`));
  const resp = await page.goto(url, { waitUntil: 'load' });
  check(resp && resp.ok(), `GET ${url} answered ${resp ? resp.status() : 'nothing'}`);
  const loaded = await page.evaluate(() => typeof window.StompJs === 'object' && typeof window.StompJs.Client === 'function');
  check(loaded, 'StompJs.Client is not defined: stomp.umd.min.js did not load');
  for (const id of ['name', 'room', 'join', 'leave', 'status', 'message', 'send', 'messages']) {
    check((await page.locator(`#${id}`).count()) === 1, `the page has no #${id}`);
  }
  return page;
}

async function join(page, name, room) {
  await page.fill('#name', name);
  await page.fill('#room', room);
  await page.click('#join');
}

async function waitConnected(page) {
  await page.waitForSelector('#status[data-state="connected"]', { timeout: STEP_TIMEOUT_MS });
  await page.waitForSelector('#message:not([disabled])', { timeout: STEP_TIMEOUT_MS });
}

async function main() {
  const started = Date.now();
  const token = randomBytes(4).toString('hex');
  const room = `e2e-${token}`;
  const nameA = `alice-${token.slice(0, 4)}`;
  const nameB = `bob-${token.slice(4)}`;
  const textA = `hello from A <b>not bold</b> & "quotes" <script>x()</script> ✓ ${token}`;
  const textB = `réponse de B — ünïcödé ✓ <i>${token}</i>`;

  browser = await step('launch chromium', () =>
    chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: STEP_TIMEOUT_MS,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    }),
  );

  const a = await step('page A loads', () => openPage('A'));
  const b = await step('page B loads', () => openPage('B'));

  await step('A and B join the room', async () => {
    await join(a, nameA, room);
    await join(b, nameB, room);
    await Promise.all([waitConnected(a), waitConnected(b)]);
  });

  await step('A sends a message with Enter', async () => {
    await a.fill('#message', textA);
    await a.press('#message', 'Enter');
  });

  await step("B shows A's message", async () => {
    const m = await waitForMessage(b, textA);
    check(m.user === nameA, `B shows it from '${m.user}', expected '${nameA}'`);
    check(!m.own, 'B styles it as its own message');
    check(m.childElements === 0, 'the message text was rendered as HTML (not escaped)');
  });

  await step("A shows its own message", async () => {
    const m = await waitForMessage(a, textA);
    check(m.own, 'A does not style its own message as own (.msg.own)');
    check(m.user.startsWith(nameA), `A shows it from '${m.user}', expected '${nameA}'`);
    check(m.childElements === 0, 'the message text was rendered as HTML (not escaped)');
    check(await a.inputValue('#message') === '', 'the message input was not cleared after sending');
  });

  await step('B replies with the Send button', async () => {
    await b.fill('#message', textB);
    await b.click('#send');
  });

  await step("A shows B's reply", async () => {
    const m = await waitForMessage(a, textB);
    check(m.user === nameB, `A shows it from '${m.user}', expected '${nameB}'`);
    check(!m.own, 'A styles it as its own message');
    check(m.count === 2, `A shows ${m.count} messages, expected 2`);
  });

  await step("B shows its own reply", async () => {
    const m = await waitForMessage(b, textB);
    check(m.own, 'B does not style its own message as own');
    check(m.count === 2, `B shows ${m.count} messages, expected 2`);
  });

  const presence = await a.evaluate(() => document.querySelector('meta[name="gateway-presence"]')?.content === 'on');
  const whoIs = (page, names) =>
    page.waitForFunction(n => document.getElementById('who')?.textContent === n, names, { timeout: STEP_TIMEOUT_MS });
  if (presence) {
    await step('both pages show who is in the room', async () => {
      const both = [nameA, nameB].sort().join(', ');
      await Promise.all([whoIs(a, both), whoIs(b, both)]);
    });
  }

  await step('screenshot', async () => {
    const [shotA, shotB] = await Promise.all([a.screenshot(), b.screenshot()]);
    // Compose A | B side by side in a scratch page, so no image library is needed.
    const ctx = await browser.newContext({ viewport: { width: VIEWPORT.width * 2 + 30, height: VIEWPORT.height + 50 } });
    const sheet = await ctx.newPage();
    const img = (buf, label) =>
      `<figure><figcaption>${label}</figcaption><img src="data:image/png;base64,${buf.toString('base64')}"></figure>`;
    await sheet.setContent(
      `<!doctype html><style>body{margin:0;padding:10px;display:flex;gap:10px;background:#cbd0d8;font:13px system-ui,sans-serif}` +
        `figure{margin:0}figcaption{padding:0 0 4px}img{display:block;width:${VIEWPORT.width}px;box-shadow:0 1px 4px #0003}</style>` +
        img(shotA, `A (${nameA})`) + img(shotB, `B (${nameB})`),
      { waitUntil: 'load' },
    );
    await sheet.screenshot({ path: screenshotPath, fullPage: true });
    await ctx.close();
  });

  await step('B leaves', async () => {
    await b.click('#leave');
    await b.waitForSelector('#status[data-state="disconnected"]', { timeout: STEP_TIMEOUT_MS });
    await b.waitForSelector('#join:not([disabled])', { timeout: STEP_TIMEOUT_MS });
  });

  if (presence) {
    await step('A shows that B left', () => whoIs(a, nameA));
  }

  await step('no page errors', async () => {
    for (const [label, p] of Object.entries(pages)) {
      check(p.errors.length === 0, `page ${label} threw: ${p.errors.join('; ')}`);
    }
  });

  currentStep = 'close';
  await closeBrowser();
  clearTimeout(overall);
  finished = true;
  console.log(`room ${room}: 2 pages, 2 messages, presence ${presence ? 'checked' : 'off'}, ${((Date.now() - started) / 1000).toFixed(1)} s; screenshot ${screenshotPath}`);
  console.log(`${PREFIX}: OK`);
  process.exit(0);
}

main().catch(err => fail(err && err.message ? err.message : `${currentStep}: ${err}`));
