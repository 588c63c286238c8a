# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""comfyops exporter: health, readiness and Prometheus metrics of the ComfyUI instances of one host.

Python standard library only (the image is the base image plus this file). Configuration: a JSON file written
by the comfyui role (see docs/monitoring.md), re-read when it changes; an empty file draining/<instance> next
to it marks the instance as being drained. Endpoints: /health, /ready, /ready/<instance>, /metrics.

One thread per instance polls it every poll_interval seconds: /system_stats, /api/jobs (queue counts; the
finished jobs only after ComfyUI announced a queue change), /models/<folder> for required models every
models_interval, and /object_info (about 1.5 MB) only when a ComfyUI process is first seen. Between polls the
thread holds one WebSocket to /ws, as ComfyUI's frontend does: it closes only when that ComfyUI process ends,
so a restart is seen even when it is faster than a poll, and ComfyUI's "status" messages tell when jobs
finished. HTTP answers are built from the last poll; serving them never calls ComfyUI.
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime
import http.client
import http.server
import json
import math
import os
import re
import select
import signal
import socket
import sys
import threading
import time
import urllib.parse

VERSION = "1.0.0"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Completed jobs' execution time; LTX-2 clips take from seconds to 30 minutes.
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
MAX_BODY = 64 * 1024 * 1024
MAX_LABEL = 200
JOBS_PAGE = 100
SEEN_IDS = 20 * JOBS_PAGE
FINISHED = ("completed", "failed", "cancelled")
NOT_CHECKED = "not checked yet"
LEVELS = ("installation", "runtime", "functional", "models")
# jobs_interval: the finished jobs are asked for at most this often; ComfyUI answers that request in time
# proportional to its whole history (up to 10000 entries, ~0.1 s), however few are asked for.
DEFAULTS = {"poll_interval": 10, "timeout": 5, "object_info_timeout": 60, "models_interval": 60, "jobs_interval": 30,
            "ready_max_queue": 4, "expected_classes": [], "required_models": [], "instances": [], "deployed": {}}


class CheckError(Exception):
    """An instance did not answer a request as expected."""


