#!/usr/bin/env node
// Interop check: the gateway against the real @stomp/stompjs client (Node 20, `ws` package).
//
// Usage:
//   node stompjs_check.mjs [-v] [--idle SECONDS] ws://127.0.0.1:PORT/ws
//
// Install the dependencies first with scripts/install-interop-deps (npm ci in tests/interop).
//
// What it checks (STOMP 1.2 over WebSocket):
//   * two connections (subscriber, publisher), each offering the subprotocols
//     v12.stomp, v11.stomp, v10.stomp (the server must select v12.stomp), with heart-beats;
//     CONNECTED must say version 1.2 and carry a heart-beat header;
//   * the subscriber subscribes twice to a unique /topic/interop.js.<token>: ack=auto and
//     ack=client-individual (every message on the latter is acknowledged with message.ack());
//     the publisher subscribes once too (ack=auto), so it must get its own messages back;
//   * the publisher sends N ASCII messages with custom headers (one needing STOMP 1.2 header
//     escaping), one non-ASCII UTF-8 message with a content-type, and one binary message
//     (binaryBody, bytes that are not valid UTF-8) carrying a receipt that is awaited with
//     client.watchForReceipt;
//   * every subscription receives every message, in order, byte-identical, with the right
//     content-length, custom headers, destination, subscription and a unique message-id (and
//     an ack header on the client-individual subscription); the binary message must arrive
//     in a binary WebSocket frame;
//   * heart-beats from the server are observed while idle (when the negotiated interval is
//     short enough to be worth waiting for);
//   * with --idle SECONDS, both connections then stay idle that long and must survive on
//     heart-beats alone (no ERROR, no close, no lost heart-beat);
//   * both clients disconnect cleanly with client.deactivate() (DISCONNECT + receipt + close),
//     with reconnection disabled.
//
// Every wait is bounded; on failure it prints the reason and exits 1, on success it prints
// "stompjs interop: OK (<n> messages)" and exits 0.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { failureFor } from './failure.mjs';

const STEP_TIMEOUT_MS = 10_000; // every single wait
const OVERALL_TIMEOUT_MS = 90_000; // hard stop for the whole script (plus --idle)
const N_ASCII = 20;
const CLIENT_HEARTBEAT_MS = 2000; // heartbeatIncoming and heartbeatOutgoing
const MAX_HEARTBEAT_WAIT_MS = 5000; // only wait for server heart-beats if interval <= this
const SUBPROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];
const UTF8_BODY = 'héllo ✓ — ünïcödé 日本語 🚀';
const BINARY_BODY = Uint8Array.from([0xff, 0x00, 0xfe]); // not valid UTF-8, contains NUL
// needs \c, \\ and \n escaping in STOMP 1.2.  A backslash followed by c, n or r is avoided on
// purpose: @stomp/stompjs unescapes with chained String.replace calls, so the wire bytes
// backslash, backslash, c come out as "\:" instead of "\c".
const ESCAPED_VALUE = 'key:value\\path\nline2';
const PREFIX = 'stompjs interop';
// The check's own watchdog (below, once --idle is known) comes first; this one is the
// backstop beyond the longest --idle.
const fail = failureFor(PREFIX, OVERALL_TIMEOUT_MS + 61_000);

// ---- arguments ---------------------------------------------------------------------------
const USAGE = 'usage: node stompjs_check.mjs [-v] [--idle SECONDS] ws://HOST:PORT/PATH';
const argv = process.argv.slice(2);
let verbose = false;
let idleSeconds = 0;
const positional = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '-v' || a === '--verbose') verbose = true;
  else if (a === '--idle' || a.startsWith('--idle=')) {
    const v = a === '--idle' ? argv[++i] : a.slice('--idle='.length);
    idleSeconds = Number(v);
    if (v === undefined || v === '' || !Number.isFinite(idleSeconds) || idleSeconds < 0 || idleSeconds > 60) {
      process.stderr.write(`${USAGE}\n--idle must be between 0 and 60 seconds\n`);
      process.exit(2);
    }
  } else if (a.startsWith('-')) {
    process.stderr.write(`${USAGE}\nunknown option ${a}\n`);
    process.exit(2);
  } else positional.push(a);
}
if (positional.length !== 1) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(2);
}
const url = positional[0];
let parsedUrl;
try {
  parsedUrl = new URL(url);
} catch {
  fail(`invalid URL ${JSON.stringify(url)}: expected ws://HOST:PORT/PATH`);
}
if (parsedUrl.protocol !== 'ws:' || !parsedUrl.hostname) {
  fail(`unsupported URL ${JSON.stringify(url)}: expected ws://HOST:PORT/PATH`);
}

