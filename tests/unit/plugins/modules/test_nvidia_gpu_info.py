from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.modules import nvidia_gpu_info
from ansible_collections.comfyops.comfyui.plugins.module_utils.nvidia_smi import query_args

NVSMI = Path(__file__).resolve().parents[3] / "fixtures" / "reference" / "nvidia-smi"
QUERY = (NVSMI / "nvidia-smi-query.csv").read_text()
BANNER = (NVSMI / "nvidia-smi.txt").read_text()
NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
             "latest NVIDIA driver is installed and running.")


def fake_smi(tmp_path, query_out=QUERY, query_err="", query_rc=0, banner=BANNER, banner_rc=0):
    """An executable nvidia-smi stand-in that logs its arguments and locale, then replays canned output."""
    d = tmp_path / "bin"
    d.mkdir()
    (d / "query.out").write_text(query_out)
    (d / "query.err").write_text(query_err)
    (d / "banner.out").write_text(banner)
    log = d / "calls.log"
    script = d / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'echo "LC_ALL=$LC_ALL $*" >> %(log)s\n'
        'if [ $# -eq 0 ]; then %(cat)s %(d)s/banner.out; exit %(banner_rc)d; fi\n'
        "%(cat)s %(d)s/query.out; %(cat)s %(d)s/query.err >&2; exit %(query_rc)d\n"
        # absolute cat: some tests empty PATH
        % dict(log=shlex.quote(str(log)), d=shlex.quote(str(d)), cat=shutil.which("cat"),
               banner_rc=banner_rc, query_rc=query_rc)
    )
    script.chmod(0o755)
    return script, log


def gpu_info(run_module, check_mode=False, **args):
    return run_module(nvidia_gpu_info.main, args, check_mode=check_mode)


def test_real_capture(run_module, tmp_path):
    smi, log = fake_smi(tmp_path)
    failed, result = gpu_info(run_module, nvidia_smi_path=str(smi))
    assert not failed
    assert result["changed"] is False
    assert result["available"] is True and result["reason"] is None
    assert result["gpu_count"] == 1
    assert result["driver_version"] == "580.159.04"
    assert result["cuda_version"] == "13.0"
    assert result["nvidia_smi_path"] == str(smi)
    assert result["gpus"] == [dict(
        index=0, uuid="GPU-1937a99c-fe79-7f8c-de9a-fa4cf6eae3d2", name="NVIDIA H100 80GB HBM3",
        memory_total_mib=81559, memory_used_mib=0, memory_free_mib=81079, driver_version="580.159.04",
        pci_bus_id="00000000:00:06.0", compute_capability="9.0", persistence_mode="Enabled", mig_mode="Disabled")]
    assert log.read_text().splitlines() == ["LC_ALL=C " + " ".join(query_args()), "LC_ALL=C "]
    assert result["warnings"] == []


def test_found_in_path(run_module, tmp_path, monkeypatch):
    smi, _log = fake_smi(tmp_path)
    monkeypatch.setenv("PATH", str(smi.parent))
    monkeypatch.setattr(nvidia_gpu_info, "EXTRA_DIRS", [])
    failed, result = gpu_info(run_module)
    assert not failed and result["nvidia_smi_path"] == str(smi) and result["gpu_count"] == 1


def test_check_mode_runs_the_same(run_module, tmp_path):
    smi, _log = fake_smi(tmp_path)
    failed, result = gpu_info(run_module, check_mode=True, nvidia_smi_path=str(smi))
    assert not failed and result["changed"] is False and result["gpu_count"] == 1


def test_multi_gpu_sorted_by_index(run_module, tmp_path):
    line = QUERY.strip()
    lines = [line.replace("0, GPU-1937", "%d, GPU-%d937" % (i, i), 1) for i in (3, 1, 0, 2)]
    smi, _log = fake_smi(tmp_path, query_out="\n".join(lines) + "\n")
    failed, result = gpu_info(run_module, nvidia_smi_path=str(smi))
    assert not failed
    assert [g["index"] for g in result["gpus"]] == [0, 1, 2, 3]
    assert result["gpu_count"] == 4


