#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: comfyui_health
short_description: Check that ComfyUI instances are up and have the node classes and model files a deployment needs
description:
  - Probes one or more ComfyUI instances over HTTP from the target host and reports a structured result per instance.
  - First waits, up to O(wait_timeout) seconds, until C(GET /system_stats) answers. ComfyUI opens its listener only
    after every node pack has been imported, so this also means the imports are done.
  - Then checks C(GET /) (the UI is served as C(text/html)), C(/system_stats) (versions, devices, VRAM;
    O(require_gpu), O(min_vram_mb)), C(/object_info) (every class of O(expected_classes) is present), C(/queue)
    (running and pending counts) and C(/models/<folder>) (every file of O(required_models) is present).
  - A node pack that fails to import never stops ComfyUI; it only removes its classes. "Server up" therefore proves
    little; list the classes you rely on in O(expected_classes).
  - Instances are probed in parallel (up to O(max_workers) at a time). Within one instance the small checks go
    first and the large C(/object_info) answer (about 1.5 MB on a real server) is fetched once, last.
  - Fails with one message that names every failed check of every instance, unless O(fail_on_unhealthy=false).
  - The module only reads; it never reports a change and runs the same in check mode.
version_added: "0.1.0"
author:
  - comfyops contributors (@comfyops)
