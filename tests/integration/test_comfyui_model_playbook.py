"""comfyui_model through ansible-playbook: files downloaded into the emulator's models dir from a local HTTP server,
an interrupted download kept as a partial file and resumed by the next run, a no-op third run, and the files
visible in the emulator's /models/<folder>."""
from __future__ import annotations

import hashlib
import os

from emulator_helpers import start_emulator
from model_http_server import ModelServer
from test_comfyui_workflow_playbook import run_playbook

from pathlib import Path

PLAYBOOK = Path(__file__).resolve().parent / "models" / "models.yml"
TOKEN = "hf_integration_SECRET_987"


def test_download_interrupt_resume_noop(tmp_path):
    ckpt, lora = os.urandom(6 * 2**20 + 5), os.urandom(2**20)
    with ModelServer() as srv, start_emulator(tmp_path / "emu") as emu:
        srv.add("/ltx-test.safetensors", data=ckpt, token=TOKEN)
        srv.add("/lora-test.safetensors", data=lora, token=TOKEN)
        srv.drop_next("/ltx-test.safetensors", after=4 * 2**20)
        models_dir = emu.root / "models"
        variables = dict(models_dir=str(models_dir), models_token=TOKEN, models_list=[
            dict(url=srv.url + "/ltx-test.safetensors", folder="checkpoints",
                 sha256=hashlib.sha256(ckpt).hexdigest()),
            dict(url=srv.url + "/lora-test.safetensors", folder="loras", filename="ltxv/ltx2/lora-test.safetensors",
                 sha256=hashlib.sha256(lora).hexdigest(), size=len(lora)),
        ])

        rc, tasks = run_playbook(PLAYBOOK, dict(variables, models_retries=0), tmp_path)
        first = tasks["Ensure the model files"]["localhost"]
        assert rc == 2 and first["failed"]
        assert "connection closed after %d of %d bytes" % (4 * 2**20, len(ckpt)) in first["msg"]
        assert TOKEN not in str(tasks)
        # the partial file lives in the host-only state dir, next to the models dir (not in the container mount)
        partial = emu.root / ".comfyops/models/partials/checkpoints/ltx-test.safetensors.partial"
        assert partial.stat().st_size == 4 * 2**20
        assert not (models_dir / "checkpoints" / "ltx-test.safetensors.partial").exists()
        assert first["models"][1]["action"] == "downloaded"  # the other file of the list went on
        # ComfyUI does not list the partial file
        assert emu.get_json("/models/checkpoints") == []

        rc, tasks = run_playbook(PLAYBOOK, variables, tmp_path)
        second = tasks["Ensure the model files"]["localhost"]
        assert rc == 0 and second["changed"]
        assert [(m["action"], m["resumed_from"]) for m in second["models"]] == [("resumed", 4 * 2**20), ("none", 0)]
        assert srv.gets("/ltx-test.safetensors")[-1]["headers"]["Range"] == "bytes=%d-" % (4 * 2**20)
        assert (models_dir / "checkpoints" / "ltx-test.safetensors").read_bytes() == ckpt

        rc, tasks = run_playbook(PLAYBOOK, variables, tmp_path)
        third = tasks["Ensure the model files"]["localhost"]
        assert rc == 0 and third["changed"] is False
        assert [m["hash_source"] for m in third["models"]] == ["cache", "cache"]

        assert emu.get_json("/models/checkpoints") == ["ltx-test.safetensors"]
        assert emu.get_json("/models/loras") == ["ltxv/ltx2/lora-test.safetensors"]
