#!/usr/bin/env node
// Interop check: per-user destinations and token refresh with the real @stomp/stompjs client.
//
// Usage:
//   node stompjs_user.mjs ALICE_TOKEN BOB_TOKEN CAROL_TOKEN ALICE_FRESH_TOKEN ws://HOST:PORT/ws
//
// Alice opens two connections (two browser tabs) and bob one; each subscribes to
// /user/queue/inbox, as a Spring-style app does. Carol publishes to /user/alice/queue/inbox
// with a receipt. Both of alice's connections must get the message, showing the destination
// as subscribed (/user/queue/inbox) and carol as its user-id; bob must get nothing.
// Then alice's first tab refreshes its token in place (a publish of the fresh JWT to
// /gateway/token, with a receipt) and still gets carol's next message on the same connection.
// Every wait is bounded; prints "stompjs user destinations: OK" and exits 0 on success.

import { failureFor } from './failure.mjs';

const STEP_TIMEOUT_MS = 10_000;
const QUIET_MS = 1_000;
const PREFIX = 'stompjs user destinations';
const fail = failureFor(PREFIX, 60_000);

const [aliceToken, bobToken, carolToken, aliceFresh, url] = process.argv.slice(2);
if (!url) {
  process.stderr.write('usage: node stompjs_user.mjs ALICE_TOKEN BOB_TOKEN CAROL_TOKEN ALICE_FRESH_TOKEN ws://HOST:PORT/ws\n');
  process.exit(2);
}

const { Client } = await import('@stomp/stompjs');
const { default: WebSocket } = await import('ws');

function within(promise, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), STEP_TIMEOUT_MS)),
  ]);
}

/** A connected stompjs client whose CONNECT passcode is `token`. */
async function connect(name, token) {
  const client = new Client({
    webSocketFactory: () => new WebSocket(url, ['v12.stomp']),
    connectHeaders: { login: name, passcode: token },
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
  });
  await within(
    new Promise((resolve, reject) => {
      client.onConnect = resolve;
      client.onStompError = frame => reject(new Error(`${name}: ERROR ${frame.headers.message}: ${frame.body}`));
      client.onWebSocketClose = evt => reject(new Error(`${name}: closed (${evt.code})`));
      client.activate();
    }),
    `${name} connects`,
  );
  return client;
}

/** Subscribes to /user/queue/inbox and waits for the RECEIPT; returns the messages seen. */
async function subscribeInbox(name, client) {
  const seen = [];
  const receipt = `sub-${name}`;
  const subscribed = new Promise(resolve => client.watchForReceipt(receipt, resolve));
  client.subscribe('/user/queue/inbox', m => seen.push(m), { receipt });
  await within(subscribed, `${name} subscribes`);
  return seen;
}

const aliceTab1 = await connect('alice', aliceToken);
const aliceTab2 = await connect('alice', aliceToken);
const bob = await connect('bob', bobToken);
const carol = await connect('carol', carolToken);
const inboxes = {
  aliceTab1: await subscribeInbox('alice-1', aliceTab1),
  aliceTab2: await subscribeInbox('alice-2', aliceTab2),
  bob: await subscribeInbox('bob', bob),
};

const sent = new Promise(resolve => carol.watchForReceipt('sent', resolve));
carol.publish({
  destination: '/user/alice/queue/inbox',
  body: 'hello alice',
  headers: { receipt: 'sent' },
});
await within(sent, 'carol publishes');

const deadline = Date.now() + STEP_TIMEOUT_MS;
while ((inboxes.aliceTab1.length < 1 || inboxes.aliceTab2.length < 1) && Date.now() < deadline) {
  await new Promise(resolve => setTimeout(resolve, 20));
}
for (const tab of ['aliceTab1', 'aliceTab2']) {
  const got = inboxes[tab];
  if (got.length !== 1) fail(`${tab} got ${got.length} messages, expected 1`);
  const m = got[0];
  if (m.body !== 'hello alice') fail(`${tab} got body ${JSON.stringify(m.body)}`);
  if (m.headers.destination !== '/user/queue/inbox') {
    fail(`${tab} got destination ${m.headers.destination}, expected /user/queue/inbox`);
  }
  if (m.headers['user-id'] !== 'carol') fail(`${tab} got user-id ${m.headers['user-id']}`);
}
await new Promise(resolve => setTimeout(resolve, QUIET_MS));
if (inboxes.bob.length !== 0) fail(`bob got ${inboxes.bob.length} of alice's messages`);

// Token refresh on the live connection, then one more message to it.
const refreshed = new Promise(resolve => aliceTab1.watchForReceipt('refreshed', resolve));
aliceTab1.publish({ destination: '/gateway/token', body: aliceFresh, headers: { receipt: 'refreshed' } });
await within(refreshed, 'alice refreshes her token');
const again = new Promise(resolve => carol.watchForReceipt('again', resolve));
carol.publish({ destination: '/user/alice/queue/inbox', body: 'still here', headers: { receipt: 'again' } });
await within(again, 'carol publishes again');
const until = Date.now() + STEP_TIMEOUT_MS;
while (inboxes.aliceTab1.length < 2 && Date.now() < until) {
  await new Promise(resolve => setTimeout(resolve, 20));
}
if (inboxes.aliceTab1.length !== 2 || inboxes.aliceTab1[1].body !== 'still here') {
  fail(`after the refresh alice's tab got ${inboxes.aliceTab1.length} messages`);
}

for (const c of [aliceTab1, aliceTab2, bob, carol]) await c.deactivate();
console.log(`${PREFIX}: OK`);
process.exit(0);
