#!/usr/bin/env python3
"""Measure the gateway's memory per idle, connected, subscribed client.

Opens N WebSocket connections to a running gateway, completes a STOMP 1.2
CONNECT (no heart-beats) and one SUBSCRIBE (with receipt) on each, then reads
the gateway's RSS from /proc and reports (RSS with N clients - RSS before) / N.
Standard library only; bounded in count and time; loopback targets only.

Usage: idle_rss.py --port 8080 --pid <gateway pid> [--connections 10000]
"""

import argparse
import asyncio
import os
import sys
import time


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def ws_frame(payload: bytes) -> bytes:
    """A masked, final text frame (client to server)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81])
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


async def read_ws_message(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return await reader.readexactly(n)


async def open_client(host: str, port: int, index: int, destinations: int):
    # Spread over 127.0.0.x source addresses so ports never run out.
    local = (f"127.0.0.{1 + index % 250}", 0)
    reader, writer = await asyncio.open_connection(host, port, local_addr=local)
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"upgrade refused: {head[:80]!r}")
    writer.write(ws_frame(b"CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0"))
    connected = await read_ws_message(reader)
    if not connected.startswith(b"CONNECTED"):
        raise RuntimeError(f"no CONNECTED: {connected[:80]!r}")
    dest = f"/topic/idle.room{index % destinations}"
    writer.write(ws_frame(f"SUBSCRIBE\nid:0\ndestination:{dest}\nreceipt:r\n\n\0".encode()))
    receipt = await read_ws_message(reader)
    if not receipt.startswith(b"RECEIPT"):
        raise RuntimeError(f"no RECEIPT: {receipt[:80]!r}")
    return reader, writer


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--pid", type=int, required=True, help="gateway process id")
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--destinations", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--settle", type=float, default=3.0, help="seconds to wait before reading RSS")
    args = p.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        print("refusing a non-loopback target", file=sys.stderr)
        return 2

    time.sleep(1)
    before = rss_kib(args.pid)
    clients = []
    sem = asyncio.Semaphore(args.concurrency)
    started = time.monotonic()

    async def one(i: int):
        async with sem:
            clients.append(await asyncio.wait_for(open_client(args.host, args.port, i, args.destinations), 30))

    await asyncio.gather(*(one(i) for i in range(args.connections)))
    took = time.monotonic() - started
    await asyncio.sleep(args.settle)
    after = rss_kib(args.pid)
    per = (after - before) * 1024 / args.connections
    print(f"connections: {len(clients)} (opened in {took:.1f} s)")
    print(f"gateway RSS before: {before} KiB, with clients: {after} KiB")
    print(f"per idle connected+subscribed client: {per:.0f} bytes")
    for _, w in clients:
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
