#!/usr/bin/env python
"""Benchmark: comfyops.comfyui.comfyui_model vs ansible.builtin.get_url (with checksum) for a verified download.

A local HTTP server (tests/model_http_server.py, its own process) serves a sparse file of --size-gb GiB over
loopback. Each tool downloads it with its SHA-256 checked, through `ansible localhost -m ...` (real AnsiballZ), a
few rounds, alternating. Reported per tool: wall time, throughput, and what the process tree read:

* rchar: bytes read through read()-family calls, from /proc/self/io of this process, which the kernel credits with
  the I/O of every reaped descendant (ansible, its workers, the module). Socket data arrives through recv_into and
  is not counted there (comfyui_model's rchar stays at Ansible's own ~20 MB for a 2 GiB download), so
  rchar - (the same command's rchar for a 1-byte file) is what the tool read back from files after downloading;
* read_bytes: bytes fetched from storage (page-cache misses). A file just written is usually still in the page
  cache, so a re-read costs CPU rather than disk here; on a host whose RAM is smaller than the models (22-46 GB
  checkpoints), it is a second full read from disk.

Usage: python bench/model_download.py [--size-gb 2] [--rounds 2] [--dir /var/tmp/comfyops-bench]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def proc_io():
    fields = {}
    with open("/proc/self/io") as f:
        for line in f:
            k, v = line.split(":")
            fields[k.strip()] = int(v)
    return fields


def zeros_sha256(size):
    h = hashlib.sha256()
    block = bytes(16 * 2**20)
    left = size
    while left:
        n = min(left, len(block))
        h.update(memoryview(block)[:n])
        left -= n
    return h.hexdigest()


def adhoc(module, args):
    cmd = [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-o",
           "-e", "ansible_python_interpreter=" + sys.executable, "-m", module, "-a", json.dumps(args)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_HOME=str(ROOT / ".ansible"))
    before = proc_io()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    after = proc_io()
    if proc.returncode != 0:
        raise SystemExit("%s failed (rc %d):\n%s\n%s" % (module, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
    return wall, {k: after[k] - before[k] for k in ("rchar", "wchar", "read_bytes", "write_bytes")}


def run_tool(tool, url, sha, workdir):
    if tool == "comfyui_model":
        models = workdir / "models"
        shutil.rmtree(models, ignore_errors=True)
        return adhoc("comfyops.comfyui.comfyui_model", dict(
            models_dir=str(models), url=url, folder="checkpoints", sha256=sha, min_free_mb=0))
    dest = workdir / "get_url" / os.path.basename(url)
    shutil.rmtree(dest.parent, ignore_errors=True)
    dest.parent.mkdir(parents=True)
    return adhoc("ansible.builtin.get_url", dict(url=url, dest=str(dest), checksum="sha256:" + sha, timeout=600))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", default="/var/tmp/comfyops-bench")
    args = parser.parse_args()

    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gb * 2**30)
    free = shutil.disk_usage(workdir).free
    if free < 2.5 * size:
        raise SystemExit("need %.1f GiB free in %s, have %.1f GiB" % (2.5 * size / 2**30, workdir, free / 2**30))
    source = workdir / "served"
    source.mkdir(exist_ok=True)
    big, tiny = source / "big.safetensors", source / "tiny.safetensors"
    with open(big, "wb") as f:
        f.truncate(size)  # sparse: serving it costs no disk reads
    tiny.write_bytes(b"\0")
    sha_big, sha_tiny = zeros_sha256(size), hashlib.sha256(b"\0").hexdigest()

    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "model_http_server.py"), str(big), str(tiny)],
                              stdout=subprocess.PIPE, text=True)
    try:
        base = server.stdout.readline().strip()
        results = {"comfyui_model": [], "get_url": []}
        overhead = {}
        for tool in results:
            _wall, io = run_tool(tool, base + "/tiny.safetensors", sha_tiny, workdir)
            overhead[tool] = io["rchar"]
        for _round in range(args.rounds):
            for tool in results:
                wall, io = run_tool(tool, base + "/big.safetensors", sha_big, workdir)
                results[tool].append(dict(wall=wall, **io))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    print("verified download of a %.1f GiB file over loopback, %d round(s), %d CPU(s)"
          % (size / 2**30, args.rounds, os.cpu_count()))
    print("%-14s %9s %10s %12s %16s %14s" % ("tool", "wall s", "MiB/s", "rchar GiB", "file re-read GiB",
                                             "disk read MiB"))
    summary = {}
    for tool, runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        rchar = statistics.median(r["rchar"] for r in runs)
        reread = max(rchar - overhead[tool], 0)
        disk = statistics.median(r["read_bytes"] for r in runs)
        summary[tool] = dict(wall=wall, rate=size / wall / 2**20, reread=reread, rchar=rchar, disk=disk)
        print("%-14s %9.2f %10.0f %12.2f %16.2f %14.1f" % (tool, wall, size / wall / 2**20, rchar / 2**30,
                                                           reread / 2**30, disk / 2**20))
    ratio = summary["comfyui_model"]["rate"] / summary["get_url"]["rate"]
    print("throughput ratio comfyui_model / get_url: %.2fx" % ratio)
    print("data read back from files for the verified download: comfyui_model %.2f x file size, get_url %.2f x file size"
          % (summary["comfyui_model"]["reread"] / size, summary["get_url"]["reread"] / size))
    print("raw rounds: " + json.dumps(results))


if __name__ == "__main__":
    main()
