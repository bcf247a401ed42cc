#!/usr/bin/env python3
"""Broadcast latency: one big room, quiet small rooms, and what must not regress.

Starts one gateway (release build, embedded broker) on loopback, or uses
RabbitMQ Web-STOMP with --rabbitmq (Debian's package, started as
benches/compare_rabbitmq.py does), and runs `loadtest` for each case, one
after the other:

  big room     1 topic, --big subscribers (15,000), 2 messages/s
  small rooms  10 topics x 100 subscribers, 10 messages/s in all
  one room     1 topic x 10 subscribers, 100 messages/s
  saturation   10 topics x 100 subscribers, 10 publishers at --saturate/s
  idle         --idle connections (10,000), each subscribed: RSS per connection

Latency is measured at every subscriber from the moment the publisher wrote
the message (`--latency-from sent`: at these rates the publisher keeps its
schedule, and the timer's millisecond granularity would otherwise count).
Prints one table; --json writes the figures.

Usage: broadcast_latency.py [--rabbitmq] [--big 15000] [--duration 20s] [--json out.json]
                            [--gateway PATH]
Build first: cargo build --release -p gateway -p loadtest
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from localhost import free_port, wait_port  # noqa: E402
from loadtest_run import GATEWAY, print_table, run_loadtest, write_json  # noqa: E402


def run(url, extra, args, pid):
    server = ["--server-pid", str(pid)] if pid else []
    return run_loadtest(url, ["--latency-from", "sent", "--connect-rate", "3000",
                              *extra, *server, *args])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rabbitmq", action="store_true", help="measure RabbitMQ Web-STOMP instead")
    ap.add_argument("--big", type=int, default=15000, help="subscribers of the big room")
    ap.add_argument("--duration", default="20s", help="publishing time of each latency case")
    ap.add_argument("--saturate", type=int, default=10000, help="publish rate of the saturation case")
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--cases", default="big,small,one,saturation,idle")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--gateway", default=GATEWAY,
                    help="the gateway binary (another build, for an A/B comparison)")
    args = ap.parse_args()

    extra = []
    if args.rabbitmq:
        import compare_rabbitmq  # noqa: E402
        pid = compare_rabbitmq.start_rabbitmq()
        url = "ws://127.0.0.1:15674/ws"
        extra = ["--stomp-host", "/", "--login", "guest", "--passcode", "guest"]
        stop = compare_rabbitmq.stop_rabbitmq
    else:
        port = free_port()
        proc = subprocess.Popen([args.gateway, "--listen", f"127.0.0.1:{port}", "--log", "warn",
                                 "--max-frame-rate", "0", "--outbound-queue", "8192"])
        wait_port(port, "gateway")
        pid, url = proc.pid, f"ws://127.0.0.1:{port}/ws"
        stop = proc.kill

    cases = {
        "big": ["--duration", args.duration, "fanout", "--subscribers", str(args.big),
                "--topics", "1", "--publishers", "1", "--rate", "2"],
        "small": ["--duration", args.duration, "fanout", "--subscribers", "1000",
                  "--topics", "10", "--publishers", "1", "--rate", "10"],
        "one": ["--duration", args.duration, "fanout", "--subscribers", "10",
                "--topics", "1", "--publishers", "1", "--rate", "100"],
        "saturation": ["--duration", "5s", "fanout", "--subscribers", "1000", "--topics", "10",
                       "--publishers", "10", "--rate", str(args.saturate)],
        "idle": ["--duration", "5s", "connect", "--connections", str(args.idle),
                 "--subscribe", "/topic/idle.room"],
    }
    figures = {}
    try:
        for name in args.cases.split(","):
            report = run(url, extra, cases[name], pid)
            d = report.get("delivery_latency") or {}
            lost = (report.get("deliveries") or {}).get("lost", 0)
            figures[name] = {
                "p50_ms": d.get("p50_ms"), "p99_ms": d.get("p99_ms"), "p999_ms": d.get("p999_ms"),
                "max_ms": d.get("max_ms"), "deliveries_per_s": report.get("deliveries_per_s"),
                "lost": lost, "opened": report["connections"]["opened"],
                "rss_bytes_per_connection": report.get("server_rss_bytes_per_connection"),
            }
            time.sleep(2)
    finally:
        stop()
    print_table(figures, [
        ("p50 ms", "p50_ms", "9.3f"), ("p99 ms", "p99_ms", "9.3f"),
        ("p99.9 ms", "p999_ms", "9.3f"), ("max ms", "max_ms", "9.3f"),
        ("deliveries/s", "deliveries_per_s", "13,.0f"), ("lost", "lost", "6d"),
        ("B/conn", "rss_bytes_per_connection", "8,.0f"),
    ])
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