// ---- dependencies ------------------------------------------------------------------------
let Client, WebSocket;
try {
  ({ Client } = await import('@stomp/stompjs'));
  ({ default: WebSocket } = await import('ws'));
} catch (err) {
  fail(
    `cannot load @stomp/stompjs / ws (${err.message}); run scripts/install-interop-deps ` +
      `(npm ci in tests/interop)`,
  );
}
function installedVersion(pkg) {
  try {
    const file = new URL(`./node_modules/${pkg}/package.json`, import.meta.url);
    return JSON.parse(readFileSync(file, 'utf8')).version;
  } catch {
    return '?';
  }
}
const stompjsVersion = installedVersion('@stomp/stompjs');
const wsVersion = installedVersion('ws');

const overallMs = OVERALL_TIMEOUT_MS + idleSeconds * 1000;
const watchdog = setTimeout(() => fail(`overall timeout: not done after ${overallMs / 1000}s`), overallMs);
watchdog.unref();

// ---- helpers -----------------------------------------------------------------------------
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const encoder = new TextEncoder();

function bytesEqual(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
const hex = bytes => Array.from(bytes || [], b => b.toString(16).padStart(2, '0')).join(' ');
const strictDecoder = new TextDecoder('utf-8', { fatal: true });
// a body for messages: JSON string if valid UTF-8, else hex bytes
function show(bytes) {
  try {
    return JSON.stringify(strictDecoder.decode(bytes));
  } catch {
    return `[${hex(bytes)}]`;
  }
}

class Peer {
  constructor(name) {
    this.name = name;
    this.connectedFrame = null;
    this.messages = new Map(); // subscription id -> [{headers, binaryBody, body}]
    this.receipts = new Set();
    this.errors = [];
    this.wsErrors = [];
    this.closeEvent = null;
    this.heartbeats = 0;
    this.heartbeatLost = false;
    this.disconnectReceipt = false;
    this.binaryWsFrames = 0;
    this.textWsFrames = 0;
    this.ackFailures = [];
    this.deactivating = false;
    this.webSocket = null;

    this.client = new Client({
      webSocketFactory: () => {
        const ws = new WebSocket(url, SUBPROTOCOLS);
        ws.addEventListener('message', evt => {
          if (typeof evt.data === 'string') this.textWsFrames++;
          else this.binaryWsFrames++;
        });
        this.webSocket = ws;
        return ws;
      },
      reconnectDelay: 0, // never reconnect
      connectionTimeout: 0, // the waits below are bounded instead, with clearer messages
      heartbeatIncoming: CLIENT_HEARTBEAT_MS,
      heartbeatOutgoing: CLIENT_HEARTBEAT_MS,
      debug: verbose ? msg => process.stderr.write(`[${name}] ${msg}\n`) : () => {},
      onConnect: frame => {
        this.connectedFrame = frame;
      },
      onDisconnect: () => {
        this.disconnectReceipt = true;
      },
      onStompError: frame => {
        this.errors.push({ headers: { ...frame.headers }, body: frame.body });
      },
      onWebSocketError: evt => {
        this.wsErrors.push((evt && (evt.message || (evt.error && evt.error.message))) || String(evt));
      },
      onWebSocketClose: evt => {
        this.closeEvent = { code: evt.code, reason: evt.reason, wasClean: evt.wasClean };
      },
      onHeartbeatReceived: () => {
        this.heartbeats++;
      },
      onHeartbeatLost: () => {
        this.heartbeatLost = true;
      },
      onUnhandledMessage: msg => {
        const sub = msg.headers.subscription;
        this.record(sub, msg);
      },
      onUnhandledReceipt: frame => {
        this.receipts.add(frame.headers['receipt-id']);
      },
      onUnhandledFrame: frame => {
        this.errors.push({ headers: { unexpectedFrame: frame.command, ...frame.headers }, body: frame.body });
      },
    });
  }

  record(sub, msg) {
    if (!this.messages.has(sub)) this.messages.set(sub, []);
    this.messages.get(sub).push({
      headers: { ...msg.headers },
      binaryBody: Uint8Array.from(msg.binaryBody),
      body: msg.body,
    });
  }

  problem({ allowClosed = false } = {}) {
    if (this.errors.length) {
      const e = this.errors[0];
      return `${this.name}: server sent ERROR: headers=${JSON.stringify(e.headers)} body=${JSON.stringify(e.body)}`;
    }
    if (this.ackFailures.length) return `${this.name}: ${this.ackFailures[0]}`;
    if (this.heartbeatLost) return `${this.name}: stompjs reported a lost heart-beat (server sent nothing in time)`;
    if (this.closeEvent && !allowClosed) {
      const why = this.wsErrors.length ? `; WebSocket error: ${this.wsErrors[this.wsErrors.length - 1]}` : '';
      return (
        `${this.name}: WebSocket closed unexpectedly (code ${this.closeEvent.code}` +
        `${this.closeEvent.reason ? `, reason ${JSON.stringify(this.closeEvent.reason)}` : ''})${why}`
      );
    }
    return null;
  }

  async waitFor(predicate, what, { timeoutMs = STEP_TIMEOUT_MS, allowClosed = false } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (predicate()) return;
      const p = this.problem({ allowClosed });
      if (p) fail(`while waiting for ${what}: ${p}`);
      if (Date.now() > deadline) fail(`${this.name}: timed out after ${timeoutMs / 1000}s waiting for ${what}`);
      await sleep(10);
    }
  }

  watchReceipt(id) {
    this.client.watchForReceipt(id, frame => this.receipts.add(frame.headers['receipt-id']));
    return id;
  }

  async connect() {
    this.client.activate();
    await this.waitFor(() => this.connectedFrame !== null, `CONNECTED from ${url}`);
    const h = this.connectedFrame.headers;
    if (h.version !== '1.2') {
      fail(`${this.name}: CONNECTED version is ${JSON.stringify(h.version)}, expected "1.2" (headers: ${JSON.stringify(h)})`);
    }
    if (!('heart-beat' in h)) {
      fail(`${this.name}: CONNECTED has no heart-beat header although the client asked for ` +
        `${CLIENT_HEARTBEAT_MS},${CLIENT_HEARTBEAT_MS} (headers: ${JSON.stringify(h)})`);
    }
    const parts = h['heart-beat'].split(',').map(v => Number.parseInt(v.trim(), 10));
    if (parts.length !== 2 || parts.some(Number.isNaN)) {
      fail(`${this.name}: malformed CONNECTED heart-beat header ${JSON.stringify(h['heart-beat'])}`);
    }
    [this.sx, this.sy] = parts;
    const proto = this.webSocket && this.webSocket.protocol;
    if (proto !== 'v12.stomp') {
      fail(`${this.name}: offered subprotocols ${SUBPROTOCOLS.join(',')}, server selected ${JSON.stringify(proto)} (expected "v12.stomp")`);
    }
  }

  subscribe(dest, id, ack, receipt) {
    const headers = { id, ack };
    if (receipt) headers.receipt = this.watchReceipt(receipt);
    this.client.subscribe(
      dest,
      msg => {
        this.record(id, msg);
        if (ack === 'client-individual') {
          if (!msg.headers.ack) {
            this.ackFailures.push(`MESSAGE on client-individual subscription ${id} has no ack header (headers: ${JSON.stringify(msg.headers)})`);
            return;
          }
          try {
            msg.ack();
          } catch (err) {
            this.ackFailures.push(`message.ack() threw ${err}`);
          }
        }
      },
      headers,
    );
  }

  async disconnect() {
    this.deactivating = true;
    let done = false;
    const p = this.client.deactivate().then(() => {
      done = true;
    });
    await this.waitFor(() => done, 'client.deactivate() to finish (DISCONNECT, RECEIPT, close)', { allowClosed: true });
    await p;
    if (!this.disconnectReceipt) {
      fail(`${this.name}: connection closed without a RECEIPT for DISCONNECT` +
        (this.closeEvent ? ` (close code ${this.closeEvent.code})` : ''));
    }
    const p2 = this.problem({ allowClosed: true });
    if (p2) fail(p2);
  }
}

