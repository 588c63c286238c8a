"""A local HTTP file server for the model download tests and bench: Range requests, If-Range and ETags, a
per-connection rate cap, Hugging Face's X-Linked-Etag, dropped connections, tokens, keep-alive.

In-process (tests)::

    with ModelServer(rate=8 * 2**20) as srv:             # every connection capped at 8 MiB/s (optional)
        srv.add("/m.safetensors", data=b"...")            # or file="/big/sparse.bin"; linked_sha256="..."
        srv.drop_next("/m.safetensors", after=1000)        # next GET: full headers, 1000 bytes, then close
        srv.change("/m.safetensors", data=b"...")         # new content, new ETag
        url = srv.url + "/m.safetensors"
        srv.gets(path), srv.heads(path), srv.max_active[path], srv.connections

As a process (bench): ``python tests/model_http_server.py [--rate-mb 20] --port P FILE...`` serves each FILE as
/<basename>. Standard library only: the comfyui molecule scenario copies it onto a test host.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")
PACE_CHUNK = 64 * 1024


class Entry:
    def __init__(self, data=None, path=None, token=None, ranges=True, redirect=None, status=None,
                 linked_sha256=None, etag=None, if_range=True, close_after=False):
        self.data = data
        self.path = path
        self.token = token
        self.ranges = ranges
        self.redirect = redirect
        self.status = status
        self.linked_sha256 = linked_sha256  # sent as X-Linked-Etag, as Hugging Face does for LFS files
        self.if_range = if_range            # False: ignore If-Range (still send the ETag)
        self.close_after = close_after      # close the connection after each answer without saying so
        self.drops = []                     # byte offsets after which the next GETs are cut
        self.bad_range = False              # answer a resume with a Content-Range that does not start where asked
        self.etag = etag or self._etag()

    def _etag(self):
        if self.data is not None:
            return '"%s"' % hashlib.sha256(self.data).hexdigest()[:20]
        if self.path is not None:
            st = os.stat(self.path)
            return '"%x-%x"' % (st.st_size, st.st_mtime_ns)
        return None

    @property
    def size(self):
        return len(self.data) if self.data is not None else os.path.getsize(self.path)


class ModelServer:
    def __init__(self, host="127.0.0.1", port=0, rate=None):
        self.entries = {}
        self.requests = []
        self.rate = rate            # bytes/s per connection (None: as fast as it goes)
        self.active = {}            # path -> GETs being answered now
        self.max_active = {}        # path -> most GETs answered at the same time
        self.sent = {}              # path -> body bytes sent
        self.connections = 0        # TCP connections accepted
        self.changes = {}           # path -> (GETs to answer first, new data): see change_after
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with server.lock:
                    server.connections += 1

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve(head=False)

            def _plain(self, status, headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _serve(self, head):
                target, proxied = self.path, False
                if target.startswith(("http://", "https://")):  # absolute form: asked as a proxy (of itself)
                    parts = urlsplit(target)
                    target, proxied = parts.path + ("?" + parts.query if parts.query else ""), True
                path = target.split("?", 1)[0]
                with server.lock:
                    server.requests.append(dict(method=self.command, path=path, headers=dict(self.headers),
                                                query=target, proxied=proxied, at=time.monotonic()))
                    pending = server.changes.get(path)
                    if pending and self.command == "GET":
                        if pending[0] == 0:
                            server.change(path, pending[1])
                            del server.changes[path]
                        else:
                            server.changes[path] = (pending[0] - 1, pending[1])
                    entry = server.entries.get(path)
                    drop = entry.drops.pop(0) if entry is not None and entry.drops and not head else None
                if entry is None:
                    return self._plain(404)
                linked = [("X-Linked-Etag", '"%s"' % entry.linked_sha256)] if entry.linked_sha256 else []
                if entry.redirect:
                    return self._plain(302, [("Location", entry.redirect)] + linked)
                if entry.status:
                    return self._plain(entry.status)
                if entry.token and self.headers.get("Authorization") != "Bearer " + entry.token:
                    return self._plain(401, [("WWW-Authenticate", "Bearer")])
                size = entry.size
                start, end, status = 0, size, 200
                m = RANGE_RE.match(self.headers.get("Range") or "")
                if_range = self.headers.get("If-Range")
                if m and entry.ranges and not (entry.if_range and if_range and if_range != entry.etag):
                    start = int(m.group(1))
                    end = min(int(m.group(2)) + 1, size) if m.group(2) else size
                    if start >= size:
                        return self._plain(416, [("Content-Range", "bytes */%d" % size)])
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes" if entry.ranges else "none")
                self.send_header("Content-Length", str(end - start))
                if entry.etag:
                    self.send_header("ETag", entry.etag)
                for k, v in linked:
                    self.send_header(k, v)
                if status == 206:
                    shown = start + 1 if entry.bad_range else start
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (shown, end - 1, size))
                self.end_headers()
                if head:
                    return
                count = end - start if drop is None else max(0, min(drop - start, end - start))
                with server.lock:
                    server.active[path] = server.active.get(path, 0) + 1
                    server.max_active[path] = max(server.max_active.get(path, 0), server.active[path])
                try:
                    self._send_body(entry, start, count, path)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                    return
                finally:
                    with server.lock:
                        server.active[path] -= 1
                if entry.close_after:
                    self.wfile.flush()
                    self.close_connection = True
                if drop is not None:
                    self.wfile.flush()
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self.close_connection = True

            def _send_body(self, entry, start, count, path):
                self.wfile.flush()
                t0, sent = time.monotonic(), 0
                f = open(entry.path, "rb") if entry.data is None else None
                try:
                    while sent < count:
                        n = min(count - sent, PACE_CHUNK if server.rate else 8 * 2**20)
                        if f is None:
                            self.connection.sendall(memoryview(entry.data)[start + sent:start + sent + n])
                        else:
                            n = self.connection.sendfile(f, offset=start + sent, count=n)
                            if not n:
                                break
                        sent += n
                        with server.lock:
                            server.sent[path] = server.sent.get(path, 0) + n
                        if server.rate:
                            delay = t0 + sent / server.rate - time.monotonic()
                            if delay > 0:
                                time.sleep(delay)
                finally:
                    if f is not None:
                        f.close()

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://%s:%d" % (host, self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)

    def add(self, path, data=None, file=None, **kwargs):
        self.entries[path] = Entry(data=data, path=file, **kwargs)
        return self.url + path

    def change(self, path, data):
        """New content (and so a new ETag) under the same path, as when a repository's file is replaced."""
        old = self.entries[path]
        self.entries[path] = Entry(data=data, token=old.token, ranges=old.ranges, if_range=old.if_range)

    def change_after(self, path, gets, data):
        """Answer `gets` more GETs for path with the current file, then change it (a file replaced mid-download)."""
        self.changes[path] = (gets, data)

    def drop_next(self, path, after):
        """The next GET(s) for path get the headers of the whole answer but only bytes up to offset `after`."""
        self.entries[path].drops.append(after)

    def gets(self, path):
        return [r for r in self.requests if r["path"] == path and r["method"] == "GET"]

    def heads(self, path):
        return [r for r in self.requests if r["path"] == path and r["method"] == "HEAD"]

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate-mb", type=float, default=None, help="cap every connection at this many MiB/s")
    parser.add_argument("--drop-first-at", type=int, default=None,
                        help="cut the first GET of every file after this many bytes")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    server = ModelServer(port=args.port, rate=args.rate_mb * 2**20 if args.rate_mb else None)
    for f in args.files:
        server.add("/" + os.path.basename(f), file=f)
        if args.drop_first_at is not None:
            server.drop_next("/" + os.path.basename(f), args.drop_first_at)
    print(server.url, flush=True)
    server.httpd.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