options:
  url:
    description:
      - Base URL of a single instance, for example V(http://127.0.0.1:8188), or a proxy path such as
        V(https://gpu01.example.com/comfyui/gpu0/).
      - Mutually exclusive with O(instances); one of the two is required.
    type: str
  instances:
    description:
      - Instances to probe. Each item is either a base URL or a dictionary with C(url) and an optional C(name)
        (used in messages and results; defaults to the host, port and path of the URL). Names must be unique.
      - The instance records the comfyui role keeps (C(ansible_local.comfyops.comfyui.instances)) are accepted as
        they are; their other fields (C(gpu), C(port), C(bind_address), C(internal_url), C(suffix)) are ignored.
    type: list
    elements: raw
  expected_classes:
    description:
      - Node class names that must be keys of C(/object_info), for example V(LTXVBaseSampler) or
        V(Set VAE Decoder Noise). Names may contain spaces; give a YAML list.
      - C(/object_info) is only fetched when this list is not empty.
    type: list
    elements: str
    default: []
  required_models:
    description:
      - Model files that must be listed by C(GET /models/<folder>) (folders are relative to ComfyUI's C(models/)
        directory; names may contain subdirectories, for example V(ltxv/ltx2/lora.safetensors)).
      - 'Either a dictionary of folder to list of file names, or a list whose items are C({folder: ..., name: ...})
        dictionaries or C(folder/name) strings.'
    type: raw
  require_gpu:
    description:
      - Fail unless C(/system_stats) reports at least one device that is not the CPU.
    type: bool
    default: false
  min_vram_mb:
    description:
      - Fail unless a device reports at least this much total VRAM, in MiB (GPU devices when there are any,
        otherwise the CPU device, whose "VRAM" is the RAM).
      - ComfyUI reports the VRAM torch sees, a little less than nvidia-smi's total (81079 vs 81559 MiB on an H100 80GB).
    type: int
  wait_timeout:
    description:
      - Seconds, from the start of the task, to wait for the instances to answer C(/system_stats) before they
        are checked (one deadline for all of them). V(0) tries each instance once.
      - ComfyUI needs about 10 s to start on CPU and more than 20 s on a GPU host (CUDA initialisation and node
        imports), and more with ComfyUI-Manager enabled.
      - Only connection errors, timeouts and 5xx answers (for example a proxy's 502 while ComfyUI starts) are
        retried; a 4xx answer fails at once.
    type: float
    default: 90
  delay:
    description:
      - Seconds between two attempts while waiting.
    type: float
    default: 1
    aliases: [interval]
  fail_on_unhealthy:
    description:
      - Fail the task when an instance is unhealthy. With V(false) the task succeeds and reports RV(healthy=false).
    type: bool
    default: true
  max_workers:
    description:
      - How many instances to probe at the same time.
    type: int
    default: 8
extends_documentation_fragment:
  - comfyops.comfyui.comfyui_http
  - ansible.builtin.action_common_attributes
  - comfyops.comfyui.read_only
notes:
  - ComfyUI has no authentication of its own. O(headers), O(url_username) and O(url_password) are for a reverse
    proxy in front of it.
  - The per-instance C(latency_ms) covers the checks once the instance answered; C(ready_after_s) is the time spent
    waiting for it.
seealso:
  - module: comfyops.comfyui.nvidia_gpu_info
"""

EXAMPLES = r"""
- name: Wait for the local instance and check the LTX-2 classes and model files
  comfyops.comfyui.comfyui_health:
    url: http://127.0.0.1:8188
    wait_timeout: 120
    require_gpu: true
    min_vram_mb: 32000
    expected_classes:
      - LTXVBaseSampler
      - LTXVGemmaCLIPModelLoader
      - Set VAE Decoder Noise
    required_models:
      checkpoints:
        - ltx-2.3-22b-dev.safetensors
      latent_upscale_models:
        - ltx-2.3-spatial-upscaler-x2-1.1.safetensors

- name: Probe one instance per GPU, report only
  comfyops.comfyui.comfyui_health:
    instances: "{{ range(8188, 8188 + gpu_count | int) | map('string') | map('regex_replace', '^', 'http://127.0.0.1:') | list }}"
    fail_on_unhealthy: false
  register: health

- name: Same, with the list written out
  comfyops.comfyui.comfyui_health:
    instances:
      - name: gpu0
        url: http://127.0.0.1:8188
      - name: gpu1
        url: http://127.0.0.1:8189
    required_models:
      - checkpoints/ltx-2.3-22b-dev.safetensors
      - folder: loras
        name: ltxv/ltx2/ltx-2.3-22b-distilled-lora-384-1.1.safetensors

- name: Through the proxy, with basic auth and a private CA
  comfyops.comfyui.comfyui_health:
    url: https://comfy.example.com/comfyui/
    url_username: ops
    url_password: "{{ vault_proxy_password }}"
    ca_path: /etc/ssl/certs/example-ca.pem
    wait_timeout: 0
"""

RETURN = r"""
healthy:
  description: Whether every instance passed every check.
  returned: always
  type: bool
  sample: false
instances:
  description: One result per instance, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Instance name.
      type: str
      sample: gpu0
    url:
      description: Base URL probed.
      type: str
      sample: http://127.0.0.1:8188
    healthy:
      description: Whether all checks of this instance passed.
      type: bool
      sample: true
    problems:
      description: One line per failed check (empty when healthy).
      type: list
      elements: str
      sample: ["object_info missing classes: LTXVBaseSampler, Set VAE Decoder Noise"]
    error:
      description: Why the instance could not be checked at all (it never answered in time, or answered a 4xx),
        else null.
      type: str
      sample: "not ready within 90 s: GET http://127.0.0.1:8188/system_stats: [Errno 111] Connection refused"
    checks:
      description:
        - For each check C(ui), C(system_stats), C(object_info), C(queue) and C(models), a dictionary with C(ok),
          C(latency_ms), C(error) when it failed, C(status) and C(content_type) for C(ui),
          C(class_count) for C(object_info), and C(skipped=true) when there was nothing to check.
      type: dict
      sample:
        ui: {ok: true, status: 200, content_type: text/html, latency_ms: 2.1}
        system_stats: {ok: true, latency_ms: 1.4}
        object_info: {ok: true, class_count: 880, latency_ms: 190.2}
        queue: {ok: true, latency_ms: 1.1}
        models: {ok: true, latency_ms: 1.2}
    versions:
      description: Versions from C(/system_stats).
      type: dict
      contains:
        comfyui: {description: ComfyUI version., type: str, sample: "0.28.0"}
        python: {description: Python version., type: str, sample: "3.12.3"}
        pytorch: {description: PyTorch version., type: str, sample: "2.11.0+cu130"}
        frontend: {description: Installed comfyui-frontend-package version (null if unknown)., type: str, sample: "1.45.21"}
    devices:
      description: Devices from C(/system_stats), VRAM in MiB.
      type: list
      elements: dict
      sample:
        - {name: "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync", type: cuda, index: 0, vram_total_mb: 81079,
           vram_free_mb: 80552}
    queue:
      description: Queue lengths from C(/queue) (null when it could not be read).
      type: dict
      sample: {running: 0, pending: 0}
    missing_classes:
      description: Classes of O(expected_classes) that C(/object_info) lacks.
      type: list
      elements: str
      sample: ["Set VAE Decoder Noise"]
    missing_models:
      description: Files of O(required_models) that are not present, as C(folder/name).
      type: list
      elements: str
      sample: ["checkpoints/ltx-2.3-22b-dev.safetensors"]
    ready_after_s:
      description: Seconds spent waiting until the instance answered (null if it never did).
      type: float
      sample: 0.002
    latency_ms:
      description: Milliseconds from the request that found the instance ready to the end of its checks.
      type: float
      sample: 193.4
"""

from collections import OrderedDict
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import comfyui_http_argument_spec, url_problem
from ansible_collections.comfyops.comfyui.plugins.module_utils.health_probe import failure_message, probe_instances
from ansible_collections.comfyops.comfyui.plugins.module_utils.instances import RECORD_FIELDS


def normalize_instances(url, instances):
    """[(name, url)] from the url or instances option; raises ValueError with a message for the user."""
    items = [url] if url else instances
    if not items:
        raise ValueError("instances must not be empty")
    result = []
    for pos, item in enumerate(items):
        if isinstance(item, str):
            name, base = None, item
        elif isinstance(item, dict):
            # instance records (module_utils/instances.py) are accepted as they are
            unknown = sorted(set(item) - {"name", "url"} - set(RECORD_FIELDS))
            if unknown:
                raise ValueError("instances[%d]: unknown key(s) %s (allowed: name, url and the other fields of an "
                                 "instance record)" % (pos, ", ".join(unknown)))
            name, base = item.get("name"), item.get("url")
        else:
            raise ValueError("instances[%d]: expected a URL or a dict with name and url, got %r" % (pos, item))
        problem = url_problem(base)
        if problem:
            raise ValueError("instances[%d]: %s" % (pos, problem))
        parts = urlsplit(base)
        name = str(name) if name not in (None, "") else parts.netloc + parts.path.rstrip("/")
        result.append((name, base))
    names = [n for n, _u in result]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError("instance names must be unique; repeated: %s (give each a name)" % ", ".join(dupes))
    return result


def normalize_required_models(value):
    """OrderedDict folder -> [names] from the accepted shapes; raises ValueError with a message for the user."""
    wanted = OrderedDict()

    def add(folder, name, where):
        if not isinstance(folder, str) or not folder or "/" in folder:
            raise ValueError("%s: folder must be a models folder name such as checkpoints, got %r" % (where, folder))
        if not isinstance(name, str) or not name:
            raise ValueError("%s: name must be a non-empty file name, got %r" % (where, name))
        names = wanted.setdefault(folder, [])
        if name not in names:
            names.append(name)

    if value is None:
        return wanted
    if isinstance(value, dict):
        for folder, names in value.items():
            if not isinstance(names, (str, list)):
                raise ValueError("required_models[%s]: expected a list of file names, got %r" % (folder, names))
            for name in [names] if isinstance(names, str) else names:
                add(folder, name, "required_models[%s]" % folder)
    elif isinstance(value, list):
        for pos, item in enumerate(value):
            where = "required_models[%d]" % pos
            if isinstance(item, dict):
                unknown = sorted(set(item) - {"folder", "name"})
                if unknown:
                    raise ValueError("%s: unknown key(s) %s (allowed: folder, name)" % (where, ", ".join(unknown)))
                add(item.get("folder"), item.get("name"), where)
            elif isinstance(item, str) and "/" in item:
                folder, name = item.split("/", 1)
                add(folder, name, where)
            else:
                raise ValueError("%s: expected {folder: ..., name: ...} or 'folder/name', got %r" % (where, item))
    else:
        raise ValueError("required_models: expected a dict of folder to file names or a list, got %r" % (value,))
    return wanted


def argument_spec():
    spec = dict(
        url=dict(type="str"),
        instances=dict(type="list", elements="raw"),
        expected_classes=dict(type="list", elements="str", default=[]),
        required_models=dict(type="raw"),
        require_gpu=dict(type="bool", default=False),
        min_vram_mb=dict(type="int"),
        wait_timeout=dict(type="float", default=90.0),
        delay=dict(type="float", default=1.0, aliases=["interval"]),
        fail_on_unhealthy=dict(type="bool", default=True),
        max_workers=dict(type="int", default=8),
    )
    spec.update(comfyui_http_argument_spec())
    return spec


def parse(module):
    """([(name, url)], probe spec) from the options; fails the module on bad input, before any request."""
    p = module.params
    for option, low in (("wait_timeout", 0), ("min_vram_mb", 0)):
        if p[option] is not None and p[option] < low:
            module.fail_json(msg="%s must be >= %s, got %s" % (option, low, p[option]))
    for option in ("delay", "timeout", "max_workers"):
        if p[option] <= 0:
            module.fail_json(msg="%s must be > 0, got %s" % (option, p[option]))
    try:
        instances = normalize_instances(p["url"], p["instances"])
        required_models = normalize_required_models(p["required_models"])
    except ValueError as e:
        module.fail_json(msg=str(e))
    spec = dict(
        expected_classes=list(OrderedDict.fromkeys(p["expected_classes"])),
        required_models=required_models,
        require_gpu=p["require_gpu"],
        min_vram_mb=p["min_vram_mb"],
        wait_timeout=p["wait_timeout"],
        delay=p["delay"],
        max_workers=p["max_workers"],
    )
    return instances, spec


def report(module, results):
    healthy = all(r["healthy"] for r in results)
    if not healthy and module.params["fail_on_unhealthy"]:
        module.fail_json(msg=failure_message(results), healthy=False, instances=results)
    module.exit_json(changed=False, healthy=healthy, instances=results)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("url", "instances")],
        required_one_of=[("url", "instances")],
        supports_check_mode=True,
    )
    instances, spec = parse(module)
    results = probe_instances(instances, spec, module.params)
    report(module, results)


if __name__ == "__main__":
    main()
