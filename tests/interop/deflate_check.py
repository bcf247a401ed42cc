#!/usr/bin/env python3
"""Interop check: permessage-deflate with the Python `websockets` client.

Usage:
    .venv-interop/bin/python tests/interop/deflate_check.py ws://127.0.0.1:PORT/ws

`websockets` offers permessage-deflate on every connection and compresses
every message it sends once the extension is negotiated. Against a gateway
started with --permessage-deflate:

  * every connection negotiates it, with no context takeover either way;
  * a large SEND the client compressed arrives whole at every subscriber;
  * each subscriber's MESSAGE (compressed by the gateway, with a stored
    block for its own `subscription` header) inflates to the exact body,
    with its own subscription id;
  * the gateway's /metrics say the message was compressed once, and sent
    compressed to every subscriber.

Prints "deflate interop: OK" when every case holds.
"""

import re
import sys
import urllib.request

from websockets.sync.client import connect

SUBSCRIBERS = 5


def frames(ws):
    """STOMP frames from the connection, heart-beats skipped."""
    buffer = ""
    while True:
        while "\x00" in buffer:
            frame, buffer = buffer.split("\x00", 1)
            frame = frame.lstrip("\r\n")
            if frame:
                yield frame
        buffer += ws.recv(timeout=10)


def parse(frame):
    head, _, body = frame.partition("\n\n")
    lines = head.split("\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name, value)
    return lines[0], headers, body


def session(url):
    ws = connect(url, subprotocols=["v12.stomp"], max_size=2**22)
    extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    assert "permessage-deflate" in extensions, extensions
    assert "server_no_context_takeover" in extensions, extensions
    assert "client_no_context_takeover" in extensions, extensions
    ws.send("CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\x00")
    reader = frames(ws)
    command, _, _ = parse(next(reader))
    assert command == "CONNECTED", command
    return ws, reader


def main():
    url = sys.argv[1]
    subscribers = []
    for i in range(SUBSCRIBERS):
        ws, reader = session(url)
        ws.send(f"SUBSCRIBE\nid:sub-{i}\ndestination:/topic/deflate\nreceipt:s\n\n\x00")
        command, headers, _ = parse(next(reader))
        assert command == "RECEIPT", command
        subscribers.append((ws, reader))

    body = '{"text":"a chat message that says the same thing again and again"}' * 40
    publisher, replies = session(url)
    publisher.send(f"SEND\ndestination:/topic/deflate\nreceipt:p\n\n{body}\x00")
    command, _, _ = parse(next(replies))
    assert command == "RECEIPT", command

    for i, (ws, reader) in enumerate(subscribers):
        command, headers, received = parse(next(reader))
        assert command == "MESSAGE", command
        assert headers["subscription"] == f"sub-{i}", headers
        assert received == body, (len(received), len(body))
        ws.close()
    publisher.close()

    http = url.replace("ws://", "http://", 1).rsplit("/ws", 1)[0]
    metrics = urllib.request.urlopen(http + "/metrics", timeout=10).read().decode()

    def metric(name):
        match = re.search(rf"^{name} (\d+)$", metrics, re.M)
        assert match, f"{name} missing"
        return int(match.group(1))

    assert metric("gateway_deflate_negotiated_total") == SUBSCRIBERS + 1
    assert metric("gateway_deflate_compressions_total") == 1
    assert metric("gateway_deflate_frames_out_total") == SUBSCRIBERS
    print("deflate interop: OK")


if __name__ == "__main__":
    main()
