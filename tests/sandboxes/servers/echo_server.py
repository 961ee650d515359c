"""A stdlib-only HTTP + WebSocket echo server, run INSIDE a sandbox by the relay tests.

HTTP: answers JSON ``{method, target, headers, body}`` describing the request it got;
``/redirect`` answers 302 to ``/login``. WebSocket (any path): after the handshake it sends the
same JSON for the upgrade request, then echoes text as ``echo:<text>`` and binary reversed.
Usage: ``python3 echo_server.py PORT``.
"""

import base64
import hashlib
import json
import socket
import struct
import sys
import threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_exact(conn, n, buffered):
    data = buffered.pop() if buffered else b""
    while len(data) < n:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError
        data += chunk
    if len(data) > n:
        buffered.append(data[n:])
    return data[:n]


def frame(opcode, payload):
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


def send_frame(conn, opcode, payload):
    conn.sendall(frame(opcode, payload))


def websocket(conn, info, rest):
    key = info["headers"]["sec-websocket-key"].encode()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: "
        + accept
        + b"\r\n\r\n"
        + frame(1, json.dumps(info).encode())  # in the same packet: the relay must keep it
    )
    buffered = [rest] if rest else []
    while True:
        b1, b2 = read_exact(conn, 2, buffered)
        opcode, n = b1 & 0x0F, b2 & 0x7F
        if n == 126:
            n = struct.unpack(">H", read_exact(conn, 2, buffered))[0]
        elif n == 127:
            n = struct.unpack(">Q", read_exact(conn, 8, buffered))[0]
        mask = read_exact(conn, 4, buffered) if b2 & 0x80 else b"\0\0\0\0"
        data = read_exact(conn, n, buffered) if n else b""
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        if opcode == 8:
            send_frame(conn, 8, payload[:2])
            return
        if opcode == 9:
            send_frame(conn, 10, payload)
        elif opcode == 1:
            send_frame(conn, 1, b"echo:" + payload)
        elif opcode == 2:
            send_frame(conn, 2, payload[::-1])


def read_body(conn, headers, rest):
    buffered = [rest] if rest else []
    if "chunked" in headers.get("transfer-encoding", ""):
        body = b""
        while True:
            line = b""
            while not line.endswith(b"\r\n"):
                line += read_exact(conn, 1, buffered)
            size = int(line.split(b";")[0], 16)
            if size == 0:
                return body
            body += read_exact(conn, size, buffered)
            read_exact(conn, 2, buffered)
    return read_exact(conn, int(headers.get("content-length", "0")), buffered)


def handle(conn):
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        info = {"method": method, "target": target, "headers": headers}
        try:
            if headers.get("upgrade", "").lower() == "websocket":
                websocket(conn, info, rest)
                return
            info["body"] = read_body(conn, headers, rest).decode("utf-8", "replace")
        except EOFError:
            return
        if target == "/redirect":
            status, extra, body = "302 Found", "Location: /login\r\n", b""
        else:
            status, extra, body = "200 OK", "", json.dumps(info).encode()
        conn.sendall(
            (
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + body
        )


def main():
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", int(sys.argv[1])))
    server.listen(16)
    print("listening", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
