#!/usr/bin/env python3
"""Many connections over a cluster on one host: N gateway nodes on one Redis.

Starts a redis-server and N gateway nodes (release builds) on loopback,
then `loadtest --workers N connect` with one worker per node (each under the
per-process open-file limit), every connection subscribed to one of a few
rooms, and holds them. Reports per node: connections, RSS and RSS per
connection, CPU per second while the connections sit idle; and the
kernel's TCP memory (/proc/net/sockstat) and Redis's command count.

Usage: scale.py [--nodes 6] [--per-node 17000] [--hold 20s] [--chat --rooms 1000 --think-time 600s]
       scale.py --curve 1000,5000,10000,18000 --svg docs/scale-curve.svg
Build first: cargo build --release -p gateway -p loadtest
Sizes are arguments, so the same command runs at 250k+ per node on a host
with raised limits (LimitNOFILE, fs.nr_open, net.ipv4.ip_local_port_range).
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from localhost import free_port, start_redis, stop_all, wait_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def tcp_mem_mib():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1]) * PAGE / 2**20
    return 0.0


def redis_cpu_s(port):
    info = subprocess.run(["redis-cli", "-p", str(port), "INFO", "cpu"],
                          capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return float(fields.get("used_cpu_user", 0)) + float(fields.get("used_cpu_sys", 0))


def parse_seconds(text):
    for unit, factor in (("ms", 0.001), ("s", 1), ("m", 60)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def measure(args, nodes_count, per_node):
    """One run: `nodes_count` nodes holding `per_node` connections each.
    Returns, per node, (RSS growth per connection in bytes, idle CPU in %
    of a core), after printing loadtest's report and the table."""
    gateway = os.path.join(ROOT, "target/release/gateway")
    loadtest = os.path.join(ROOT, "target/release/loadtest")
    procs = []
    try:
        redis_port = start_redis(procs)
        nodes = []
        for i in range(nodes_count):
            port = free_port()
            proc = subprocess.Popen(
                [gateway, "--listen", f"127.0.0.1:{port}", "--node-id", f"n{i}",
                 "--redis-url", f"redis://127.0.0.1:{redis_port}", "--log", "warn",
                 "--max-frame-rate", "0", "--rebalance", "false"],
                stderr=subprocess.DEVNULL)
            procs.append(proc)
            nodes.append((port, proc))
        for port, _ in nodes:
            wait_port(port, "gateway")
        time.sleep(1)
        base_rss = [rss_kib(p.pid) for _, p in nodes]
        tcp_before = tcp_mem_mib()
        total = nodes_count * per_node
        hold = parse_seconds(args.hold)
        urls = ",".join(f"ws://127.0.0.1:{port}/ws" for port, _ in nodes)
        connect_s = total / args.connect_rate / nodes_count
        if args.chat:
            # Users in Zipf-sized rooms on every node, typing at
            # --think-time: the load; its CPU is measured like the idle one.
            scenario = ["chat", "--users", str(total), "--rooms", str(args.rooms),
                        "--rooms-per-user", "3", "--think-time", args.think_time,
                        "--churn", "0"]
        else:
            scenario = ["connect", "--connections", str(total),
                        "--subscribe", "/topic/scale.room"]
        redis_cpu_before = redis_cpu_s(redis_port)
        loadtest_run = subprocess.Popen(
            [loadtest, "--url", urls, "--workers", str(nodes_count), "--quiet",
             "--connect-rate", str(args.connect_rate), "--duration", f"{hold}s",
             "--heart-beat", f"0,{args.heart_beat_ms}", *scenario],
            stdout=subprocess.PIPE, text=True)
        # Sample the idle CPU in the middle of the hold, once every node has
        # its connections.
        time.sleep(connect_s + 2 + hold / 4)
        cpu_a = [cpu_s(p.pid) for _, p in nodes]
        t_a = time.monotonic()
        time.sleep(hold / 2)
        cpu_b = [cpu_s(p.pid) for _, p in nodes]
        idle_s = time.monotonic() - t_a
        redis_cpu = redis_cpu_s(redis_port) - redis_cpu_before
        rss = [rss_kib(p.pid) for _, p in nodes]
        tcp_during = tcp_mem_mib()
        out, _ = loadtest_run.communicate(timeout=connect_s + hold + 300)
        print(out)
        redis_info = subprocess.run(["redis-cli", "-p", str(redis_port), "INFO", "stats"],
                                    capture_output=True, text=True).stdout
        commands = next((line.split(":")[1].strip() for line in redis_info.splitlines()
                         if line.startswith("total_commands_processed")), "?")
        what = (f"chat users in {args.rooms} Zipf rooms (3 each) spanning the nodes"
                if args.chat else "connections in one room")
        print(f"{nodes_count} nodes x {per_node} = {total} {what}, "
              f"server heart-beats every {args.heart_beat_ms} ms")
        load = "CPU under chat load" if args.chat else "idle CPU"
        print(f"| node | RSS before → with connections | per connection | {load} |")
        print("|---|---|---|---|")
        figures = []
        for i in range(nodes_count):
            per = (rss[i] - base_rss[i]) * 1024 / per_node
            cpu = (cpu_b[i] - cpu_a[i]) / idle_s * 100
            figures.append((per, cpu))
            print(f"| n{i} | {base_rss[i] / 1024:.1f} → {rss[i] / 1024:.1f} MiB | {per:,.0f} B "
                  f"| {cpu:.2f} % of a core |")
        print(f"kernel TCP memory: {tcp_before:.0f} → {tcp_during:.0f} MiB "
              f"({(tcp_during - tcp_before) * 2**20 / total:,.0f} B per connection, both ends)")
        print(f"redis commands processed: {commands}; redis CPU over the run: {redis_cpu:.1f} s")
        return figures
    finally:
        stop_all(procs)


