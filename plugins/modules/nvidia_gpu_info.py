#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_info
short_description: List the NVIDIA GPUs of a host with nvidia-smi
description:
  - Runs C(nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,memory.free,driver_version,pci.bus_id,compute_cap,persistence_mode,mig.mode.current
    --format=csv,noheader,nounits) and returns one dictionary per GPU.
  - Then runs plain C(nvidia-smi) once to read the C(CUDA Version) of its banner (the newest CUDA the driver supports;
    the query interface has no field for it, and C(nvidia-smi -q) would query every attribute of every GPU).
  - A host without C(nvidia-smi), without a loaded driver or without devices is not an error; the module returns
    RV(available=false), RV(gpus=[]) and the RV(reason). Use O(require_gpu) to fail in that case.
  - Fails, with C(nvidia-smi)'s output, when C(nvidia-smi) fails otherwise (for example "Driver/library version
    mismatch", which needs a reboot) or prints output that cannot be parsed.
version_added: "0.1.0"
author:
  - comfyops contributors (@comfyops)
options:
  nvidia_smi_path:
    description:
      - Path of the C(nvidia-smi) binary. By default it is searched in C(PATH) and in C(/usr/bin), C(/usr/local/bin),
        C(/usr/local/nvidia/bin).
    type: path
  require_gpu:
    description:
      - Fail when no GPU is found, with the reason.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - comfyops.comfyui.read_only
notes:
  - On a MIG-enabled GPU the physical GPU is listed, with RV(gpus[].mig_mode=Enabled); MIG instances are not listed.
  - Values that nvidia-smi reports as C([N/A]) or C([Not Supported]) are returned as null.
  - "Lines such as C(WARNING: infoROM is corrupted at gpu ...) that nvidia-smi prints before its output become
    task warnings."
seealso:
  - module: comfyops.comfyui.comfyui_health
"""

EXAMPLES = r"""
- name: Discover GPUs
  comfyops.comfyui.nvidia_gpu_info:
  register: gpu_info

- name: Require a driver new enough for a CUDA 12.8 image
  ansible.builtin.assert:
    that:
      - gpu_info.available
      - gpu_info.cuda_version is version('12.8', '>=')
    fail_msg: "{{ gpu_info.reason | default('CUDA ' ~ gpu_info.cuda_version ~ ' is older than 12.8', true) }}"

- name: Fail on hosts without a usable GPU
  comfyops.comfyui.nvidia_gpu_info:
    require_gpu: true

- name: Use a driver installed outside PATH
  comfyops.comfyui.nvidia_gpu_info:
    nvidia_smi_path: /opt/nvidia/bin/nvidia-smi
"""

RETURN = r"""
available:
  description: Whether nvidia-smi ran and listed at least one GPU.
  returned: always
  type: bool
  sample: true
reason:
  description: Why no GPU is available (nvidia-smi missing, driver not loaded, no devices); null when RV(available).
  returned: always
  type: str
  sample: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
gpu_count:
  description: Number of GPUs.
  returned: always
  type: int
  sample: 1
gpus:
  description: One entry per GPU, ordered by index. Values nvidia-smi does not report are null.
  returned: always
  type: list
  elements: dict
  contains:
    index: {description: GPU index (as used by CUDA_VISIBLE_DEVICES and ComfyUI's --cuda-device)., type: int, sample: 0}
    uuid: {description: GPU UUID., type: str, sample: GPU-1937a99c-fe79-7f8c-de9a-fa4cf6eae3d2}
    name: {description: Product name., type: str, sample: NVIDIA H100 80GB HBM3}
    memory_total_mib: {description: Total memory in MiB., type: int, sample: 81559}
    memory_used_mib: {description: Used memory in MiB., type: int, sample: 0}
    memory_free_mib: {description: Free memory in MiB., type: int, sample: 81079}
    driver_version: {description: Driver version., type: str, sample: 580.159.04}
    pci_bus_id: {description: PCI bus id., type: str, sample: "00000000:00:06.0"}
    compute_capability: {description: "CUDA compute capability, as a string.", type: str, sample: "9.0"}
    persistence_mode: {description: Persistence mode (Enabled/Disabled)., type: str, sample: Enabled}
    mig_mode: {description: "Current MIG mode (Enabled/Disabled), null where MIG is not supported.", type: str, sample: Disabled}
driver_version:
  description: Driver version (of the first GPU), null without GPUs.
  returned: always
  type: str
  sample: 580.159.04
cuda_version:
  description: Highest CUDA version the driver supports, from the nvidia-smi banner; null if it could not be read.
  returned: always
  type: str
  sample: "13.0"
nvidia_smi_path:
  description: The nvidia-smi binary used, null if none was found.
  returned: always
  type: str
  sample: /usr/bin/nvidia-smi
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comfyops.comfyui.plugins.module_utils.nvidia_smi import (
    NvidiaSmiParseError,
    no_gpu_reason,
    parse_cuda_version,
    parse_query_gpu,
    query_args,
    split_warnings,
)

EXTRA_DIRS = ["/usr/bin", "/usr/local/bin", "/usr/local/nvidia/bin"]


def gather(module, path):
    """(failure, result) for the nvidia-smi at path (None: not found). failure is None, or the fail_json arguments
    when nvidia-smi failed in a way that is not just "no GPU here" or printed what cannot be parsed."""
    result = dict(changed=False, available=False, reason=None, gpu_count=0, gpus=[],
                  driver_version=None, cuda_version=None, nvidia_smi_path=path)
    if path is None:
        result["reason"] = "nvidia-smi not found (no NVIDIA driver installed?)"
        return None, result
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        result["reason"] = "nvidia-smi not found or not executable at %s" % path
        return None, result

    # LC_ALL=C: stable, untranslated messages and number formats
    env = dict(LC_ALL="C", LANG="C")
    rc, out, err = module.run_command([path] + query_args(), environ_update=env)
    if rc != 0:
        reason = no_gpu_reason(out + "\n" + err)
        if reason:
            result["reason"] = reason
            return None, result
        return dict(msg="nvidia-smi failed (rc=%d): %s" % (rc, (err or out).strip()),
                    rc=rc, stdout=out, stderr=err, nvidia_smi_path=path), result
    text, warnings = split_warnings(out)
    for warning in warnings:
        module.warn("nvidia-smi: %s" % warning)
    try:
        gpus = parse_query_gpu(text)
    except NvidiaSmiParseError as e:
        return dict(msg="cannot parse nvidia-smi output: %s" % e, rc=rc, stdout=out, stderr=err,
                    nvidia_smi_path=path), result
    if not gpus:
        result["reason"] = "nvidia-smi listed no GPUs"
        return None, result

    gpus.sort(key=lambda g: g["index"])
    # the CUDA version is informational: a banner that cannot be read leaves it null instead of failing
    rc, banner, _err = module.run_command([path], environ_update=env)
    result.update(
        available=True,
        gpus=gpus,
        gpu_count=len(gpus),
        driver_version=gpus[0]["driver_version"],
        cuda_version=parse_cuda_version(banner) if rc == 0 else None,
    )
    return None, result


def report(module, failure, result):
    if failure:
        module.fail_json(**failure)
    if module.params["require_gpu"] and not result["available"]:
        module.fail_json(msg="no NVIDIA GPU available: %s" % result["reason"], **result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nvidia_smi_path=dict(type="path"),
            require_gpu=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    path = module.params["nvidia_smi_path"] or module.get_bin_path("nvidia-smi", opt_dirs=EXTRA_DIRS)
    failure, result = gather(module, path)
    report(module, failure, result)


if __name__ == "__main__":
    main()
