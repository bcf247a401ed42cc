#!/usr/bin/env python3
"""Measure a gateway's drain timeline under load.

Opens N idle STOMP sessions (CONNECT + SUBSCRIBE) to a running gateway, sends
it SIGTERM, then records when /readyz starts failing, when each session gets
its ERROR ("server restarting") and close, and when the process exits.
Standard library only; loopback only; bounded in time.

Usage: drain_timeline.py --port 8080 --pid <gateway pid> [--connections 10000]
"""

import argparse
import asyncio
import os
import signal
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from idle_rss import open_client, read_ws_message  # noqa: E402


def ready_status(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


async def wait_error(reader, t0: float, timeout: float):
    """Returns (seconds after t0 when ERROR arrived, its message header)."""
    try:
        while True:
            payload = await asyncio.wait_for(read_ws_message(reader), timeout)
            if payload.startswith(b"ERROR"):
                at = time.monotonic() - t0
                msg = next((l[8:] for l in payload.split(b"\n") if l.startswith(b"message:")), b"")
                return at, msg.decode()
    except (asyncio.IncompleteReadError, ConnectionError):
        return time.monotonic() - t0, "closed without ERROR"
    except asyncio.TimeoutError:
        return None, "no ERROR before timeout"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped) counts as exited.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--timeout", type=float, default=120.0, help="give up waiting after this many seconds")
    args = p.parse_args()

    sem = asyncio.Semaphore(args.concurrency)
    clients = []

    async def one(i: int):
        async with sem:
            clients.append(await asyncio.wait_for(open_client("127.0.0.1", args.port, i, 100), 30))

    await asyncio.gather(*(one(i) for i in range(args.connections)))
    print(f"{len(clients)} sessions open; sending SIGTERM")

    t0 = time.monotonic()
    os.kill(args.pid, signal.SIGTERM)
    waits = [asyncio.create_task(wait_error(r, t0, args.timeout)) for r, _ in clients]

    not_ready_at = None
    exit_at = None
    while time.monotonic() - t0 < args.timeout:
        if not_ready_at is None and ready_status(args.port) == 503:
            not_ready_at = time.monotonic() - t0
        if exit_at is None and not alive(args.pid):
            exit_at = time.monotonic() - t0
            break
        await asyncio.sleep(0.01 if not_ready_at is None else 0.1)
    results = await asyncio.gather(*waits)

    times = sorted(t for t, m in results if t is not None and m == "server restarting")
    others = {}
    for t, m in results:
        if m != "server restarting":
            others[m] = others.get(m, 0) + 1
    print(f"readiness 503 after: {not_ready_at * 1000:.0f} ms" if not_ready_at is not None else "readiness never failed")
    if times:
        print(f"ERROR 'server restarting' received by {len(times)}/{len(results)} sessions")
        print(f"first close: {times[0]:.2f} s, median: {times[len(times) // 2]:.2f} s, last close: {times[-1]:.2f} s")
        buckets = {}
        for t in times:
            buckets[int(t)] = buckets.get(int(t), 0) + 1
        print("closes per second after SIGTERM: " + ", ".join(f"{s}s:{n}" for s, n in sorted(buckets.items())))
    if others:
        print(f"other outcomes: {others}")
    print(f"process exited after: {exit_at:.2f} s" if exit_at is not None else "process did not exit in time")
    for _, w in clients:
        w.close()
    return 0 if exit_at is not None and not others else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