def curve_svg(points):
    """A plot of idle CPU (% of a core) and RSS growth (MiB) against
    connections on one node: two polylines on one set of axes."""
    width, height, pad = 640, 360, 56
    max_n = max(n for n, _, _ in points)
    max_cpu = max(max(c for _, _, c in points), 1.0) * 1.2
    max_mib = max(max(n * per / 2**20 for n, per, _ in points), 1.0) * 1.2

    def x(n):
        return pad + (width - 2 * pad) * n / max_n

    def y(v, top):
        return height - pad - (height - 2 * pad) * v / top

    cpu_line = " ".join(f"{x(n):.1f},{y(c, max_cpu):.1f}" for n, _, c in points)
    mem_line = " ".join(f"{x(n):.1f},{y(n * per / 2**20, max_mib):.1f}" for n, per, _ in points)
    ticks = "".join(
        f'<text x="{x(n):.1f}" y="{height - pad + 18}" text-anchor="middle">{n // 1000}k</text>'
        for n, _, _ in points)
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">One node, idle subscribed connections, heart-beats every 10 s</text>
<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>
<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#c0392b"/>
<line x1="{width - pad}" y1="{pad}" x2="{width - pad}" y2="{height - pad}" stroke="#2c3e80"/>
{ticks}
<text x="{width / 2}" y="{height - 12}" text-anchor="middle">connections</text>
<text x="8" y="{pad - 12}" text-anchor="start" fill="#c0392b">CPU % of a core (max {max_cpu / 1.2:.1f})</text>
<text x="{width - 8}" y="{pad - 12}" text-anchor="end" fill="#2c3e80">RSS growth MiB (max {max_mib / 1.2:.1f})</text>
<polyline points="{cpu_line}" fill="none" stroke="#c0392b" stroke-width="2"/>
<polyline points="{mem_line}" fill="none" stroke="#2c3e80" stroke-width="2"/>
</svg>
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=6)
    ap.add_argument("--per-node", type=int, default=17000)
    ap.add_argument("--hold", default="20s", help="how long the connections stay open")
    ap.add_argument("--connect-rate", type=int, default=2000)
    ap.add_argument("--heart-beat-ms", type=int, default=10000,
                    help="server heart-beats every connection asks for (0: none)")
    ap.add_argument("--curve", help="connection counts for one node, e.g. 1000,5000,10000,18000: "
                    "one run each, then a table and --svg")
    ap.add_argument("--svg", help="with --curve: write the plot here")
    ap.add_argument("--chat", action="store_true",
                    help="chat traffic (Zipf rooms spanning the nodes) instead of idle connections")
    ap.add_argument("--rooms", type=int, default=1000, help="with --chat")
    ap.add_argument("--think-time", default="600s",
                    help="with --chat: mean time between two messages of one user")
    args = ap.parse_args()
    if not args.curve:
        measure(args, args.nodes, args.per_node)
        return
    points = []
    for n in (int(v) for v in args.curve.split(",")):
        (per, cpu), = measure(args, 1, n)
        points.append((n, per, cpu))
    print("| connections | RSS growth per connection | idle CPU | per connection per second |")
    print("|---|---|---|---|")
    for n, per, cpu in points:
        print(f"| {n:,} | {per:,.0f} B | {cpu:.1f} % of a core | {cpu * 1e4 / n:.1f} µs |")
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(curve_svg(points))


if __name__ == "__main__":
    main()
