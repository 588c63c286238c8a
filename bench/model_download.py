#!/usr/bin/env python
"""Benchmark: comfyops.comfyui.comfyui_model vs aria2c vs ansible.builtin.get_url for a verified download from a
server that caps each connection (as CDNs do).

A local HTTP server (tests/model_http_server.py, its own process) serves a sparse file of --size-gb GiB over
loopback, every connection capped at --rate-mb MiB/s. Each tool downloads it with its SHA-256 checked, side by
side in one run, alternating for --rounds rounds:

* comfyui_model through `ansible localhost -m ...` (real AnsiballZ), --connections ranged connections;
* aria2c (Debian's aria2) with -x/-s --connections and --checksum=sha-256=...;
* get_url through `ansible localhost -m ...` with checksum= (one connection).

Reported per tool: wall time, throughput, throughput / (connections x cap), and what the process tree read:

* rchar: bytes read through read()-family calls, from /proc/self/io of this process, which the kernel credits with
  the I/O of every reaped descendant (ansible, its workers, the module, aria2c). Socket data arrives through
  recv()/recv_into() and is not counted there, so rchar - (the same command's rchar for a 1-byte file) is what
  the tool read back from files after downloading (x file size: 0 = hashed while downloading, 1 = one read);
* max RSS: the largest resident set among the tool's processes (GNU time), for the memory the hash costs;
* read_bytes: bytes fetched from storage (page-cache misses). A file just written is usually still in the page
  cache, so a re-read costs CPU rather than disk here; on a host whose RAM is smaller than the models (22-46 GB
  checkpoints), it is a second full read from disk.

comfyui_model also reports its own bytes_read_back.

Usage: python bench/model_download.py [--size-gb 2] [--rate-mb 20] [--connections 4] [--rounds 1]
                                      [--dir /var/tmp/comfyops-bench] [--tools comfyui_model,aria2c,get_url]
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOOLS = ("comfyui_model", "aria2c", "get_url")
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


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


def measured(cmd, what):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_HOME=str(ROOT / ".ansible"))
    rss_file = tempfile.NamedTemporaryFile(prefix="comfyops-bench-rss-", delete=False)
    rss_file.close()
    if TIME:  # GNU time: the largest resident set of the command and the processes it waited for
        cmd = [TIME, "-f", "%M", "-o", rss_file.name] + cmd
    before = proc_io()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    after = proc_io()
    with open(rss_file.name) as f:
        rss = f.read().strip().splitlines()
    os.unlink(rss_file.name)
    if proc.returncode != 0:
        raise SystemExit("%s failed (rc %d):\n%s\n%s" % (what, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
    io = {k: after[k] - before[k] for k in ("rchar", "wchar", "read_bytes", "write_bytes")}
    io["max_rss_kb"] = int(rss[-1]) if rss and rss[-1].isdigit() else None
    return wall, io, proc.stdout


def adhoc(module, args):
    cmd = [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-o",
           "-e", "ansible_python_interpreter=" + sys.executable, "-m", module, "-a", json.dumps(args)]
    wall, io, out = measured(cmd, module)
    result = json.loads(out.split("=>", 1)[1]) if "=>" in out else {}
    return wall, io, result


def run_tool(tool, url, sha, workdir, connections):
    name = os.path.basename(url)
    if tool == "comfyui_model":
        for d in ("models", ".comfyops"):
            shutil.rmtree(workdir / d, ignore_errors=True)
        wall, io, result = adhoc("comfyops.comfyui.comfyui_model", dict(
            models_dir=str(workdir / "models"), url=url, folder="checkpoints", sha256=sha, min_free_mb=0,
            connections=connections))
        (r,) = result["models"]
        assert r["verified"], r
        return wall, io, dict(read_back=r["bytes_read_back"], connections=r["connections"], module_rate=r["mb_per_s"])
    dest = workdir / tool / name
    shutil.rmtree(dest.parent, ignore_errors=True)
    dest.parent.mkdir(parents=True)
    if tool == "aria2c":
        cmd = ["aria2c", "-x", str(connections), "-s", str(connections), "--checksum=sha-256=" + sha,
               "-d", str(dest.parent), "-o", name, "--file-allocation=none", "--allow-overwrite=true",
               "--auto-file-renaming=false", "--console-log-level=warn", "--summary-interval=0",
               "--download-result=hide", "--quiet=true", url]
        wall, io, _out = measured(cmd, "aria2c")
        return wall, io, dict(connections=connections)
    args = dict(url=url, dest=str(dest), checksum="sha256:" + sha, timeout=600)
    wall, io, _result = adhoc("ansible.builtin.get_url", args)
    return wall, io, dict(connections=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--rate-mb", type=float, default=20.0, help="cap of each connection, MiB/s")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--dir", default="/var/tmp/comfyops-bench")
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    if "aria2c" in tools and not shutil.which("aria2c"):
        raise SystemExit("aria2c not found: apt-get install aria2 (or --tools comfyui_model,get_url)")

    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gb * 2**30)
    free = shutil.disk_usage(workdir).free
    if free < 1.5 * size:
        raise SystemExit("need %.1f GiB free in %s, have %.1f GiB" % (1.5 * size / 2**30, workdir, free / 2**30))
    source = workdir / "served"
    source.mkdir(exist_ok=True)
    big, tiny = source / "big.safetensors", source / "tiny.safetensors"
    with open(big, "wb") as f:
        f.truncate(size)  # sparse: serving it costs no disk reads
    tiny.write_bytes(b"\0")
    sha_big, sha_tiny = zeros_sha256(size), hashlib.sha256(b"\0").hexdigest()

    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "model_http_server.py"),
                               "--rate-mb", str(args.rate_mb), str(big), str(tiny)], stdout=subprocess.PIPE, text=True)
    try:
        base = server.stdout.readline().strip()
        results = {tool: [] for tool in tools}
        overhead = {}
        for tool in tools:
            _wall, io, _extra = run_tool(tool, base + "/tiny.safetensors", sha_tiny, workdir, args.connections)
            overhead[tool] = io["rchar"]
        for _round in range(args.rounds):
            for tool in tools:
                wall, io, extra = run_tool(tool, base + "/big.safetensors", sha_big, workdir, args.connections)
                results[tool].append(dict(wall=wall, **io, **extra))
                for d in (tool, "models", ".comfyops"):
                    shutil.rmtree(workdir / d, ignore_errors=True)  # page cache and disk back for the next tool
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    cap = args.rate_mb
    print("verified download of a %.1f GiB file, each connection capped at %.0f MiB/s, %d round(s), %d CPU(s)"
          % (size / 2**30, cap, args.rounds, os.cpu_count()))
    print("%-14s %5s %9s %9s %11s %15s %14s %12s %12s" % (
        "tool", "conn", "wall s", "MiB/s", "of conn*cap", "file re-read x", "disk read MiB", "read_back x",
        "max RSS MiB"))
    summary = {}
    for tool, runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        rate = size / wall / 2**20
        conns = runs[0]["connections"]
        reread = max(statistics.median(r["rchar"] for r in runs) - overhead[tool], 0)
        disk = statistics.median(r["read_bytes"] for r in runs)
        own = ("%.2f" % (statistics.median(r["read_back"] for r in runs) / size)) if "read_back" in runs[0] else "-"
        rss = [r["max_rss_kb"] for r in runs if r["max_rss_kb"]]
        summary[tool] = dict(rate=rate, reread=reread / size)
        print("%-14s %5d %9.2f %9.1f %10.0f%% %15.2f %14.1f %12s %12s" % (
            tool, conns, wall, rate, 100 * rate / (conns * cap), reread / size, disk / 2**20, own,
            ("%.0f" % (max(rss) / 1024)) if rss else "-"))
    if "comfyui_model" in results:
        rate = statistics.median(r["module_rate"] for r in results["comfyui_model"])
        print("comfyui_model's own rate (without Ansible's start-up): %.1f MiB/s, %.0f%% of connections x cap"
              % (rate, 100 * rate / (results["comfyui_model"][0]["connections"] * cap)))
    for other in ("aria2c", "get_url"):
        if "comfyui_model" in summary and other in summary:
            print("throughput comfyui_model / %s: %.2fx" % (other, summary["comfyui_model"]["rate"] / summary[other]["rate"]))
    print("raw rounds: " + json.dumps(results))


if __name__ == "__main__":
    main()
