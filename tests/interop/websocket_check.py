#!/usr/bin/env python3
"""Interop check: the gateway's WebSocket layer driven by websocket-client.

Usage:
    .venv-interop/bin/python tests/interop/websocket_check.py ws://127.0.0.1:PORT/ws

A third-party RFC 6455 implementation (websocket-client, the library stomp.py
rides on) opens each connection, sends the frames (its own framing where it
can build the frame; hand-masked bytes on its socket where the case is a
frame no correct library would send) and parses what comes back. Each case
checks the close code the gateway answers with:

  * protocol violations (reserved bits, reserved opcodes, oversized or
    fragmented control frames, a continuation with nothing to continue, a
    64-bit length with its top bit set, bad close payloads): 1002;
  * invalid UTF-8 in a text message, whole or split across fragments, or in
    a close reason: 1007;
  * a message larger than the gateway accepts: 1009;
  * a client's close: echoed with the same code;
  * a valid text message split inside a multi-byte character is delivered.

Prints "websocket interop: OK" when every case holds.
"""

import os
import struct
import sys

import websocket
from websocket import ABNF


def open_ws(url):
    ws = websocket.create_connection(url, subprotocols=["v12.stomp"], timeout=10)
    ws.send("CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\x00")
    opcode, data = ws.recv_data()
    assert data.startswith(b"CONNECTED"), data
    return ws


def masked(first_byte, payload, length_field=None):
    """A client frame built by hand: for frames no library will send."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if length_field is None:
        length_field = bytes([0x80 | len(payload)])
    return bytes([first_byte]) + length_field + mask + body


def close_code(ws):
    """Reads until the server's close frame; returns its code."""
    while True:
        frame = ws.recv_frame()
        if frame.opcode == ABNF.OPCODE_CLOSE:
            assert len(frame.data) >= 2, frame.data
            return struct.unpack("!H", frame.data[:2])[0]


def expect(url, name, code, send):
    ws = open_ws(url)
    try:
        send(ws)
        got = close_code(ws)
    finally:
        ws.shutdown()
    assert got == code, f"{name}: expected close {code}, got {got}"
    print(f"  {name}: {got}")


def frame(opcode, data, fin=1, rsv1=0):
    return ABNF(fin=fin, rsv1=rsv1, opcode=opcode, mask_value=1, data=data)


def main():
    url = sys.argv[-1]
    send_frame = lambda f: lambda ws: ws.send_frame(f)
    raw = lambda b: lambda ws: ws.sock.sendall(b)

    expect(url, "reserved bit", 1002, send_frame(frame(ABNF.OPCODE_TEXT, b"x", rsv1=1)))
    expect(url, "reserved opcode 3", 1002, raw(masked(0x83, b"x")))
    expect(url, "reserved opcode 11", 1002, raw(masked(0x8B, b"")))
    expect(url, "ping of 126 bytes", 1002, raw(masked(0x89, b"p" * 126, b"\xfe\x00\x7e")))
    expect(url, "fragmented ping", 1002, raw(masked(0x09, b"p")))
    expect(url, "continuation first", 1002, send_frame(frame(ABNF.OPCODE_CONT, b"x")))

    def nested(ws):
        ws.send_frame(frame(ABNF.OPCODE_TEXT, b"SEND\n", fin=0))
        ws.send_frame(frame(ABNF.OPCODE_TEXT, b"x"))

    expect(url, "data frame inside a fragmented message", 1002, nested)
    expect(url, "64-bit length, top bit set", 1002,
           raw(masked(0x82, b"", b"\xff" + struct.pack("!Q", 1 << 63))))
    expect(url, "1-byte close payload", 1002, raw(masked(0x88, b"\x03")))
    for bad in (0, 999, 1004, 1005, 1006, 1015, 2000, 5000):
        expect(url, f"close code {bad}", 1002, raw(masked(0x88, struct.pack("!H", bad))))

    expect(url, "invalid UTF-8 text", 1007,
           raw(masked(0x81, b"SEND\ndestination:/topic/a\n\n\xc0\x80\x00")))

    def split_invalid(ws):
        ws.sock.sendall(masked(0x01, b"SEND\ndestination:/topic/a\n\n\xe2"))
        ws.sock.sendall(masked(0x80, b"\x82\x28\x00"))

    expect(url, "invalid UTF-8 across fragments", 1007, split_invalid)
    expect(url, "close reason not UTF-8", 1007, raw(masked(0x88, b"\x03\xe8\xff\xfe")))
    expect(url, "message over the size limit", 1009,
           raw(masked(0x82, b"", b"\xff" + struct.pack("!Q", 1 << 40))))

    for code in (1000, 1001, 3000, 4999):
        expect(url, f"close {code} echoed", code,
               lambda ws, code=code: ws.send_close(status=code, reason="bye ✓".encode()))

    # A valid message split inside "€" (E2 82 AC) reaches a subscriber.
    ws = open_ws(url)
    ws.send("SUBSCRIBE\nid:1\ndestination:/topic/ws.check\nreceipt:r\n\n\x00")
    assert ws.recv_data()[1].startswith(b"RECEIPT")
    ws.send_frame(frame(ABNF.OPCODE_TEXT, b"SEND\ndestination:/topic/ws.check\n\n\xe2", fin=0))
    ws.send_frame(frame(ABNF.OPCODE_CONT, b"\x82\xac\x00"))
    _, data = ws.recv_data()
    assert data.startswith(b"MESSAGE") and data.endswith("€\x00".encode()), data
    ws.close()
    print("  split character delivered")
    print("websocket interop: OK")


if __name__ == "__main__":
    main()