def _now_iso(ts):
    return None if ts is None else datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(value):
    """A finite number from hostile JSON, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _text(value, limit=MAX_LABEL):
    return str(value)[:limit] if value is not None else ""


def normalize_required_models(value):
    """["folder/name", ...] from the shapes comfyui_health accepts: {folder: [names]}, [{folder, name}], ["folder/name"]."""
    out = []
    if isinstance(value, dict):
        for folder, names in value.items():
            for name in [names] if isinstance(names, str) else (names or []):
                out.append("%s/%s" % (folder, name))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item.get("folder") and item.get("name"):
                out.append("%s/%s" % (item["folder"], item["name"]))
            elif isinstance(item, str) and "/" in item:
                out.append(item)
    return list(dict.fromkeys(out))


def load_config(path):
    """The configuration with defaults filled in; raises ValueError with the reason."""
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise ValueError("the configuration is not a JSON object")
    config = dict(DEFAULTS, **raw)
    instances = []
    for item in config["instances"]:
        if not isinstance(item, dict) or not SAFE_NAME.match(str(item.get("name", ""))):
            raise ValueError("instance without a usable name: %r" % (item,))
        url = urllib.parse.urlsplit(str(item.get("url", "")))
        if url.scheme != "http" or not url.hostname:
            raise ValueError("instance %s: url must be http://host:port, got %r" % (item["name"], item.get("url")))
        instances.append({"name": item["name"], "url": item["url"].rstrip("/"), "gpu": item.get("gpu")})
    config["instances"] = instances
    for key in ("poll_interval", "timeout", "object_info_timeout", "models_interval", "jobs_interval", "ready_max_queue"):
        if _num(config[key]) is None or config[key] < 0:
            raise ValueError("%s must be a number >= 0, got %r" % (key, config[key]))
    config["poll_interval"] = max(float(config["poll_interval"]), 0.2)
    config["expected_classes"] = [str(c) for c in config["expected_classes"] or []]
    config["required_models"] = normalize_required_models(config["required_models"])
    return config


class Client:
    """GET requests to one ComfyUI over a kept-alive HTTP/1.1 connection."""

    def __init__(self, url):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def get_json(self, path, timeout):
        # One retry on a fresh connection: the server may have closed the kept-alive one.
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
                self.conn.timeout = timeout
                if self.conn.sock is not None:
                    self.conn.sock.settimeout(timeout)
                self.conn.request("GET", path, headers={"Accept": "application/json"})
                response = self.conn.getresponse()
                body = response.read(MAX_BODY + 1)
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 2 or isinstance(exc, socket.timeout):
                    raise CheckError("GET %s: %s" % (path, exc.__class__.__name__ if not str(exc) else exc)) from None
        if len(body) > MAX_BODY:
            self.close()
            raise CheckError("GET %s: answer larger than %d bytes" % (path, MAX_BODY))
        if response.status != 200:
            raise CheckError("GET %s: HTTP %d" % (path, response.status))
        try:
            return json.loads(body)
        except ValueError:
            raise CheckError("GET %s: not JSON" % path) from None


class WebSocket:
    """Just enough of RFC 6455 to hold /ws open and read ComfyUI's messages (no sending but pong/close)."""

    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            self.sock.sendall(("GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host, port, key)).encode())
            self.buffer, self.pos = b"", 0
            head = self._read_until(b"\r\n\r\n", 16384)
            if not head.startswith(b"HTTP/1.1 101"):
                raise CheckError("/ws: %s" % head.split(b"\r\n", 1)[0].decode("latin-1")[:100])
        except BaseException:
            self.sock.close()
            raise

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        return chunk

    def _read_until(self, marker, limit):
        while marker not in self.buffer:
            if len(self.buffer) > limit:
                raise CheckError("/ws: oversized handshake")
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _read(self, n, keep=True):
        """n bytes (or, with keep=False, n bytes skipped without keeping them); self.pos walks the buffer, so a
        batch of small frames costs no copying."""
        out = []
        while n > 0:
            if self.pos >= len(self.buffer):
                self.buffer, self.pos = self._recv(), 0
            end = min(self.pos + n, len(self.buffer))
            if keep:
                out.append(self.buffer[self.pos:end])
            n -= end - self.pos
            self.pos = end
        return b"".join(out)

    def pending(self):
        return self.pos < len(self.buffer)

    def fileno(self):
        return self.sock.fileno()

    def read_message(self):
        """(opcode, payload) of one frame; payloads of binary frames and big text frames are skipped (None)."""
        b1, b2 = self._read(2)
        opcode, length = b1 & 0x0F, b2 & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read(8), "big")
        mask = self._read(4) if b2 & 0x80 else None
        if opcode == 0x8:
            raise ConnectionError("closed by ComfyUI")
        keep = opcode in (0x1, 0x9) and length <= 65536
        payload = self._read(length, keep)
        if mask and keep:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if opcode == 0x9:  # ping
            self._send(0xA, payload)
        return opcode, payload if keep else None

    def _send(self, opcode, payload):
        mask = os.urandom(4)
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
                          + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def close(self):
        try:
            self._send(0x8, b"\x03\xe8")
        except OSError:
            pass
        self.sock.close()


class Instance:
    """What the exporter knows about one ComfyUI instance; its poller thread is the only writer."""

    def __init__(self, spec, exporter):
        self.spec = spec
        self.exporter = exporter
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.client = Client(spec["url"])
        self.ws = None
        self.ws_seen = False        # a WebSocket to some process of this instance was held at least once
        self.process_ended = False  # the WebSocket to the current process closed: a restart, once it answers again
        self.jobs_dirty = True
        self.jobs_baselined = False  # the jobs that had finished before the exporter looked are known (not counted)
        self.jobs_fetched = None
        self.seen_jobs = collections.OrderedDict()
        # state read by the HTTP side (under self.lock)
        self.up = False
        self.error = NOT_CHECKED
        self.last_ok = None
        self.since = None
        self.restarts = 0
        self.system = {}
        self.devices = []
        self.queue = None
        self.classes = None
        self.classes_checked = None
        self.classes_error = None
        self.models_present = None
        self.models_checked = None
        self.models_error = None
        self.packs_live = None      # {pack: commit} from ComfyUI-Manager v4, or None when it cannot tell
        self.jobs = dict.fromkeys(FINISHED, 0)
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.poll_seconds = None
        self.thread = threading.Thread(target=self.run, name="poll-" + spec["name"], daemon=True)

    # -- polling ------------------------------------------------------------------------------------------------
    def run(self):
        while not self.stop_event.is_set():
            config = self.exporter.config
            started = time.monotonic()
            self.poll(config)
            self.poll_seconds = time.monotonic() - started
            # After the WebSocket closed, look again soon: the restart is then followed within seconds.
            interval = config["poll_interval"] if self.up and not self.process_ended else min(config["poll_interval"], 2.0)
            self.wait(started + interval, config)
        self.client.close()
        if self.ws is not None:
            self.ws.close()

    def wait(self, deadline, config):
        """Read the WebSocket until the deadline; returns early when the ComfyUI process ended."""
        while not self.stop_event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self.ws is None:
                self.stop_event.wait(remaining)
                return
            try:
                if not self.ws.pending():
                    if self.jobs_dirty:
                        # Already told to look at the jobs: read the rest in batches, not one wake-up per message
                        # (a busy ComfyUI sends hundreds per second).
                        self.stop_event.wait(min(remaining, 0.5))
                    readable = select.select([self.ws], [], [], max(0, min(deadline - time.monotonic(), 1.0)))[0]
                    if not readable:
                        continue
                opcode, payload = self.ws.read_message()
                if opcode == 0x1 and payload is not None and b'"status"' in payload[:40]:
                    self.jobs_dirty = True
            except (OSError, ValueError, ConnectionError, CheckError):
                self.ws.sock.close()
                self.ws = None
                self.process_ended = True
                return

    def poll(self, config):
        timeout = config["timeout"]
        try:
            stats = self.client.get_json("/system_stats", timeout)
            if not isinstance(stats, dict):
                raise CheckError("GET /system_stats: not an object")
            if self.ws is None:
                self.connect_ws(timeout)
            # A new process: the first one seen, one after the WebSocket closed, or (without a WebSocket) one
            # after the instance stopped answering.
            new_process = self.since is None or self.process_ended or (not self.ws_seen and not self.up)
            queue = self.poll_queue(timeout)
        except CheckError as exc:
            with self.lock:
                self.up = False
                self.error = str(exc)
            self.client.close()
            return
        now = time.time()
        self.process_ended = False
        with self.lock:
            if new_process:
                if self.since is not None:
                    self.restarts += 1
                self.since = now
                self.classes = None
                self.packs_live = None
                self.models_checked = None
            self.up, self.error, self.last_ok = True, None, now
            self.system = stats.get("system") if isinstance(stats.get("system"), dict) else {}
            self.devices = [d for d in stats.get("devices") or [] if isinstance(d, dict)][:16]
            self.queue = queue
        # The slow checks do not make the instance "down" when they fail; each records its own error.
        # The finished jobs: after ComfyUI announced a queue change (without a WebSocket: always), at most every
        # jobs_interval.
        if (self.jobs_dirty or self.ws is None) and (self.jobs_fetched is None
                                                     or now - self.jobs_fetched >= config["jobs_interval"]):
            self.jobs_fetched = now
            self.poll_jobs(timeout)
        if self.classes is None:
            self.poll_classes(config)
        if self.models_checked is None or now - self.models_checked >= config["models_interval"]:
            self.poll_models(config, now)

    def connect_ws(self, timeout):
        try:
            self.ws = WebSocket(self.client.host, self.client.port, timeout)
        except (OSError, CheckError):
            self.ws = None
            return
        self.ws_seen = True
        self.jobs_dirty = True

    def poll_queue(self, timeout):
        try:
            answer = self.client.get_json("/api/jobs?status=in_progress,pending", timeout)
            jobs = answer.get("jobs") if isinstance(answer, dict) else None
            if not isinstance(jobs, list):
                raise CheckError("GET /api/jobs: no job list")
            states = [j.get("status") for j in jobs if isinstance(j, dict)]
            return {"running": states.count("in_progress"), "pending": states.count("pending")}
        except CheckError as exc:
            if "HTTP 404" not in str(exc):
                raise
        # ComfyUI before the Jobs API: /queue has the same counts (with every queued graph).
        answer = self.client.get_json("/queue", timeout)
        if not isinstance(answer, dict):
            raise CheckError("GET /queue: not an object")
        return {"running": len(answer.get("queue_running") or []), "pending": len(answer.get("queue_pending") or [])}

    def poll_jobs(self, timeout):
        """Count the jobs that finished since the last look (newest first; a page more while all are new)."""
        new = []
        self.jobs_dirty = False  # a failure waits for the next queue change: no retry storm
        try:
            for page in range(10):
                answer = self.client.get_json("/api/jobs?status=%s&sort_by=created_at&sort_order=desc&limit=%d&offset=%d"
                                              % (",".join(FINISHED), JOBS_PAGE, page * JOBS_PAGE), timeout)
                jobs = [j for j in (answer.get("jobs") if isinstance(answer, dict) else None) or [] if isinstance(j, dict)]
                fresh = [j for j in jobs if isinstance(j.get("id"), str) and j["id"] not in self.seen_jobs]
                new += fresh
                if len(fresh) < len(jobs) or len(jobs) < JOBS_PAGE or not self.jobs_baselined:
                    break
        except CheckError:
            return
        with self.lock:
            for job in new:
                self.seen_jobs[job["id"]] = None
                if not self.jobs_baselined:
                    continue  # what finished before the exporter looked is not counted
                status = job.get("status")
                if status in self.jobs:
                    self.jobs[status] += 1
                start, end = _num(job.get("execution_start_time")), _num(job.get("execution_end_time"))
                if status == "completed" and start is not None and end is not None and end >= start:
                    seconds = (end - start) / 1000.0
                    self.duration_sum += seconds
                    self.buckets[next((i for i, b in enumerate(DURATION_BUCKETS) if seconds <= b), len(DURATION_BUCKETS))] += 1
            while len(self.seen_jobs) > SEEN_IDS:
                self.seen_jobs.popitem(last=False)
            self.jobs_baselined = True

    def poll_classes(self, config):
        try:
            info = self.client.get_json("/object_info", config["object_info_timeout"])
            if not isinstance(info, dict):
                raise CheckError("GET /object_info: not an object")
        except CheckError as exc:
            with self.lock:
                self.classes_error = str(exc)
            return
        packs = None
        if (config.get("deployed") or {}).get("manager") == "v4":
            try:
                installed = self.client.get_json("/v2/customnode/installed", config["timeout"])
                packs = {str(k): _text(v.get("ver")) for k, v in installed.items() if isinstance(v, dict)}
            except (CheckError, AttributeError):
                packs = None
        with self.lock:
            self.classes = frozenset(info)
            self.classes_checked = time.time()
            self.classes_error = None
            self.packs_live = packs

    def poll_models(self, config, now):
        folders = collections.OrderedDict()
        for item in config["required_models"]:
            folder, name = item.split("/", 1)
            folders.setdefault(folder, []).append(name)
        present, errors = set(), []
        for folder in folders:
            try:
                files = self.client.get_json("/models/" + urllib.parse.quote(folder, safe=""), config["timeout"])
                present.update("%s/%s" % (folder, f) for f in files if isinstance(f, str))
            except (CheckError, TypeError) as exc:
                errors.append(str(exc))
        with self.lock:
            self.models_present = present
            self.models_checked = now
            self.models_error = "; ".join(errors) or None

    # -- evaluation (HTTP side) ---------------------------------------------------------------------------------
    def evaluate(self, config, now):
        """The instance's health levels, readiness and the reasons it is not ready."""
        with self.lock:
            stale_after = 3 * config["poll_interval"] + config["timeout"] + config["object_info_timeout"]
            up = self.up and self.last_ok is not None and now - self.last_ok <= stale_after
            error = self.error if not self.up else (None if up else "no answer for %d s" % (now - self.last_ok))
            deployed = config.get("deployed") or {}
            version = _text(self.system.get("comfyui_version")) or None
            devices = [{"name": _text(d.get("name")), "type": _text(d.get("type"), 16), "index": _num(d.get("index")),
                        "vram_total": _num(d.get("vram_total")), "vram_free": _num(d.get("vram_free"))} for d in self.devices]
            gpu_visible = any(d["type"] not in ("cpu", "") for d in devices)

            problems = []
            want_version = deployed.get("comfyui_version")
            if up and version and want_version not in (None, "", "unknown") and version != want_version:
                problems.append("ComfyUI %s is running, %s was deployed" % (version, want_version))
            packs = []
            for pack in deployed.get("node_packs") or []:
                name, commit = _text(pack.get("name")), _text(pack.get("commit"))
                live = None if self.packs_live is None else self.packs_live.get(name)
                if self.packs_live is None or pack.get("enabled") is False:
                    state = "unverified"
                elif live == commit:
                    state = "ok"
                else:
                    state = "drift"
                    problems.append("node pack %s is at %s, %s was deployed" % (name, live or "nothing", commit))
                packs.append({"name": name, "commit": commit, "live_commit": live, "status": state})
            installation = {"status": ("fail" if problems else "ok") if up else "unknown", "image": deployed.get("image"),
                            "comfyui_version": version, "deployed_version": want_version, "node_packs": packs,
                            "problems": problems}

            runtime_problems = [] if up else [error or "down"]
            if up and self.spec.get("gpu") is not None and not gpu_visible:
                runtime_problems.append("no GPU visible to ComfyUI")
            runtime = {"status": "ok" if not runtime_problems else "fail", "up": up, "error": error,
                       "problems": runtime_problems, "restarts": self.restarts,
                       "up_since": _now_iso(self.since) if up else None,
                       "uptime_seconds": round(now - self.since, 1) if up and self.since else None,
                       "last_ok": _now_iso(self.last_ok), "gpu": self.spec.get("gpu"), "gpu_visible": gpu_visible,
                       "devices": devices,
                       "ram_total": _num(self.system.get("ram_total")), "ram_free": _num(self.system.get("ram_free"))}

            if self.classes is None:
                missing_classes = None
                functional = {"status": "unknown", "classes": None, "missing": None, "checked_at": None,
                              "error": self.classes_error}
            else:
                missing_classes = [c for c in config["expected_classes"] if c not in self.classes]
                functional = {"status": "fail" if missing_classes else "ok", "classes": len(self.classes),
                              "missing": missing_classes, "checked_at": _now_iso(self.classes_checked)}

            required = config["required_models"]
            if not required:
                missing_models = []
                models = {"status": "ok", "required": 0, "missing": [], "checked_at": None}
            elif self.models_present is None:
                missing_models = None
                models = {"status": "unknown", "required": len(required), "missing": None, "checked_at": None}
            else:
                missing_models = [m for m in required if m not in self.models_present]
                models = {"status": "fail" if missing_models else "ok", "required": len(required),
                          "missing": missing_models, "checked_at": _now_iso(self.models_checked)}
                if self.models_error:
                    models["error"] = self.models_error

            queue = dict(self.queue) if self.queue and up else None
            jobs = dict(self.jobs)

        draining = self.exporter.is_draining(self.spec["name"])
        reasons = []
        if self.last_ok is None and not self.up and error == NOT_CHECKED:
            reasons.append(NOT_CHECKED)
        elif not up:
            reasons.append("down: %s" % (error or "no answer"))
        else:
            if missing_classes is None:
                reasons.append("classes not checked yet")
            elif missing_classes:
                reasons.append("classes missing: %s" % ", ".join(missing_classes))
            if missing_models is None:
                reasons.append("models not checked yet")
            elif missing_models:
                reasons.append("models missing: %s" % ", ".join(missing_models))
            limit = config["ready_max_queue"]
            if queue and limit and queue["running"] + queue["pending"] >= limit:
                reasons.append("queue full: %d running + %d pending >= comfyui_ready_max_queue %d"
                               % (queue["running"], queue["pending"], limit))
        if draining:
            reasons.append("draining")
        checks = (installation, runtime, functional, models)
        status = "down" if not up else ("ok" if all(check["status"] == "ok" for check in checks) else "degraded")
        return {"status": status, "ready": not reasons, "reasons": reasons, "draining": draining,
                "installation": installation, "runtime": runtime, "functional": functional, "models": models,
                "queue": queue, "jobs": jobs}

    def histogram(self):
        with self.lock:
            return list(self.buckets), self.duration_sum


class Exporter:
    def __init__(self, config_path):
        self.config_path = config_path
        self.config_dir = os.path.dirname(os.path.abspath(config_path))
        self.config = dict(DEFAULTS, required_models=[])
        self.config_error = "not read yet"
        self.config_stamp = None
        self.instances = collections.OrderedDict()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()

    def reload(self):
        """Re-read the configuration when the file changed; a bad file keeps the previous configuration."""
        try:
            st = os.stat(self.config_path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError as exc:
            self.config_error = "cannot read %s: %s" % (self.config_path, exc.strerror)
            return
        if stamp == self.config_stamp:
            return
        self.config_stamp = stamp
        try:
            config = load_config(self.config_path)
        except (OSError, ValueError) as exc:
            self.config_error = "%s: %s" % (self.config_path, exc)
            return
        self.config, self.config_error = config, None
        wanted = {spec["name"]: spec for spec in config["instances"]}
        with self.lock:
            for name, inst in list(self.instances.items()):
                if name not in wanted or wanted[name] != inst.spec:
                    inst.stop_event.set()
                    del self.instances[name]
            for name, spec in wanted.items():
                if name not in self.instances:
                    self.instances[name] = Instance(spec, self)
                    self.instances[name].thread.start()
            self.instances = collections.OrderedDict((n, self.instances[n]) for n in wanted)

    def watch(self, every=1.0):
        while not self.stop_event.wait(every):
            self.reload()

    def stop(self):
        self.stop_event.set()
        with self.lock:
            for inst in self.instances.values():
                inst.stop_event.set()

    def is_draining(self, name):
        return os.path.exists(os.path.join(self.config_dir, "draining", name))

    def snapshot(self):
        now = time.time()
        config = self.config
        with self.lock:
            instances = list(self.instances.values())
        results = collections.OrderedDict((inst.spec["name"], inst.evaluate(config, now)) for inst in instances)
        return config, instances, results, now

    # -- answers --------------------------------------------------------------------------------------------------
    def health(self):
        config, dummy, results, now = self.snapshot()
        states = [r["status"] for r in results.values()]
        overall = "ok" if states and all(s == "ok" for s in states) else ("down" if all(s == "down" for s in states) else "degraded")
        if self.config_error and not states:
            overall = "down"
        deployed = config.get("deployed") or {}
        body = {"status": overall, "checked_at": _now_iso(now),
                "exporter": {"version": VERSION, "config_error": self.config_error,
                             "poll_interval": config["poll_interval"], "ready_max_queue": config["ready_max_queue"]},
                "deployed": {"image": deployed.get("image"), "comfyui_version": deployed.get("comfyui_version"),
                             "node_packs": deployed.get("node_packs") or []},
                "queue": {"running": sum((r["queue"] or {}).get("running", 0) for r in results.values()),
                          "pending": sum((r["queue"] or {}).get("pending", 0) for r in results.values())},
                "instances": results}
        return (200 if overall == "ok" else 503), body

    def ready(self, name=None):
        results = self.snapshot()[2]
        if name is not None:
            if name not in results:
                return 404, {"error": "no instance %s" % name, "instances": list(results)}
            r = results[name]
            return (200 if r["ready"] else 503), {"instance": name, "ready": r["ready"], "reasons": r["reasons"]}
        ready = [n for n, r in results.items() if r["ready"]]
        body = {"ready": bool(ready), "instances": {n: {"ready": r["ready"], "reasons": r["reasons"]} for n, r in results.items()}}
        if not results:
            body["reasons"] = ["no instances configured" + (": " + self.config_error if self.config_error else "")]
        return (200 if ready else 503), body

    def metrics(self):
        config, instances, results, now = self.snapshot()
        out = Metrics()
        deployed = config.get("deployed") or {}
        out.add("comfyops_exporter_info", "gauge", "The exporter's version.", [({"version": VERSION}, 1)])
        out.add("comfyops_exporter_config_ok", "gauge", "1 when the last change of the configuration file was read.",
                [({}, 0 if self.config_error else 1)])
        for pack in deployed.get("node_packs") or []:
            out.add("comfyui_node_pack_info", "gauge", "Node packs as deployed, with their commits.",
                    [({"pack": pack.get("name"), "commit": pack.get("commit")}, 1)])
        for inst in instances:
            name = inst.spec["name"]
            r = results[name]
            lab = {"comfyui_instance": name}
            rt = r["runtime"]
            out.add("comfyui_info", "gauge", "ComfyUI version running (and deployed), image and GPU of an instance.",
                    [(dict(lab, version=r["installation"]["comfyui_version"] or "", deployed_version=deployed.get("comfyui_version") or "",
                           image=deployed.get("image") or "", gpu="" if inst.spec.get("gpu") is None else inst.spec["gpu"]), 1)])
            out.add("comfyui_up", "gauge", "1 when the instance answered the last poll.", [(lab, int(rt["up"]))])
            out.add("comfyui_ready", "gauge", "1 when /ready/<instance> answers 200.", [(lab, int(r["ready"]))])
            out.add("comfyui_draining", "gauge", "1 while draining/<instance> exists.", [(lab, int(r["draining"]))])
            out.add("comfyui_check_ok", "gauge",
                    "Health levels of /health: 1 ok, 0 failing (installation, runtime, functional, models; unknown ones left out).",
                    [(dict(lab, check=level), int(r[level]["status"] == "ok")) for level in LEVELS if r[level]["status"] != "unknown"])
            out.add("comfyui_restarts_total", "counter",
                    "ComfyUI restarts the exporter saw (its WebSocket closed, or the instance stopped answering, then answered again).",
                    [(lab, rt["restarts"])])
            if inst.since is not None:
                out.add("comfyui_start_time_seconds", "gauge",
                        "When the exporter first saw the running ComfyUI process (Unix time); uptime is time() minus this.",
                        [(lab, inst.since)])
            if inst.last_ok is not None:
                out.add("comfyui_last_success_timestamp_seconds", "gauge", "Time of the last good poll (Unix time).",
                        [(lab, inst.last_ok)])
            if r["functional"]["classes"] is not None:
                out.add("comfyui_node_classes", "gauge", "Node classes in /object_info at the last start.", [(lab, r["functional"]["classes"])])
                out.add("comfyui_expected_classes_missing", "gauge", "Expected node classes (LTX-2 packs) missing from /object_info.",
                        [(lab, len(r["functional"]["missing"]))])
            if r["models"]["missing"] is not None:
                out.add("comfyui_required_models_missing", "gauge", "Required model files not listed by /models/<folder>.",
                        [(lab, len(r["models"]["missing"]))])
            if r["queue"] is not None:
                out.add("comfyui_queue_running", "gauge", "Jobs running.", [(lab, r["queue"]["running"])])
                out.add("comfyui_queue_pending", "gauge", "Jobs waiting in the queue.", [(lab, r["queue"]["pending"])])
            out.add("comfyui_jobs_finished_total", "counter",
                    "Jobs finished since the exporter started watching, by outcome (completed, failed, cancelled).",
                    [(dict(lab, status=s), r["jobs"][s]) for s in FINISHED])
            buckets, total = inst.histogram()
            rows, cumulative = [], 0
            for bound, count in zip(list(DURATION_BUCKETS) + ["+Inf"], buckets):
                cumulative += count
                rows.append((dict(lab, le=bound if bound == "+Inf" else float(bound)), cumulative, "_bucket"))
            rows += [(lab, total, "_sum"), (lab, cumulative, "_count")]
            out.add("comfyui_job_duration_seconds", "histogram", "Execution time of completed jobs.", rows)
            if rt["ram_total"] is not None and rt["up"]:
                out.add("comfyui_ram_total_bytes", "gauge", "RAM of the host as ComfyUI sees it.", [(lab, rt["ram_total"])])
                out.add("comfyui_ram_free_bytes", "gauge", "Free RAM as ComfyUI sees it.", [(lab, rt["ram_free"] or 0)])
            for d in rt["devices"] if rt["up"] else []:
                dl = dict(lab, device="%s:%s" % (d["type"], "" if d["index"] is None else d["index"]), name=d["name"])
                if d["vram_total"] is not None:
                    out.add("comfyui_vram_total_bytes", "gauge", "Memory of each device ComfyUI uses (VRAM; RAM for the CPU device).",
                            [(dl, d["vram_total"])])
                if d["vram_free"] is not None:
                    out.add("comfyui_vram_free_bytes", "gauge", "Free memory of each device ComfyUI uses.", [(dl, d["vram_free"])])
            if rt["up"] and inst.spec.get("gpu") is not None:
                out.add("comfyui_gpu_visible", "gauge", "1 when an instance meant for a GPU sees one (0: the GPU is gone).",
                        [(dict(lab, gpu=inst.spec["gpu"]), int(rt["gpu_visible"]))])
            if inst.poll_seconds is not None:
                out.add("comfyops_exporter_poll_duration_seconds", "gauge", "How long the last poll of the instance took.",
                        [(lab, inst.poll_seconds)])
        return out.text()


class Metrics:
    """Prometheus text exposition format 0.0.4: one HELP/TYPE block per family, samples in insertion order."""

    def __init__(self):
        self.families = collections.OrderedDict()

    def add(self, name, kind, help_text, samples):
        family = self.families.setdefault(name, (kind, help_text, []))
        family[2].extend(samples)

    @staticmethod
    def _value(v):
        if isinstance(v, bool):
            return "1" if v else "0"
        if isinstance(v, int):
            return str(v)
        return repr(float(v))

    @staticmethod
    def _label(v):
        if isinstance(v, float):
            return repr(v)
        return _text(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    def text(self):
        lines = []
        for name, (kind, help_text, samples) in self.families.items():
            lines.append("# HELP %s %s" % (name, help_text))
            lines.append("# TYPE %s %s" % (name, kind))
            for sample in samples:
                labels, value = sample[0], sample[1]
                suffix = sample[2] if len(sample) > 2 else ""
                rendered = ",".join('%s="%s"' % (k, self._label(v)) for k, v in labels.items())
                lines.append("%s%s%s %s" % (name, suffix, "{%s}" % rendered if rendered else "", self._value(value)))
        return "\n".join(lines) + "\n"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "comfyops-exporter"
    exporter = None

    def version_string(self):
        return self.server_version  # no Python version for scanners

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path.rstrip("/") or "/"
        if path == "/metrics":
            return self.answer(200, self.exporter.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
        if path == "/health":
            return self.answer_json(*self.exporter.health())
        if path == "/ready":
            return self.answer_json(*self.exporter.ready())
        if path.startswith("/ready/"):
            return self.answer_json(*self.exporter.ready(urllib.parse.unquote(path[len("/ready/"):])))
        if path == "/":
            return self.answer_json(200, {"endpoints": ["/health", "/ready", "/ready/<instance>", "/metrics"]})
        return self.answer_json(404, {"error": "not found"})

    def do_HEAD(self):
        self.do_GET()

    def answer_json(self, status, body):
        self.answer(status, (json.dumps(body, indent=1, sort_keys=False) + "\n").encode(), "application/json")

    def answer(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args):  # a scrape every second would flood the container log
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, exporter):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        handler = type("BoundHandler", (Handler,), {"exporter": exporter})
        super().__init__(address, handler)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", default="/etc/comfyops-exporter/config.json")
    parser.add_argument("--listen", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=9188)
    args = parser.parse_args(argv)
    exporter = Exporter(args.config)
    exporter.reload()
    if exporter.config_error:
        print("comfyops-exporter: %s (serving 503 until it is readable)" % exporter.config_error, file=sys.stderr)
    server = Server((args.listen, args.port), exporter)
    threading.Thread(target=exporter.watch, name="config", daemon=True).start()

    def shutdown(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    print("comfyops-exporter %s listening on %s:%d" % (VERSION, args.listen, args.port), file=sys.stderr, flush=True)
    server.serve_forever()
    exporter.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
