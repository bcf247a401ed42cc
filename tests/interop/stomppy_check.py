#!/usr/bin/env python3
"""Interop check: the gateway against the real stomp.py client (WebSocket transport).

Usage:
    python3 stomppy_check.py [-v] [--idle SECONDS] ws://127.0.0.1:PORT/ws
    python3 stomppy_check.py --ca ca.pem --passcode JWT wss://localhost:PORT/ws

Install the client first with scripts/install-interop-deps and run this with
.venv-interop/bin/python (or any python that has stomp.py >= 8.1).

What it checks (STOMP 1.2 over WebSocket):
  * two connections: a subscriber (stomp.py defaults: STOMP frame, no WebSocket
    subprotocol offered) and a publisher (CONNECT frame, offers
    v12.stomp/v11.stomp/v10.stomp, which the server must answer with v12.stomp);
    both with heart-beats; CONNECTED must say version 1.2 and carry heart-beat;
  * the subscriber subscribes twice to a unique /topic/interop.py.<token>:
    ack=auto and ack=client-individual (every message on the latter is ACKed
    with conn.ack); the publisher subscribes once too (ack=auto), so it must get
    its own messages back;
  * the publisher sends N ASCII messages with custom headers (one of them with a
    value that needs STOMP 1.2 header escaping) and then one non-ASCII UTF-8
    message with a content-type, carrying a receipt that is awaited;
  * every subscription receives every message, in order, with the right body,
    content-length, custom headers, destination, subscription and a unique
    message-id (and an ack header on the client-individual subscription);
  * heart-beats from the server are observed while idle (when the negotiated
    interval is short enough to be worth waiting for);
  * with --idle SECONDS, both connections then stay idle that long and must
    survive on heart-beats alone (no ERROR, no close, no heart-beat timeout);
  * both connections disconnect with a receipt.

Every wait is bounded; on failure it prints the reason and exits 1, on success
it prints "stomp.py interop: OK (<n> messages)" and exits 0.
"""

import argparse
import logging
import os
import sys
import threading
import time
import urllib.parse
import uuid

STEP_TIMEOUT = 10.0       # seconds, for every single wait
OVERALL_TIMEOUT = 90.0    # seconds, hard stop for the whole script (plus --idle)
N_ASCII = 20
CLIENT_HEARTBEATS = (2000, 2000)   # (cx, cy) in ms
MAX_HEARTBEAT_WAIT_MS = 5000       # only wait for server heart-beats if interval <= this
SUBPROTOCOLS = "v12.stomp, v11.stomp, v10.stomp"
UTF8_BODY = "héllo ✓ — ünïcödé 日本語 🚀"
ESCAPED_VALUE = "key:value\\path\nline2"   # needs \c, \\ and \n escaping in STOMP 1.2

PREFIX = "stomp.py interop"


def fail(reason):
    """Print the reason and exit 1 immediately (also from non-main threads)."""
    sys.stdout.flush()
    print(f"{PREFIX}: FAIL: {reason}", file=sys.stderr, flush=True)
    os._exit(1)


try:
    import stomp
except ImportError as exc:  # pragma: no cover - depends on environment
    fail(f"cannot import stomp.py ({exc}); run scripts/install-interop-deps and use "
         f".venv-interop/bin/python")


def _version_tuple(v):
    out = []
    for part in str(v).split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def _version_str(v):
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


STOMP_VERSION = getattr(stomp, "__version__", None)
if STOMP_VERSION is None or _version_tuple(_version_str(STOMP_VERSION)) < (8, 1):
    fail(f"stomp.py >= 8.1 required, found {STOMP_VERSION!r}")


