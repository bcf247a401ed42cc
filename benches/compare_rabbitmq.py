#!/usr/bin/env python3
"""Side-by-side: this gateway versus RabbitMQ Web-STOMP, same loadtest runs.

Installs and starts Debian's rabbitmq-server with the rabbitmq_web_stomp
plugin if needed, starts the gateway (release build), runs the same
`loadtest` scenarios against both on this machine, and prints one table
with each figure for both and the ratio. Loopback only, bounded in time.

Usage: benches/compare_rabbitmq.py [--rates 1000,2000,5000] [--idle 10000]
Needs: cargo build --release -p gateway -p loadtest
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADTEST = os.path.join(ROOT, "target/release/loadtest")
GATEWAY = os.path.join(ROOT, "target/release/gateway")


def wait_port(port, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.5)
    return False


def start_rabbitmq():
    if not shutil.which("rabbitmq-server"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "rabbitmq-server"],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["rabbitmq-plugins", "enable", "--offline", "rabbitmq_web_stomp"],
                   check=True, stdout=subprocess.DEVNULL)
    # A fresh node for every comparison: a node that once ran out of file
    # descriptors stays broken (its memory monitor crashes and takes every
    # queue with it), which is what made the first comparison meaningless.
    stop_rabbitmq()
    # Debian's wrapper starts the node through `su`, whose PAM session drops
    # the open-file limit to 1024: 1,000 connections then exhaust it. Give it
    # the same limit as the gateway (the hard limit), as the Debian systemd
    # unit does with LimitNOFILE.
    subprocess.Popen(["su", "rabbitmq", "-s", "/bin/sh", "-c",
                      "ulimit -n $(ulimit -Hn); exec /usr/lib/rabbitmq/bin/rabbitmq-server"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(15674):
        sys.exit("rabbitmq web-stomp did not start on 15674")
    time.sleep(2)
    pid = subprocess.run(["pgrep", "-f", "beam.smp.*rabbit"], capture_output=True, text=True).stdout.split()
    return int(pid[0]) if pid else None


def stop_rabbitmq():
    subprocess.run(["rabbitmqctl", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["pkill", "-f", "beam.smp.*rabbit"], stdout=subprocess.DEVNULL)
    time.sleep(2)


def start_gateway(port):
    proc = subprocess.Popen([GATEWAY, "--listen", f"127.0.0.1:{port}", "--log", "warn",
                             "--outbound-queue", "8192"])
    if not wait_port(port):
        sys.exit("gateway did not start")
    return proc


def loadtest(url, extra, scenario, pid=None):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [LOADTEST, "--url", url, "--quiet", "--json", out.name] + extra
        if pid:
            cmd += ["--server-pid", str(pid)]
        subprocess.run(cmd + scenario, check=True, stdout=subprocess.DEVNULL, timeout=300)
        return json.load(open(out.name))


def sustained(report, rate, subscribers, topics):
    d = report["deliveries"]
    target = rate * subscribers / topics
    return d["lost"] == 0 and report["deliveries_per_s"] >= 0.95 * target and report["delivery_latency"]["p99_ms"] < 250


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="1000,2000,5000", help="fan-out publish rates (msgs/s) to try")
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--topics", type=int, default=10)
    p.add_argument("--duration", default="5")
    p.add_argument("--idle", type=int, default=10000, help="idle connections for the memory run")
    args = p.parse_args()
    for binary in (LOADTEST, GATEWAY):
        if not os.path.exists(binary):
            sys.exit(f"{binary} missing: cargo build --release -p gateway -p loadtest")

    # One server at a time, so neither competes with the other for the CPU.
    rows = []
    best = {}
    runs = [
        ("gateway", "ws://127.0.0.1:18400/ws", [], lambda: start_gateway(18400)),
        ("rabbitmq", "ws://127.0.0.1:15674/ws",
         ["--stomp-host", "/", "--login", "guest", "--passcode", "guest"], start_rabbitmq),
    ]
    for name, url, extra, start in runs:
        server = start()
        pid = server.pid if hasattr(server, "pid") else server
        try:
            for rate in [int(r) for r in args.rates.split(",")]:
                r = loadtest(url, extra + ["--duration", args.duration],
                             ["fanout", "--subscribers", str(args.subscribers), "--topics", str(args.topics),
                              "--publishers", "10", "--rate", str(rate), "--size", "100"], pid)
                if sustained(r, rate, args.subscribers, args.topics):
                    best[name] = rate
                rows.append((f"fanout {rate}/s: deliveries/s", name, r["deliveries_per_s"]))
                rows.append((f"fanout {rate}/s: p99 ms", name, r["delivery_latency"]["p99_ms"]))
                rows.append((f"fanout {rate}/s: lost", name, r["deliveries"]["lost"]))
                cpu = r.get("cpu") or {}
                rows.append((f"fanout {rate}/s: server CPU µs/delivery", name,
                             cpu.get("server_us_per_delivery") or 0))
                rows.append((f"fanout {rate}/s: loadtest CPU µs/message", name,
                             cpu.get("loadtest_us_per_message") or 0))
                time.sleep(2)
            r = loadtest(url, extra + ["--duration", "5", "--connect-rate", "2000"],
                         ["connect", "--connections", str(args.idle), "--subscribe", "/topic/idle.room"], pid)
            rows.append((f"{args.idle} idle: opened", name, r["connections"]["opened"]))
            rows.append((f"{args.idle} idle: RSS KiB", name, r.get("server_rss_kib_after") or 0))
            rows.append((f"{args.idle} idle: RSS bytes/conn", name, r.get("server_rss_bytes_per_connection") or 0))
            rows.append((f"{args.idle} idle: connect p99 ms", name, r["connections"]["connect_latency"]["p99_ms"]))
        finally:
            if name == "gateway":
                server.kill()
            else:
                stop_rabbitmq()

    table = {}
    for metric, name, value in rows:
        table.setdefault(metric, {})[name] = value
    print(f"{'figure':<36} {'gateway':>14} {'rabbitmq':>14} {'ratio':>8}")
    for metric, values in table.items():
        g, r = values.get("gateway", 0), values.get("rabbitmq", 0)
        ratio = f"{g / r:.2f}" if r else "-"
        print(f"{metric:<36} {g:>14.2f} {r:>14.2f} {ratio:>8}")
    for name, rate in best.items():
        print(f"highest sustained fan-out rate ({name}): {rate}/s "
              f"= {rate * args.subscribers // args.topics} deliveries/s")


if __name__ == "__main__":
    main()
