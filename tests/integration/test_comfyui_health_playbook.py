"""comfyui_health through ansible-playbook (real AnsiballZ packaging, real sockets) against the ComfyUI emulator.

The emulator runs as ComfyUI 0.28.0 with a simulated GPU and three node packs: the ComfyUI-LTXVideo stand-in
and ansible_probe_nodes load, broken_pack fails to import (its class BrokenPackNode never appears, while the
server itself runs normally, as upstream).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emulator_helpers import Emulator, emulator_command, free_port, prepare_tree, spawn, start_emulator

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).resolve().parent / "health" / "health.yml"
LTX_CLASSES = [n for n in (ROOT / "tests/fixtures/reference/comfyui-api/ltxvideo_classes.txt").read_text().splitlines()
               if n.strip()]
MODEL = "ltx-2.3-22b-dev.safetensors"


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("health-emulator")
    with start_emulator(workdir, custom_nodes=["ComfyUI-LTXVideo", "ansible_probe_nodes", "broken_pack"],
                        version="0.28.0", cpu=False, args=["--cuda-device", "0"]) as emulator:
        # ComfyUI lists model files live, no restart needed
        (emulator.root / "models" / "checkpoints" / MODEL).write_bytes(b"")
        yield emulator


def playbook(tmp_path, variables, check=False):
    """(rc, result of the comfyui_health task, msg of the first failure) of one ansible-playbook run."""
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(variables))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
           # the controller's Python for the local "target": discovery may find one without ansible's deps
           "-e", "ansible_python_interpreter=" + sys.executable, "-e", "@" + str(vars_file), str(PLAYBOOK)]
    if check:
        cmd.append("--check")
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=240)
    try:
        tasks = json.loads(proc.stdout)["plays"][0]["tasks"]
    except (ValueError, KeyError, IndexError):
        pytest.fail("ansible-playbook gave no JSON result (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout,
                                                                               proc.stderr))
    failures = [t["hosts"]["localhost"]["msg"] for t in tasks if t["hosts"]["localhost"].get("failed")]
    return proc.returncode, tasks[0]["hosts"]["localhost"], failures


@pytest.mark.parametrize("check", [False, True], ids=["run", "check_mode"])
def test_healthy_when_only_loaded_classes_are_expected(emu, tmp_path, check):
    rc, result, failures = playbook(tmp_path, dict(
        health_instances=[{"name": "gpu0", "url": emu.url}],
        health_expected_classes=LTX_CLASSES + ["AnsibleProbeNode", "KSampler"],
        health_required_models={"checkpoints": [MODEL]},
        health_require_gpu=True,
        health_min_vram_mb=80000,
    ), check=check)
    assert (rc, failures) == (0, [])
    assert result["changed"] is False and result["healthy"] is True
    (inst,) = result["instances"]
    assert inst["healthy"] and inst["problems"] == []
    assert "Set VAE Decoder Noise" in LTX_CLASSES and inst["missing_classes"] == []
    assert inst["versions"]["comfyui"] == "0.28.0"
    assert inst["devices"][0]["type"] == "cuda" and inst["devices"][0]["vram_total_mb"] >= 80000
    assert inst["queue"] == {"running": 0, "pending": 0}
    assert inst["checks"]["object_info"]["class_count"] > 800


@pytest.mark.parametrize("check", [False, True], ids=["run", "check_mode"])
def test_broken_pack_classes_are_reported_missing(emu, tmp_path, check):
    # the pack was really installed and really failed: the emulator logged upstream's import error
    assert "broken_pack module for custom nodes: No module named" in emu.log_text()
    rc, result, failures = playbook(tmp_path, dict(
        health_instances=[{"name": "gpu0", "url": emu.url}],
        health_expected_classes=["LTXVBaseSampler", "Set VAE Decoder Noise", "AnsibleProbeNode", "BrokenPackNode"],
        health_required_models=["checkpoints/" + MODEL, "checkpoints/ltx-2.3-22b-distilled-1.1.safetensors"],
    ), check=check)
    assert rc == 2
    assert failures == ["ComfyUI health failed: gpu0 (%s): object_info missing classes: BrokenPackNode; "
                        "models missing: checkpoints/ltx-2.3-22b-distilled-1.1.safetensors" % emu.url]
    inst = result["instances"][0]
    assert inst["missing_classes"] == ["BrokenPackNode"]
    assert inst["checks"]["ui"]["ok"] and inst["checks"]["system_stats"]["ok"] and inst["checks"]["queue"]["ok"]


def test_report_only(emu, tmp_path):
    rc, result, failures = playbook(tmp_path, dict(
        health_instances=[emu.url],
        health_expected_classes=["BrokenPackNode"],
        health_fail_on_unhealthy=False,
    ))
    assert (rc, failures) == (0, [])
    assert result["healthy"] is False
    assert result["instances"][0]["problems"] == ["object_info missing classes: BrokenPackNode"]


def test_waits_for_a_slow_start_and_names_an_instance_that_never_comes(emu, tmp_path):
    slow_port, down_port = free_port(), free_port()
    root = prepare_tree(tmp_path / "slow", custom_nodes=["ansible_probe_nodes"])
    process = spawn(root, emulator_command(slow_port), tmp_path / "slow.log",
                    # longer than ansible-playbook takes to reach the task (~2-3 s), so the module must wait
                    env={"COMFYUI_EMULATOR_STARTUP_DELAY": "6"})
    slow = Emulator(root, slow_port, process, tmp_path / "slow.log")
    try:
        rc, result, failures = playbook(tmp_path, dict(
            health_instances=[{"name": "gpu0", "url": emu.url},
                              {"name": "gpu1", "url": slow.url},
                              {"name": "gpu2", "url": "http://127.0.0.1:%d" % down_port}],
            health_expected_classes=["AnsibleProbeNode"],
            health_wait_timeout=10,
        ))
    finally:
        returncode = slow.stop()
    assert returncode == 0
    gpu0, gpu1, gpu2 = result["instances"]
    assert rc == 2
    assert gpu0["healthy"] and gpu0["ready_after_s"] < 1
    # it was probed before it listened, and retried (delay 0.2 s) until it did
    assert gpu1["healthy"] and gpu1["ready_after_s"] >= 0.2
    assert not gpu2["healthy"]
    assert failures == ["ComfyUI health failed: gpu2 (http://127.0.0.1:%d): %s" % (down_port, gpu2["error"])]
    assert gpu2["error"].startswith("not ready within 10 s: GET http://127.0.0.1:%d/system_stats: " % down_port)