class _LastWarning(logging.Handler):
    """Remembers stomp.py's last warning (it logs, rather than raises, why a connect failed)."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.last = None

    def emit(self, record):
        try:
            self.last = record.getMessage()
        except Exception:  # noqa: BLE001
            pass


LAST_WARNING = _LastWarning()
logging.getLogger("stomp.py").addHandler(LAST_WARNING)


def run_bounded(fn, timeout, what):
    """Run fn() in a daemon thread; fail if it raises or does not finish within timeout."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - report anything
            result["error"] = exc

    t = threading.Thread(target=target, name=f"bounded:{what}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        fail(f"{what}: did not complete within {timeout:.0f}s")
    if "error" in result:
        exc = result["error"]
        fail(f"{what}: {type(exc).__name__}: {exc}")
    return result.get("value")


class Recorder(stomp.ConnectionListener):
    """Collects everything one connection receives."""

    def __init__(self, name):
        self.name = name
        self.conn = None
        self.lock = threading.Condition()
        self.connected_frame = None
        self.messages = {}          # subscription id -> list of (headers, body)
        self.ack_subs = set()       # subscription ids to ACK (client-individual)
        self.receipts = set()
        self.errors = []
        self.heartbeats = 0
        self.heartbeat_timeouts = 0
        self.disconnected = False
        self.ack_failures = []

    # --- stomp.py callbacks (called on its receiver thread) -------------------
    def on_connected(self, frame):
        with self.lock:
            self.connected_frame = frame
            self.lock.notify_all()

    def on_message(self, frame):
        sub = frame.headers.get("subscription")
        with self.lock:
            self.messages.setdefault(sub, []).append((dict(frame.headers), frame.body))
            self.lock.notify_all()
        if sub in self.ack_subs:
            ack_id = frame.headers.get("ack")
            if ack_id is None:
                with self.lock:
                    self.ack_failures.append(
                        f"MESSAGE on client-individual subscription {sub!r} has no 'ack' header "
                        f"(headers: {dict(frame.headers)})")
                    self.lock.notify_all()
                return
            try:
                self.conn.ack(ack_id)
            except Exception as exc:  # noqa: BLE001
                with self.lock:
                    self.ack_failures.append(f"conn.ack({ack_id!r}) raised {exc!r}")
                    self.lock.notify_all()

    def on_receipt(self, frame):
        with self.lock:
            self.receipts.add(frame.headers.get("receipt-id"))
            self.lock.notify_all()

    def on_error(self, frame):
        with self.lock:
            self.errors.append((dict(frame.headers), frame.body))
            self.lock.notify_all()

    def on_heartbeat(self):
        with self.lock:
            self.heartbeats += 1
            self.lock.notify_all()

    def on_heartbeat_timeout(self):
        with self.lock:
            self.heartbeat_timeouts += 1
            self.lock.notify_all()

    def on_disconnected(self):
        with self.lock:
            self.disconnected = True
            self.lock.notify_all()

    # --- helpers (main thread) -----------------------------------------------
    def problems(self, allow_disconnected=False):
        if self.errors:
            h, b = self.errors[0]
            return f"{self.name}: server sent ERROR: headers={h} body={b!r}"
        if self.ack_failures:
            return f"{self.name}: {self.ack_failures[0]}"
        if self.heartbeat_timeouts:
            return f"{self.name}: stomp.py reported a heart-beat timeout (server sent nothing in time)"
        if self.disconnected and not allow_disconnected:
            return f"{self.name}: connection closed unexpectedly"
        return None

    def wait_for(self, predicate, what, timeout=STEP_TIMEOUT, allow_disconnected=False):
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                if predicate():
                    return
                problem = self.problems(allow_disconnected)
                if problem:
                    fail(f"while waiting for {what}: {problem}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    fail(f"{self.name}: timed out after {timeout:.0f}s waiting for {what}")
                self.lock.wait(min(remaining, 0.25))

    def wait_receipt(self, receipt_id, what, allow_disconnected=False):
        self.wait_for(lambda: receipt_id in self.receipts,
                      f"RECEIPT {receipt_id!r} for {what}", allow_disconnected=allow_disconnected)


# Set from the command line: TLS trust anchor and CONNECT credentials.
OPTIONS = {"ca": None, "login": None, "passcode": None, "tls": False}


def parse_url(url):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        fail(f"unsupported URL {url!r}: expected ws://HOST:PORT/PATH or wss://HOST:PORT/PATH")
    OPTIONS["tls"] = parts.scheme == "wss"
    if not parts.hostname or not parts.port:
        fail(f"URL {url!r} must name a host and a port")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port, path


def open_connection(name, host, port, path, offer_subprotocols, use_connect_command):
    header = {"Sec-WebSocket-Protocol": SUBPROTOCOLS} if offer_subprotocols else None
    conn = stomp.WSStompConnection(
        host_and_ports=[(host, port)],
        ws_path=path,
        header=header,
        heartbeats=CLIENT_HEARTBEATS,
        reconnect_attempts_max=1,
        # a socket timeout would also apply to reads and kill idle connections,
        # so connecting is bounded by run_bounded() instead
        timeout=None,
    )
    if OPTIONS["tls"]:
        # wss://: verify the server against the given CA (hostname included).
        conn.set_ssl(for_hosts=[(host, port)], ca_certs=OPTIONS["ca"])
    rec = Recorder(name)
    rec.conn = conn
    conn.set_listener("recorder", rec)

    def do_connect():
        try:
            conn.connect(username=OPTIONS["login"], passcode=OPTIONS["passcode"],
                         wait=False, with_connect_command=use_connect_command)
        except stomp.exception.ConnectFailedException:
            why = LAST_WARNING.last or "no details"
            if len(why) > 300:
                why = why[:300] + "..."
            raise ConnectionError(f"could not open ws://{host}:{port}{path} "
                                  f"(is the gateway running?): {why}") from None

    frame_kind = "CONNECT" if use_connect_command else "STOMP"
    run_bounded(do_connect, STEP_TIMEOUT, f"{name}: WebSocket connect to ws://{host}:{port}{path}")
    rec.wait_for(lambda: rec.connected_frame is not None, f"CONNECTED (reply to {frame_kind})")

    hdrs = rec.connected_frame.headers
    if hdrs.get("version") != "1.2":
        fail(f"{name}: CONNECTED version is {hdrs.get('version')!r}, expected '1.2' (headers: {hdrs})")
    if "heart-beat" not in hdrs:
        fail(f"{name}: CONNECTED has no heart-beat header although the client asked for "
             f"{CLIENT_HEARTBEATS[0]},{CLIENT_HEARTBEATS[1]} (headers: {hdrs})")
    try:
        sx, sy = (int(v.strip()) for v in hdrs["heart-beat"].split(","))
    except ValueError:
        fail(f"{name}: malformed CONNECTED heart-beat header {hdrs['heart-beat']!r}")

    if offer_subprotocols:
        ws = conn.transport.socket
        resp = ws.getheaders() if ws is not None else None
        chosen = (resp or {}).get("sec-websocket-protocol")
        if chosen != "v12.stomp":
            fail(f"{name}: offered subprotocols {SUBPROTOCOLS!r}, server selected {chosen!r} "
                 f"(expected 'v12.stomp')")
    return conn, rec, (sx, sy)


def check_stream(rec, sub_id, expected, destination, token, want_ack):
    """expected: list of (body, custom-headers dict, content_type or None)."""
    got = rec.messages.get(sub_id, [])
    if len(got) != len(expected):
        fail(f"{rec.name}: subscription {sub_id!r} received {len(got)} messages, expected {len(expected)}")
    seen_ids = set()
    for i, ((headers, body), (exp_body, exp_headers, exp_ct)) in enumerate(zip(got, expected)):
        where = f"{rec.name}: subscription {sub_id!r}, message #{i}"
        if body != exp_body:
            # find it elsewhere to tell "out of order" from "corrupted"
            bodies = [b for _, b in got]
            if exp_body in bodies:
                fail(f"{where}: out of order: got body {body!r}, expected {exp_body!r} "
                     f"(which arrived as #{bodies.index(exp_body)})")
            fail(f"{where}: body {body!r}, expected {exp_body!r}")
        if headers.get("destination") != destination:
            fail(f"{where}: destination header {headers.get('destination')!r}, expected {destination!r}")
        if headers.get("subscription") != sub_id:
            fail(f"{where}: subscription header {headers.get('subscription')!r}, expected {sub_id!r}")
        mid = headers.get("message-id")
        if not mid:
            fail(f"{where}: missing message-id header (headers: {headers})")
        if mid in seen_ids:
            fail(f"{where}: duplicate message-id {mid!r}")
        seen_ids.add(mid)
        cl = headers.get("content-length")
        if cl is not None and cl != str(len(exp_body.encode("utf-8"))):
            fail(f"{where}: content-length {cl!r}, expected {len(exp_body.encode('utf-8'))}")
        if cl is None:
            fail(f"{where}: missing content-length header (headers: {headers})")
        for k, v in exp_headers.items():
            if headers.get(k) != v:
                fail(f"{where}: custom header {k!r} is {headers.get(k)!r}, expected {v!r}")
        if exp_ct is not None and headers.get("content-type") != exp_ct:
            fail(f"{where}: content-type {headers.get('content-type')!r}, expected {exp_ct!r}")
        if want_ack and not headers.get("ack"):
            fail(f"{where}: no 'ack' header on a client-individual subscription (headers: {headers})")
    return len(got)


def disconnect(name, conn, rec, token):
    receipt = f"disc-{name}-{token}"
    run_bounded(lambda: conn.disconnect(receipt=receipt), STEP_TIMEOUT, f"{name}: DISCONNECT")
    rec.wait_receipt(receipt, "DISCONNECT", allow_disconnected=True)
    rec.wait_for(lambda: rec.disconnected, "the connection to close after DISCONNECT",
                 allow_disconnected=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url", help="gateway WebSocket URL, e.g. ws://127.0.0.1:61614/ws")
    ap.add_argument("-v", "--verbose", action="store_true", help="log stomp.py frames to stderr")
    ap.add_argument("--idle", type=float, default=0.0, metavar="SECONDS",
                    help="before disconnecting, keep both connections idle this long (heart-beats "
                         "only) and check they survive (default 0, at most 60)")
    ap.add_argument("--ca", metavar="FILE", help="CA certificate (PEM) to verify a wss:// server with")
    ap.add_argument("--login", help="CONNECT login header")
    ap.add_argument("--passcode", help="CONNECT passcode header (a JWT, for a gateway that requires one)")
    args = ap.parse_args()
    OPTIONS.update(ca=args.ca, login=args.login, passcode=args.passcode)
    if not 0 <= args.idle <= 60:
        ap.error("--idle must be between 0 and 60 seconds")

    stomp_logger = logging.getLogger("stomp.py")
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        stomp_logger.setLevel(logging.DEBUG)
    else:
        # keep stomp.py quiet, but remember its warnings for error messages
        stomp_logger.setLevel(logging.WARNING)
        stomp_logger.propagate = False
    overall = OVERALL_TIMEOUT + args.idle
    watchdog = threading.Timer(overall, lambda: fail(f"overall timeout: not done after {overall:.0f}s"))
    watchdog.daemon = True
    watchdog.start()

    host, port, path = parse_url(args.url)
    token = uuid.uuid4().hex[:12]
    dest = f"/topic/interop.py.{token}"

    # Subscriber: pure stomp.py defaults (STOMP frame, no subprotocol offered).
    sub_conn, sub_rec, (sx, sy) = open_connection("subscriber", host, port, path,
                                                  offer_subprotocols=False, use_connect_command=False)
    # Publisher: CONNECT frame and v12.stomp/v11.stomp/v10.stomp offered.
    pub_conn, pub_rec, _ = open_connection("publisher", host, port, path,
                                           offer_subprotocols=True, use_connect_command=True)

    sub_rec.ack_subs.add("sub-ci")
    sub_conn.subscribe(destination=dest, id="sub-auto", ack="auto")
    sub_conn.subscribe(destination=dest, id="sub-ci", ack="client-individual",
                       headers={"receipt": f"subs-{token}"})
    sub_rec.wait_receipt(f"subs-{token}", "SUBSCRIBE (subscriber)")
    pub_conn.subscribe(destination=dest, id="sub-self", ack="auto", headers={"receipt": f"self-{token}"})
    pub_rec.wait_receipt(f"self-{token}", "SUBSCRIBE (publisher, own messages)")

    expected = []
    for i in range(N_ASCII):
        body = f"interop message {i} of {token}"
        custom = {"x-interop-seq": str(i), "x-interop-run": token}
        if i == 0:
            custom["x-interop-escaped"] = ESCAPED_VALUE
        pub_conn.send(destination=dest, body=body, headers=dict(custom))
        expected.append((body, custom, None))
    last_custom = {"x-interop-seq": str(N_ASCII), "x-interop-run": token}
    ctype = "text/plain;charset=utf-8"
    pub_conn.send(destination=dest, body=UTF8_BODY, content_type=ctype,
                  headers=dict(last_custom, receipt=f"send-{token}"))
    expected.append((UTF8_BODY, last_custom, ctype))
    pub_rec.wait_receipt(f"send-{token}", "the last SEND")

    n = len(expected)
    for rec, sub in ((sub_rec, "sub-auto"), (sub_rec, "sub-ci"), (pub_rec, "sub-self")):
        rec.wait_for(lambda rec=rec, sub=sub: len(rec.messages.get(sub, [])) >= n,
                     f"{n} MESSAGE frames on subscription {sub!r}")
    total = 0
    total += check_stream(sub_rec, "sub-auto", expected, dest, token, want_ack=False)
    total += check_stream(sub_rec, "sub-ci", expected, dest, token, want_ack=True)
    total += check_stream(pub_rec, "sub-self", expected, dest, token, want_ack=False)
    for rec in (sub_rec, pub_rec):
        extra = {s: len(m) for s, m in rec.messages.items() if s not in ("sub-auto", "sub-ci", "sub-self")}
        if extra:
            fail(f"{rec.name}: MESSAGE frames for unknown subscriptions: {extra}")

    # Heart-beats: server -> client interval is max(sx, cy) when both are non-zero.
    cy = CLIENT_HEARTBEATS[1]
    hb_note = f"server heart-beat {sx},{sy}"
    if sx > 0 and cy > 0:
        interval = max(sx, cy)
        if interval <= MAX_HEARTBEAT_WAIT_MS:
            before = sub_rec.heartbeats
            sub_rec.wait_for(lambda: sub_rec.heartbeats > before,
                             f"a server heart-beat (negotiated every {interval} ms)",
                             timeout=interval / 1000 * 2.5 + 1)
            hb_note += f", received heart-beats every <= {interval} ms"
        else:
            hb_note += f", interval {interval} ms too long to wait for"
    else:
        hb_note += ", server sends none"

    if args.idle > 0:
        # both connections idle at once; fail as soon as either reports a problem
        deadline = time.monotonic() + args.idle
        while time.monotonic() < deadline:
            problem = sub_rec.problems() or pub_rec.problems()
            if problem:
                fail(f"while idle: {problem}")
            time.sleep(0.05)
        hb_note += f", survived {args.idle:g}s idle (heart-beats {sub_rec.heartbeats} received)"

    problem = sub_rec.problems() or pub_rec.problems()
    if problem:
        fail(problem)

    disconnect("subscriber", sub_conn, sub_rec, token)
    disconnect("publisher", pub_conn, pub_rec, token)
    for rec in (sub_rec, pub_rec):
        if rec.errors:
            fail(rec.problems(allow_disconnected=True))

    print(f"{PREFIX}: {n} messages sent, each delivered to 3 subscriptions; {hb_note}; "
          f"stomp.py {_version_str(STOMP_VERSION)}")
    print(f"{PREFIX}: OK ({total} messages)")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        fail("interrupted")
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - any unexpected exception is a failure
        fail(f"unexpected {type(exc).__name__}: {exc}")
