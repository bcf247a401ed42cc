#!/usr/bin/env python3
"""Crash recovery with the real stomp.py client (WebSocket transport).

Usage:
    python3 stomppy_crash.py ws://NODE_A/ws ws://NODE_B/ws

Written the way docs/resume.md tells an application to: stable subscription
ids, the last `position` kept per subscription, the latest resume token
kept, and `resume-from` (with a receipt) on every SUBSCRIBE.

The test that runs it (gateway/tests/interop.rs) talks to it over
stdin/stdout:
  1. the client connects to node A, subscribes to a durable and a history
     destination, publishes message 0 to each and prints "ready" once it has
     received both;
  2. the test SIGKILLs node A, publishes messages 1..=20 to each destination
     through node B, and writes "go" to stdin;
  3. the client, whose connection died with node A, connects to node B with
     its token (CONNECTED says resume-failure:unknown: nobody holds the
     session), SUBSCRIBEs with resume-from and gets messages 1..=20 (RECEIPT
     resumed:true), then message 21, published live.
Every message must arrive exactly once and in order. Prints
"stomp.py crash recovery: OK".
"""

import sys
import threading
import time
import urllib.parse

import stomp

PREFIX = "stomp.py crash recovery"
MISSED = 20
ROOMS = {"orders": "/topic/orders", "lobby": "/topic/chat.lobby"}


def fail(reason):
    sys.stderr.write(f"{PREFIX}: FAIL: {reason}\n")
    sys.stderr.flush()
    # os._exit: also from stomp.py's receiver thread.
    import os
    os._exit(1)


class Rooms(stomp.ConnectionListener):
    """What the application keeps across connections, and what it saw."""

    def __init__(self):
        self.lock = threading.Condition()
        self.last = {}                                   # id -> last position processed
        self.received = {id: [] for id in ROOMS}
        self.token = None
        self.connected = None
        self.receipts = {}                               # receipt id -> headers
        self.disconnected = False

    def on_connected(self, frame):
        with self.lock:
            self.connected = dict(frame.headers)
            self.token = frame.headers.get("resume-token")
            self.lock.notify_all()

    def on_message(self, frame):
        sub = frame.headers["subscription"]
        n = int(frame.headers["x-n"])
        with self.lock:
            got = self.received[sub]
            if n != len(got):
                fail(f"{sub}: expected message {len(got)}, got {n} (received {got})")
            got.append(n)
            self.last[sub] = frame.headers["position"]
            self.lock.notify_all()

    def on_receipt(self, frame):
        with self.lock:
            self.receipts[frame.headers["receipt-id"]] = dict(frame.headers)
            self.lock.notify_all()

    def on_error(self, frame):
        fail(f"ERROR frame: {dict(frame.headers)} {frame.body!r}")

    def on_disconnected(self):
        with self.lock:
            self.disconnected = True
            self.lock.notify_all()

    def until(self, what, condition, timeout=15.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    fail(f"timed out waiting for {what}")
                self.lock.wait(min(remaining, 0.25))


def connect(url, rooms, attempt):
    parts = urllib.parse.urlsplit(url)
    conn = stomp.WSStompConnection(
        host_and_ports=[(parts.hostname, parts.port)],
        ws_path=parts.path,
        header={"Sec-WebSocket-Protocol": "v12.stomp"},
        heartbeats=(0, 0),
        reconnect_attempts_max=1,
    )
    conn.set_listener("rooms", rooms)
    with rooms.lock:
        rooms.connected = None
        rooms.disconnected = False
        headers = {"resume-token": rooms.token} if rooms.token else {}
    conn.connect(wait=False, with_connect_command=True, headers=headers)
    rooms.until("CONNECTED", lambda: rooms.connected is not None)
    for id, destination in ROOMS.items():
        headers = {"receipt": f"sub-{id}-{attempt}"}
        with rooms.lock:
            if id in rooms.last:
                headers["resume-from"] = rooms.last[id]
        conn.subscribe(destination=destination, id=id, ack="auto", headers=headers)
    rooms.until("the subscriptions' receipts",
                lambda: all(f"sub-{id}-{attempt}" in rooms.receipts for id in ROOMS))
    return conn


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: stomppy_crash.py ws://NODE_A/ws ws://NODE_B/ws\n")
        sys.exit(2)
    url_a, url_b = sys.argv[1:]
    threading.Timer(60.0, lambda: fail("overall timeout: not done after 60 s")).start()
    rooms = Rooms()

    conn = connect(url_a, rooms, 1)
    for destination in ROOMS.values():
        conn.send(destination=destination, body="m", headers={"x-n": "0"})
    rooms.until("message 0 on both subscriptions",
                lambda: all(len(r) == 1 for r in rooms.received.values()))
    print("ready", flush=True)

    if sys.stdin.readline().strip() != "go":
        fail("expected 'go' on stdin")
    rooms.until("the connection to node A to die", lambda: rooms.disconnected)

    conn = connect(url_b, rooms, 2)
    if rooms.connected.get("resume-failure") != "unknown":
        fail(f"CONNECTED after the crash should say resume-failure:unknown: {rooms.connected}")
    for id in ROOMS:
        receipt = rooms.receipts[f"sub-{id}-2"]
        if receipt.get("resumed") != "true":
            fail(f"RECEIPT for {id} should say resumed:true: {receipt}")
    rooms.until("the missed messages",
                lambda: all(len(r) == MISSED + 1 for r in rooms.received.values()))
    for destination in ROOMS.values():
        conn.send(destination=destination, body="m", headers={"x-n": str(MISSED + 1)})
    rooms.until("the live message",
                lambda: all(len(r) == MISSED + 2 for r in rooms.received.values()))
    conn.disconnect()
    print(f"{PREFIX}: OK ({MISSED} missed messages per destination recovered)", flush=True)
    import os
    os._exit(0)


if __name__ == "__main__":
    main()
