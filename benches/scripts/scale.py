#!/usr/bin/env python3
"""Many connections over a cluster on one host: N gateway nodes on one Redis.

Starts a redis-server and N gateway nodes (release builds) on loopback,
then `loadtest --workers N connect` with one worker per node (each under the
per-process open-file limit), every connection subscribed to one of a few
rooms, and holds them. Reports per node: connections, RSS and RSS per
connection, CPU per second while the connections sit idle; and the
kernel's TCP memory (/proc/net/sockstat) and Redis's command count.

With --ops, operations at that scale instead: the clients (kept by
`loadtest storm` across workers, recovering with resume tokens and
resume-from under a steady publish rate) start on N nodes; a node N+1
joins and rebalancing spreads them (time until every node is within the
margin of its fair share, clients moved, messages lost); then the first
node drains on SIGTERM and its clients resume elsewhere (time, loss).

Usage: scale.py [--nodes 6] [--per-node 17000] [--hold 20s] [--chat --rooms 1000 --think-time 600s]
       scale.py --curve 1000,5000,10000,18000 --svg docs/scale-curve.svg
       scale.py --ops [--nodes 6] [--per-node 16000]
Build first: cargo build --release -p gateway -p loadtest
Sizes are arguments, so the same command runs at 250k+ per node on a host
with raised limits (LimitNOFILE, fs.nr_open, net.ipv4.ip_local_port_range).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from localhost import free_port, listen_port, start_redis, stop_all, wait_port  # noqa: E402

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


def connections_of(port):
    """The node's `gateway_connections` gauge, or None once it is gone."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    found = re.search(r"^gateway_connections (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else None


def wait_until(what, check, timeout, step=0.5):
    """Polls `check` until it returns something true; returns (seconds it
    took, its value), or (None, last value) after `timeout`."""
    start = time.monotonic()
    value = None
    while time.monotonic() - start < timeout:
        value = check()
        if value:
            return time.monotonic() - start, value
        time.sleep(step)
    print(f"warning: {what} not reached within {timeout:.0f} s (last: {value})")
    return None, value


def phase(moves, start_ms, end_ms):
    """Clients that lost their connection between the two instants: how
    many, and their reconnect times (ms) and when the last was back."""
    mine = [m for m in moves if start_ms <= m[0] < end_ms]
    if not mine:
        return "no client moved"
    took = sorted(back - lost for lost, back, _ in mine)
    last = max(back for _, back, _ in mine) - start_ms

    def pct(q):
        return took[min(len(took) - 1, int(q * len(took)))]
    return (f"{len(mine):,} clients moved; reconnect p50 / p99 / max {pct(0.5):,} / "
            f"{pct(0.99):,} / {took[-1]:,} ms; last one back {last / 1000:.1f} s after the event")


