# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resumable, verified model downloads for comfyops.comfyui.comfyui_model.

Everything goes through ansible.module_utils.urls (no extra packages on targets). The design goals:

* one read of the data: the SHA-256 is computed while the bytes stream in; a resumed download hashes the bytes
  already on disk once, then continues streaming (and a retry within the same run reuses the running hash);
* nothing half-written under the final name: data goes to ``<file>.partial`` and is renamed only after the
  checksum matched; a mismatch deletes the partial data;
* a no-op reads nothing: the hash of a verified file is cached with its size and mtime;
* the token is a secret: it travels in an ``Authorization`` header that is dropped when a redirect leaves the
  host (Hugging Face sends downloads to a CDN with signed URLs), and it is masked in every error text.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
from urllib.parse import urljoin, urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request

from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import (
    USER_AGENT,
    _plain_http_context,
    ssl_context,
)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
CONTENT_RANGE_UNSATISFIED_RE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.I)
CHUNK = 4 * 1024 * 1024
MAX_REDIRECTS = 10
REDACTED = "********"
STATE_DIR = ".comfyops"


class DownloadError(Exception):
    """A download that failed; transient errors are retried (and resumed), the others fail at once."""

    def __init__(self, message, transient=False, status=None):
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status = status

    def __str__(self):
        return self.message


