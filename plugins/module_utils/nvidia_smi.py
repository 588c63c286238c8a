# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse nvidia-smi output into plain data (no Ansible objects, so the parser is testable on its own)."""

from __future__ import annotations

import csv
import re

# The exact field list of the reference capture (tests/fixtures/reference/nvidia-smi/nvidia-smi-query.csv),
# so the fixture is a real sample of the command this collection runs.
_QUERY_FIELDS = (
    "index",
    "uuid",
    "name",
    "memory.total",
    "memory.used",
    "memory.free",
    "driver_version",
    "pci.bus_id",
    "compute_cap",
    "persistence_mode",
    "mig.mode.current",
)


def query_args():
    return ["--query-gpu=" + ",".join(_QUERY_FIELDS), "--format=csv,noheader,nounits"]


# Printed when nvidia-smi exists but there is nothing to query: the host simply has no usable GPU.
# Anything else that fails (e.g. "Driver/library version mismatch", needing a reboot) is a real error.
_NO_GPU_MESSAGES = (
    "couldn't communicate with the NVIDIA driver",
    "No devices were found",
    "couldn't find libnvidia-ml.so",
)

_CUDA_VERSION = re.compile(r"CUDA Version\s*:\s*([0-9]+(?:\.[0-9]+)*)")


class NvidiaSmiParseError(ValueError):
    pass


def _null(value):
    """nvidia-smi prints "[N/A]", "[Not Supported]", "[Unknown Error]", ... (or bare "N/A") for missing values."""
    value = value.strip()
    if not value or value == "N/A" or (value.startswith("[") and value.endswith("]")):
        return None
    return value


def _int(value, field, lineno):
    value = _null(value)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise NvidiaSmiParseError("line %d: %s is not an integer: %r" % (lineno, field, value))


def parse_query_gpu(text):
    """Parse `--query-gpu=<_QUERY_FIELDS> --format=csv,noheader,nounits` into a list of GPU dicts."""
    gpus = []
    lines = [line for line in text.splitlines() if line.strip()]
    # nvidia-smi separates with ", " and never quotes; GPU names contain no commas.
    for lineno, row in enumerate(csv.reader(lines, skipinitialspace=True), start=1):
        if len(row) != len(_QUERY_FIELDS):
            raise NvidiaSmiParseError(
                "line %d: expected %d fields (%s), got %d: %r"
                % (lineno, len(_QUERY_FIELDS), ",".join(_QUERY_FIELDS), len(row), lines[lineno - 1])
            )
        f = dict(zip(_QUERY_FIELDS, row))
        index = _int(f["index"], "index", lineno)
        if index is None:
            raise NvidiaSmiParseError("line %d: no GPU index: %r" % (lineno, lines[lineno - 1]))
        gpus.append(dict(
            index=index,
            uuid=_null(f["uuid"]),
            name=_null(f["name"]),
            memory_total_mib=_int(f["memory.total"], "memory.total", lineno),
            memory_used_mib=_int(f["memory.used"], "memory.used", lineno),
            memory_free_mib=_int(f["memory.free"], "memory.free", lineno),
            driver_version=_null(f["driver_version"]),
            pci_bus_id=_null(f["pci.bus_id"]),
            compute_capability=_compute_cap(f["compute_cap"], lineno),
            persistence_mode=_null(f["persistence_mode"]),
            mig_mode=_null(f["mig.mode.current"]),
        ))
    return gpus


def _compute_cap(value, lineno):
    value = _null(value)
    if value is not None and not re.match(r"^[0-9]+\.[0-9]+$", value):
        raise NvidiaSmiParseError("line %d: compute_cap is not MAJOR.MINOR: %r" % (lineno, value))
    return value


def parse_cuda_version(text):
    """The "CUDA Version: 13.0" of the plain `nvidia-smi` banner (the highest CUDA the driver supports)."""
    match = _CUDA_VERSION.search(text or "")
    return match.group(1) if match else None


def split_warnings(text):
    """(text without them, [warning lines]): nvidia-smi prefixes any output, CSV included, with lines such as
    "WARNING: infoROM is corrupted at gpu 0000:04:00.0"; they are worth reporting, not a parse error."""
    kept, warnings = [], []
    for line in (text or "").splitlines():
        (warnings if line.lstrip().upper().startswith("WARNING:") else kept).append(line)
    return "\n".join(kept), [w.strip() for w in warnings]


def no_gpu_reason(output):
    """The line explaining why there is no GPU, when the output is one of the known "no GPU" messages."""
    for line in (output or "").splitlines():
        if any(msg.lower() in line.lower() for msg in _NO_GPU_MESSAGES):
            return line.strip()
    return None
