# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One file's transfer: several ranged connections, pieces handed out in file order, SHA-256 in one pass.

SHA-256 is sequential, so bytes can only be hashed in file order. The file is cut into pieces (PIECE_SIZE) that
the connections take in order, so the bytes that arrive are always close to the hash frontier (the first byte
not hashed yet). Each chunk is written to the partial file at its offset (pwrite) and, when it lies within
WINDOW bytes of the frontier, also kept in memory until the hasher reaches it. Cost:

* memory: at most (connections + 2) x PIECE_SIZE per file (192 MiB with 4 connections), usually far less;
* reads: none in the normal case. A byte is read back from the partial file only when it arrived further than
  the window ahead of the frontier (a stalled connection) or was already on disk when the run started (a
  resume): every byte is hashed exactly once, from memory or from one read (counted in bytes_read_back);
* requests: one per piece, on a keep-alive connection per worker: ~1 round trip per PIECE_SIZE.

Idle connections at the end take over half of the largest piece still in flight, so the last pieces do not
leave connections idle. Byte ranges are recorded (the sidecar) only after they were written, so a resume never
trusts bytes that are not on disk.
"""

from __future__ import annotations

import hashlib
import threading

from ansible_collections.comfyops.comfyui.plugins.module_utils.model_files import pwrite_all
from ansible_collections.comfyops.comfyui.plugins.module_utils.model_http import (
    NETWORK_ERRORS,
    DownloadError,
    content_range,
    strip_query,
    strong_etag,
)

CHUNK = 1024 * 1024
MIN_STEAL = 2 * 1024 * 1024  # >= CHUNK: a split never lands inside the chunk its owner is reading
CHECKPOINT_S = 1.0
READ_SPAN = 64 * 1024 * 1024


class ChangedOnServer(Exception):
    """The file on the server is not the one the partial bytes came from: start over, never splice."""


def add_range(ranges, start, end):
    """Insert [start, end) into a sorted list of disjoint [a, b] lists, merging neighbours."""
    i = 0
    while i < len(ranges) and ranges[i][1] < start:
        i += 1
    j = i
    while j < len(ranges) and ranges[j][0] <= end:
        start, end = min(start, ranges[j][0]), max(end, ranges[j][1])
        j += 1
    ranges[i:j] = [[start, end]]


def holes(ranges, size):
    """The [start, end) gaps of ranges within [0, size) (size None: the gap after the first range is open)."""
    gaps, pos = [], 0
    for a, b in ranges:
        if a > pos:
            gaps.append([pos, a])
        pos = max(pos, b)
    if size is None or pos < size:
        gaps.append([pos, size])
    return gaps


def covered(ranges, size):
    return sum(b - a for a, b in ranges) if size is None else sum(min(b, size) - min(a, size) for a, b in ranges)


class _Piece:
    __slots__ = ("pos", "end")

    def __init__(self, start, end):
        self.pos = start
        self.end = end


class Transfer:
    """Download the holes of one partial file and hash the whole file once; run() returns the figures."""

    def __init__(self, fetcher, url, resolved_url, fd, size, done, validator, etag, connections, piece_size,
                 retries, retry_delay, read_back, progress, checkpoint, sleep, clock, label):
        self.fetcher = fetcher
        self.url = url                    # the entry's URL: redirects and the token rule start here
        self.resolved_url = resolved_url  # where the first answer came from (pieces go there directly)
        self.fd = fd
        self.size = size
        self.done = [list(r) for r in done]
        self.validator = validator        # ETag or Last-Modified for If-Range
        self.etag = etag
        self.retries = retries
        self.retry_delay = retry_delay
        self.read_back_fn = read_back
        self.progress = progress
        self.checkpoint = checkpoint
        self.sleep = sleep
        self.clock = clock
        self.label = label
        self.cv = threading.Condition()
        self.hashed = 0
        self.retained = {}
        self.fetched = 0
        self.read_back = 0
        self.error = None
        self.changed = None
        self.stop = False
        self.alive = 0
        self.active = set()
        self.connects = 0
        self.resumed = covered(self.done, size)
        gaps = holes(self.done, size)
        todo = sum(b - a for a, b in gaps if b is not None)
        self.segmented = connections > 1 and size is not None and todo > 2 * piece_size
        if self.segmented:
            self.queue = [_Piece(p, min(p + piece_size, b)) for a, b in gaps for p in range(a, b, piece_size)]
        else:
            self.queue = [_Piece(a, b) for a, b in gaps]
        self.workers = min(connections, len(self.queue)) if self.segmented else min(1, len(self.queue))
        self.window = (max(self.workers, 1) + 2) * piece_size
        self.started = clock()

    # -- pieces
    def _take(self):
        with self.cv:
            if self.stop:
                return None
            if self.queue:
                piece = self.queue.pop(0)
                self.active.add(piece)
                return piece
            if not self.segmented or not self.active:
                return None
            # an idle connection takes over the second half of the largest piece still in flight
            best = max(self.active, key=lambda p: p.end - p.pos)
            if best.end - best.pos < 2 * MIN_STEAL:
                return None
            mid = best.pos + (best.end - best.pos) // 2
            piece = _Piece(mid, best.end)
            best.end = mid
            self.active.add(piece)
            return piece

    def _record(self, piece, pos, data):
        n = len(data)
        with self.cv:
            add_range(self.done, pos, pos + n)
            if pos + n <= self.hashed + self.window:
                self.retained[pos] = bytes(data)
            self.fetched += n
            piece.pos = pos + n
            total_done = covered(self.done, self.size)
            self.cv.notify_all()
        elapsed = self.clock() - self.started
        rate = self.fetched / elapsed if elapsed > 0 else None
        self.progress(state="downloading", bytes=total_done, error=None,
                      rate_mb_s=round(rate / 2**20, 1) if rate else None,
                      eta_s=round((self.size - total_done) / rate) if rate and self.size is not None else None)

    # -- one connection
    def _worker(self, first, first_piece):
        conn = None
        answer = first
        attempts = 0
        try:
            while True:
                piece, first_piece = first_piece or self._take(), None
                if piece is None:
                    return
                while piece.end is None or piece.pos < piece.end:
                    if self.stop:
                        return
                    try:
                        if answer is None:
                            answer, conn = self._request(piece, conn)
                        complete = self._stream(answer, piece)
                        will_close = getattr(answer.resp, "will_close", True)
                        answer.close()
                        answer = None
                        if conn is not None and (not complete or will_close):
                            conn.close()  # unread bytes (or the server's wish): a fresh connection next time
                        if piece.end is None:
                            break  # open-ended: the answer ended the file
                    except DownloadError as e:
                        if answer is not None:
                            answer.close()
                            answer = None
                        if conn is not None:
                            conn.close()
                        attempts += 1
                        if not e.transient or attempts > self.retries:
                            if e.transient:
                                e.message += (" (gave up after %d attempt(s); the partial file keeps the bytes "
                                              "received, the next run resumes from there)" % attempts)
                            raise
                        self.progress(state="retrying", error=e.message)
                        self.sleep(self.retry_delay)
                with self.cv:
                    self.active.discard(piece)
        except ChangedOnServer as e:
            self._halt(changed=str(e))
        except DownloadError as e:
            self._halt(error=e)
        except Exception as e:  # pylint: disable=broad-except
            self._halt(error=DownloadError("%s: %s: %s" % (self.label, type(e).__name__, e)))
        finally:
            if answer is not None:
                answer.close()
            with self.cv:
                if conn is not None:
                    conn.close()
                    self.connects += conn.connects
                self.alive -= 1
                self.cv.notify_all()

    def _halt(self, error=None, changed=None):
        with self.cv:
            if error is not None and self.error is None:
                self.error = error
            if changed is not None and self.changed is None:
                self.changed = changed
            self.stop = True
            self.cv.notify_all()

    def _request(self, piece, conn):
        """(answer, pieces connection or None) for the bytes of piece from piece.pos."""
        if not self.segmented:
            end = None if piece.end == self.size else piece.end
            answer = self.fetcher.open(self.url, start=piece.pos, end=end, if_range=self.validator)
            with self.cv:
                self.connects += 1
            return answer, None
        if conn is None:
            conn = self.fetcher.piece_connection(self.resolved_url, self.url)
        answer = conn.get(piece.pos, piece.end, self.validator)
        if answer.status == 206:
            return answer, conn
        # a signed URL that expired, a redirect, an error: resolve the entry's URL again
        answer.close()
        conn.close()
        with self.cv:
            self.connects += conn.connects + 1
        answer = self.fetcher.open(self.url, start=piece.pos, end=piece.end, if_range=self.validator)
        if answer.status == 206:
            self.resolved_url = answer.url
        return answer, self.fetcher.piece_connection(self.resolved_url, self.url)

    def _check(self, answer, piece):
        """The byte after the last one this answer carries for piece; raises ChangedOnServer when it is not
        the file the other bytes came from."""
        if answer.status == 206:
            cr = content_range(answer.headers)
            if not cr or cr[0] != piece.pos:
                raise ChangedOnServer("unexpected Content-Range %r for bytes from %d"
                                      % (answer.headers.get("Content-Range"), piece.pos))
            if self.size is not None and cr[2] is not None and cr[2] != self.size:
                raise ChangedOnServer("the size changed from %d to %d bytes" % (self.size, cr[2]))
            etag = strong_etag(answer.headers)
            if self.etag and etag and etag != self.etag:
                raise ChangedOnServer("the ETag changed from %s to %s" % (self.etag, etag))
            return cr[1] + 1
        if answer.status == 200 and piece.pos == 0:
            length = answer.headers.get("Content-Length")
            return int(length) if length and length.isdigit() else None
        if answer.status == 200:
            raise ChangedOnServer("the server sent the whole file for a request from byte %d (%s)" % (
                piece.pos, "If-Range did not match: it changed" if self.validator else "no range support"))
        raise DownloadError("GET %s: unexpected HTTP %s" % (strip_query(answer.url), answer.status),
                            transient=answer.status is not None and answer.status >= 500)

    def _stream(self, answer, piece):
        """Write the answer's bytes for piece; True when the answer was read to its end."""
        last = self._check(answer, piece)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        pos = piece.pos
        while True:
            limit = piece.end  # may shrink: another connection took over the rest
            if limit is not None and pos >= limit:
                return last is not None and pos >= last
            want = CHUNK if limit is None else min(CHUNK, limit - pos)
            if last is not None:
                want = min(want, last - pos) if last > pos else want
            try:
                n = answer.resp.readinto(view[:want])
            except NETWORK_ERRORS as e:
                raise DownloadError("%s: connection lost after %d bytes: %s"
                                    % (self.label, pos, str(e) or type(e).__name__), transient=True)
            if not n:
                if limit is None:
                    with self.cv:
                        self.size = pos
                        self.cv.notify_all()
                    return True
                raise DownloadError("%s: connection closed after %d of %d bytes" % (self.label, pos, self.size),
                                    transient=True)
            try:
                pwrite_all(self.fd, view[:n], pos)
            except OSError as e:
                raise DownloadError("%s: %s" % (self.label, e), transient=e.errno not in (28, 122))  # ENOSPC, EDQUOT
            self._record(piece, pos, view[:n])
            pos += n
            if self.stop:
                return False

    # -- the hash frontier (runs in the calling thread)
    def _next_span(self):
        """With the lock held: a chunk kept in memory, (start, end) to read back, _WAIT, or None when done."""
        if self.error is not None or self.changed is not None:
            return None
        if self.size is not None and self.hashed >= self.size:
            return None
        chunk = self.retained.pop(self.hashed, None)
        if chunk is not None:
            return chunk
        for a, b in self.done:
            if a <= self.hashed < b:
                # in steps, so the window moves on while a resumed partial is read back
                return (self.hashed, min([b, self.hashed + READ_SPAN] + [k for k in self.retained if k > self.hashed]))
        if self.alive == 0:
            if self.size is None:
                self.size = self.hashed  # open-ended download: the file ended here
                return None
            self.error = DownloadError("%s: the transfer stopped at byte %d of %d" % (
                self.label, self.hashed, self.size), transient=True)
            return None
        return _WAIT

    def run(self, first):
        """Start the connections (the first one continues `first`, the answer the caller opened), hash."""
        hasher = hashlib.sha256()
        threads = []
        if self.workers:
            first_piece = self.queue.pop(0)  # the piece the first answer starts (its bytes come from there)
            self.active.add(first_piece)
            threads = [threading.Thread(target=self._worker, args=(first, first_piece) if i == 0 else (None, None),
                                        daemon=True) for i in range(self.workers)]
        elif first is not None:
            first.close()
        self.alive = len(threads)
        for t in threads:
            t.start()
        last_checkpoint = self.clock()
        try:
            while True:
                with self.cv:
                    span = self._next_span()
                    if span is _WAIT:
                        self.cv.wait(0.5)
                if span is None:
                    break
                if isinstance(span, bytes):
                    hasher.update(span)
                    n = len(span)
                elif span is not _WAIT:
                    n = self.read_back_fn(hasher, span[0], span[1])
                    self.read_back += n
                else:
                    n = 0
                if n:
                    with self.cv:
                        self.hashed += n
                if self.clock() - last_checkpoint >= CHECKPOINT_S:
                    self._checkpoint()
                    last_checkpoint = self.clock()
        finally:
            self._halt()
            for t in threads:
                t.join()
            self._checkpoint()
        if self.changed is not None:
            raise ChangedOnServer(self.changed)
        if self.error is not None:
            raise self.error
        return dict(sha256=hasher.hexdigest(), size=self.size, fetched=self.fetched, read_back=self.read_back,
                    resumed=self.resumed, connections=self.workers, connects=self.connects,
                    seconds=max(self.clock() - self.started, 1e-9))

    def _checkpoint(self):
        with self.cv:
            ranges = [list(r) for r in self.done]
        self.checkpoint(ranges)


_WAIT = object()
