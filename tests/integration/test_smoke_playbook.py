"""playbooks/smoke.yml against the emulator: instances from the deployment state fact (one direct, one through the
proxy URL a proxy host of comfyui_proxies recorded for it), a tiny job on each with its latency, and the optional
LTX-2 run skipped (with the reason) when the model files are missing."""
from __future__ import annotations

import json
from pathlib import Path

from emulator_helpers import start_emulator
from test_comfyui_workflow_playbook import run_playbook

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "playbooks" / "smoke.yml"


def test_smoke_playbook(tmp_path):
    with start_emulator(tmp_path / "emu") as emu:
        facts = tmp_path / "facts.d"
        facts.mkdir()
        (facts / "comfyops.fact").write_text(json.dumps({
            "comfyui": {"instances": [
                {"name": "comfyui-cpu0", "gpu": None, "port": emu.port, "url": emu.url},
                {"name": "comfyui-cpu1", "gpu": None, "port": 1, "url": "http://127.0.0.1:1"}]},
            # the proxy (this host too) recorded cpu1 only; ComfyUI's own /api prefix stands in for its sub-path
            "nginx": {"instances": [{"host": "localhost", "name": "comfyui-cpu1", "server": "127.0.0.1:1",
                                     "url": emu.url + "/api/"}]}}))
        inventory = tmp_path / "hosts.yml"
        local = {"hosts": {"localhost": {"ansible_connection": "local"}}}
        inventory.write_text(json.dumps({"gpu_hosts": local, "comfyui_proxies": local}))
        rc, tasks = run_playbook(SMOKE, dict(smoke_fact_path=str(facts), smoke_dest=str(tmp_path / "out"),
                                             smoke_ltx2=True), tmp_path, inventory=str(inventory))
        host = {name: hosts.get("localhost") for name, hosts in tasks.items()}
        assert rc == 0, host
        runs = host["Run the tiny workflow on each instance"]["results"]
        assert [r["item"]["url"] for r in runs] == [emu.url, emu.url + "/api/"]
        assert all(r["status"] == "success" and r["progress_via"] == "websocket" for r in runs)
        report = host["Report latency per instance"]["msg"]
        assert [(r["name"], r["status"]) for r in report] == [("comfyui-cpu0", "success"), ("comfyui-cpu1", "success")]
        assert all(isinstance(r["latency_s"], float) for r in report)
        for name in ("comfyui-cpu0", "comfyui-cpu1"):
            (png,) = (tmp_path / "out" / name / "comfyops_smoke").glob(name + "_*.png")
            assert png.read_bytes().startswith(b"\x89PNG")
        skipped = host["Report why the LTX-2 run is skipped"]["msg"]
        assert "models missing: checkpoints/ltx-2.3-22b-distilled-1.1.safetensors" in skipped
        assert host["Generate a short clip"].get("skipped") is True
