"""comfyui_workflow through ansible-playbook (AnsiballZ, real sockets) against the ComfyUI emulator: a run followed
over the WebSocket with its output fetched, creates-skipping, a validation error reported with its node, a timeout
that interrupts the job, and ten concurrent runs (async) that all complete with their own outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emulator_helpers import start_emulator

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).resolve().parent / "workflow" / "workflow.yml"
TINY = ROOT / "playbooks" / "files" / "workflows" / "tiny_image.json"

SLOW = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "slow", "clip": ["1", 1]}},
    "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "4": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 5, "steps": 600, "cfg": 1.0,
                                               "sampler_name": "euler", "scheduler": "simple", "positive": ["2", 0],
                                               "negative": ["2", 0], "latent_image": ["3", 0], "denoise": 1.0}},
    "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "slow"}},
}


def run_playbook(playbook, variables, tmp_path, timeout=240, inventory="localhost,"):
    """(rc, {task name: {host: result}}) of one ansible-playbook run with the JSON callback."""
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(variables))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, "--forks", "12",
           "-e", "ansible_python_interpreter=" + sys.executable, "-e", "@" + str(vars_file), str(playbook)]
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=timeout)
    try:
        plays = json.loads(proc.stdout)["plays"]
    except (ValueError, KeyError, IndexError):
        pytest.fail("ansible-playbook gave no JSON result (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout,
                                                                               proc.stderr))
    return proc.returncode, {t["task"]["name"]: t["hosts"] for play in plays for t in play["tasks"]}


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow-emulator")
    with start_emulator(workdir, env={"COMFYUI_EMULATOR_STEP_SECONDS": "0.05"}) as emulator:
        (emulator.root / "models" / "checkpoints" / "tiny.safetensors").write_bytes(b"")
        yield emulator


def test_workflow_playbook(emu, tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"localhost": {}}, "children": {"wf_concurrent": {
        "hosts": {"run%d" % i: {"wf_index": i} for i in range(10)}}}}}))
    rc, tasks = run_playbook(PLAYBOOK, dict(wf_url=emu.url, wf_tiny=str(TINY), wf_slow=SLOW,
                                            wf_dest=str(tmp_path / "out")), tmp_path, inventory=str(inventory))
    assert rc == 0, tasks
    one = {name: hosts.get("localhost") for name, hosts in tasks.items()}

    direct = one["Tiny workflow, followed over the WebSocket, outputs fetched"]
    assert direct["changed"] and direct["status"] == "success" and direct["progress_via"] == "websocket"
    (path,) = direct["output_paths"]
    assert Path(path).read_bytes().startswith(b"\x89PNG") and Path(path).name.startswith("direct_")
    assert direct["outputs"][0]["media"]["valid"] is True

    skipped = one["The same run is skipped once its output exists"]
    assert skipped["status"] == "skipped" and skipped["changed"] is False

    invalid = one["A validation error names the node"]
    assert invalid["failed"] and invalid["status"] == "rejected"
    assert "node 1 (EmptyImage, 'Image') input width: Value 99999 bigger than max of 16384" in invalid["msg"]

    timed_out = one["A job that outlives job_timeout is interrupted"]
    assert timed_out["failed"] and timed_out["status"] == "timeout" and timed_out["interrupted"] is True
    history = emu.get_json("/history/" + timed_out["prompt_id"])[timed_out["prompt_id"]]
    assert history["status"]["messages"][-1][0] == "execution_interrupted"  # it stopped well before 600 steps

    results = tasks["Run the tiny workflow"]
    assert sorted(results) == ["run%d" % i for i in range(10)]
    ids = set()
    for host, r in results.items():
        assert r["status"] == "success" and r["progress_via"] == "websocket", r
        (out,) = r["outputs"]
        assert out["filename"].startswith("concurrent_%s_" % host)
        assert Path(out["path"]).parent == tmp_path / "out" / "concurrent" / host
        assert Path(out["path"]).stat().st_size > 0
        ids.add(r["prompt_id"])
    assert len(ids) == 10
    # nothing is left queued or running
    assert emu.get_json("/queue") == {"queue_running": [], "queue_pending": []}
