#!/usr/bin/env python3
"""permessage-deflate: bytes on the wire, CPU per delivery, memory per
connection, with and without compression.

For each mode (off: the client does not offer the extension; on: it does,
and the gateway runs with --permessage-deflate in both), starts a fresh
release gateway (embedded broker) on loopback and runs `loadtest`:

  active   --subscribers (2,000) over 20 topics, 4 publishers at --rate
           (500/s, so 50,000 deliveries/s), --size-byte JSON chat bodies:
           gateway bytes written per delivery (gateway_bytes_out_total),
           gateway and loadtest CPU per delivery, the gateway's whole RSS
           per connection at the end of the run
  idle     --idle connections (10,000), each subscribed: RSS per connection

Prints one table; --json writes the figures.

Usage: deflate.py [--subscribers 2000] [--rate 500] [--size 600] [--idle 10000] [--json out.json]
                 [--gateway PATH]
Build first: cargo build --release -p gateway -p loadtest
"""

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from localhost import free_port, wait_port  # noqa: E402
from loadtest_run import GATEWAY, print_table, run_loadtest, write_json  # noqa: E402


def metric(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    match = re.search(rf"^{name} (\d+)$", text, re.M)
    return int(match.group(1)) if match else 0


def run_case(mode, args, case):
    port = free_port()
    gateway = subprocess.Popen([args.gateway, "--listen", f"127.0.0.1:{port}", "--log", "warn",
                                "--max-frame-rate", "0", "--outbound-queue", "8192",
                                "--permessage-deflate"])
    try:
        wait_port(port, "gateway")
        url = f"ws://127.0.0.1:{port}/ws"
        flags = ["--permessage-deflate"] if mode == "on" else []
        if case == "active":
            scenario = ["--duration", args.duration, "fanout", "--subscribers",
                        str(args.subscribers), "--topics", "20", "--publishers", "4",
                        "--rate", str(args.rate), "--size", str(args.size), "--body", "chat"]
        else:
            scenario = ["--duration", "5s", "connect", "--connections", str(args.idle),
                        "--subscribe", "/topic/idle.room"]
        before = metric(port, "gateway_bytes_out_total")
        report = run_loadtest(url, ["--connect-rate", "3000", "--server-pid", str(gateway.pid),
                                    *flags, *scenario])
        written = metric(port, "gateway_bytes_out_total") - before
        compressions = metric(port, "gateway_deflate_compressions_total")
        frames = metric(port, "gateway_deflate_frames_out_total")
    finally:
        gateway.kill()
        gateway.wait()
    deliveries = (report.get("deliveries") or {}).get("received") or 0
    cpu = report.get("cpu") or {}
    return {
        "deliveries": deliveries,
        "lost": (report.get("deliveries") or {}).get("lost", 0),
        "bytes_per_delivery": written / deliveries if deliveries else None,
        "server_us_per_delivery": cpu.get("server_us_per_delivery"),
        "loadtest_us_per_message": cpu.get("loadtest_us_per_message"),
        "rss_bytes_per_connection": report.get("server_rss_bytes_per_connection")
        or active_rss(report),
        "compressions": compressions,
        "compressed_frames": frames,
    }


def active_rss(report):
    """The gateway's whole RSS at the end of an active run, per connection
    (fanout reports no per-connection figure of its own)."""
    after = report.get("server_rss_kib_after")
    opened = (report.get("connections") or {}).get("opened")
    return after * 1024 / opened if after and opened else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--size", type=int, default=600)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--duration", default="20s")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--gateway", default=GATEWAY,
                    help="the gateway binary (another build, for an A/B comparison)")
    args = ap.parse_args()
    figures = {}
    for case in ["active", "idle"]:
        for mode in ["off", "on"]:
            figures[f"{case} {mode}"] = run_case(mode, args, case)
            time.sleep(2)
    print_table(figures, [
        ("deliveries", "deliveries", "11,d"), ("lost", "lost", "5d"),
        ("B/delivery", "bytes_per_delivery", "11,.1f"),
        ("gw µs/del", "server_us_per_delivery", "10.2f"),
        ("lt µs/msg", "loadtest_us_per_message", "10.2f"),
        ("RSS B/conn", "rss_bytes_per_connection", "11,.0f"),
        ("compressed", "compressions", "11,d"), ("frames", "compressed_frames", "9,d"),
    ])
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
