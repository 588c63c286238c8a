# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resumable, verified, segmented model downloads for comfyops.comfyui.comfyui_model.

Everything goes through the Python standard library and ansible.module_utils.urls (no extra packages on
targets). The design goals:

* line rate: several ranged connections per large file (model_transfer), files in parallel (the module);
* one read of the data: the SHA-256 is computed from the bytes as they arrive, in file order (model_transfer
  explains the cost); a resumed download reads the bytes already on disk once;
* a checksum even when none is given: Hugging Face publishes the LFS sha256 in X-Linked-Etag (HEAD);
* nothing half-written under the final name, and nothing spliced: data goes to a partial file in the host-only
  state dir (model_state) with a record of URL, ETag, size and the byte ranges on disk; a resume sends If-Range
  and starts over when the file changed on the server; the partial is renamed into place after the checksum;
* safe against hostile containers: the models tree is only touched through model_files (no links followed);
  cache, locks and partials live where containers cannot write;
* N runs on one data root (NFS) download a file once: a flock per file in the state dir;
* a no-op reads nothing: the hash of a verified file is cached with a key a container cannot forge (inode,
  size, mtime and ctime);
* the token is a secret: it is sent to the URL's own host only, and masked in every error text.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import stat
import threading
import time
import unicodedata
from urllib.parse import urlsplit

from ansible_collections.comfyops.comfyui.plugins.module_utils.model_files import (
    UnsafePathError,
    describe,
    hash_range,
    lstat_at,
    open_models_dir,
    open_regular,
    open_subdir,
    unlink_at,
)
from ansible_collections.comfyops.comfyui.plugins.module_utils import model_http
from ansible_collections.comfyops.comfyui.plugins.module_utils.model_http import (
    SHA256_RE,
    DownloadError,
    Fetcher,
    content_range,
    redact,
    strip_query,
    strong_etag,
    unsatisfied_total,
)
from ansible_collections.comfyops.comfyui.plugins.module_utils.locks import FileLock, LockTimeout
from ansible_collections.comfyops.comfyui.plugins.module_utils.model_state import (
    HashCache,
    Sidecar,
    StateDir,
    StatusFile,
    cache_key,
)
from ansible_collections.comfyops.comfyui.plugins.module_utils.model_transfer import (
    ChangedOnServer,
    Transfer,
    covered,
)

REDACTED = model_http.REDACTED  # what redact() puts in place of a secret
PIECE_SIZE = 32 * 1024 * 1024
STATE_DIR = ".comfyops"  # reserved below models_dir (where earlier versions kept their state)
MAX_NAME_BYTES = 240     # a component plus ".partial.json" must fit in 255 bytes
_CONTROL_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def default_state_dir(models_dir):
    """<parent of models_dir>/.comfyops/models: the data root is not mounted into containers, only its subdirs."""
    return os.path.join(os.path.dirname(os.path.normpath(models_dir)), STATE_DIR, "models")


def hash_file(path, hasher=None, fd=None, start=0, end=None):
    """(hasher, bytes) after reading bytes [start, end) of the open file fd once; path is its name (every read of
    a model file goes through here, so tests can count them)."""
    del path
    hasher = hasher or hashlib.sha256()
    return hasher, hash_range(fd, hasher, start, end)


# --- input -----------------------------------------------------------------------------------------------------

def _text(value, what):
    if not isinstance(value, str):
        raise ValueError("%s must be a string (quote it in YAML), got %s %r" % (what, type(value).__name__, value))
    bad = sorted({"U+%04X" % ord(c) for c in value if unicodedata.category(c) in _CONTROL_CATEGORIES})
    if bad:
        raise ValueError("%s must not contain control characters (found %s): %r" % (what, ", ".join(bad), value))
    return value


