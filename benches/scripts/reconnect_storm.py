#!/usr/bin/env python3
"""A reconnect storm: three gateway nodes on one Redis, one killed under load.

Starts a redis-server and three gateway processes (release build) on
loopback, all with the same resume key and the storm's topics durable (or,
with --history, kept as history), then runs `loadtest storm` against them:
clients spread over the three nodes, publishers on the two that survive,
SIGKILL to the first node after --kill-after seconds. Prints the loadtest
report and what Redis did for the recovering clients (INFO commandstats
before and after: the commands of claims and replays, per client back).

Usage: reconnect_storm.py [--clients 3000] [--history] [--max-connect-rate N]
Build first: cargo build --release -p gateway -p loadtest
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from localhost import free_port, start_redis, stop_all, wait_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# Commands a recovering client costs Redis: the claim of its parked session
# (GETDEL) and the replay pipeline of its resume-from (XRANGE, XREVRANGE,
# XLEN, TIME).
RECOVERY_COMMANDS = ("getdel", "xrange", "xrevrange", "xlen", "time")


def wait_ready(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"gateway on {port} never became ready")


def commandstats(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"],
                         capture_output=True, text=True, check=True).stdout
    calls = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            fields = dict(f.split("=") for f in rest.split(","))
            calls[name] = int(fields["calls"])
    return calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=3000)
    ap.add_argument("--topics", type=int, default=30)
    ap.add_argument("--rate", type=float, default=200.0, help="messages/s, all topics")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--kill-after", type=float, default=4.0)
    ap.add_argument("--jitter-ms", type=int, default=1000)
    ap.add_argument("--history", action="store_true",
                    help="keep the topics as history (--history) instead of durable")
    ap.add_argument("--max-connect-rate", type=int, default=0,
                    help="the nodes' --max-connect-rate (0: off)")
    ap.add_argument("--connect-rate", type=float, default=2000.0,
                    help="how fast loadtest opens the clients before the storm")
    ap.add_argument("--json", help="write the loadtest report here")
    args = ap.parse_args()

    gateway = os.path.join(ROOT, "target/release/gateway")
    loadtest = os.path.join(ROOT, "target/release/loadtest")
    for binary in (gateway, loadtest):
        if not os.path.exists(binary):
            sys.exit(f"{binary} missing: cargo build --release -p gateway -p loadtest")

    procs = []
    try:
        redis_port = start_redis(procs)
        keep = ["--history" if args.history else "--durable", "/topic/storm.*"]
        env = dict(os.environ, GATEWAY_RESUME_KEY="reconnect storm bench key")
        ports, gateways = [], []
        for node in ("a", "b", "c"):
            port = free_port()
            flags = [gateway, "--listen", f"127.0.0.1:{port}", "--redis-url",
                     f"redis://127.0.0.1:{redis_port}", "--node-id", node,
                     "--max-frame-rate", "0", "--log", "warn", *keep]
            if args.max_connect_rate:
                flags += ["--max-connect-rate", str(args.max_connect_rate)]
            proc = subprocess.Popen(flags, env=env, stderr=subprocess.DEVNULL)
            procs.append(proc)
            gateways.append(proc)
            ports.append(port)
        for port in ports:
            wait_port(port, "gateway")
            wait_ready(port)

        before = commandstats(redis_port)
        report_path = args.json or tempfile.mktemp(suffix=".json")
        command = [loadtest, "--duration", str(args.duration), "--quiet",
                   "--connect-rate", str(args.connect_rate),
                   "--json", report_path, "storm",
                   "--clients", str(args.clients), "--topics", str(args.topics),
                   "--rate", str(args.rate), "--kill-pid", str(gateways[0].pid),
                   "--kill-after", str(args.kill_after),
                   "--reconnect-jitter-ms", str(args.jitter_ms)]
        for port in ports:
            command += ["--node", f"ws://127.0.0.1:{port}/ws"]
        subprocess.run(command, check=True, timeout=args.duration + 120)
        after = commandstats(redis_port)

        with open(report_path) as f:
            report = json.load(f)
        storm = report["storm"]
        delta = {name: after.get(name, 0) - before.get(name, 0)
                 for name in set(after) | set(before)}
        recovery = sum(delta.get(name, 0) for name in RECOVERY_COMMANDS)
        back = max(storm["back"], 1)
        print()
        print("redis commands during the run (calls):")
        for name, calls in sorted(delta.items(), key=lambda kv: -kv[1]):
            if calls:
                print(f"  {name:<12} {calls}")
        print(f"recovery commands ({', '.join(RECOVERY_COMMANDS)}) per client back: "
              f"{recovery / back:.1f} ({recovery} for {storm['back']} clients)")
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
