#!/usr/bin/env python
"""What does the comfyops exporter cost, and what does it cost ComfyUI?

Starts the ComfyUI emulator (0.28.0 with the ComfyUI-LTXVideo stand-in and COMFYUI_EMULATOR_OBJECT_INFO_PAD=1, so
/object_info is real-sized, ~1.6 MB) and measures, on this machine:
  * scrape latency: GET /metrics and GET /health of the exporter (watching --instances emulators), median / p95;
  * the exporter's CPU (share of one core) and memory (peak RSS) while it polls every --poll seconds and is scraped
    every second, as the real command in a subprocess;
  * ComfyUI's /prompt round trip (POST a small graph, wait for its "executing: null" on the WebSocket, as clients
    do) without the exporter, and with it polling every --poll s and /metrics scraped every 1 s, in alternating
    phases (off, on, on, off, ...) of --phase-seconds each; the ratio is round trips per second with / without
    (goal >= 0.98). On a shared machine the latencies follow its load, so the emulator's own CPU time per round trip,
    with and without, is printed too: it is what the exporter costs ComfyUI.

Run from the repo root:  .venv/bin/python bench/exporter.py [--phase-seconds 5] [--phases 16] [--poll 1] [--instances 2]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from emulator_helpers import free_port, http_request, start_emulator  # noqa: E402

EXPORTER = ROOT / "roles" / "comfyui" / "files" / "exporter" / "comfyops_exporter.py"
LTX = ["LTXVBaseSampler", "LTXVGemmaCLIPModelLoader", "LTXFloatToInt", "Set VAE Decoder Noise"]
CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def peak_rss_mb(pid):
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def exporter(workdir, emulators, poll):
    config = Path(workdir) / "config.json"
    (Path(workdir) / "draining").mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"instances": [{"name": "comfyui-cpu%d" % i, "url": e.url} for i, e in enumerate(emulators)],
                                  "expected_classes": LTX, "poll_interval": poll}))
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(EXPORTER), "--config", str(config), "--listen", "127.0.0.1",
                             "--port", str(port)], stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d" % port
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http_request(url, "GET", "/ready", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the exporter did not become ready")
            time.sleep(0.05)
        # both instances polled and their /object_info fetched: the start-up is not part of the figures
        while http_request(url, "GET", "/health", timeout=2).status != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the exporter did not see every instance healthy")
            time.sleep(0.05)
        yield proc, url
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def scraper(url):
    """Prometheus' part, in a process of its own as Prometheus is: GET /metrics every second."""
    code = ("import time, urllib.request\nwhile True:\n    time.sleep(1)\n"
            "    urllib.request.urlopen(%r, timeout=5).read()\n" % (url + "/metrics"))
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def graph():
    # The image goes back over the WebSocket: files piling up in output/ would slow every later save (a drift).
    return {"1": {"class_type": "EmptyImage",
                  "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": random.randint(0, 0xFFFFFF)}},
            "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}


def round_trips(emu, seconds):
    """Seconds per /prompt round trip (POST, then the job's end on the WebSocket), one after the other for `seconds`."""
    times = []
    end = time.perf_counter() + seconds
    with emu.ws("bench-exporter") as ws:
        ws.recv_json()
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            answer = emu.post_json("/prompt", {"prompt": graph(), "client_id": "bench-exporter"})
            prompt_id = answer.json()["prompt_id"]
            ws.collect_until(lambda m: m["type"] == "executing" and m["data"].get("node") is None
                             and m["data"].get("prompt_id") == prompt_id, timeout=30)
            times.append(time.perf_counter() - t0)
    return times


def latency(url, path, n):
    times = []
    for dummy in range(n):
        t0 = time.perf_counter()
        answer = http_request(url, "GET", path, timeout=10)
        times.append(time.perf_counter() - t0)
        assert answer.status in (200, 503), answer.status
    return times


