# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""State of comfyui_model that lives outside the container-writable models tree: the hash cache, partial
downloads and their records (sidecars), the progress files, and where the per-file locks (module_utils.locks) go.

The state directory (default ``<parent of models_dir>/.comfyops/models``, mode 0700) is never mounted into a
container, so nothing a container does can forge a cache entry, a lock or a resume record. Its layout mirrors
the models tree: ``partials/<folder>/<file>.partial`` (+ ``.json``), ``locks/<folder>/<file>.lock``.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import threading
import time

from ansible_collections.comfyops.comfyui.plugins.module_utils.atomic_files import write_atomic

CACHE_VERSION = 2


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write_json(path, data, mode=0o644):
    """Write JSON to path through a temporary file in the same directory (mkstemp), fchmod and a rename."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True), mode)


def _read_json(path):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


class StateDir:
    """Paths in the host-only state directory; created (0700) on first use, never in check mode."""

    def __init__(self, path):
        self.path = path

    def ensure(self):
        os.makedirs(self.path, mode=0o700, exist_ok=True)  # an existing directory keeps its mode

    def _file(self, kind, rel, suffix, create):
        path = os.path.join(self.path, kind, *rel.split("/")) + suffix
        if create:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        return path

    def partial(self, rel, create=False):
        return self._file("partials", rel, ".partial", create)

    def sidecar(self, rel, create=False):
        return self._file("partials", rel, ".partial.json", create)

    def lock(self, rel, create=False):
        return self._file("locks", rel, ".lock", create)


# --- hash cache ---------------------------------------------------------------------------------------------------

def cache_key(st):
    """What identifies a file's content without reading it.

    ctime cannot be set from user space (utime, touch -r and tar restore mtime, never ctime), so a file changed in
    place with its size and mtime put back still misses the cache. The inode catches a file replaced by another.
    st_dev is left out: it differs between hosts that mount one shared (NFS) data root.
    """
    return dict(size=st.st_size, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, ino=st.st_ino)


class HashCache:
    """sha256 of verified files keyed by path relative to the models dir, valid while cache_key() matches.

    Several runs (hosts on one data root) share the file: save() merges this run's changes into what is on disk
    under a lock, and a lookup that misses re-reads the file, so a file another run just verified is found.
    """

    def __init__(self, path, enabled=True):
        self.path = path
        self.enabled = enabled
        self.lock = threading.Lock()
        self.changes = {}
        self.entries = self._load()

    def _load(self):
        data = _read_json(self.path) if self.path else None
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("files"), dict):
            return {}  # missing, damaged or older format: only costs a re-hash
        return data["files"]

    def lookup(self, rel, st):
        """The cached entry (dict with sha256 and source) when it matches st, else None."""
        for attempt in (0, 1):
            with self.lock:
                entry = self.changes.get(rel, self.entries.get(rel))
            if isinstance(entry, dict) and all(entry.get(k) == v for k, v in cache_key(st).items()) \
                    and isinstance(entry.get("sha256"), str):
                return entry
            if attempt == 0 and self.path:
                fresh = self._load()
                with self.lock:
                    self.entries = fresh
        return None

    def put(self, rel, st, sha256, source):
        with self.lock:
            self.changes[rel] = dict(cache_key(st), sha256=sha256, source=source)

    def remove(self, rel):
        with self.lock:
            self.changes[rel] = None

    def save(self):
        if not (self.enabled and self.path):
            return
        with self.lock:
            if not self.changes:
                return
            directory = os.path.dirname(self.path)
            os.makedirs(directory, mode=0o700, exist_ok=True)
            lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                files = self._load()
                for rel, entry in self.changes.items():
                    if entry is None:
                        files.pop(rel, None)
                    else:
                        files[rel] = entry
                atomic_write_json(self.path, dict(version=CACHE_VERSION, files=files), mode=0o600)
                self.entries = files
                self.changes = {}
            finally:
                os.close(lock_fd)


# --- resume records -----------------------------------------------------------------------------------------------

def _is_range(r):
    return isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) for x in r) and 0 <= r[0] < r[1]


class Sidecar:
    """What a partial download holds: URL, validators (ETag, Last-Modified), size and the byte ranges on disk.

    Written after the bytes it lists were written, so it never claims more than the partial file has (also when
    the module is killed); a resume that finds another URL, inode, size or ETag starts over instead of splicing.
    """

    def __init__(self, path):
        self.path = path

    def load(self):
        data = _read_json(self.path)
        if not isinstance(data, dict) or data.get("version") != 1:
            return None
        done = data.get("done")
        if not isinstance(done, list) or not all(_is_range(r) for r in done):
            return None
        return data

    def save(self, record):
        atomic_write_json(self.path, dict(record, version=1, updated_at=now_iso()), mode=0o600)

    def remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# --- progress -------------------------------------------------------------------------------------------------------

def _human_bytes(n):
    if n is None:
        return "?"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return "%.2f %s" % (n / scale, unit)
    return "%d B" % n


def _human_eta(seconds):
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def progress_line(rel, entry):
    """One line a person can follow: name, state, percent, bytes, MiB/s, ETA, connections."""
    done, total = entry.get("bytes") or 0, entry.get("total")
    parts = [rel, entry.get("state") or "?"]
    if entry.get("percent") is not None:
        parts.append("%5.1f%%" % entry["percent"])
    parts.append("%s/%s" % (_human_bytes(done), _human_bytes(total)))
    if entry.get("rate_mb_s") is not None:
        parts.append("%.1f MiB/s" % entry["rate_mb_s"])
    if entry.get("state") == "downloading":
        parts.append("ETA %s" % _human_eta(entry.get("eta_s")))
    if entry.get("connections"):
        parts.append("%d conn" % entry["connections"])
    if entry.get("error"):
        parts.append("error: %s" % entry["error"])
    return "  ".join(parts)


class StatusFile:
    """Progress of every file, rewritten atomically at most every `interval` seconds (and on state changes):
    JSON at `path` for programs, and one line per file in the .txt next to it for people (watch cat ...)."""

    def __init__(self, path, specs, interval=1.0, clock=time.monotonic):
        self.path = path
        self.text_path = (os.path.splitext(path)[0] + ".txt") if path else None
        self.interval = interval
        self.clock = clock
        self.lock = threading.Lock()
        self.last_write = None
        self.data = dict(pid=os.getpid(), started_at=now_iso(), updated_at=now_iso(), finished=False,
                         files={s["rel"]: dict(name=s["name"], state="pending", bytes=0, total=s["size"],
                                               percent=None, rate_mb_s=None, eta_s=None, error=None)
                                for s in specs})
        self.write(force=True)

    def update(self, rel, force=False, **fields):
        if not self.path:
            return
        with self.lock:
            entry = self.data["files"].setdefault(rel, {})
            if "state" in fields and fields["state"] != entry.get("state"):
                force = True
            entry.update(fields)
            total, done = entry.get("total"), entry.get("bytes") or 0
            entry["percent"] = round(100.0 * done / total, 1) if total else None
        self.write(force=force)

    def finish(self):
        with self.lock:
            self.data["finished"] = True
        self.write(force=True)

    def lines(self):
        with self.lock:
            return [progress_line(rel, entry) for rel, entry in sorted(self.data["files"].items())]

    def write(self, force=False):
        if not self.path:
            return
        with self.lock:
            now = self.clock()
            if not force and self.last_write is not None and now - self.last_write < self.interval:
                return
            self.last_write = now
            self.data["updated_at"] = now_iso()
            try:
                atomic_write_json(self.path, self.data)
                text = "".join(progress_line(rel, e) + "\n" for rel, e in sorted(self.data["files"].items()))
                last = "finished" if self.data["finished"] else "updated " + self.data["updated_at"]
                write_atomic(self.text_path, "%s%s\n" % (text, last))
            except OSError:
                pass  # progress reporting must never break a download
