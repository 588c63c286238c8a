"""A local HTTP file server for the model download tests and bench: Range requests, dropped connections, tokens.

In-process (tests)::

    with ModelServer() as srv:
        srv.add("/m.safetensors", data=b"...")            # or path="/big/sparse.bin"
        srv.drop_next("/m.safetensors", after=1000)        # next GET: full headers, 1000 bytes, then close
        url = srv.url + "/m.safetensors"

As a process (bench): ``python tests/model_http_server.py --port P FILE...`` serves each FILE as /<basename>.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


class Entry:
    def __init__(self, data=None, path=None, token=None, ranges=True, redirect=None, status=None):
        self.data = data
        self.path = path
        self.token = token
        self.ranges = ranges
        self.redirect = redirect
        self.status = status
        self.drops = []          # byte counts after which the next requests are cut
        self.bad_range = False   # answer a resume with a Content-Range that does not start where asked

    @property
    def size(self):
        return len(self.data) if self.data is not None else os.path.getsize(self.path)


class ModelServer:
    def __init__(self, host="127.0.0.1", port=0):
        self.entries = {}
        self.requests = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

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
                path = self.path.split("?", 1)[0]
                with server.lock:
                    server.requests.append(dict(path=path, headers=dict(self.headers), query=self.path))
                    entry = server.entries.get(path)
                    drop = entry.drops.pop(0) if entry is not None and entry.drops else None
                if entry is None:
                    return self._plain(404)
                if entry.redirect:
                    return self._plain(302, [("Location", entry.redirect)])
                if entry.status:
                    return self._plain(entry.status)
                if entry.token and self.headers.get("Authorization") != "Bearer " + entry.token:
                    return self._plain(401, [("WWW-Authenticate", "Bearer")])
                size = entry.size
                start, status = 0, 200
                m = RANGE_RE.match(self.headers.get("Range") or "")
                if m and entry.ranges:
                    start = int(m.group(1))
                    if start >= size:
                        return self._plain(416, [("Content-Range", "bytes */%d" % size)])
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes" if entry.ranges else "none")
                self.send_header("Content-Length", str(size - start))
                if status == 206:
                    shown = start + 1 if entry.bad_range else start
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (shown, size - 1, size))
                self.end_headers()
                if head:
                    return
                count = size - start if drop is None else max(0, min(drop - start, size - start))
                try:
                    if entry.data is not None:
                        self.wfile.write(entry.data[start:start + count])
                    else:
                        with open(entry.path, "rb") as f:
                            self.wfile.flush()
                            self.connection.sendfile(f, offset=start, count=count)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if drop is not None:
                    self.wfile.flush()
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://%s:%d" % (host, self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)

    def add(self, path, data=None, file=None, **kwargs):
        self.entries[path] = Entry(data=data, path=file, **kwargs)
        return self.url + path

    def drop_next(self, path, after):
        """The next request(s) for path get the headers of the whole answer but only bytes up to offset `after`."""
        self.entries[path].drops.append(after)

    def gets(self, path):
        return [r for r in self.requests if r["path"] == path]

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
    parser.add_argument("--drop-first-at", type=int, default=None,
                        help="cut the first GET of every file after this many bytes")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    server = ModelServer(port=args.port)
    for f in args.files:
        server.add("/" + os.path.basename(f), file=f)
        if args.drop_first_at is not None:
            server.drop_next("/" + os.path.basename(f), args.drop_first_at)
    print(server.url, flush=True)
    server.httpd.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
