#!/usr/bin/env python
"""Downtime a client sees during an upgrade, and what the canary costs (issue: upgrades that never break a host).

Runs against a host converged by the upstream molecule scenario (`molecule converge -s upstream`: the real ComfyUI
behind NGINX): for 2 instances and then 1, it upgrades the set (a new image: one more pip constraint line, so the
canary runs) with the canary on and off, while a poller asks every instance through the proxy, every 0.25 s,
whether it serves the LTXVideo classes. Prints per run: the upgrade's wall time, the seconds no instance served
(the downtime a client of the shared /comfyui/ path sees) and, per instance, the seconds it was away.

    bench/upgrade_downtime.py --inventory .ansible/tmp/molecule.*.upstream/inventory/ansible_inventory.yml
"""
from __future__ import annotations

import argparse
import base64
import glob
import json
import os
import ssl
import subprocess
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "upstream-debian13"
AUTH = "Basic " + base64.b64encode(b"operator:upstream scenario secret").decode()
CONSTRAINTS = ["kornia==0.8.2", "diffusers==0.42.1", "transformers==5.23.0", "timm==1.0.31"]


def address():
    return subprocess.check_output(["docker", "inspect", "-f", '{{(index .NetworkSettings.Networks "comfyops-rig").IPAddress}}',
                                    HOST], text=True).strip()


def serves(url, context):
    try:
        req = urllib.request.Request(url, headers={"Authorization": AUTH})
        with urllib.request.urlopen(req, timeout=1, context=context) as resp:
            return "LTXVBaseSampler" in json.loads(resp.read())
    except Exception:  # noqa: BLE001 - any failure is "not serving"
        return False


def upgrade(inventory, env, instances, marker, canary):
    extra = {"comfyui_cpu_instances": instances, "comfyui_canary": canary,
             "comfyui_pip_constraints": CONSTRAINTS + ["comfyops-bench-marker==%d ; python_version < '3'" % marker]}
    start = time.monotonic()
    res = subprocess.run(["ansible-playbook", "-i", inventory, "comfyops.comfyui.upgrade", "-e", json.dumps(extra)],
                         env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit("upgrade failed:\n" + res.stdout[-3000:] + res.stderr[-2000:])
    return time.monotonic() - start


def measured(inventory, env, instances, marker, canary, base):
    context = ssl._create_unverified_context()
    urls = ["%scpu%d/object_info/LTXVBaseSampler" % (base, n) for n in range(instances)]
    stop, polls = threading.Event(), []

    def poll():
        while not stop.is_set():
            t = time.monotonic()
            polls.append((t, [serves(u, context) for u in urls]))
            time.sleep(max(0.0, 0.25 - (time.monotonic() - t)))
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        seconds = upgrade(inventory, env, instances, marker, canary)
    finally:
        stop.set()
        poller.join()
    step = [b[0] - a[0] for a, b in zip(polls, polls[1:])]
    none = sum(d for d, (_t, ok) in zip(step, polls) if not any(ok))
    away = [round(sum(d for d, (_t, ok) in zip(step, polls) if not ok[n]), 1) for n in range(instances)]
    return seconds, none, away


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    found = glob.glob(os.path.join(ROOT, ".ansible/tmp/molecule.*.upstream/inventory/ansible_inventory.yml"))
    parser.add_argument("--inventory", default=(found or [None])[0])
    args = parser.parse_args()
    env = dict(os.environ, ANSIBLE_HOME=os.path.join(ROOT, ".ansible"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".ansible/upstream-scenario-collections"))
    base = "https://%s/comfyui/" % address()
    marker = int(time.time())
    rows = []
    for instances in (2, 1):
        upgrade(args.inventory, env, instances, marker, True)  # settle on this many instances (not measured)
        for canary in (True, False):
            marker += 1
            seconds, none, away = measured(args.inventory, env, instances, marker, canary, base)
            rows.append((instances, canary, seconds, none, away))
    upgrade(args.inventory, env, 2, 0, True)  # back to the scenario's set
    print("%-9s %-7s %10s %14s  %s" % ("instances", "canary", "upgrade s", "no instance s", "each instance away s"))
    for instances, canary, seconds, none, away in rows:
        print("%-9d %-7s %10.1f %14.1f  %s" % (instances, "on" if canary else "off", seconds, none, away))
    for instances in (2, 1):
        on = [r for r in rows if r[0] == instances and r[1]][0][2]
        off = [r for r in rows if r[0] == instances and not r[1]][0][2]
        print("canary cost with %d instance(s): %.1f s (%.2fx the upgrade without it)" % (instances, on - off, on / off))


if __name__ == "__main__":
    main()
