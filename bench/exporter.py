#!/usr/bin/env python
"""What does the comfyops exporter cost, and what does it cost ComfyUI?

Starts ComfyUI emulators (0.28.0 with the ComfyUI-LTXVideo stand-in and COMFYUI_EMULATOR_OBJECT_INFO_PAD=1, so
/object_info is real-sized, ~1.5 MB) and measures, on this machine:
  * scrape latency: GET /metrics and GET /health of the exporter (watching --instances emulators), median / p95;
  * the exporter's CPU (share of one core) and memory (peak RSS) while it polls every --poll seconds and is scraped
    every second, as the real command in a subprocess;
  * ComfyUI's /prompt round trip (POST a small graph, wait for its "executing: null" on the WebSocket, as clients
    do) on two instances, one watched by the exporter (polling every --poll s, /metrics scraped every 1 s by a
    process of its own) and one not, in alternating half-second blocks, so that the load of a shared machine hits
    both alike; the two swap roles every phase. The ratio is round trips per second watched / unwatched (goal
    >= 0.98); the instances' own CPU time per round trip, watched and unwatched, is printed too.

Run from the repo root:  .venv/bin/python bench/exporter.py [--poll 10] [--phases 4] [--phase-seconds 30] [--instances 2]
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


class Client:
    """A ComfyUI client: POST /prompt, then wait for the job's end on the WebSocket, as n8n or a worker does."""

    def __init__(self, emu):
        self.emu = emu
        self.ws = emu.ws("bench-exporter")
        self.ws.recv_json()

    def round_trips(self, seconds):
        """Seconds per round trip, one job after the other for `seconds`."""
        times = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            answer = self.emu.post_json("/prompt", {"prompt": graph(), "client_id": "bench-exporter"})
            prompt_id = answer.json()["prompt_id"]
            self.ws.collect_until(lambda m: m["type"] == "executing" and m["data"].get("node") is None
                                  and m["data"].get("prompt_id") == prompt_id, timeout=30)
            times.append(time.perf_counter() - t0)
        return times


def paired(watched, unwatched, seconds, block=0.5):
    """Round trips to both instances in alternating blocks; also the ComfyUI CPU time each spent."""
    times = {"with": [], "without": []}
    cpu = {"with": 0.0, "without": 0.0}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for side, client in (("with", watched), ("without", unwatched)):
            c0 = cpu_seconds(client.emu.process.pid)
            times[side] += client.round_trips(block)
            cpu[side] += cpu_seconds(client.emu.process.pid) - c0
    return times, cpu


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


def rate(times):
    return len(times) / sum(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--poll", type=float, default=10.0,
                        help="the exporter's poll interval (s): the role's default 10; 1 is ten times its load on ComfyUI")
    parser.add_argument("--phases", type=int, default=4, help="phases; even, so that each instance is watched in half")
    parser.add_argument("--phase-seconds", type=float, help="length of a phase (default: three poll intervals, 10 s at least)")
    parser.add_argument("--instances", type=int, default=2, help="instances the exporter watches (one of them measured)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle polling + scraping for the CPU figure")
    args = parser.parse_args()
    seconds = args.phase_seconds or max(10.0, 3 * args.poll)  # every phase has its polls

    env = {"COMFYUI_EMULATOR_OBJECT_INFO_PAD": "1"}
    with tempfile.TemporaryDirectory(prefix="bench-exporter-") as tmp, contextlib.ExitStack() as stack:
        # a and b take turns being watched; the exporter watches --instances in all (the others idle)
        emus = [stack.enter_context(start_emulator(Path(tmp) / ("emu%d" % i), version="0.28.0", env=env,
                                                   custom_nodes=["ComfyUI-LTXVideo"]))
                for i in range(max(2, args.instances + 1))]
        a, b, idle = Client(emus[0]), Client(emus[1]), emus[2:]
        object_info_mb = len(emus[0].get("/object_info").body) / 1e6
        a.round_trips(1.0)  # warm-up
        b.round_trips(1.0)

        times = {"with": [], "without": []}
        cpu = {"with": 0.0, "without": 0.0}
        ratios, exporter_cpu, exporter_wall = [], 0.0, 0.0
        for phase in range(args.phases):
            watched, unwatched = (a, b) if phase % 2 == 0 else (b, a)
            for client in (a, b):
                client.emu.post_json("/history", {"clear": True})
            instances = [watched.emu] + idle[:args.instances - 1]
            with exporter(Path(tmp) / ("x%d" % phase), instances, args.poll) as (proc, url), scraper(url):
                cpu0, wall0 = cpu_seconds(proc.pid), time.perf_counter()
                got, spent = paired(watched, unwatched, seconds)
                exporter_cpu += cpu_seconds(proc.pid) - cpu0
                exporter_wall += time.perf_counter() - wall0
            for side in got:
                times[side] += got[side]
                cpu[side] += spent[side]
            ratios.append(rate(got["with"]) / rate(got["without"]))

        # scrape latency, and the exporter's cost at rest (poll every --poll s, scraped every 1 s)
        with exporter(Path(tmp) / "idle", emus[:args.instances], args.poll) as (proc, url):
            metrics = latency(url, "/metrics", 300)
            health = latency(url, "/health", 300)
            size_metrics = len(http_request(url, "GET", "/metrics").body)
            with scraper(url):
                cpu0, wall0 = cpu_seconds(proc.pid), time.perf_counter()
                time.sleep(args.idle)
                idle_share = (cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - wall0)
            rss = peak_rss_mb(proc.pid)

    on, off = times["with"], times["without"]
    print("comfyops exporter watching %d emulated instance(s) (ComfyUI 0.28.0 + LTXVideo, /object_info %.1f MB), "
          "poll every %g s, /metrics scraped every 1 s" % (args.instances, object_info_mb, args.poll))
    print("%-44s %12s %12s" % ("", "median", "p95"))
    print("%-44s %10.2f ms %10.2f ms" % ("scrape GET /metrics (%d bytes)" % size_metrics, ms(metrics), ms(metrics, 0.95)))
    print("%-44s %10.2f ms %10.2f ms" % ("GET /health", ms(health), ms(health, 0.95)))
    print("%-44s %10.2f ms %10.2f ms" % ("/prompt round trip, instance not watched", ms(off), ms(off, 0.95)))
    print("%-44s %10.2f ms %10.2f ms" % ("/prompt round trip, instance watched", ms(on), ms(on, 0.95)))
    print("exporter CPU: %.2f %% of one core at rest, %.2f %% while jobs run; peak RSS %.1f MB"
          % (idle_share * 100, exporter_cpu / exporter_wall * 100, rss))
    print("ComfyUI CPU per round trip: not watched %.3f ms, watched %.3f ms: ratio %.3f"
          % (cpu["without"] / len(off) * 1000, cpu["with"] / len(on) * 1000, (cpu["without"] / len(off)) / (cpu["with"] / len(on))))
    # a and b were each watched in half the phases: the geometric mean cancels a difference between them
    print("round trips/s watched / not watched: %.3f (goal >= 0.98; per phase %s); %d / %d round trips"
          % (statistics.geometric_mean(ratios), " ".join("%.3f" % r for r in ratios), len(on), len(off)))
    print("load average at the end: %.2f %.2f %.2f on %d CPUs" % (os.getloadavg() + (os.cpu_count(),)))


if __name__ == "__main__":
    main()
