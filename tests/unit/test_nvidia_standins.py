"""The rig's NVIDIA stand-ins (tests/fixtures/nvidia_standins/) behave like the real tools where the role relies on it."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CTK = ROOT / "tests" / "fixtures" / "nvidia_standins" / "nvidia-ctk"
SMI = ROOT / "tests" / "fixtures" / "nvidia_standins" / "nvidia-smi"
CAPTURES = ROOT / "tests" / "fixtures" / "reference" / "nvidia-smi"


def ctk(*args, env=None):
    return subprocess.run([sys.executable, str(CTK), *args], capture_output=True, text=True, env=env, check=False)


def test_runtime_configure_merges_and_sorts(tmp_path):
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"log-driver": "json-file", "features": {"buildkit": True}}))
    res = ctk("runtime", "configure", "--runtime=docker", f"--config={cfg}", "--set-as-default", "--cdi.enabled")
    assert res.returncode == 0, res.stderr
    text = cfg.read_text()
    data = json.loads(text)
    assert data == {"log-driver": "json-file", "default-runtime": "nvidia",
                    "features": {"buildkit": True, "cdi": True},
                    "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}
    assert text == json.dumps(data, indent=4, sort_keys=True) + "\n"


def test_dry_run_prints_and_writes_nothing(tmp_path):
    cfg = tmp_path / "daemon.json"
    res = ctk("runtime", "configure", "--runtime=docker", "--config", str(cfg), "--dry-run")
    assert res.returncode == 0
    assert json.loads(res.stdout) == {"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}
    assert not cfg.exists()


def test_unknown_flag_fails(tmp_path):
    assert ctk("runtime", "configure", "--no-such-flag").returncode != 0


def test_cdi_generate_and_list(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "nvidia-smi").write_text(f"#!/bin/sh\nexec {sys.executable} {SMI} \"$@\"\n")
    (bindir / "nvidia-smi").chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", NVIDIA_SMI_STANDIN_CAPTURES=str(CAPTURES))
    spec = tmp_path / "cdi" / "nvidia.yaml"
    assert ctk("cdi", "generate", f"--output={spec}", env=env).returncode == 0
    assert ctk("cdi", "generate", env=env).stdout == spec.read_text()
    names = ctk("cdi", "list", f"--spec-dir={spec.parent}").stdout.split()
    assert names == ["nvidia.com/gpu=0", "nvidia.com/gpu=GPU-1937a99c-fe79-7f8c-de9a-fa4cf6eae3d2", "nvidia.com/gpu=all"]


def test_cdi_generate_without_driver_fails_like_the_real_one(tmp_path):
    res = subprocess.run(["/usr/bin/env", "-i", f"PATH={tmp_path}", sys.executable, str(CTK), "cdi", "generate"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 1
    assert "failed to initialize NVML" in res.stderr


def test_nvidia_smi_replays_the_captures():
    env = dict(os.environ, NVIDIA_SMI_STANDIN_CAPTURES=str(CAPTURES))
    q = ("--query-gpu=index,uuid,name,memory.total,memory.used,memory.free,driver_version,pci.bus_id,compute_cap,"
         "persistence_mode,mig.mode.current")
    out = subprocess.run([sys.executable, str(SMI), q, "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, env=env, check=False).stdout
    assert out == (CAPTURES / "nvidia-smi-query.csv").read_text()
    assert "CUDA Version: 13.0" in subprocess.run([sys.executable, str(SMI)], capture_output=True, text=True,
                                                  env=env, check=False).stdout
    res = subprocess.run([sys.executable, str(SMI), "--bogus"], capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 2
