# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Probe ComfyUI instances: wait until /system_stats answers, then check the UI, versions, devices and VRAM,
the queue, model files and expected node classes; one result dict per instance.

Used by comfyops.comfyui.comfyui_health (which validates the options into the spec) and bench/health_latency.py.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import (
    ComfyUIClient,
    ComfyUIError,
    WaitTimeout,
    shared_context,
    wait_until,
)

_CHECKS = ("ui", "system_stats", "object_info", "queue", "models")
_MIB = 1024 * 1024


def _ms(seconds):
    return round(seconds * 1000.0, 1)


def _versions(system):
    python = system.get("python_version")
    frontend = None
    for pkg in system.get("comfy_package_versions") or []:
        if isinstance(pkg, dict) and pkg.get("name") == "comfyui-frontend-package":
            frontend = pkg.get("installed")
    return dict(
        comfyui=system.get("comfyui_version"),
        # "3.12.3 (main, Aug 31 2026, 10:18:26) [GCC 13.3.0]" -> "3.12.3"
        python=python.split(" ", 1)[0] if isinstance(python, str) else None,
        pytorch=system.get("pytorch_version"),
        frontend=frontend,
    )


def _devices(stats):
    devices = []
    for dev in stats.get("devices") or []:
        if not isinstance(dev, dict):
            continue
        devices.append(dict(
            name=dev.get("name"),
            type=dev.get("type"),
            index=dev.get("index"),
            vram_total_mb=int(dev["vram_total"]) // _MIB if isinstance(dev.get("vram_total"), (int, float)) else None,
            vram_free_mb=int(dev["vram_free"]) // _MIB if isinstance(dev.get("vram_free"), (int, float)) else None,
        ))
    return devices


