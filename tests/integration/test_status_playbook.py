"""playbooks/status.yml against the emulator when one recorded instance is down: the table still comes out, with
the live instance healthy and the dead one UNHEALTHY with its problem (the moment an operator needs it most), and
DRIFT for instances Docker does not run. The record is given as ansible_local (extra vars outrank the fact the
playbook reads).
"""
from __future__ import annotations

from emulator_helpers import free_port, start_emulator
from test_comfyui_workflow_playbook import run_playbook

from pathlib import Path

STATUS = Path(__file__).resolve().parents[2] / "playbooks" / "status.yml"


def test_status_shows_a_down_instance_as_unhealthy(tmp_path):
    down = "http://127.0.0.1:%d" % free_port()
    with start_emulator(tmp_path / "emu", version="0.28.0") as emu:
        record = {"comfyui": {
            "instances": [{"name": "comfyops-test-cpu0", "gpu": None, "port": emu.port, "url": emu.url},
                          {"name": "comfyops-test-cpu1", "gpu": None, "port": 1, "url": down}],
            "device": "cpu", "comfyui_version": "0.28.0", "image": "comfyops/comfyui:test", "node_packs": [],
            "changed_at": "2026-12-02T00:00:00Z", "last_error": None}}
        inventory = tmp_path / "hosts.yml"
        inventory.write_text('{"gpu_hosts": {"hosts": {"localhost": {"ansible_connection": "local"}}}}')
        rc, tasks = run_playbook(STATUS, {"ansible_local": {"comfyops": record}, "status_wait_timeout": 3},
                                 tmp_path, inventory=str(inventory))
    result = tasks["Show the status"]["localhost"]
    assert rc == 0, result
    lines = result["msg"]
    assert lines[0].startswith("ComfyUI 0.28.0, image none running, cpu mode"), lines
    rows = {line.split()[0]: line for line in lines[2:] if line.startswith("comfyops-test-cpu")}
    assert rows["comfyops-test-cpu0"].split()[1:4] == [emu.url, "-", "healthy"], lines
    assert rows["comfyops-test-cpu1"].split()[1:4] == [down, "-", "UNHEALTHY"], lines
    problems = lines[lines.index(rows["comfyops-test-cpu1"]) + 1]
    assert problems.startswith("  problems: ") and "system_stats" in problems, lines
    # Docker runs neither (no such containers here)
    assert "DRIFT: comfyops-test-cpu1 has no container (the record lists it)" in lines