def test_not_installed(run_module, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(nvidia_gpu_info, "EXTRA_DIRS", [])
    failed, result = gpu_info(run_module)
    assert not failed
    assert result["available"] is False and result["gpus"] == [] and result["gpu_count"] == 0
    assert result["nvidia_smi_path"] is None
    assert result["reason"] == "nvidia-smi not found (no NVIDIA driver installed?)"


@pytest.mark.parametrize("name", ["nope", ""], ids=["missing", "directory"])
def test_explicit_path_not_a_program(run_module, tmp_path, name):
    path = str(tmp_path / name) if name else str(tmp_path)
    failed, result = gpu_info(run_module, nvidia_smi_path=path)
    assert not failed and result["available"] is False
    assert result["reason"] == "nvidia-smi not found or not executable at %s" % path


def test_driver_not_loaded_is_not_a_failure(run_module, tmp_path):
    smi, log = fake_smi(tmp_path, query_out=NO_DRIVER + "\n\n", query_rc=9)
    failed, result = gpu_info(run_module, nvidia_smi_path=str(smi))
    assert not failed
    assert result["available"] is False and result["gpus"] == []
    assert result["reason"] == NO_DRIVER
    assert result["cuda_version"] is None
    assert len(log.read_text().splitlines()) == 1, "no banner call without a GPU"


def test_require_gpu_fails_with_the_reason(run_module, tmp_path):
    smi, _log = fake_smi(tmp_path, query_out="No devices were found\n", query_rc=6)
    failed, result = gpu_info(run_module, nvidia_smi_path=str(smi), require_gpu=True)
    assert failed
    assert result["msg"] == "no NVIDIA GPU available: No devices were found"
    assert result["available"] is False


def test_require_gpu_passes_with_a_gpu(run_module, tmp_path):
    smi, _log = fake_smi(tmp_path)
    failed, _result = gpu_info(run_module, nvidia_smi_path=str(smi), require_gpu=True)
    assert not failed


def test_empty_listing(run_module, tmp_path):
    smi, _log = fake_smi(tmp_path, query_out="")
    failed, result = gpu_info(run_module, nvidia_smi_path=str(smi))
    assert not failed and result["available"] is False and result["reason"] == "nvidia-smi listed no GPUs"


def test_other_errors_fail_with_stderr(run_module, tmp_path):
    smi, _log = fake_smi(tmp_path, query_out="Failed to initialize NVML: Driver/library version mismatch\n"
                                             "NVML library version: 580.95\n", query_rc=18)
    failed, result = gpu_info(run_module, nvidia_smi_path=str(smi))
    assert failed
    assert result["msg"] == ("nvidia-smi failed (rc=18): Failed to initialize NVML: Driver/library version mismatch\n"
                             "NVML library version: 580.95")
    assert result["rc"] == 18


def test_unknown_field_error_uses_stderr(run_module, tmp_path):
    smi, _log = fake_smi(tmp_path, query_out="", query_err='Field "compute_cap" is not a valid field to query.\n',
                         query_rc=2)
    failed, result = gpu_info(run_module, nvidia_smi_path=str(smi))
    assert failed
    assert result["msg"] == 'nvidia-smi failed (rc=2): Field "compute_cap" is not a valid field to query.'
    assert result["stderr"] == 'Field "compute_cap" is not a valid field to query.\n'


@pytest.mark.parametrize("garbage, message", [
    ("Segmentation fault\n", "cannot parse nvidia-smi output: line 1: expected 11 fields"),
    (QUERY.replace("81559", "lots"), "cannot parse nvidia-smi output: line 1: memory.total is not an integer: 'lots'"),
])
def test_garbled_output_fails(run_module, tmp_path, garbage, message):
    smi, _log = fake_smi(tmp_path, query_out=garbage)
    failed, result = gpu_info(run_module, nvidia_smi_path=str(smi))
    assert failed and result["msg"].startswith(message)
    assert result["stdout"] == garbage


def test_banner_failure_leaves_cuda_version_null(run_module, tmp_path):
    smi, _log = fake_smi(tmp_path, banner="boom", banner_rc=3)
    failed, result = gpu_info(run_module, nvidia_smi_path=str(smi))
    assert not failed and result["available"] is True and result["cuda_version"] is None


def test_bad_argument_type(run_module):
    failed, result = gpu_info(run_module, require_gpu="maybe")
    assert failed and "require_gpu" in result["msg"]


def test_nvidia_smi_warnings_become_task_warnings(run_module, tmp_path):
    smi, _log = fake_smi(tmp_path, query_out="WARNING: infoROM is corrupted at gpu 0000:00:06.0\n" + QUERY)
    failed, result = gpu_info(run_module, nvidia_smi_path=str(smi))
    assert not failed and result["gpu_count"] == 1
    assert result["warnings"] == ["nvidia-smi: WARNING: infoROM is corrupted at gpu 0000:00:06.0"]