def ms(values, q=None):
    if q is None:
        return statistics.median(values) * 1000
    return sorted(values)[min(len(values) - 1, int(len(values) * q))] * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--phase-seconds", type=float, default=5.0, help="length of a phase (a few poll intervals)")
    parser.add_argument("--phases", type=int, default=16, help="phases, off and on alternating in pairs (a multiple of 4)")
    parser.add_argument("--poll", type=float, default=1.0,
                        help="the exporter's poll interval (s); the role's default is 10, 1 is ten times its load on ComfyUI")
    parser.add_argument("--instances", type=int, default=2, help="emulators the exporter watches")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle polling + scraping for the CPU figure")
    args = parser.parse_args()

    env = {"COMFYUI_EMULATOR_OBJECT_INFO_PAD": "1"}
    with tempfile.TemporaryDirectory(prefix="bench-exporter-") as tmp, contextlib.ExitStack() as stack:
        emus = [stack.enter_context(start_emulator(Path(tmp) / ("emu%d" % i), version="0.28.0", env=env,
                                                   custom_nodes=["ComfyUI-LTXVideo"]))
                for i in range(args.instances)]
        object_info_mb = len(emus[0].get("/object_info").body) / 1e6
        round_trips(emus[0], 1.0)  # warm-up

        off, on, on_cpu, on_wall = [], [], 0.0, 0.0
        comfy_cpu = {"off": 0.0, "on": 0.0}  # the emulator's own CPU time, less noisy than latencies on a busy machine
        comfy = emus[0].process.pid
        # off, on, on, off, off, on, ...: a drift of the machine's load hits both sides alike; each phase starts
        # from an empty history.
        for phase in range(args.phases):
            emus[0].post_json("/history", {"clear": True})
            if phase % 4 in (0, 3):
                c0 = cpu_seconds(comfy)
                off += round_trips(emus[0], args.phase_seconds)
                comfy_cpu["off"] += cpu_seconds(comfy) - c0
                continue
            with exporter(Path(tmp) / ("x%d" % phase), emus, args.poll) as (proc, url), scraper(url):
                cpu0, wall0, c0 = cpu_seconds(proc.pid), time.perf_counter(), cpu_seconds(comfy)
                on += round_trips(emus[0], args.phase_seconds)
                comfy_cpu["on"] += cpu_seconds(comfy) - c0
                on_cpu += cpu_seconds(proc.pid) - cpu0
                on_wall += time.perf_counter() - wall0

        # scrape latency, and the exporter's cost at rest (poll every --poll s, scraped every 1 s)
        with exporter(Path(tmp) / "idle", emus, args.poll) as (proc, url):
            metrics = latency(url, "/metrics", 300)
            health = latency(url, "/health", 300)
            size_metrics = len(http_request(url, "GET", "/metrics").body)
            with scraper(url):
                cpu0, wall0 = cpu_seconds(proc.pid), time.perf_counter()
                time.sleep(args.idle)
                idle_share = (cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - wall0)
            rss = peak_rss_mb(proc.pid)

    rate_off, rate_on = len(off) / sum(off), len(on) / sum(on)
    print("comfyops exporter, %d emulated instance(s) (ComfyUI 0.28.0 + LTXVideo, /object_info %.1f MB), poll every %g s, "
          "/metrics scraped every 1 s" % (args.instances, object_info_mb, args.poll))
    print("%-44s %12s %12s" % ("", "median", "p95"))
    print("%-44s %10.2f ms %10.2f ms" % ("scrape GET /metrics (%d bytes)" % size_metrics, ms(metrics), ms(metrics, 0.95)))
    print("%-44s %10.2f ms %10.2f ms" % ("GET /health", ms(health), ms(health, 0.95)))
    print("%-44s %10.2f ms %10.2f ms" % ("/prompt round trip without the exporter", ms(off), ms(off, 0.95)))
    print("%-44s %10.2f ms %10.2f ms" % ("/prompt round trip with the exporter", ms(on), ms(on, 0.95)))
    print("exporter CPU: %.2f %% of one core at rest, %.2f %% while jobs run; peak RSS %.1f MB"
          % (idle_share * 100, on_cpu / on_wall * 100 if on_wall else float("nan"), rss))
    per_off, per_on = comfy_cpu["off"] / len(off), comfy_cpu["on"] / len(on)
    print("ComfyUI CPU per round trip: without %.3f ms, with %.3f ms: ratio %.3f (without / with)"
          % (per_off * 1000, per_on * 1000, per_off / per_on))
    print("round trips/s without %.1f, with %.1f: ratio %.3f (goal >= 0.98); median round trip ratio %.3f; %d / %d round trips"
          % (rate_off, rate_on, rate_on / rate_off, statistics.median(off) / statistics.median(on), len(off), len(on)))
    print("load average at the end: %.2f %.2f %.2f on %d CPUs" % (os.getloadavg() + (os.cpu_count(),)))


if __name__ == "__main__":
    main()
