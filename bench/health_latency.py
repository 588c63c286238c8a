#!/usr/bin/env python
"""How much does a full comfyui_health probe cost over the one /object_info fetch it cannot avoid?

Starts the ComfyUI emulator (tests/fixtures/comfyui_emulator as 0.28.0 with the ComfyUI-LTXVideo stand-in, and
COMFYUI_EMULATOR_OBJECT_INFO_PAD=1 so /object_info is real-sized, ~1.5 MB) or, with --static or when the
emulator helper is missing, a single-threaded local http.server that serves a generated ~1.5 MB /object_info,
optionally after --build-ms (real ComfyUI builds the answer for 0.17-0.26 s, blocking its event loop).
Then, taking turns N times, measures:
  * raw:        GET /object_info with plain urllib, body read, no parsing
  * raw+parse:  the same plus json.loads
  * probe:      comfyui_health's probe of one instance (module_utils/health_probe.py), in-process (wait + /,
                /system_stats, /object_info, /queue, /models/<folder>), expecting the 78 LTXVideo-like classes
  * ansible:    (--ansible) wall time of a whole `ansible-playbook` run of the module on localhost
                (mostly Ansible's own start-up and AnsiballZ)
and prints median / p95 / min wall time, the median CPU time of this process, and the probe's overhead.

Run from the repo root:  .venv/bin/python bench/health_latency.py [-n 30] [--static [--build-ms 190]] [--ansible]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "fixtures" / "reference" / "comfyui-api"
COLLECTIONS = ROOT / ".ansible" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "comfyops" / "comfyui"


def import_collection():
    # the same symlink tests/conftest.py creates, so module code imports by its collection path
    if not LINK.exists():
        LINK.parent.mkdir(parents=True, exist_ok=True)
        LINK.symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(COLLECTIONS))
    from ansible_collections.comfyops.comfyui.plugins.module_utils import health_probe
    return health_probe


def expected_classes():
    return [n for n in (REFERENCE / "ltxvideo_classes.txt").read_text().splitlines() if n.strip()]


def generated_object_info(target_bytes=1_500_000):
    """Real class names (H100 capture) with the recorded entries' shapes, padded to about target_bytes in all."""
    names = [n for n in (REFERENCE / "gpu-h100" / "object_info_classes.txt").read_text().splitlines() if n]
    names += [n for n in expected_classes() if n not in names]
    templates = list(json.loads((REFERENCE / "object_info_excerpt.json").read_text()).values())
    entries = {n: dict(templates[i % len(templates)], name=n, display_name=n) for i, n in enumerate(names)}
    pad = max(0, (target_bytes - len(json.dumps(entries))) // len(names))
    for entry in entries.values():
        entry["description"] = "x" * pad
    return json.dumps(entries).encode()


@contextlib.contextmanager
def static_server(build_ms=0.0):
    routes = {
        "/": (b"<!doctype html><html><title>ComfyUI</title></html>", "text/html"),
        "/system_stats": ((REFERENCE / "gpu-h100" / "system_stats.json").read_bytes(), "application/json"),
        "/queue": ((REFERENCE / "queue.json").read_bytes(), "application/json"),
        "/object_info": (generated_object_info(), "application/json"),
        "/models/checkpoints": (b"[]", "application/json"),
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/object_info":
                time.sleep(build_ms / 1000.0)
            body, ctype = routes.get(self.path, (b"", "application/octet-stream"))
            self.send_response(200 if self.path in routes else 404)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    # one request at a time, like ComfyUI's single aiohttp event loop, which building /object_info blocks
    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.request_queue_size = 64
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1], \
            "static single-threaded http.server, generated object_info, %g ms build time" % build_ms
    finally:
        server.shutdown()


@contextlib.contextmanager
def emulator_server(workdir):
    sys.path.insert(0, str(ROOT / "tests"))
    from emulator_helpers import start_emulator
    env = dict(os.environ, COMFYUI_EMULATOR_OBJECT_INFO_PAD="1")
    # 0.28.0 + the LTXVideo stand-in: the compatibility set this collection deploys
    with start_emulator(workdir, env=env, custom_nodes=["ComfyUI-LTXVideo"], version="0.28.0") as emu:
        yield emu.url, "ComfyUI emulator 0.28.0 + ComfyUI-LTXVideo (COMFYUI_EMULATOR_OBJECT_INFO_PAD=1)"


def measure(fns, runs):
    """(wall ms, CPU ms of this process) samples per name. The candidates take turns, so load from elsewhere
    on the box hits all alike; the CPU time does not depend on that load (with the emulator, the server is
    another process, so it is the client's own cost)."""
    for fn in fns.values():
        fn()  # warm-up: first-call costs (ComfyUI builds object_info lazily, imports, SSL contexts)
    samples = {name: ([], []) for name in fns}
    for _run in range(runs):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            samples[name][0].append((time.perf_counter() - wall) * 1000.0)
            samples[name][1].append((time.process_time() - cpu) * 1000.0)
    return samples


def p95(samples):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def ansible_run(url, classes, workdir):
    playbook = Path(workdir) / "bench_health.yml"
    playbook.write_text(textwrap.dedent("""\
        - hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - comfyops.comfyui.comfyui_health:
                url: %s
                expected_classes: %s
    """) % (url, json.dumps(classes)))
    # the controller's Python on the "target": interpreter discovery may pick one without ansible's deps
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
           "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)]

    def run():
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit("ansible-playbook failed:\n" + proc.stdout + proc.stderr)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=30)
    parser.add_argument("--static", action="store_true", help="use a static http.server instead of the emulator")
    parser.add_argument("--build-ms", type=float, default=0.0,
                        help="static server: time to 'build' /object_info (0.17-0.19 s on the H100 capture)")
    parser.add_argument("--ansible", action="store_true", help="also time the module through ansible-playbook")
    parser.add_argument("--ansible-runs", type=int, default=5)
    opts = parser.parse_args()

    health_probe = import_collection()
    classes = expected_classes()
    use_emulator = not opts.static and (ROOT / "tests" / "emulator_helpers.py").exists()
    with tempfile.TemporaryDirectory(prefix="health-bench-") as workdir:
        server = emulator_server(workdir) if use_emulator else static_server(opts.build_ms)
        with server as (url, label):
            raw_bytes = []

            def raw():
                with urllib.request.urlopen(url + "/object_info", timeout=30) as resp:
                    raw_bytes.append(len(resp.read()))

            def raw_parse():
                with urllib.request.urlopen(url + "/object_info", timeout=30) as resp:
                    json.loads(resp.read())

            spec = dict(expected_classes=classes, required_models={"checkpoints": ["bench.safetensors"]},
                        require_gpu=False, min_vram_mb=None, wait_timeout=10.0, delay=0.5, max_workers=1)
            http = dict(headers={}, validate_certs=True, ca_path=None, timeout=30.0, use_proxy=False)

            def probe():
                (result,) = health_probe.probe_instances([("bench", url)], spec, http)
                # the model file is absent on purpose (one more request); everything else must pass
                assert result["problems"] == ["models missing: checkpoints/bench.safetensors"], result["problems"]

            figures = measure({"raw GET /object_info": raw, "raw GET + json.loads": raw_parse,
                               "comfyui_health probe": probe}, opts.runs)
            if opts.ansible:
                figures.update(measure({"ansible-playbook (whole)": ansible_run(url, classes, workdir)},
                                       opts.ansible_runs))

    print("server: %s, /object_info %.2f MB, %d expected classes, %d runs"
          % (label, raw_bytes[-1] / 1e6, len(classes), opts.runs))
    print("%-25s %10s %10s %10s %14s" % ("", "median ms", "p95 ms", "min ms", "CPU median ms"))
    for name, (wall, cpu) in figures.items():
        # ansible-playbook's CPU is spent in child processes, which process_time() does not see
        cpu_text = "n/a" if name.startswith("ansible") else "%.1f" % statistics.median(cpu)
        print("%-25s %10.1f %10.1f %10.1f %14s"
              % (name, statistics.median(wall), p95(wall), min(wall), cpu_text))
    probe = figures["comfyui_health probe"]
    for base_name in ("raw GET /object_info", "raw GET + json.loads"):
        base = figures[base_name]
        print("probe overhead over %-21s %+7.1f ms median, %+7.1f ms min, %+7.1f ms CPU"
              % (base_name + ":", statistics.median(probe[0]) - statistics.median(base[0]),
                 min(probe[0]) - min(base[0]), statistics.median(probe[1]) - statistics.median(base[1])))


if __name__ == "__main__":
    main()