class _Prober:
    """Checks one instance; all options are shared by every instance of a module run."""

    def __init__(self, spec, deadline, clock=time.monotonic, sleep=time.sleep):
        self.spec = spec
        self.deadline = deadline
        self.clock = clock
        self.sleep = sleep

    def probe(self, name, client):
        result = dict(name=name, url=client.base_url, healthy=False, problems=[], error=None,
                      checks=OrderedDict(), versions={}, devices=[], queue=None,
                      missing_classes=[], missing_models=[], ready_after_s=None, latency_ms=None)
        started = self.clock()
        attempt = {}

        def ready():
            attempt["start"] = self.clock()
            # never let a single attempt run far past the deadline
            timeout = max(0.5, min(client.timeout, self.deadline - attempt["start"]))
            stats = client.get_json("/system_stats", timeout=timeout)
            if not isinstance(stats, dict) or not isinstance(stats.get("system"), dict):
                raise ComfyUIError("GET %s: not a ComfyUI /system_stats answer" % client.url("/system_stats"),
                                   url=client.url("/system_stats"), status=200)
            return stats

        try:
            stats = wait_until(self.deadline, ready, interval=self.spec["delay"], clock=self.clock, sleep=self.sleep)
        except WaitTimeout as e:
            return self._unreachable(result, "not ready within %g s: %s" % (self.spec["wait_timeout"], e.last_error))
        except ComfyUIError as e:
            return self._unreachable(result, "not ready: %s" % e)

        result["ready_after_s"] = round(attempt["start"] - started, 3)
        stats_ms = _ms(self.clock() - attempt["start"])
        # One request at a time, the small ones first: ComfyUI serves everything from one event loop that
        # building /object_info (~0.2 s, ~1.5 MB) blocks, so running them alongside it gains nothing, and
        # measured on the emulator (bench/health_latency.py) sequential was cheaper than threads.
        outcomes = dict(
            ui=self._ui(client),
            system_stats=self._system_stats(stats, stats_ms),
            queue=self._queue(client),
            models=self._models(client),
            object_info=self._object_info(client) if self.spec["expected_classes"] else (dict(ok=True, skipped=True), {}, []),
        )
        # each check gives (its entry under checks, fields of the result it fills, problem lines)
        for check in _CHECKS:
            outcome, fields, problems = outcomes[check]
            result["checks"][check] = outcome
            result.update(fields)
            result["problems"].extend(problems)
        result["latency_ms"] = _ms(self.clock() - attempt["start"])
        result["healthy"] = not result["problems"]
        return result

    def _unreachable(self, result, message):
        result["error"] = message
        result["problems"] = [message]
        for check in _CHECKS:
            result["checks"][check] = dict(ok=False, error="not checked: instance not ready")
        result["checks"]["system_stats"]["error"] = message
        return result

    def _timed(self, fn):
        t0 = self.clock()
        try:
            return fn(), None, _ms(self.clock() - t0)
        except ComfyUIError as e:
            return None, e, _ms(self.clock() - t0)

    def _system_stats(self, stats, latency_ms):
        devices = _devices(stats)
        fields = dict(versions=_versions(stats["system"]), devices=devices)
        gpus = [d for d in devices if d["type"] not in (None, "cpu")]
        issues = []
        if self.spec["require_gpu"] and not gpus:
            issues.append("no GPU device (devices: %s)" % (", ".join(str(d["name"]) for d in devices) or "none"))
        min_vram = self.spec["min_vram_mb"]
        if min_vram is not None:
            totals = [d["vram_total_mb"] for d in (gpus or devices) if d["vram_total_mb"] is not None]
            if not totals or max(totals) < min_vram:
                issues.append("VRAM %s MiB < min_vram_mb %d" % (max(totals) if totals else "unknown", min_vram))
        outcome = dict(ok=not issues, latency_ms=latency_ms)
        if issues:
            outcome["error"] = "; ".join(issues)
        return outcome, fields, ["system_stats: %s" % i for i in issues]

    def _ui(self, client):
        resp, err, ms = self._timed(lambda: client.get("/"))
        if err:
            return dict(ok=False, status=err.status, latency_ms=ms, error=str(err)), {}, ["ui: %s" % err]
        ok = resp.content_type == "text/html"
        outcome = dict(ok=ok, status=resp.status, content_type=resp.content_type, latency_ms=ms)
        if ok:
            return outcome, {}, []
        outcome["error"] = "GET / answered %s, not text/html" % (resp.content_type or "no content type")
        return outcome, {}, ["ui: %s" % outcome["error"]]

    def _queue(self, client):
        data, err, ms = self._timed(lambda: client.get_json("/queue"))
        if err:
            return dict(ok=False, latency_ms=ms, error=str(err)), {}, ["queue: %s" % err]
        if not (isinstance(data, dict) and isinstance(data.get("queue_running"), list)
                and isinstance(data.get("queue_pending"), list)):
            error = "GET /queue: not a ComfyUI queue answer"
            return dict(ok=False, latency_ms=ms, error=error), {}, ["queue: %s" % error]
        counts = dict(running=len(data["queue_running"]), pending=len(data["queue_pending"]))
        return dict(ok=True, latency_ms=ms), dict(queue=counts), []

    def _object_info(self, client):
        data, err, ms = self._timed(client.object_info)
        if err:
            return dict(ok=False, latency_ms=ms, error=str(err)), {}, ["object_info: %s" % err]
        if not isinstance(data, dict):
            error = "GET /object_info: not a ComfyUI object_info answer"
            return dict(ok=False, latency_ms=ms, error=error), {}, ["object_info: %s" % error]
        missing = [c for c in self.spec["expected_classes"] if c not in data]
        outcome = dict(ok=not missing, class_count=len(data), latency_ms=ms)
        problems = ["object_info missing classes: %s" % ", ".join(missing)] if missing else []
        return outcome, dict(missing_classes=missing), problems

    def _models(self, client):
        wanted = self.spec["required_models"]
        if not wanted:
            return dict(ok=True, skipped=True), {}, []
        missing, errors = [], []
        t0 = self.clock()
        for folder, names in wanted.items():
            files, err, _elapsed = self._timed(lambda: client.models(folder))
            if err or not isinstance(files, list):
                errors.append(str(err) if err else "GET /models/%s: not a list of files" % folder)
                missing.extend("%s/%s" % (folder, n) for n in names)
                continue
            present = set(files)
            missing.extend("%s/%s" % (folder, n) for n in names if n not in present)
        outcome = dict(ok=not missing, latency_ms=_ms(self.clock() - t0))
        problems = ["models: %s" % e for e in errors]
        if missing:
            problems.append("models missing: %s" % ", ".join(missing))
        if errors:
            outcome["error"] = "; ".join(errors)
        return outcome, dict(missing_models=missing), problems


def probe_instances(instances, spec, http_params, clock=time.monotonic, sleep=time.sleep):
    """Probe [(name, url)] in parallel with one shared deadline; returns the results in input order.

    spec: expected_classes (list), required_models (folder -> [names]), require_gpu, min_vram_mb (or None),
    wait_timeout and delay (seconds), max_workers; http_params: the comfyui_http options (headers, credentials,
    TLS, timeout, proxy).
    """
    # one deadline for all: an instance queued behind others (max_workers) still gets at least one attempt
    deadline = clock() + spec["wait_timeout"]
    prober = _Prober(spec, deadline, clock=clock, sleep=sleep)
    context = shared_context([u for _n, u in instances], http_params.get("validate_certs", True),
                             http_params.get("ca_path"))
    clients = [(name, ComfyUIClient.from_params(http_params, url, context=context)) for name, url in instances]
    workers = max(1, min(spec["max_workers"], len(clients)))
    if workers == 1:
        return [prober.probe(*item) for item in clients]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda item: prober.probe(*item), clients))


def failure_message(results):
    parts = ["%s (%s): %s" % (r["name"], r["url"], "; ".join(r["problems"])) for r in results if not r["healthy"]]
    return "ComfyUI health failed: " + " | ".join(parts)
