"""Tests of the container images' health probe (deploy/docker/healthcheck.c).

Run by scripts/check-infra with the path of a freshly built probe:

    python3 scripts/infra/test_healthcheck.py /tmp/healthcheck

Starts a local HTTP server (/healthz 200, /readyz 503, /garbage not HTTP,
/hang never answers, /keepopen answers 200 and never closes) and checks the probe's exit status for each case, the
--env form, an unspecified listen address (0.0.0.0 and [::] are probed on
loopback), a refused connection and bad arguments. Prints nothing and exits
0 when every case passes; otherwise one line per failure and exit 1.
"""

from __future__ import annotations

import http.server
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/healthz":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            body = b'{"status":"alive"}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/readyz":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/garbage":
            self.wfile.write(b"SSH-2.0-OpenSSH\r\n")
        elif self.path == "/hang":
            time.sleep(5)
        elif self.path == "/keepopen":
            # Answers, then keeps the connection open despite Connection: close.
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            self.wfile.flush()
            time.sleep(5)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class Server6(Server):
    address_family = socket.AF_INET6


def serve(server_class: type[Server], host: str) -> Server:
    server = server_class((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    probe = sys.argv[1]
    failures: list[str] = []

    def expect(want: int, args: list[str], env: dict[str, str] | None = None, max_seconds: float = 2.0) -> None:
        start = time.monotonic()
        proc = subprocess.run(
            [probe, *args],
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=10,
        )
        took = time.monotonic() - start
        if proc.returncode != want:
            failures.append(
                f"healthcheck {' '.join(args)} (env {env}): exit {proc.returncode}, want {want}; "
                f"stdout {proc.stdout.strip()!r}, stderr {proc.stderr.strip()!r}"
            )
        elif took > max_seconds:
            failures.append(f"healthcheck {' '.join(args)}: took {took:.1f} s, want at most {max_seconds} s")

    v4 = serve(Server, "127.0.0.1")
    port = v4.server_address[1]

    expect(0, [f"127.0.0.1:{port}", "/healthz"])
    expect(0, [f"0.0.0.0:{port}", "/healthz"])
    expect(0, ["--env", "PROBE_LISTEN", "/healthz"], {"PROBE_LISTEN": f"0.0.0.0:{port}"})
    expect(1, [f"127.0.0.1:{port}", "/readyz"])
    expect(1, [f"127.0.0.1:{port}", "/missing"])
    expect(1, [f"127.0.0.1:{port}", "/garbage"])
    # The probe gives up after 3 seconds; the server would answer after 5.
    expect(1, [f"127.0.0.1:{port}", "/hang"], max_seconds=4.5)
    # Healthy once the status is read, even if the server never closes.
    expect(0, [f"127.0.0.1:{port}", "/keepopen"], max_seconds=2.5)
    expect(1, [f"127.0.0.1:{free_port()}", "/healthz"])
    expect(1, ["--env", "PROBE_UNSET_VARIABLE", "/healthz"])
    expect(1, ["--env", "PROBE_LISTEN", "/healthz"], {"PROBE_LISTEN": ""})
    for address in ["localhost:80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:8o", "[::1]8080", ":8080"]:
        expect(1, [address, "/healthz"])
    for path in ["healthz", "/health z", "/a\r\nX: y"]:
        expect(1, [f"127.0.0.1:{port}", path])
    expect(1, [])
    expect(1, [f"127.0.0.1:{port}"])
    expect(1, ["--env"])

    if socket.has_ipv6:
        try:
            v6 = serve(Server6, "::1")
        except OSError:
            v6 = None  # no IPv6 loopback here (some containers)
        if v6 is not None:
            port6 = v6.server_address[1]
            expect(0, [f"[::1]:{port6}", "/healthz"])
            expect(0, [f"[::]:{port6}", "/healthz"])
            v6.shutdown()

    v4.shutdown()
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