function checkStream(peer, subId, expected, dest, wantAck) {
  const got = peer.messages.get(subId) || [];
  if (got.length !== expected.length) {
    fail(`${peer.name}: subscription ${subId} received ${got.length} messages, expected ${expected.length}`);
  }
  const seen = new Set();
  got.forEach((m, i) => {
    const exp = expected[i];
    const where = `${peer.name}: subscription ${subId}, message #${i}`;
    if (!bytesEqual(m.binaryBody, exp.bytes)) {
      const j = got.findIndex(g => bytesEqual(g.binaryBody, exp.bytes));
      const what = `got body ${show(m.binaryBody)}, expected ${show(exp.bytes)}`;
      if (j >= 0) fail(`${where}: out of order: ${what} (which arrived as #${j})`);
      fail(`${where}: ${what}`);
    }
    if (exp.text !== undefined && m.body !== exp.text) {
      fail(`${where}: body ${JSON.stringify(m.body)}, expected ${JSON.stringify(exp.text)}`);
    }
    const h = m.headers;
    if (h.destination !== dest) fail(`${where}: destination header ${JSON.stringify(h.destination)}, expected ${JSON.stringify(dest)}`);
    if (h.subscription !== subId) fail(`${where}: subscription header ${JSON.stringify(h.subscription)}, expected ${JSON.stringify(subId)}`);
    if (!h['message-id']) fail(`${where}: missing message-id header (headers: ${JSON.stringify(h)})`);
    if (seen.has(h['message-id'])) fail(`${where}: duplicate message-id ${JSON.stringify(h['message-id'])}`);
    seen.add(h['message-id']);
    if (h['content-length'] !== String(exp.bytes.length)) {
      fail(`${where}: content-length ${JSON.stringify(h['content-length'])}, expected "${exp.bytes.length}"`);
    }
    for (const [k, v] of Object.entries(exp.headers)) {
      if (h[k] !== v) fail(`${where}: custom header ${k} is ${JSON.stringify(h[k])}, expected ${JSON.stringify(v)}`);
    }
    if (wantAck && !h.ack) fail(`${where}: no ack header on a client-individual subscription (headers: ${JSON.stringify(h)})`);
  });
  return got.length;
}

