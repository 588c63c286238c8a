# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A minimal RFC 6455 WebSocket client (standard library only) for ComfyUI's /ws progress channel.

Supports ws:// and wss://, a sub-path prefix (a proxy's /comfyui/gpu0/), extra headers (basic auth for a proxy),
text and binary messages, fragmented messages, ping/pong and the closing handshake. Client frames are masked.
It does not use the environment's HTTP proxy (CONNECT tunnelling); the caller falls back to polling when the
socket cannot be opened.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
from urllib.parse import urlsplit, urlunsplit

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_MESSAGE = 64 * 1024 * 1024
_MAX_HEADER = 64 * 1024


class WebSocketError(Exception):
    pass


class WebSocketClosed(WebSocketError):
    def __init__(self, code=None, reason=""):
        super().__init__("WebSocket closed by the server (code %s%s)" % (code, ": " + reason if reason else ""))
        self.code = code
        self.reason = reason


class WebSocketTimeout(WebSocketError):
    pass


def ws_url(base_url, path):
    """ws(s):// URL for path below an http(s) base URL, keeping the base's sub-path."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError("not an http(s) or ws(s) URL: %r" % (base_url,))
    path, _sep, query = path.partition("?")
    full = parts.path.rstrip("/") + "/" + path.lstrip("/")
    return urlunsplit((scheme, parts.netloc, full, query, ""))


class WebSocket:
    """One client connection. Use connect(); recv() returns (opcode, payload) of the next data message."""

    def __init__(self, sock, buffered=b""):
        self.sock = sock
        self._buf = bytearray(buffered)
        self._fragments = None
        self.closed = False

    @classmethod
    def connect(cls, url, headers=None, timeout=10.0, context=None):
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise WebSocketError("not a ws(s) URL with a host: %r" % (url,))
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        try:
            sock = socket.create_connection((parts.hostname, port), timeout=timeout)
        except OSError as e:
            raise WebSocketError("cannot connect to %s:%s: %s" % (parts.hostname, port, e))
        try:
            if secure:
                if context is None:
                    import ssl
                    context = ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=parts.hostname)
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
            default_port = (443 if secure else 80)
            host = parts.hostname if ":" not in parts.hostname else "[%s]" % parts.hostname
            if parts.port and parts.port != default_port:
                host += ":%d" % parts.port
            lines = ["GET %s HTTP/1.1" % target, "Host: %s" % host, "Upgrade: websocket", "Connection: Upgrade",
                     "Sec-WebSocket-Key: %s" % key, "Sec-WebSocket-Version: 13"]
            for name, value in (headers or {}).items():
                if name.lower() in ("host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version"):
                    continue
                lines.append("%s: %s" % (name, value))
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise WebSocketError("connection closed during the WebSocket handshake")
                buf += chunk
                if len(buf) > _MAX_HEADER:
                    raise WebSocketError("WebSocket handshake answer too large")
            head, _sep, rest = buf.partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            fields = status_line.split(" ", 2)
            if len(fields) < 2 or fields[1] != "101":
                raise WebSocketError("WebSocket handshake refused: %s" % status_line.strip())
            answer = {}
            for line in header_lines:
                name, _sep, value = line.partition(":")
                answer[name.strip().lower()] = value.strip()
            expected = base64.b64encode(hashlib.sha1((key + _GUID).encode("ascii")).digest()).decode("ascii")
            if answer.get("sec-websocket-accept") != expected:
                raise WebSocketError("WebSocket handshake: bad Sec-WebSocket-Accept")
            if "websocket" not in answer.get("upgrade", "").lower():
                raise WebSocketError("WebSocket handshake: no Upgrade: websocket in the answer")
        except (OSError, UnicodeError) as e:
            sock.close()
            raise WebSocketError("WebSocket handshake with %s failed: %s" % (parts.netloc, e))
        except WebSocketError:
            sock.close()
            raise
        return cls(sock, rest)

    # -- frames
    def _send_frame(self, opcode, payload):
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_text(self, text):
        self._send_frame(OP_TEXT, text.encode("utf-8"))

    def ping(self, payload=b""):
        self._send_frame(OP_PING, payload)

    def _parse(self):
        """(fin, opcode, payload) of one complete frame at the start of the buffer, or None (buffer untouched)."""
        buf = self._buf
        if len(buf) < 2:
            return None
        b1, b2 = buf[0], buf[1]
        length = b2 & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length = struct.unpack(">H", bytes(buf[2:4]))[0]
            pos = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length = struct.unpack(">Q", bytes(buf[2:10]))[0]
            pos = 10
        if length > _MAX_MESSAGE:
            raise WebSocketError("WebSocket frame of %d bytes is too large" % length)
        mask = None
        if b2 & 0x80:  # servers must not mask, but accept it
            if len(buf) < pos + 4:
                return None
            mask = bytes(buf[pos:pos + 4])
            pos += 4
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos:pos + length])
        del buf[:pos + length]
        if mask:
            payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        return bool(b1 & 0x80), b1 & 0x0F, payload

    def recv(self, timeout=None):
        """(opcode, payload) of the next text (str) or binary (bytes) message.

        Answers pings, skips pongs, raises WebSocketClosed on a close frame or EOF and WebSocketTimeout when
        nothing complete arrived within timeout seconds (buffered bytes are kept for the next call).
        """
        if self.closed:
            raise WebSocketClosed()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self._parse()
            if frame is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise WebSocketTimeout("no WebSocket message within %.1f s" % timeout)
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    raise WebSocketTimeout("no WebSocket message within %.1f s" % timeout)
                except OSError as e:
                    self.closed = True
                    raise WebSocketClosed(None, str(e))
                if not chunk:
                    self.closed = True
                    raise WebSocketClosed(None, "connection closed")
                self._buf += chunk
                continue
            fin, opcode, payload = frame
            if opcode == OP_PING:
                try:
                    self._send_frame(OP_PONG, payload)
                except OSError:
                    pass
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                if not self.closed:
                    try:
                        self._send_frame(OP_CLOSE, payload[:2])
                    except OSError:
                        pass
                self.closed = True
                raise WebSocketClosed(code, payload[2:].decode("utf-8", "replace"))
            if opcode in (OP_TEXT, OP_BINARY):
                if fin:
                    return opcode, payload.decode("utf-8") if opcode == OP_TEXT else payload
                self._fragments = [opcode, payload]
                continue
            if opcode == OP_CONT and self._fragments is not None:
                self._fragments[1] += payload
                if fin:
                    opcode, payload = self._fragments
                    self._fragments = None
                    return opcode, payload.decode("utf-8") if opcode == OP_TEXT else payload
                continue
            raise WebSocketError("unexpected WebSocket opcode %#x" % opcode)

    def close(self, code=1000):
        if not self.closed:
            try:
                self._send_frame(OP_CLOSE, struct.pack(">H", code))
            except OSError:
                pass
            self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
