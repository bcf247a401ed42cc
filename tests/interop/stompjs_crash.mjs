#!/usr/bin/env node
// Crash recovery with the real @stomp/stompjs client (Node 20, `ws` package), written the way
// docs/resume.md tells an application to: stable subscription ids, the last `position` kept per
// subscription, the latest resume token kept, `resume-from` (and a receipt) on every SUBSCRIBE.
//
// Usage:
//   node stompjs_crash.mjs ws://NODE_A/ws ws://NODE_B/ws
//
// The test that runs it (gateway/tests/interop.rs) talks to it over stdin/stdout:
//   1. the client connects to node A, subscribes to a durable and a history destination,
//      publishes message 0 to each and prints "ready" once it has received both;
//   2. the test SIGKILLs node A, publishes messages 1..=20 to each destination through
//      node B, and writes "go" to stdin;
//   3. stompjs reconnects (as it does after any close), now to node B (the load balancer's
//      choice once A is gone): its token names a session nobody holds, so CONNECTED says
//      resume-failure:unknown; each SUBSCRIBE's resume-from recovers messages 1..=20 (RECEIPT
//      resumed:true), then message 21, published live, arrives.
// Every message must arrive exactly once and in order. Prints "stompjs crash recovery: OK".

import { createInterface } from 'node:readline';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { failureFor } from './failure.mjs';

const PREFIX = 'stompjs crash recovery';
const MISSED = 20;
const fail = failureFor(PREFIX, 60_000);

const [urlA, urlB] = process.argv.slice(2);
if (!urlA || !urlB) {
  process.stderr.write('usage: node stompjs_crash.mjs ws://NODE_A/ws ws://NODE_B/ws\n');
  process.exit(2);
}

// Stable id -> destination. What the application keeps across connections:
const rooms = new Map([
  ['orders', '/topic/orders'],
  ['lobby', '/topic/chat.lobby'],
]);
const last = new Map(); // subscription id -> last position processed
const received = new Map([...rooms.keys()].map(id => [id, []]));
let resumeToken = null;
let url = urlA;
const connects = [];
const receipts = new Map(); // receipt id -> RECEIPT headers

// "go" on stdin: node A is dead and the missed messages are published.
let go;
const goSignal = new Promise(resolve => (go = resolve));
createInterface({ input: process.stdin }).on('line', line => {
  if (line.trim() === 'go') go();
});

let readyPrinted = false;
const client = new Client({
  webSocketFactory: () => new WebSocket(url, ['v12.stomp']),
  reconnectDelay: 200,
  heartbeatIncoming: 0,
  heartbeatOutgoing: 0,
  beforeConnect: async () => {
    if (readyPrinted) {
      // Reconnecting after node A died: wait for the test, then the load balancer sends us to B.
      await goSignal;
      url = urlB;
    }
    const headers = {};
    if (resumeToken) headers['resume-token'] = resumeToken;
    client.connectHeaders = headers;
  },
  onConnect: frame => {
    connects.push({ ...frame.headers });
    resumeToken = frame.headers['resume-token'];
    for (const [id, destination] of rooms) {
      const receipt = `sub-${id}-${connects.length}`;
      client.watchForReceipt(receipt, r => receipts.set(receipt, { ...r.headers }));
      const headers = { id, receipt };
      if (last.has(id)) headers['resume-from'] = last.get(id);
      client.subscribe(destination, message => onMessage(id, message), headers);
    }
  },
  onStompError: frame => fail(`ERROR frame: ${JSON.stringify(frame.headers)} ${frame.body}`),
});

function onMessage(id, message) {
  const n = Number(message.headers['x-n']);
  const got = received.get(id);
  const expected = got.length;
  if (n !== expected) fail(`${id}: expected message ${expected}, got ${n} (received ${got.join(',')})`);
  got.push(n);
  last.set(id, message.headers.position);
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
async function until(what, condition, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

client.activate();
await until('CONNECTED from node A', () => connects.length === 1);
await until('both subscriptions live', () => receipts.size === 2);
for (const destination of rooms.values()) client.publish({ destination, headers: { 'x-n': '0' } });
await until('message 0 on both subscriptions', () => [...received.values()].every(r => r.length === 1));
readyPrinted = true;
process.stdout.write('ready\n');

await until('the reconnect to node B', () => connects.length === 2, 30_000);
const second = connects[1];
if (second.resumed !== 'false' || second['resume-failure'] !== 'unknown') {
  fail(`CONNECTED after the crash should say resume-failure:unknown: ${JSON.stringify(second)}`);
}
await until('the resubscriptions\' receipts', () => receipts.size === 4);
for (const [id, headers] of receipts) {
  if (id.endsWith('-2') && headers.resumed !== 'true') {
    fail(`RECEIPT ${id} should say resumed:true: ${JSON.stringify(headers)}`);
  }
}
await until('the missed messages', () => [...received.values()].every(r => r.length === MISSED + 1));
for (const destination of rooms.values()) {
  client.publish({ destination, headers: { 'x-n': String(MISSED + 1) } });
}
await until('the live message', () => [...received.values()].every(r => r.length === MISSED + 2));
await client.deactivate();
process.stdout.write(`${PREFIX}: OK (${MISSED} missed messages per destination recovered)\n`);
process.exit(0);
