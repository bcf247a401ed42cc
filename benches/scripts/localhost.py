"""Processes on loopback for the measurement scripts: free ports, waiting
for a listener, a throwaway redis-server, and stopping everything."""

import random
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listen_port():
    """A free port below the kernel's ephemeral range: a port that a node
    binds only later (a scale-out) cannot be taken meanwhile by one of the
    load generator's outgoing connections."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    for port in random.sample(range(max(1024, low // 2), low), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    sys.exit("no free port below the ephemeral range")


def wait_port(port, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def start_redis(procs):
    """A redis-server without persistence on a free port, added to
    `procs`; returns its port."""
    port = free_port()
    procs.append(subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_port(port, "redis-server")
    return port


def stop_all(procs):
    """Kills `procs` in reverse order: gateways before the Redis they park
    their sessions in."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
