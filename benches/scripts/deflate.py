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
Build first: cargo build --release -p gateway -p loadtest
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from localhost import free_port, wait_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOADTEST = os.path.join(ROOT, "target/release/loadtest")
GATEWAY = os.path.join(ROOT, "target/release/gateway")


def metric(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    match = re.search(rf"^{name} (\d+)$", text, re.M)
    return int(match.group(1)) if match else 0


def run_case(mode, args, case):
    port = free_port()
    gateway = subprocess.Popen([GATEWAY, "--listen", f"127.0.0.1:{port}", "--log", "warn",
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
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([LOADTEST, "--url", url, "--quiet", "--json", out.name,
                            "--connect-rate", "3000", "--server-pid", str(gateway.pid),
                            *flags, *scenario], check=True, stdout=subprocess.DEVNULL,
                           timeout=600)
            with open(out.name) as f:
                report = json.load(f)
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
    args = ap.parse_args()
    figures = {}
    for case in ["active", "idle"]:
        for mode in ["off", "on"]:
            figures[f"{case} {mode}"] = run_case(mode, args, case)
            time.sleep(2)
    print(f"{'case':<11} {'deliveries':>11} {'lost':>5} {'B/delivery':>11} {'gw µs/del':>10} "
          f"{'lt µs/msg':>10} {'RSS B/conn':>11} {'compressed':>11} {'frames':>9}")
    for name, f in figures.items():
        def num(v, fmt):
            return format(v, fmt) if isinstance(v, (int, float)) else "-"
        print(f"{name:<11} {num(f['deliveries'], '11,d')} {num(f['lost'], '5d')} "
              f"{num(f['bytes_per_delivery'], '11,.1f')} {num(f['server_us_per_delivery'], '10.2f')} "
              f"{num(f['loadtest_us_per_message'], '10.2f')} {num(f['rss_bytes_per_connection'], '11,.0f')} "
              f"{num(f['compressions'], '11,d')} {num(f['compressed_frames'], '9,d')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