def _relative_parts(value, what, allow_subdirs):
    if isinstance(value, str) and not value.strip():
        value = None
    if value is None:
        raise ValueError("%s must be a non-empty string" % what)
    _text(value, what)
    if value.startswith("/") or "\\" in value:
        raise ValueError("%s must be a relative path with '/' separators: %r" % (what, value))
    parts = value.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError("%s must not contain empty, '.' or '..' components: %r" % (what, value))
    if not allow_subdirs and len(parts) > 1:
        raise ValueError("%s must be a single directory name: %r" % (what, value))
    if any(len(p.encode("utf-8")) > MAX_NAME_BYTES for p in parts):
        raise ValueError("%s has a component longer than %d bytes: %r" % (what, MAX_NAME_BYTES, value))
    if parts[0] == STATE_DIR:
        raise ValueError("%s must not start with %s (reserved: the module's former state directory)" % (what, STATE_DIR))
    if parts[-1].endswith(".partial"):
        raise ValueError("%s must not end in .partial: %r" % (what, value))
    return "/".join(parts)


def check_url(url, where):
    _text(url, "%s.url" % where)
    if any(c.isspace() for c in url):
        raise ValueError("%s.url must not contain spaces (percent-encode them): %r" % (where, url))
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("%s: url must be an http(s) URL with a host, got %r" % (where, url))
    if parts.username or parts.password:
        raise ValueError("%s: do not put credentials in the url; use the token option" % where)


def normalize_spec(item, default_state, index):
    """Validate one model entry; returns a clean dict or raises ValueError with a message naming the entry."""
    where = "models[%d]" % index
    if not isinstance(item, dict):
        raise ValueError("%s must be a dictionary with url, folder and filename, got %r" % (where, type(item).__name__))
    known = {"name", "url", "folder", "filename", "sha256", "size", "state"}
    unknown = sorted(set(item) - known)
    if unknown:
        raise ValueError("%s: unknown key(s) %s (known: %s)" % (where, ", ".join(unknown), ", ".join(sorted(known))))
    state = item.get("state") or default_state
    if state not in ("present", "absent"):
        raise ValueError("%s: state must be present or absent, got %r" % (where, state))
    url = item.get("url") or ""
    if url:
        check_url(url, where)
    elif state == "present":
        raise ValueError("%s: url is required when state=present" % where)
    folder = _relative_parts(item.get("folder"), "%s.folder" % where, allow_subdirs=True)
    filename = item.get("filename")
    if filename in (None, ""):
        filename = os.path.basename(urlsplit(url).path) if url else ""
    filename = _relative_parts(filename, "%s.filename" % where, allow_subdirs=True)
    name = item.get("name")
    if name not in (None, ""):
        _text(name, "%s.name" % where)
    sha256 = item.get("sha256")
    if sha256 not in (None, ""):
        if not isinstance(sha256, str) or not SHA256_RE.match(sha256.strip().lower()):
            raise ValueError("%s: sha256 must be 64 hexadecimal digits, got %r" % (where, sha256))
        sha256 = sha256.strip().lower()
    size = item.get("size")
    if size not in (None, ""):
        if isinstance(size, bool):
            raise ValueError("%s: size must be a number of bytes, got %r" % (where, size))
        try:
            size = int(size)
        except (TypeError, ValueError):
            raise ValueError("%s: size must be a number of bytes, got %r" % (where, size)) from None
        if size < 0:
            raise ValueError("%s: size must not be negative" % where)
    else:
        size = None
    rel = folder + "/" + filename
    return dict(name=name or rel, url=url, folder=folder, filename=filename, rel=rel,
                sha256=sha256 or None, size=size, state=state)


def normalize_specs(items, default_state):
    specs = [normalize_spec(item, default_state, i) for i, item in enumerate(items)]
    seen = {}
    for spec in specs:
        if spec["rel"] in seen:
            raise ValueError("models: %s is listed twice (%s and %s)" % (spec["rel"], seen[spec["rel"]], spec["name"]))
        seen[spec["rel"]] = spec["name"]
    return specs


# --- download -------------------------------------------------------------------------------------------------

def _disk_usage(path):
    """shutil.disk_usage, looked up at call time (tests replace it with monkeypatch)."""
    return shutil.disk_usage(path)


def _url_id(url):
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


class _Place:
    """Where a partial download lives: a directory descriptor, a name in it, and its path for messages."""

    def __init__(self, dir_fd, name, label, in_state_dir):
        self.dir_fd = dir_fd
        self.name = name
        self.label = label
        self.in_state_dir = in_state_dir


