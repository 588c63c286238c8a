#!/usr/bin/env python
"""What does NGINX in front of ComfyUI cost? The same instance, direct vs through the proxy's per-instance path.

Measures, for each of the two base URLs:
  * system_stats: GET /system_stats with C concurrent keep-alive clients for D seconds: requests/s, p50, p99
  * ws:           a WebSocket round trip, sequentially for D seconds: open /ws, receive the first `status`
                  message, close (the handshake and one message through the upgrade path): round trips/s, p50, p99
  * prompt:       on one open WebSocket, sequentially: POST /prompt (a tiny fresh graph, keep-alive HTTP) and
                  wait for its final `executing null` message: jobs/s, p50, p99 (what an API client sees)
and prints proxy/direct ratios (throughput ratio goal: >= 0.8).

Against the fleet molecule scenario (instances published on 0.0.0.0, so the controller reaches both):
    molecule create -s nginx && molecule converge -s nginx      # or leave the hosts of `molecule test` up
    .venv/bin/python bench/proxy_overhead.py                    # fleet-gpu0: :8188 vs /comfyui/cpu0/
Against any deployment, give both URLs (run it where both are reachable, e.g. on the ComfyUI host itself):
    bench/proxy_overhead.py --direct http://127.0.0.1:8188/ --proxy http://127.0.0.1/comfyui/gpu0/ [-c 4] [-d 10]
Only the Python standard library and tests/emulator_helpers.py (the WebSocket client) are used.
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from emulator_helpers import WSClient  # noqa: E402


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def http_load(base, clients, seconds):
    parsed = urllib.parse.urlsplit(base)
    path = parsed.path.rstrip("/") + "/system_stats"
    latencies, errors, lock = [], [], threading.Lock()
    stop = time.monotonic() + seconds

    def worker():
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=10)
        mine = []
        while time.monotonic() < stop:
            start = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - start)
            if response.status != 200:
                errors.append(response.status)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _client in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{base}: {len(errors)} non-200 answers, e.g. {errors[0]}")
    return len(latencies) / (time.monotonic() - began), latencies


def ws_roundtrips(base, seconds):
    parsed = urllib.parse.urlsplit(base)
    url = f"ws://{parsed.hostname}:{parsed.port or 80}{parsed.path.rstrip('/')}/ws?clientId=bench"
    latencies = []
    stop = time.monotonic() + seconds
    began = time.monotonic()
    while time.monotonic() < stop:
        start = time.perf_counter()
        with WSClient(url) as ws:
            assert ws.recv_json()["type"] == "status"
        latencies.append(time.perf_counter() - start)
    return len(latencies) / (time.monotonic() - began), latencies


def prompt_roundtrips(base, seconds):
    parsed = urllib.parse.urlsplit(base)
    prefix = parsed.path.rstrip("/")
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=10)
    latencies = []
    with WSClient(f"ws://{parsed.hostname}:{parsed.port or 80}{prefix}/ws?clientId=bench-prompt") as ws:
        ws.recv_json()
        stop = time.monotonic() + seconds
        began = time.monotonic()
        while time.monotonic() < stop:
            graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                                  "color": random.randint(0, 0xFFFFFF)}},
                     "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
            start = time.perf_counter()
            conn.request("POST", prefix + "/prompt", body=json.dumps({"prompt": graph, "client_id": "bench-prompt"}),
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            prompt_id = json.loads(response.read())["prompt_id"]
            ws.collect_until(lambda m: m["type"] == "executing" and m["data"]["node"] is None
                             and m["data"]["prompt_id"] == prompt_id)
            latencies.append(time.perf_counter() - start)
    conn.close()
    return len(latencies) / (time.monotonic() - began), latencies


def scenario_urls():
    addr = subprocess.check_output(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "fleet-gpu0"],
        text=True).strip()
    return f"http://{addr}:8188/", f"http://{addr}/comfyui/cpu0/"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--direct", help="base URL of one instance")
    parser.add_argument("--proxy", help="base URL of the same instance through NGINX")
    parser.add_argument("-c", "--clients", type=int, default=4)
    parser.add_argument("-d", "--seconds", type=float, default=10)
    args = parser.parse_args()
    direct, proxy = (args.direct, args.proxy) if args.direct and args.proxy else scenario_urls()
    print(f"direct: {direct}\nproxy:  {proxy}\n{args.clients} HTTP clients, {args.seconds:g} s per measurement\n")
    print(f"{'measurement':<14}{'via':<8}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    ratios = {}
    for name, run in (("system_stats", lambda b: http_load(b, args.clients, args.seconds)),
                      ("ws", lambda b: ws_roundtrips(b, args.seconds)),
                      ("prompt", lambda b: prompt_roundtrips(b, args.seconds))):
        results = {}
        for via, base in (("direct", direct), ("proxy", proxy)):
            rate, lat = run(base)
            results[via] = (rate, percentile(lat, 99))
            print(f"{name:<14}{via:<8}{rate:>9.0f}{statistics.median(lat) * 1000:>9.2f}{percentile(lat, 99) * 1000:>9.2f}")
        ratios[name] = (results["proxy"][0] / results["direct"][0], results["proxy"][1] / results["direct"][1])
    print("\nproxy / direct:")
    for name, (throughput, p99) in ratios.items():
        verdict = "ok" if throughput >= 0.8 else "BELOW GOAL"
        print(f"  {name:<14} throughput {throughput:.2f} ({verdict}, goal >= 0.8)   p99 latency x{p99:.2f}")


if __name__ == "__main__":
    main()