def operations(args):
    """Scale-out by one node, then a drain, with every client kept by
    `loadtest storm` across one worker per first node. With OPS_LOG=prefix
    in the environment, node i logs to <prefix><i>.log."""
    gateway = os.path.join(ROOT, "target/release/gateway")
    loadtest = os.path.join(ROOT, "target/release/loadtest")
    first = args.nodes
    total = first * args.per_node
    procs = []
    try:
        redis_port = start_redis(procs)
        ports = [listen_port() for _ in range(first + 1)]
        env = dict(os.environ, GATEWAY_RESUME_KEY="scale bench resume key")
        nodes = {}

        def start_node(i):
            proc = subprocess.Popen(
                [gateway, "--listen", f"127.0.0.1:{ports[i]}", "--node-id", f"n{i}",
                 "--redis-url", f"redis://127.0.0.1:{redis_port}", "--log", "warn",
                 "--max-frame-rate", "0", "--history", "/topic/scale.#",
                 "--fleet-report-ms", "1s", "--rebalance-interval-ms", args.rebalance_interval,
                 "--rebalance-rate", str(args.rebalance_rate),
                 "--drain-delay-ms", "1s", "--drain-window-ms", args.drain_window],
                env=env, stderr=open(os.environ["OPS_LOG"] + f"{i}.log", "w") if "OPS_LOG" in os.environ else subprocess.DEVNULL)
            procs.append(proc)
            nodes[i] = proc
            wait_port(ports[i], "gateway", timeout=60)

        for i in range(first):
            start_node(i)
        report_path = tempfile.mktemp(suffix=".json")
        urls = [f"ws://127.0.0.1:{port}/ws" for port in ports]
        command = [loadtest, "--workers", str(first), "--quiet", "--json", report_path,
                   "--connect-rate", str(args.connect_rate), "--duration", str(args.ops_duration),
                   "--heart-beat", f"0,{args.heart_beat_ms}", "storm",
                   "--clients", str(total), "--topics", str(args.topics),
                   "--publishers", str(first), "--rate", str(args.rate),
                   "--destination-prefix", "/topic/scale.", "--start-on", str(first),
                   "--reconnect-jitter-ms", "1000"]
        for url in urls:
            command += ["--node", url]
        run = subprocess.Popen(command)
        counts = lambda: [connections_of(ports[i]) or 0 for i in sorted(nodes)]  # noqa: E731
        # Connected: the count stops growing (on this host about 1-2 % of
        # a 100k ramp fail their first connect and are not retried).
        seen = []

        def settled():
            seen.append(sum(counts()))
            return len(seen) > 5 and seen[-1] >= 0.9 * total and seen[-1] == seen[-6]
        took, _ = wait_until("every client connected", settled,
                             total / (args.connect_rate * first) + 120, step=1.0)
        held = sum(counts()) - first
        print(f"{held:,} of {total:,} clients on {first} nodes after {took or 0:.0f} s: {counts()}")
        total = held
        time.sleep(5)

        # Scale-out: node N+1 joins.
        joined_ms = int(time.time() * 1000)
        start_node(first)
        fair = (total + first) / (first + 1)

        def even():
            c = counts()
            return c if all(abs(n - fair) <= args.margin * fair for n in c) else None
        took, spread = wait_until("an even fleet", even, args.converge_timeout, step=1.0)
        converged = "did not converge" if took is None else f"{took:.1f} s"
        print(f"scale-out to {first + 1} nodes: every node within {args.margin:.0%} of its fair "
              f"share ({fair:,.0f}) after {converged}: {spread}")
        time.sleep(5)

        # Drain: the first node gets SIGTERM; its clients resume elsewhere.
        drained_ms = int(time.time() * 1000)
        nodes[0].send_signal(signal.SIGTERM)
        exit_start = time.monotonic()
        nodes[0].wait(timeout=300)
        exited = time.monotonic() - exit_start
        del nodes[0]
        took, after = wait_until(
            "every client back",
            lambda: (lambda c: c if sum(c) >= total else None)(counts()), 120)
        print(f"drain of n0: process exited {exited:.1f} s after SIGTERM; all clients on the "
              f"other nodes {(took or 0) + exited:.1f} s after it: {after}")
        run.wait(timeout=args.ops_duration + total / args.connect_rate + 300)
        with open(report_path) as f:
            report = json.load(f)
        moves = report["storm"]["moves"]
        d = report["deliveries"]
        print()
        print(f"{first} nodes x {args.per_node:,} = {total:,} clients, "
              f"{args.topics * first} history topics, {args.rate} msg/s")
        print(f"| event | what moved |\n|---|---|")
        print(f"| node n{first} joins | {phase(moves, joined_ms, drained_ms)} |")
        print(f"| n0 drains (SIGTERM) | {phase(moves, drained_ms, 2**63)} |")
        print(f"deliveries: {d['received']:,} of {d['expected']:,} expected; lost {d['lost']}, "
              f"duplicated {d['duplicates']}, out of order {d['out_of_order']}; "
              f"resumed:true {report['storm']['resumed_complete']:,}, "
              f"resumed:false {report['storm']['resumed_gap']:,}")
        os.unlink(report_path)
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
    ap.add_argument("--ops", action="store_true",
                    help="a node joins, then one drains, with clients kept by loadtest storm")
    ap.add_argument("--topics", type=int, default=20, help="with --ops: history topics per worker")
    ap.add_argument("--rate", type=float, default=30.0,
                    help="with --ops: messages/s over all topics")
    ap.add_argument("--ops-duration", type=float, default=150.0,
                    help="with --ops: seconds of publishing after every client is connected")
    ap.add_argument("--rebalance-interval", default="2s", help="with --ops: the nodes' setting")
    ap.add_argument("--rebalance-rate", type=float, default=0.05,
                    help="with --ops: the nodes' setting")
    ap.add_argument("--drain-window", default="10s", help="with --ops: the nodes' setting")
    ap.add_argument("--margin", type=float, default=0.1,
                    help="with --ops: even means every node within this fraction of its share")
    ap.add_argument("--converge-timeout", type=float, default=90.0)
    args = ap.parse_args()
    if args.ops:
        operations(args)
        return
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