class Downloader:
    """Downloads model files; one instance is shared by the worker threads of one module run."""

    def __init__(self, models_dir, token=None, timeout=60.0, validate_certs=True, ca_path=None, use_proxy=True,
                 retries=3, retry_delay=2.0, min_free_bytes=0, mode=0o644, cache=None, status=None,
                 connections=4, state_dir=None, lock_timeout=3600.0, piece_size=None,
                 sleep=time.sleep, clock=time.monotonic, disk_usage=None):
        self.models_dir = models_dir
        self.fetcher = Fetcher(token=token, timeout=timeout, validate_certs=validate_certs, ca_path=ca_path,
                               use_proxy=use_proxy)
        self.token = token or None
        self.retries = retries
        self.retry_delay = retry_delay
        self.min_free_bytes = min_free_bytes
        self.mode = mode
        self.state = StateDir(state_dir or default_state_dir(models_dir))
        self.cache = cache or HashCache(None, enabled=False)
        self.status = status or StatusFile(None, [])
        self.connections = connections
        self.lock_timeout = lock_timeout
        self.piece_size = piece_size or PIECE_SIZE
        self.sleep = sleep
        self.clock = clock
        self.disk_usage = disk_usage or _disk_usage
        self.reserved = 0
        self.reserve_lock = threading.Lock()

    # -- helpers
    def secrets(self):
        return [self.token] if self.token else []

    def paths(self, spec):
        """(final path, partial path in the state dir) of an entry."""
        return os.path.join(self.models_dir, *spec["rel"].split("/")), self.state.partial(spec["rel"])

    def partial_bytes(self, spec):
        """Bytes a partial download of spec already holds (0 when there is none)."""
        record = Sidecar(self.state.sidecar(spec["rel"])).load()
        if record:
            return covered(record["done"], record.get("size"))
        try:
            st = os.stat(self.state.partial(spec["rel"]), follow_symlinks=False)
        except OSError:
            return 0
        return st.st_size if stat.S_ISREG(st.st_mode) else 0

    def _reserve(self, directory, need, rel):
        with self.reserve_lock:
            free = self.disk_usage(directory).free
            if free - self.reserved - need < self.min_free_bytes:
                raise DownloadError(
                    "not enough free space in %s for %s: %d MiB needed (+ %d MiB kept free), %d MiB free%s"
                    % (directory, rel, need // 2**20, self.min_free_bytes // 2**20, free // 2**20,
                       (" (%d MiB reserved by parallel downloads)" % (self.reserved // 2**20)) if self.reserved else ""))
            self.reserved += need

    def _release(self, need):
        with self.reserve_lock:
            self.reserved -= need

    # -- one file
    def ensure(self, spec, check_mode=False):
        try:
            return self._ensure(spec, check_mode)
        except DownloadError as e:
            message = redact(e.message, self.secrets())
            self.status.update(spec["rel"], state="failed", error=message)
            raise DownloadError(message, transient=e.transient, status=e.status) from None
        except (UnsafePathError, LockTimeout, OSError, ValueError) as e:
            message = redact(str(e) if isinstance(e, (UnsafePathError, LockTimeout)) else "%s: %s" % (spec["rel"], e),
                             self.secrets())
            self.status.update(spec["rel"], state="failed", error=message)
            raise DownloadError(message) from None

    def _ensure(self, spec, check_mode):
        dest, _partial = self.paths(spec)
        result = dict(name=spec["name"], folder=spec["folder"], filename=spec["filename"], path=dest,
                      url=strip_query(spec["url"]) if spec["url"] else None, state=spec["state"], action="none",
                      changed=False, sha256=None, verified=False, sha256_source=None, hash_source=None, size=None,
                      bytes_downloaded=0, resumed_from=0, bytes_read_back=0, connections=0, seconds=0.0,
                      mb_per_s=None, before=None, after=None, warnings=[])
        parts = spec["rel"].split("/")
        create = spec["state"] == "present" and not check_mode
        root = open_models_dir(self.models_dir, create)
        dfd = None
        if root is not None:
            try:
                dfd = open_subdir(root, parts[:-1], create, self.models_dir)
            finally:
                os.close(root)
        try:
            if spec["state"] == "absent":
                return self._absent(spec, dfd, parts[-1], result, check_mode)
            if check_mode:
                return self._present(spec, dfd, parts[-1], result, check_mode)
            lock = self._lock(spec)
            try:
                return self._present(spec, dfd, parts[-1], result, check_mode)
            finally:
                lock.release()
        finally:
            if dfd is not None:
                os.close(dfd)

    def _lock(self, spec):
        """The file's lock; while another run (this host or one sharing the data root) holds it, the progress
        files say so and this run waits up to lock_timeout."""
        self.state.ensure()
        path = self.state.lock(spec["rel"], create=True)
        try:
            return FileLock(path, spec["rel"], timeout=0, sleep=self.sleep, clock=self.clock).acquire()
        except LockTimeout as e:
            self.status.update(spec["rel"], state="waiting", error=str(e))
        try:
            return FileLock(path, spec["rel"], timeout=self.lock_timeout, interval=0.2, sleep=self.sleep,
                            clock=self.clock).acquire()
        except LockTimeout as e:
            raise LockTimeout("%s; another run (on this host, or on a host that shares the data root) is downloading "
                              "it: wait for it, or raise lock_timeout" % e) from None

    def _absent(self, spec, dfd, name, result, check_mode):
        rel = spec["rel"]
        found = dict(dest=lstat_at(dfd, name) if dfd is not None else None,
                     beside=lstat_at(dfd, name + ".partial") if dfd is not None else None,
                     partial=os.path.lexists(self.state.partial(rel)), sidecar=os.path.lexists(self.state.sidecar(rel)))
        result["before"] = "present" if found["dest"] else ("partial" if any(found.values()) else "absent")
        result["after"] = "absent"
        if any(found.values()):
            result.update(changed=True, action="would_remove" if check_mode else "removed")
            if not check_mode:
                for st, label in ((found["dest"], result["path"]), (found["beside"], result["path"] + ".partial")):
                    if st is not None and stat.S_ISDIR(st.st_mode):
                        raise UnsafePathError("%s is a directory; not removing it" % label)
                lock = self._lock(spec)
                try:
                    if dfd is not None:
                        unlink_at(dfd, name)
                        unlink_at(dfd, name + ".partial")
                    for path in (self.state.partial(rel), self.state.sidecar(rel)):
                        if os.path.lexists(path):
                            os.unlink(path)
                    self.cache.remove(rel)
                    self.cache.save()
                finally:
                    lock.release()
        self.status.update(rel, state="absent")
        return result

    def _present(self, spec, dfd, name, result, check_mode):
        rel = spec["rel"]
        dest = result["path"]
        st = lstat_at(dfd, name) if dfd is not None else None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise UnsafePathError("%s is %s, not a regular file; links and special files below the models directory "
                                  "are never followed or replaced (a container can plant them): remove it"
                                  % (dest, describe(st)))
        if st is not None:
            result["size"] = st.st_size
            if not spec["sha256"]:
                # nothing to verify against: presence is all we can check (and all that is cheap)
                entry = self.cache.lookup(rel, st)
                origin = bool(entry) and entry.get("source") == "origin"
                result.update(sha256=entry["sha256"] if entry else None, hash_source="cache" if entry else None,
                              verified=origin, sha256_source="origin" if origin else ("computed" if entry else None),
                              before="present", after="present")
                self.status.update(rel, state="present", bytes=st.st_size, total=st.st_size)
                return result
            digest, source = self._existing_hash(spec, dfd, name, dest, st, check_mode)
            result.update(sha256=digest, hash_source=source, sha256_source="given")
            if digest == spec["sha256"]:
                result.update(verified=True, before=digest, after=digest)
                self.status.update(rel, state="present", bytes=st.st_size, total=st.st_size)
                return result
            result["before"] = digest
        else:
            result["before"] = "absent"
        result["after"] = spec["sha256"] or "downloaded"
        replacing = result["before"] != "absent"
        if check_mode:
            have = self.partial_bytes(spec)
            result.update(changed=True, resumed_from=have, sha256_source="given" if spec["sha256"] else None,
                          action="would_replace" if replacing else ("would_resume" if have else "would_download"))
            return result
        return self._fetch(spec, dfd, name, result, replacing)

    def _existing_hash(self, spec, dfd, name, dest, st, check_mode):
        """(sha256, source) of an existing file: from the cache when its key matches, else read once."""
        entry = self.cache.lookup(spec["rel"], st)
        if entry:
            return entry["sha256"], "cache"
        fd, before = open_regular(dfd, name, os.O_RDONLY, dest)
        try:
            hasher, _size = hash_file(dest, fd=fd)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        digest = hasher.hexdigest()
        if not check_mode and cache_key(before) == cache_key(after):  # not changed while it was read
            self.cache.put(spec["rel"], after, digest, "given" if digest == spec["sha256"] else "computed")
        return digest, "computed"

    def _fetch(self, spec, dfd, name, result, replacing):
        rel = spec["rel"]
        expected, source = spec["sha256"], ("given" if spec["sha256"] else None)
        if not expected:
            meta = self.fetcher.head(spec["url"])
            if meta and meta["origin_sha256"]:
                expected, source = meta["origin_sha256"], "origin"
        place = self._partial_place(spec, dfd, name, result)
        sidecar = Sidecar(self.state.sidecar(rel, create=True))
        started = self.clock()
        restarts = 0
        fd = None
        try:
            while True:
                try:
                    fd, outcome, origin = self._transfer(spec, place, sidecar, expected, result["warnings"])
                    break
                except ChangedOnServer as e:
                    restarts += 1
                    self._discard(place, sidecar)
                    result["warnings"].append("%s: %s; the partial download was discarded and started over (never "
                                              "spliced)" % (rel, e))
                    if restarts > max(self.retries, 1):
                        raise DownloadError("%s: the file changed on the server while it was downloaded (%s); gave up "
                                            "after %d restart(s)" % (rel, e, restarts - 1)) from None
            if origin and not expected:
                expected, source = origin, "origin"
            digest = outcome["sha256"]
            if expected and digest != expected:
                os.close(fd)
                fd = None
                self._discard(place, sidecar)
                raise DownloadError("%s: sha256 mismatch: expected %s%s, got %s (%d bytes from %s); the partial file "
                                    "was deleted" % (rel, expected, " (published by the origin)" if source == "origin"
                                                     else "", digest, outcome["size"], strip_query(spec["url"])))
            os.fchmod(fd, self.mode)
            final = self._install(place, dfd, name, fd, result["path"])
            sidecar.remove()
            if place.in_state_dir:
                self._remove_stale_beside(dfd, name)
            self.cache.put(rel, final, digest, source or "computed")
            self.cache.save()
        finally:
            if fd is not None:
                os.close(fd)
            os.close(place.dir_fd)
        seconds = max(self.clock() - started, 1e-9)
        result.update(changed=True, action="replaced" if replacing else ("resumed" if outcome["resumed"] else
                                                                         "downloaded"),
                      sha256=digest, verified=bool(expected), sha256_source=source or "computed",
                      hash_source="download", size=final.st_size, bytes_downloaded=outcome["fetched"],
                      resumed_from=outcome["resumed"], bytes_read_back=outcome["read_back"],
                      connections=outcome["connections"], seconds=round(seconds, 3),
                      mb_per_s=round(outcome["fetched"] / seconds / 2**20, 1), after=digest)
        self.status.update(rel, state="done", bytes=final.st_size, total=final.st_size, eta_s=0,
                           rate_mb_s=result["mb_per_s"])
        return result

    # -- the partial file
    def _partial_place(self, spec, dfd, name, result):
        """The partial lives in the state dir (containers cannot touch it) when it can be renamed into the model
        folder from there; otherwise (another file system) next to the final file."""
        path = self.state.partial(spec["rel"], create=True)
        pdir = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if self._renames_into(pdir, dfd):
            return _Place(pdir, os.path.basename(path), path, True)
        os.close(pdir)
        result["warnings"].append("%s: the state dir %s is on another file system than the model folder, so the "
                                  "partial download is kept next to the file, where containers can see it" % (
                                      spec["rel"], self.state.path))
        return _Place(os.dup(dfd), name + ".partial", result["path"] + ".partial", False)

    @staticmethod
    def _renames_into(src_fd, dst_fd):
        """Whether a file renames from src_fd into dst_fd (same file system and mount): tried with an empty probe."""
        if os.fstat(src_fd).st_dev != os.fstat(dst_fd).st_dev:
            return False
        probe = ".comfyops-probe-" + secrets.token_hex(8)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=src_fd))
        try:
            os.rename(probe, probe, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        except OSError as e:
            unlink_at(src_fd, probe)
            if e.errno == errno.EXDEV:
                return False
            raise
        unlink_at(dst_fd, probe)
        return True

    @staticmethod
    def _discard(place, sidecar):
        unlink_at(place.dir_fd, place.name)
        sidecar.remove()

    @staticmethod
    def _remove_stale_beside(dfd, name):
        """A <file>.partial next to the file, left by an earlier version or planted (a link, a FIFO): the name is the
        module's (no model may end in .partial), so whatever is there goes; unlink removes a link itself."""
        st = lstat_at(dfd, name + ".partial")
        if st is not None and not stat.S_ISDIR(st.st_mode):
            unlink_at(dfd, name + ".partial")

    @staticmethod
    def _install(place, dfd, name, fd, dest):
        """Rename the verified partial to its final name; the name must still be the file written (same inode)."""
        mine = os.fstat(fd)
        now = lstat_at(place.dir_fd, place.name)
        if now is None or now.st_ino != mine.st_ino or now.st_dev != mine.st_dev:
            raise UnsafePathError("%s was replaced while it was downloaded; not installing it" % place.label)
        os.rename(place.name, name, src_dir_fd=place.dir_fd, dst_dir_fd=dfd)
        placed = lstat_at(dfd, name)
        if placed is None or placed.st_ino != mine.st_ino:
            raise UnsafePathError("%s was replaced right after it was installed" % dest)
        return os.fstat(fd)  # after the rename: the ctime the cache keys on

    def _open_partial(self, place, record, url, expected, warnings):
        """(fd, fstat, byte ranges on disk that can be trusted) of the partial file, created when missing."""
        st = lstat_at(place.dir_fd, place.name)
        if st is not None and (not stat.S_ISREG(st.st_mode) or st.st_nlink > 1):
            unlink_at(place.dir_fd, place.name)  # removes the name only: a link's target is never touched
            warnings.append("%s was %s, not a partial download of this module (planted?); it was removed and the "
                            "download started over" % (place.label, describe(st) if not stat.S_ISREG(st.st_mode)
                                                       else "a file with %d hard links" % st.st_nlink))
            st = None
        if st is None:
            fd, st = open_regular(place.dir_fd, place.name, os.O_RDWR | os.O_CREAT | os.O_EXCL, place.label,
                                  create_mode=0o600, single_link=True)
            return fd, st, []
        fd, st = open_regular(place.dir_fd, place.name, os.O_RDWR, place.label, single_link=True)
        if record:
            ok = (record.get("url_sha256") == _url_id(url) and record.get("ino") == st.st_ino
                  and all(b <= st.st_size for _a, b in record["done"]))
            done = [list(r) for r in record["done"]] if ok else []
        else:
            # no record (an earlier version, or killed before the first one): its bytes are resumed only when a
            # checksum will prove the result
            done = [[0, st.st_size]] if expected and st.st_size else []
        if not done:
            os.ftruncate(fd, 0)
        return fd, st, done

    def _open_first(self, spec, start, validator):
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.fetcher.open(spec["url"], start=start, if_range=validator)
            except DownloadError as e:
                if not e.transient or attempt > self.retries:
                    if e.transient:
                        e.message += " (gave up after %d attempt(s))" % attempt
                    raise
                self.status.update(spec["rel"], state="retrying", error=redact(e.message, self.secrets()))
                self.sleep(self.retry_delay)

    def _transfer(self, spec, place, sidecar, expected, warnings):
        """Plan from the first answer, then run the transfer; returns (fd, outcome, origin sha256 or None)."""
        rel, url = spec["rel"], spec["url"]
        record = sidecar.load()
        fd, st, done = self._open_partial(place, record, url, expected, warnings)
        try:
            start = None if not done else (0 if done[0][0] > 0 else done[0][1])
            validator = ((record.get("etag") or record.get("last_modified")) if record and done else None)
            answer = self._open_first(spec, start, validator)
            size, etag = self._check_first(spec, answer, fd, st, record, done, warnings)
            if answer.status == 416:
                answer = None  # the partial file already holds the whole file
            elif answer.status == 200:
                done = []
            origin = answer.origin_sha256 if answer is not None else None
            if spec["sha256"] and origin and origin != spec["sha256"]:
                answer.close()
                raise DownloadError("%s: the origin publishes sha256 %s for this file (X-Linked-Etag), the entry says "
                                    "%s; not downloading it (correct the entry's sha256, or its url)"
                                    % (rel, origin, spec["sha256"]))
            ranges = answer is not None and (answer.status == 206 or
                                             (answer.headers.get("Accept-Ranges") or "").strip().lower() == "bytes")
            last_modified = answer.headers.get("Last-Modified") if answer is not None else None
            record = dict(url=strip_query(url), url_sha256=_url_id(url), etag=etag, last_modified=last_modified,
                          size=size, ino=st.st_ino, origin_sha256=origin, done=done)
            transfer = Transfer(
                self.fetcher, url, answer.url if answer is not None else url, fd, size, done,
                validator=etag or last_modified, etag=etag, connections=self.connections if ranges else 1,
                piece_size=self.piece_size, retries=self.retries, retry_delay=self.retry_delay,
                read_back=lambda hasher, a, b: hash_file(place.label, hasher, fd=fd, start=a, end=b)[1],
                progress=lambda **fields: self.status.update(rel, **fields),
                checkpoint=lambda ranges: self._checkpoint(sidecar, record, ranges),
                sleep=self.sleep, clock=self.clock, label=place.label)
            need = max((size if size is not None else (spec["size"] or 0)) - transfer.resumed, 0)
            try:
                self._reserve(os.path.dirname(place.label), need, rel)
            except DownloadError:
                if answer is not None:
                    answer.close()
                raise
            try:
                if transfer.segmented and os.fstat(fd).st_size < size:
                    os.ftruncate(fd, size)  # sparse: the pieces are written at their offsets
                self._checkpoint(sidecar, record, done)
                self.status.update(rel, state="downloading", bytes=transfer.resumed, total=size, error=None,
                                   resumed_from=transfer.resumed, connections=transfer.workers)
                outcome = transfer.run(answer)
            finally:
                self._release(need)
            if os.fstat(fd).st_size != outcome["size"]:
                os.ftruncate(fd, outcome["size"])
            return fd, outcome, origin
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _checkpoint(sidecar, record, ranges):
        try:
            sidecar.save(dict(record, done=ranges))
        except OSError:
            pass  # a missed record only costs re-downloading those bytes

    def _check_first(self, spec, answer, fd, st, record, done, warnings):
        """(size, etag) from the first answer; raises ChangedOnServer when the partial bytes cannot be used."""
        rel, headers = spec["rel"], answer.headers
        start = 0 if not done else (0 if done[0][0] > 0 else done[0][1])
        if answer.status == 416:
            total = unsatisfied_total(headers)
            answer.close()
            if total is not None and done == [[0, total]] and st.st_size >= total:
                return total, record.get("etag") if record else None
            raise ChangedOnServer("the server refused to resume at byte %d (HTTP 416)" % start)
        etag = strong_etag(headers)
        if answer.status == 206:
            cr = content_range(headers)
            if not cr or cr[0] != start:
                answer.close()
                raise ChangedOnServer("unexpected Content-Range %r for a resume at byte %d"
                                      % (headers.get("Content-Range"), start))
            size = cr[2]
            if record and record.get("size") is not None and size != record["size"]:
                answer.close()
                raise ChangedOnServer("its size changed from %d to %s bytes" % (record["size"], size))
            if record and record.get("etag") and etag and etag != record["etag"]:
                answer.close()
                raise ChangedOnServer("its ETag changed from %s to %s" % (record["etag"], etag))
        elif answer.status == 200:
            length = headers.get("Content-Length")
            size = int(length) if length and length.isdigit() else None
            if done:
                warnings.append("%s: the server sent the whole file instead of the bytes from %d (%s); downloading it "
                                "again from the start" % (rel, start, "it changed since the partial download"
                                                          if record and record.get("etag") else "no range support"))
                os.ftruncate(fd, 0)
        else:
            answer.close()
            raise DownloadError("GET %s: unexpected HTTP %s" % (strip_query(answer.url), answer.status))
        if spec["size"] is not None and size is not None and size != spec["size"]:
            answer.close()
            raise DownloadError("%s: the server announces %d bytes, the entry says size=%d" % (rel, size, spec["size"]))
        return size, etag
