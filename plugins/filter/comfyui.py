# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""comfyui_instances: the instance records of one host (module_utils/instances.py owns them); comfyui_list: a list
variable as an operator types it on the command line."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: comfyui_instances
short_description: The ComfyUI instance records of one host
version_added: "0.2.0"
author:
  - comfyops contributors
description:
  - Computes the instances the comfyui role runs on a host, one record each with C(name), C(gpu), C(port),
    C(bind_address), C(url) (how this host reaches it), C(internal_url) (how containers on the C(comfyui) network
    reach it) and C(suffix) (its proxy path segment, V(gpu0), V(cpu1)).
  - Numbers may be strings, as C(-e comfyui_cpu_instances=2) passes them, and a list may be a comma-separated
    string; other bad values fail with a message that names the variable.
  - URLs are right for IPv4, IPv6 (in brackets) and wildcard binds (probed on loopback).
options:
  _input:
    description: The role's settings, a dict with C(device), C(port), C(bind_address), C(container_port),
      C(cpu_instances), C(gpus) (requested indexes) and C(found_gpus) (indexes nvidia-smi found).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Compute the instances
  ansible.builtin.set_fact:
    instances: >-
      {{ {'device': 'cpu', 'port': comfyui_port, 'bind_address': '::1', 'cpu_instances': 2}
         | comfyops.comfyui.comfyui_instances }}
"""

RETURN = r"""
_value:
  description: One record per instance, in order.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.comfyops.comfyui.plugins.module_utils.instances import RecordError, instances, to_list


def comfyui_instances(settings):
    if not isinstance(settings, dict):
        raise AnsibleFilterError("comfyui_instances: expected a dict of settings, got %s" % type(settings).__name__)
    try:
        return instances(
            settings.get("device"), settings.get("port", 8188), settings.get("bind_address", "127.0.0.1"),
            container_port=settings.get("container_port", 8188), cpu_instances=settings.get("cpu_instances", 1),
            gpus=settings.get("gpus"), found_gpus=settings.get("found_gpus"))
    except RecordError as e:
        raise AnsibleFilterError("comfyui role: %s" % e)


def comfyui_list(value, variable="value"):
    """A list from a list or a comma-separated string (-e comfyui_restart_instances=comfyui-gpu0,comfyui-gpu1)."""
    try:
        return to_list(value, variable)
    except RecordError as e:
        raise AnsibleFilterError(str(e))


class FilterModule(object):
    def filters(self):
        return {"comfyui_instances": comfyui_instances, "comfyui_list": comfyui_list}