// ---- the check ---------------------------------------------------------------------------
const token = randomBytes(6).toString('hex');
const dest = `/topic/interop.js.${token}`;

const sub = new Peer('subscriber');
const pub = new Peer('publisher');
await sub.connect();
await pub.connect();

sub.subscribe(dest, 'sub-auto', 'auto');
sub.subscribe(dest, 'sub-ci', 'client-individual', `subs-${token}`);
await sub.waitFor(() => sub.receipts.has(`subs-${token}`), 'RECEIPT for SUBSCRIBE (subscriber)');
pub.subscribe(dest, 'sub-self', 'auto', `self-${token}`);
await pub.waitFor(() => pub.receipts.has(`self-${token}`), 'RECEIPT for SUBSCRIBE (publisher, own messages)');

const expected = [];
for (let i = 0; i < N_ASCII; i++) {
  const text = `interop message ${i} of ${token}`;
  const headers = { 'x-interop-seq': String(i), 'x-interop-run': token };
  if (i === 0) headers['x-interop-escaped'] = ESCAPED_VALUE;
  pub.client.publish({ destination: dest, body: text, headers: { ...headers } });
  expected.push({ text, bytes: encoder.encode(text), headers });
}
{
  const headers = { 'x-interop-seq': String(N_ASCII), 'x-interop-run': token, 'content-type': 'text/plain;charset=utf-8' };
  pub.client.publish({ destination: dest, body: UTF8_BODY, headers: { ...headers } });
  expected.push({ text: UTF8_BODY, bytes: encoder.encode(UTF8_BODY), headers });
}
{
  const headers = { 'x-interop-seq': String(N_ASCII + 1), 'x-interop-run': token, 'content-type': 'application/octet-stream' };
  const receipt = pub.watchReceipt(`send-${token}`);
  pub.client.publish({ destination: dest, binaryBody: BINARY_BODY, headers: { ...headers, receipt } });
  expected.push({ bytes: BINARY_BODY, headers });
}
await pub.waitFor(() => pub.receipts.has(`send-${token}`), 'RECEIPT for the last SEND (binary body)');

