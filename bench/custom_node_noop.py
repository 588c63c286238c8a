#!/usr/bin/env python
"""What does a no-op run of comfyui_custom_node cost per pack, next to ansible.builtin.git on the same checkouts?

Makes a local git repository of the ComfyUI-LTXVideo stand-in (tests/fixtures/node_packs, two commits), installs
--packs copies of it pinned to the first commit (as custom_nodes/pack<i>) with comfyui_custom_node, clones the same
copies with ansible.builtin.git (version = the same commit), then times N no-op runs of each, taking turns.

Both modules run **in-process** (main() with the arguments patched in, the JSON it prints swallowed), so the figures
are the modules' own work: argument parsing plus their git (and docker) subprocesses, without ansible-playbook's
start-up and AnsiballZ transfer, which are the same for both. comfyui_custom_node handles all packs in one call
(that is its interface); its per-pack time is the call's time divided by --packs. ansible.builtin.git takes one
call per pack. With containers (the default here) comfyui_custom_node also runs one `docker inspect` per call to
check the image; a stand-in script answers it (the real docker CLI costs more, once per call, not per pack).

Also counts, with a recording wrapper around git, the git processes each module starts per pack on a no-op run.

Run from the repo root:  .venv/bin/python bench/custom_node_noop.py [-n 20] [--packs 4] [--no-containers]
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
    return "%7.1f ms" % (seconds * 1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=20, help="timed no-op runs of each module (default 20)")
    parser.add_argument("--packs", type=int, default=4, help="packs per run (default 4)")
    parser.add_argument("--no-containers", action="store_true",
                        help="leave out containers (no docker inspect, no pip): the pure git/file-system cost")
    opts = parser.parse_args()
    ours, builtin_git = import_modules()

    with tempfile.TemporaryDirectory(prefix="custom-node-bench-") as tmp:
        tmp = Path(tmp)
        repo = PackRepo(tmp / "repo", "ComfyUI-LTXVideo")
        repo.commit("second commit", {"NOTES.md": "x\n"})
        pinned = repo.commits[0]
        docker = tmp / "docker"
        # stand-in docker: every call succeeds (the first run's pip exec and restart); inspect gets a fixed image ID
        docker.write_text("#!/bin/sh\necho sha256:%s\n" % ("0" * 64))
        docker.chmod(0o755)
        names = ["pack%d" % i for i in range(opts.packs)]
        ours_args = dict(
            custom_nodes_dir=str(tmp / "custom_nodes"), docker_bin=str(docker),
            containers=[] if opts.no_containers else ["comfyui-gpu0"],
            packs=[dict(name=n, repo=repo.url, version=pinned) for n in names])
        git_args = [dict(repo=repo.url, dest=str(tmp / "git" / n), version=pinned) for n in names]

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

    print("no-op run, in-process, %d pack(s) pinned to a commit, %d runs each%s"
          % (opts.packs, opts.runs, " (no containers)" if opts.no_containers else " (one stand-in docker inspect per call)"))
    print("%-26s %10s %10s %10s   git processes per pack" % ("per pack", "median", "p95", "min"))
    for label, times, calls in (("comfyui_custom_node", ours_times, ours_git),
                                ("ansible.builtin.git", git_times, builtin_git_calls)):
        times = sorted(times)
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        kinds = ", ".join("%s %g" % (k, calls.count(k) / opts.packs) for k in sorted(set(calls)))
        print("%-26s %10s %10s %10s   %g (%s)" % (label, ms(statistics.median(times)), ms(p95), ms(times[0]),
                                                  len(calls) / opts.packs, kinds))


if __name__ == "__main__":
    main()