def redact(text, secrets):
    """text with every non-empty secret replaced by ********."""
    text = "" if text is None else str(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write_json(path, data):
    """Write JSON to path through a temporary file in the same directory and a rename."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --- input -----------------------------------------------------------------------------------------------------

def _relative_parts(value, what, allow_subdirs):
    if not isinstance(value, str) or not value.strip():
        raise ValueError("%s must be a non-empty string" % what)
    if value.startswith("/") or "\\" in value:
        raise ValueError("%s must be a relative path with '/' separators: %r" % (what, value))
    parts = value.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError("%s must not contain empty, '.' or '..' components: %r" % (what, value))
    if not allow_subdirs and len(parts) > 1:
        raise ValueError("%s must be a single directory name: %r" % (what, value))
    if parts[0] == STATE_DIR:
        raise ValueError("%s must not start with %s (the module's own state directory)" % (what, STATE_DIR))
    if parts[-1].endswith(".partial"):
        raise ValueError("%s must not end in .partial: %r" % (what, value))
    return "/".join(parts)


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
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("%s: url must be an http(s) URL with a host, got %r" % (where, url))
        if parts.username or parts.password:
            raise ValueError("%s: do not put credentials in the url; use the token option" % where)
    elif state == "present":
        raise ValueError("%s: url is required when state=present" % where)
    try:
        folder = _relative_parts(item.get("folder"), "%s.folder" % where, allow_subdirs=True)
        filename = item.get("filename") or (os.path.basename(urlsplit(url).path) if url else "")
        filename = _relative_parts(filename, "%s.filename" % where, allow_subdirs=True)
    except ValueError:
        raise
    sha256 = (item.get("sha256") or "").strip().lower()
    if sha256 and not SHA256_RE.match(sha256):
        raise ValueError("%s: sha256 must be 64 hexadecimal digits, got %r" % (where, item.get("sha256")))
    size = item.get("size")
    if size not in (None, ""):
        try:
            size = int(size)
        except (TypeError, ValueError):
            raise ValueError("%s: size must be a number of bytes, got %r" % (where, size))
        if size < 0:
            raise ValueError("%s: size must not be negative" % where)
    else:
        size = None
    rel = folder + "/" + filename
    return dict(name=item.get("name") or rel, url=url, folder=folder, filename=filename, rel=rel,
                sha256=sha256 or None, size=size, state=state)


def normalize_specs(items, default_state):
    specs = [normalize_spec(item, default_state, i) for i, item in enumerate(items)]
    seen = {}
    for spec in specs:
        if spec["rel"] in seen:
            raise ValueError("models: %s is listed twice (%s and %s)" % (spec["rel"], seen[spec["rel"]], spec["name"]))
        seen[spec["rel"]] = spec["name"]
    return specs


# --- hash cache ---------------------------------------------------------------------------------------------------

class HashCache:
    """sha256 of verified files keyed by path relative to the models dir, valid while size and mtime_ns match."""

    def __init__(self, path, enabled=True):
        self.path = path
        self.enabled = enabled
        self.lock = threading.Lock()
        self.dirty = False
        self.entries = {}
        if path and os.path.exists(path):
            try:
                with open(path) as f:
                    data = json.load(f)
                self.entries = data.get("files", {}) if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self.entries = {}  # a damaged cache only costs a re-hash

    def lookup(self, rel, st):
        with self.lock:
            entry = self.entries.get(rel)
        if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            return entry.get("sha256")
        return None

    def put(self, rel, st, sha256):
        with self.lock:
            self.entries[rel] = dict(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha256)
            self.dirty = True

    def remove(self, rel):
        with self.lock:
            if self.entries.pop(rel, None) is not None:
                self.dirty = True

    def save(self):
        if not (self.enabled and self.dirty and self.path):
            return
        with self.lock:
            atomic_write_json(self.path, dict(version=1, files=self.entries))
            self.dirty = False


# --- status file ------------------------------------------------------------------------------------------------

class StatusFile:
    """Progress of every file as JSON, rewritten atomically at most every `interval` seconds (and on state changes)."""

    def __init__(self, path, specs, interval=1.0, clock=time.monotonic):
        self.path = path
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
            except OSError:
                pass  # progress reporting must never break a download


# --- download -------------------------------------------------------------------------------------------------

def hash_file(path, hasher=None, chunk=CHUNK):
    """(hasher, bytes) after reading the whole file once."""
    hasher = hasher or hashlib.sha256()
    done = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            hasher.update(view[:n])
            done += n
    return hasher, done


def _same_origin(a, b):
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _strip_query(url):
    """A URL for messages: signed CDN URLs carry credentials in their query string."""
    p = urlsplit(url)
    return "%s://%s%s%s" % (p.scheme, p.netloc, p.path, "?..." if p.query else "")


def _disk_usage(path):
    """shutil.disk_usage, looked up at call time (tests replace it with monkeypatch)."""
    return shutil.disk_usage(path)


class Downloader:
    """Downloads model files; one instance is shared by the worker threads of one module run."""

    def __init__(self, models_dir, token=None, timeout=60.0, validate_certs=True, ca_path=None, use_proxy=True,
                 retries=3, retry_delay=2.0, min_free_bytes=0, mode=0o644, cache=None, status=None,
                 chunk=CHUNK, sleep=time.sleep, clock=time.monotonic, disk_usage=None):
        self.models_dir = models_dir
        self.token = token or None
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.use_proxy = use_proxy
        self.retries = retries
        self.retry_delay = retry_delay
        self.min_free_bytes = min_free_bytes
        self.mode = mode
        self.cache = cache or HashCache(None, enabled=False)
        self.status = status or StatusFile(None, [])
        self.chunk = chunk
        self.sleep = sleep
        self.clock = clock
        self.disk_usage = disk_usage or _disk_usage
        self.reserved = 0
        self.reserve_lock = threading.Lock()
        self._contexts = {}

    # -- helpers
    def secrets(self):
        return [self.token] if self.token else []

    def _context(self, url):
        if urlsplit(url).scheme == "https":
            return ssl_context(self.validate_certs, self.ca_path)
        return _plain_http_context()

    def paths(self, spec):
        dest = os.path.join(self.models_dir, *spec["rel"].split("/"))
        return dest, dest + ".partial"

    def open(self, url, offset=0):
        """GET url (from offset); follows redirects by hand so the token never leaves the original host."""
        original = url
        for _hop in range(MAX_REDIRECTS + 1):
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = "bytes=%d-" % offset
            if self.token and _same_origin(url, original):
                headers["Authorization"] = "Bearer " + self.token
            request = Request(headers=headers, use_proxy=self.use_proxy, validate_certs=self.validate_certs,
                              http_agent=USER_AGENT, follow_redirects="none", ca_path=self.ca_path,
                              context=self._context(url), decompress=False, use_netrc=False)
            try:
                return url, request.open("GET", url, timeout=self.timeout)
            except urllib.error.HTTPError as e:
                if e.code in (301, 302, 303, 307, 308):
                    location = e.headers.get("Location") if e.headers else None
                    try:
                        e.close()
                    except Exception:
                        pass
                    if not location:
                        raise DownloadError("GET %s: HTTP %d redirect without a Location" % (_strip_query(url), e.code),
                                            status=e.code)
                    url = urljoin(url, location)
                    continue
                if e.code == 416:
                    return url, e
                transient = e.code in (408, 425, 429) or e.code >= 500
                hint = ""
                if e.code in (401, 403):
                    hint = (" (the server wants credentials: set token, and accept the model's licence on Hugging "
                            "Face for gated repositories)" if not self.token else
                            " (the token was refused or has no access to this repository)")
                raise DownloadError("GET %s: HTTP %d %s%s" % (_strip_query(url), e.code, e.reason or "", hint),
                                    transient=transient, status=e.code)
            except urllib.error.URLError as e:
                raise DownloadError("GET %s: %s" % (_strip_query(url), e.reason), transient=True)
            except (OSError, http.client.HTTPException, UrlsConnectionError) as e:
                raise DownloadError("GET %s: %s" % (_strip_query(url), str(e) or type(e).__name__), transient=True)
        raise DownloadError("GET %s: more than %d redirects" % (_strip_query(original), MAX_REDIRECTS))

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
    def existing_hash(self, spec, dest, check_mode):
        """(sha256, source) of an existing file: from the cache when size and mtime match, else read once."""
        st = os.stat(dest)
        cached = self.cache.lookup(spec["rel"], st)
        if cached:
            return cached, "cache"
        hasher, _size = hash_file(dest)
        digest = hasher.hexdigest()
        if not check_mode:
            self.cache.put(spec["rel"], st, digest)
        return digest, "computed"

    def ensure(self, spec, check_mode=False):
        try:
            return self._ensure(spec, check_mode)
        except DownloadError as e:
            self.status.update(spec["rel"], state="failed", error=redact(e.message, self.secrets()))
            raise DownloadError(redact(e.message, self.secrets()), transient=e.transient, status=e.status)
        except (OSError, ValueError) as e:
            message = redact("%s: %s" % (spec["rel"], e), self.secrets())
            self.status.update(spec["rel"], state="failed", error=message)
            raise DownloadError(message)

    def _ensure(self, spec, check_mode):
        dest, partial = self.paths(spec)
        result = dict(name=spec["name"], folder=spec["folder"], filename=spec["filename"], path=dest,
                      url=_strip_query(spec["url"]) if spec["url"] else None, state=spec["state"], action="none",
                      changed=False, sha256=None, verified=False, hash_source=None, size=None,
                      bytes_downloaded=0, resumed_from=0, seconds=0.0, mb_per_s=None,
                      before=None, after=None)
        if spec["state"] == "absent":
            existed = [p for p in (dest, partial) if os.path.lexists(p)]
            result["before"] = "present" if os.path.lexists(dest) else ("partial" if existed else "absent")
            result["after"] = "absent"
            if existed:
                result.update(changed=True, action="would_remove" if check_mode else "removed")
                if not check_mode:
                    for p in existed:
                        os.unlink(p)
                    self.cache.remove(spec["rel"])
            self.status.update(spec["rel"], state="absent")
            return result

        if os.path.isfile(dest):
            st = os.stat(dest)
            result["size"] = st.st_size
            if not spec["sha256"]:
                # nothing to verify against: presence is all we can check (and all that is cheap)
                cached = self.cache.lookup(spec["rel"], st)
                result.update(sha256=cached, hash_source="cache" if cached else None, before="present",
                              after="present")
                self.status.update(spec["rel"], state="present", bytes=st.st_size, total=st.st_size)
                return result
            digest, source = self.existing_hash(spec, dest, check_mode)
            result.update(sha256=digest, hash_source=source)
            if digest == spec["sha256"]:
                result.update(verified=True, before=digest, after=digest)
                self.status.update(spec["rel"], state="present", bytes=st.st_size, total=st.st_size)
                return result
            result["before"] = digest
        else:
            result["before"] = "absent"
        result["after"] = spec["sha256"] or "downloaded"
        partial_size = os.path.getsize(partial) if os.path.isfile(partial) else 0
        replacing = result["before"] != "absent"
        if check_mode:
            result.update(changed=True, resumed_from=partial_size,
                          action="would_replace" if replacing else ("would_resume" if partial_size else
                                                                    "would_download"))
            return result
        started = self.clock()
        digest, size, downloaded, resumed_from = self.download(spec, partial)
        if spec["sha256"] and digest != spec["sha256"]:
            os.unlink(partial)
            raise DownloadError("%s: sha256 mismatch: expected %s, got %s (%d bytes from %s); the partial file "
                                "was deleted" % (spec["rel"], spec["sha256"], digest, size, _strip_query(spec["url"])))
        os.chmod(partial, self.mode)
        os.replace(partial, dest)
        st = os.stat(dest)
        self.cache.put(spec["rel"], st, digest)
        seconds = max(self.clock() - started, 1e-9)
        result.update(changed=True, action="replaced" if replacing else ("resumed" if resumed_from else "downloaded"),
                      sha256=digest, verified=bool(spec["sha256"]), hash_source="download", size=st.st_size,
                      bytes_downloaded=downloaded, resumed_from=resumed_from, seconds=round(seconds, 3),
                      mb_per_s=round(downloaded / seconds / 2**20, 1), after=digest)
        self.status.update(spec["rel"], state="done", bytes=st.st_size, total=st.st_size, eta_s=0)
        return result

    def download(self, spec, partial):
        """Fill `partial` with the whole file; returns (sha256, size, bytes fetched now, resumed from)."""
        os.makedirs(os.path.dirname(partial), exist_ok=True)
        hasher, hashed = None, 0  # running hash of the first `hashed` bytes of partial, kept across retries
        first_offset = None
        downloaded = 0
        attempt = 0
        while True:
            attempt += 1
            offset = os.path.getsize(partial) if os.path.isfile(partial) else 0
            if first_offset is None or offset == 0:
                first_offset = offset  # bytes from an earlier run that are kept (0 once they were dropped)
            try:
                done, fetched, hasher, hashed = self._attempt(spec, partial, offset, hasher, hashed)
                downloaded += fetched
                if done - fetched == 0:
                    first_offset = 0  # the server sent the whole file (no range support)
                return hasher.hexdigest(), done, downloaded, first_offset
            except DownloadError as e:
                downloaded += getattr(e, "fetched", 0)
                hasher, hashed = getattr(e, "hash_state", (hasher, hashed))
                if not e.transient or attempt > self.retries:
                    if e.transient:
                        e.message += (" (gave up after %d attempt(s); %s keeps the bytes received, the next run "
                                      "resumes from there)" % (attempt, os.path.basename(partial)))
                    raise
                self.status.update(spec["rel"], state="retrying", error=redact(e.message, self.secrets()))
                self.sleep(self.retry_delay)

    def _attempt(self, spec, partial, offset, hasher, hashed):
        url, resp = self.open(spec["url"], offset)
        try:
            status = getattr(resp, "status", None) or getattr(resp, "code", None)
            headers = resp.headers
            if status == 416:
                # we asked for bytes past the end: either the partial file is complete, or it is stale
                m = CONTENT_RANGE_UNSATISFIED_RE.match(headers.get("Content-Range") or "")
                if m and int(m.group(1)) == offset and offset > 0:
                    if hasher is None or hashed != offset:
                        hasher, hashed = hash_file(partial)
                    return offset, 0, hasher, hashed
                os.unlink(partial)
                raise self._error("%s: the server refused to resume at byte %d (HTTP 416); starting over"
                                  % (spec["rel"], offset), True, 0, (None, 0))
            if status == 206 and offset:
                m = CONTENT_RANGE_RE.match(headers.get("Content-Range") or "")
                if not m or int(m.group(1)) != offset:
                    # a range we did not ask for: never splice it in; start over with a full download
                    os.unlink(partial)
                    raise self._error("%s: unexpected Content-Range %r for a resume at byte %d; starting over"
                                      % (spec["rel"], headers.get("Content-Range"), offset), True, 0, (None, 0))
                total = int(m.group(3)) if m.group(3) != "*" else None
                if hasher is None or hashed != offset:
                    # one read of the bytes already here, then the rest is hashed as it streams in
                    self.status.update(spec["rel"], state="hashing partial", bytes=offset)
                    hasher, hashed = hash_file(partial)
                    if hashed != offset:
                        raise self._error("%s: partial file changed while hashing" % spec["rel"], True, 0, (None, 0))
                mode = "ab"
            elif status in (200, 206):
                # 200: the server ignored the Range header (or there was nothing to resume): full download
                length = headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                offset, hasher, hashed, mode = 0, hashlib.sha256(), 0, "wb"
            else:
                raise self._error("GET %s: unexpected HTTP %s" % (_strip_query(url), status), False, 0,
                                  (hasher, hashed))
            if spec["size"] is not None and total is not None and total != spec["size"]:
                raise self._error("%s: the server announces %d bytes, the entry says size=%d"
                                  % (spec["rel"], total, spec["size"]), False, 0, (hasher, hashed))
            need = (total if total is not None else (spec["size"] or 0)) - offset
            self._reserve(os.path.dirname(partial), max(need, 0), spec["rel"])
            try:
                return self._stream(spec, resp, partial, mode, offset, total, hasher)
            finally:
                self._release(max(need, 0))
        finally:
            try:
                resp.close()
            except Exception:
                pass

    def _error(self, message, transient, fetched, hash_state):
        err = DownloadError(message, transient=transient)
        err.fetched = fetched
        err.hash_state = hash_state
        return err

    def _stream(self, spec, resp, partial, mode, offset, total, hasher):
        buf = bytearray(self.chunk)
        view = memoryview(buf)
        done = offset
        started = self.clock()
        self.status.update(spec["rel"], state="downloading", bytes=done, total=total, resumed_from=offset, error=None)
        with open(partial, mode) as f:  # buffered: write() never returns short
            try:
                while True:
                    n = resp.readinto(buf)
                    if not n:
                        break
                    f.write(view[:n])
                    hasher.update(view[:n])
                    done += n
                    elapsed = self.clock() - started
                    rate = (done - offset) / elapsed if elapsed > 0 else None
                    self.status.update(spec["rel"], bytes=done, rate_mb_s=round(rate / 2**20, 1) if rate else None,
                                       eta_s=round((total - done) / rate) if rate and total else None)
            except (OSError, http.client.HTTPException, UrlsConnectionError, socket.timeout) as e:
                if isinstance(e, OSError) and e.errno is not None and e.errno in (28, 122):  # ENOSPC, EDQUOT
                    raise self._error("%s: %s" % (spec["rel"], e), False, done - offset, (hasher, done))
                raise self._error("%s: connection lost after %d bytes: %s"
                                  % (spec["rel"], done, str(e) or type(e).__name__), True, done - offset,
                                  (hasher, done))
        if total is not None and done != total:
            raise self._error("%s: connection closed after %d of %d bytes" % (spec["rel"], done, total), True,
                              done - offset, (hasher, done))
        return done, done - offset, hasher, done
