from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils.nvidia_smi import (
    _QUERY_FIELDS,
    NvidiaSmiParseError,
    no_gpu_reason,
    parse_cuda_version,
    parse_query_gpu,
    query_args,
    split_warnings,
)

REFERENCE = Path(__file__).resolve().parents[3] / "fixtures" / "reference"
NVSMI = REFERENCE / "nvidia-smi"
GPU = REFERENCE / "comfyui-api" / "gpu-h100"

H100 = dict(
    index=0,
    uuid="GPU-1937a99c-fe79-7f8c-de9a-fa4cf6eae3d2",
    name="NVIDIA H100 80GB HBM3",
    memory_total_mib=81559,
    memory_used_mib=0,
    memory_free_mib=81079,
    driver_version="580.159.04",
    pci_bus_id="00000000:00:06.0",
    compute_capability="9.0",
    persistence_mode="Enabled",
    mig_mode="Disabled",
)


def test_query_args_match_the_reference_capture_command():
    readme = (NVSMI / "README.md").read_text()
    assert "nvidia-smi " + " ".join(query_args()) in readme


def test_parse_reference_capture():
    assert parse_query_gpu((NVSMI / "nvidia-smi-query.csv").read_text()) == [H100]


def test_parse_agrees_with_the_captures_that_have_headers_and_units():
    # the header capture names the unit the nounits numbers are in
    header = next(csv.reader((NVSMI / "nvidia-smi-query-header.csv").open(), skipinitialspace=True))
    assert header[3] == "memory.total [MiB]"
    # a second capture of the same GPU (with ComfyUI running) agrees on the fixed properties
    rows = list(csv.DictReader((GPU / "nvidia-smi_gpu_query.csv").open(), skipinitialspace=True))
    assert len(rows) == 1
    row = rows[0]
    assert row["memory.total [MiB]"] == "%d MiB" % H100["memory_total_mib"]
    assert row["name"] == H100["name"]
    assert row["driver_version"] == H100["driver_version"]
    assert row["pci.bus_id"] == H100["pci_bus_id"]
    assert row["compute_cap"] == H100["compute_capability"]


def _line(**overrides):
    values = dict(zip(_QUERY_FIELDS, (NVSMI / "nvidia-smi-query.csv").read_text().strip().split(", ")))
    values.update(overrides)
    return ", ".join(values[f] for f in _QUERY_FIELDS)


def test_multi_gpu_host():
    lines = [_line(index=str(i), uuid="GPU-%08d" % i, **{"pci.bus_id": "00000000:%02X:00.0" % (0x18 + i)})
             for i in range(8)]
    gpus = parse_query_gpu("\n".join(lines) + "\n")
    assert [g["index"] for g in gpus] == list(range(8))
    assert gpus[7]["uuid"] == "GPU-00000007"
    assert gpus[7]["pci_bus_id"] == "00000000:1F:00.0"
    assert all(g["compute_capability"] == "9.0" for g in gpus)


def test_mig_enabled_and_na_memory():
    text = ("0, GPU-5f1c, NVIDIA A100-SXM4-80GB, 81920, [N/A], [N/A], 550.54.15, 00000000:07:00.0, 8.0, "
            "Enabled, Enabled\n")
    (gpu,) = parse_query_gpu(text)
    assert gpu["mig_mode"] == "Enabled"
    assert gpu["memory_total_mib"] == 81920
    assert gpu["memory_used_mib"] is None and gpu["memory_free_mib"] is None
    assert gpu["compute_capability"] == "8.0"


def test_consumer_gpu_without_mig_and_not_supported_fields():
    text = ("0, GPU-aa, NVIDIA GeForce RTX 4090, 24564, 1187, 22952, 575.57.08, 00000000:01:00.0, 8.9, "
            "[Not Supported], [N/A]\n"
            "1, GPU-bb, NVIDIA GB10, [N/A], [Unknown Error], N/A, 580.95.05, 0000000F:01:00.0, [N/A], Disabled, [N/A]\n")
    rtx, gb10 = parse_query_gpu(text)
    assert rtx["mig_mode"] is None and rtx["persistence_mode"] is None
    assert rtx["memory_used_mib"] == 1187
    assert gb10["memory_total_mib"] is None and gb10["memory_used_mib"] is None and gb10["memory_free_mib"] is None
    assert gb10["compute_capability"] is None


def test_blank_lines_and_crlf_are_ignored():
    assert parse_query_gpu("\r\n" + _line() + "\r\n\r\n") == [H100]
    assert parse_query_gpu("") == []


@pytest.mark.parametrize("text, message", [
    ("0, GPU-1, NVIDIA H100\n", "line 1: expected 11 fields"),
    (_line() + "\n" + _line() + ", extra\n", "line 2: expected 11 fields"),
    ("Segmentation fault\n", "line 1: expected 11 fields"),
    (_line(index="zero"), "line 1: index is not an integer: 'zero'"),
    (_line(index="[N/A]"), "line 1: no GPU index"),
    (_line(**{"memory.total": "81559 MiB"}), "line 1: memory.total is not an integer: '81559 MiB'"),
    (_line(compute_cap="sm_90"), "line 1: compute_cap is not MAJOR.MINOR: 'sm_90'"),
])
def test_garbled_output_raises(text, message):
    with pytest.raises(NvidiaSmiParseError) as exc:
        parse_query_gpu(text)
    assert str(exc.value).startswith(message)


@pytest.mark.parametrize("path", [
    NVSMI / "nvidia-smi.txt",
    GPU / "nvidia-smi_before_start.txt",
    GPU / "nvidia-smi_comfyui_idle.txt",
    GPU / "nvidia-smi_comfyui_after_prompt.txt",
])
def test_cuda_version_from_real_banners(path):
    assert parse_cuda_version(path.read_text()) == "13.0"


@pytest.mark.parametrize("text, expected", [
    ("| NVIDIA-SMI 570.133.20   Driver Version: 570.133.20   CUDA Version: 12.8     |", "12.8"),
    ("    CUDA Version                          : 12.4", "12.4"),  # nvidia-smi -q style
    ("no banner at all", None),
    ("", None),
    (None, None),
])
def test_cuda_version_variants(text, expected):
    assert parse_cuda_version(text) == expected


@pytest.mark.parametrize("output, reason", [
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
     "NVIDIA driver is installed and running.\n\n",
     "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
     "NVIDIA driver is installed and running."),
    ("No devices were found\n", "No devices were found"),
    ("\nNVIDIA-SMI couldn't find libnvidia-ml.so library in your system. Please make sure that the NVIDIA Display "
     "Driver is properly installed and present in your system.\n",
     "NVIDIA-SMI couldn't find libnvidia-ml.so library in your system. Please make sure that the NVIDIA Display "
     "Driver is properly installed and present in your system."),
    ("Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 580.95\n", None),
    ('Field "compute_cap" is not a valid field to query.\n', None),
    ("", None),
])
def test_no_gpu_reason(output, reason):
    assert no_gpu_reason(output) == reason


def test_split_warnings():
    text = "WARNING: infoROM is corrupted at gpu 0000:04:00.0\n" + _line() + "\n"
    rest, warnings = split_warnings(text)
    assert warnings == ["WARNING: infoROM is corrupted at gpu 0000:04:00.0"]
    assert parse_query_gpu(rest) == [H100]
    assert split_warnings(None) == ("", [])
