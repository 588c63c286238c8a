#!/usr/bin/env python
"""What does a no-op run of comfyui_custom_node cost per pack, next to ansible.builtin.git on the same repositories?

Makes a local git repository of the ComfyUI-LTXVideo stand-in (tests/fixtures/node_packs, two commits and a tag),
puts --packs copies of it (pack<i>) into a store with comfyui_custom_node (requirements exported, as the comfyui
role does), clones the same copies with ansible.builtin.git (same version), then times N no-op runs of each, taking
turns. --version picks what both are pinned to: a full commit (default) or the tag.

Both modules run **in-process** (main() with the arguments patched in, the JSON it prints swallowed), so the
figures are the modules' own work: argument parsing plus their git subprocesses and file reads, without
ansible-playbook's start-up and AnsiballZ transfer, which are the same for both. comfyui_custom_node handles all
packs in one call (that is its interface); its per-pack time is the call's time divided by --packs.
ansible.builtin.git takes one call per pack. A recording wrapper around git counts the git processes each starts
per pack on a no-op run.

Run from the repo root:  .venv/bin/python bench/custom_node_noop.py [-n 20] [--packs 4] [--version commit|tag]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".ansible" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "comfyops" / "comfyui"
sys.path.insert(0, str(ROOT / "tests" / "integration" / "custom_node"))

from repos import PackRepo, RecordingGit  # noqa: E402


def import_modules():
    # the same symlink tests/conftest.py creates, so module code imports by its collection path
    if not LINK.exists():
        LINK.parent.mkdir(parents=True, exist_ok=True)
        LINK.symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(COLLECTIONS))
    from ansible.modules import git as builtin_git
    from ansible_collections.comfyops.comfyui.plugins.modules import comfyui_custom_node
    return comfyui_custom_node, builtin_git


def call(module, args):
    """Run module.main() in-process; returns (seconds, result dict)."""
    from ansible.module_utils.testing import patch_module_args

    out = io.StringIO()
    started = time.perf_counter()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit:
            pass
    elapsed = time.perf_counter() - started
    result = json.loads(out.getvalue())
    if result.get("failed"):
        raise SystemExit("%s failed: %s" % (module.__name__, result.get("msg")))
    return elapsed, result


def ms(seconds):
    return "%7.2f ms" % (seconds * 1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=20, help="timed no-op runs of each module (default 20)")
    parser.add_argument("--packs", type=int, default=4, help="packs per run (default 4)")
    parser.add_argument("--version", choices=["commit", "tag"], default="commit",
                        help="pin both modules to the full commit (default) or to a tag")
    opts = parser.parse_args()
    ours, builtin_git = import_modules()

    with tempfile.TemporaryDirectory(prefix="custom-node-bench-") as tmp:
        tmp = Path(tmp)
        repo = PackRepo(tmp / "repo", "ComfyUI-LTXVideo")
        repo.tag("v1")
        repo.commit("second commit", {"NOTES.md": "x\n"})
        version = repo.commits[0] if opts.version == "commit" else "v1"
        names = ["pack%d" % i for i in range(opts.packs)]
        ours_args = dict(store_dir=str(tmp / "store"), requirements_dir=str(tmp / "build" / "reqs"),
                         packs=[dict(name=n, repo=repo.url, version=version) for n in names])
        git_args = [dict(repo=repo.url, dest=str(tmp / "git" / n), version=version) for n in names]

        _t, first = call(ours, ours_args)
        assert first["changed"], first
        for args in git_args:
            call(builtin_git, args)

        ours_times, git_times = [], []
        for _run in range(opts.runs):
            elapsed, result = call(ours, ours_args)
            assert not result["changed"], result
            ours_times.append(elapsed / opts.packs)
            per_pack = []
            for args in git_args:
                elapsed, result = call(builtin_git, args)
                assert not result["changed"], result
                per_pack.append(elapsed)
            git_times.append(sum(per_pack) / opts.packs)

        recorder = RecordingGit(tmp / "rec")
        call(ours, dict(ours_args, git_bin=str(recorder.bin)))
        ours_git = recorder.commands()
        recorder.clear()
        for args in git_args:
            call(builtin_git, dict(args, executable=str(recorder.bin)))
        builtin_git_calls = recorder.commands()

    print("no-op run, in-process, %d pack(s) pinned to a %s, %d runs each"
          % (opts.packs, opts.version, opts.runs))
    print("%-22s %10s %10s %10s   git processes per pack" % ("per pack", "median", "p95", "min"))
    medians = {}
    for label, times, calls in (("comfyui_custom_node", ours_times, ours_git),
                                ("ansible.builtin.git", git_times, builtin_git_calls)):
        times = sorted(times)
        medians[label] = statistics.median(times)
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        kinds = ", ".join("%s %g" % (k, calls.count(k) / opts.packs) for k in sorted(set(calls)))
        print("%-22s %10s %10s %10s   %g%s" % (label, ms(medians[label]), ms(p95), ms(times[0]),
                                               len(calls) / opts.packs, " (%s)" % kinds if kinds else ""))
    print("ratio (ansible.builtin.git / comfyui_custom_node, medians): %.1fx"
          % (medians["ansible.builtin.git"] / medians["comfyui_custom_node"]))


if __name__ == "__main__":
    main()