const n = expected.length;
for (const [peer, subId] of [[sub, 'sub-auto'], [sub, 'sub-ci'], [pub, 'sub-self']]) {
  await peer.waitFor(() => (peer.messages.get(subId) || []).length >= n, `${n} MESSAGE frames on subscription ${subId}`);
}
let total = 0;
total += checkStream(sub, 'sub-auto', expected, dest, false);
total += checkStream(sub, 'sub-ci', expected, dest, true);
total += checkStream(pub, 'sub-self', expected, dest, false);
for (const peer of [sub, pub]) {
  const extra = [...peer.messages.keys()].filter(k => !['sub-auto', 'sub-ci', 'sub-self'].includes(k));
  if (extra.length) fail(`${peer.name}: MESSAGE frames for unknown subscriptions: ${extra.join(', ')}`);
  // each connection got 1 (sub-self) or 2 (subscriber) binary MESSAGE frames; a text frame with
  // invalid UTF-8 would already have been rejected by ws (close 1007)
  const wantBinary = peer === sub ? 2 : 1;
  if (peer.binaryWsFrames < wantBinary) {
    fail(`${peer.name}: expected the binary-body MESSAGE frames in binary WebSocket frames, got ${peer.binaryWsFrames} binary frames`);
  }
}

// heart-beats: server -> client interval is max(sx, heartbeatIncoming) when both are non-zero
let hbNote = `server heart-beat ${sub.sx},${sub.sy}`;
if (sub.sx > 0) {
  const interval = Math.max(sub.sx, CLIENT_HEARTBEAT_MS);
  if (interval <= MAX_HEARTBEAT_WAIT_MS) {
    const before = sub.heartbeats;
    await sub.waitFor(() => sub.heartbeats > before, `a server heart-beat (negotiated every ${interval} ms)`, {
      timeoutMs: interval * 2.5 + 1000,
    });
    hbNote += `, received heart-beats every <= ${interval} ms`;
  } else {
    hbNote += `, interval ${interval} ms too long to wait for`;
  }
} else {
  hbNote += ', server sends none';
}

if (idleSeconds > 0) {
  // both connections idle at once; fail as soon as either reports a problem
  const deadline = Date.now() + idleSeconds * 1000;
  while (Date.now() < deadline) {
    for (const peer of [sub, pub]) {
      const p = peer.problem();
      if (p) fail(`while idle: ${p}`);
    }
    await sleep(50);
  }
  hbNote += `, survived ${idleSeconds}s idle (heart-beats ${sub.heartbeats} received)`;
}

for (const peer of [sub, pub]) {
  const p = peer.problem();
  if (p) fail(p);
}

await sub.disconnect();
await pub.disconnect();

console.log(`${PREFIX}: ${n} messages sent (incl. 1 UTF-8 and 1 binary), each delivered to 3 subscriptions; ${hbNote}; @stomp/stompjs ${stompjsVersion}, ws ${wsVersion}`);
console.log(`${PREFIX}: OK (${total} messages)`);
process.exit(0);
