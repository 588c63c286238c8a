#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: comfyui_rollout
short_description: Switch ComfyUI instances to a new compose file safely (canary, drain, one at a time, rollback)
description:
  - Moves the instances of a ComfyUI compose project from the live compose file to a candidate, as one
    transaction. The compose file is the whole set of every instance (image, node pack mounts, flags, environment).
  - When the image or the node pack mounts change, a canary (the candidate's C(comfyui-canary) service of the
    C(canary) profile, on loopback with C(--cpu)) must first load every class of O(packs); if it does not, nothing live
    changed and the module fails with the pack's import error.
  - Each instance whose service changed is then drained (marked in O(drain_dir), its running and pending jobs
    finished, cut or ignored as O(drain) says), recreated from the candidate and verified, one at a time, so the
    others keep serving. If one fails, every switched instance is recreated from the live file and verified
    again, and the module fails saying what is live. Otherwise the candidate becomes the live file.
  - A journal in O(state_dir) written before the first switch lets the next run repair an interrupted one (every
    instance back to the live file, verified); a lock in O(state_dir) keeps two runs apart. The docker commands
    the module starts hold that lock too and finish their step even if the module is killed, so the next run
    waits for them rather than finding a container half recreated.
  - With O(restart) the named instances are drained, restarted and verified one at a time, with no new set.
version_added: "0.2.0"
author:
  - comfyops contributors (@comfyops)
options:
  project_dir:
    description: Directory of the compose project (its relative paths are resolved there).
    type: path
    required: true
  project_name:
    description: Compose project name.
    type: str
    required: true
  compose_file:
    description: The live compose file. Missing on a first deploy.
    type: path
    required: true
  candidate_content:
    description:
      - The compose file the instances should run, as text (the module writes it to
        C(<state_dir>/compose.candidate.yml) under the lock; in check mode to a temporary file). Required unless
        O(restart) is given.
      - It may define a C(comfyui-canary) service under the C(canary) profile, publishing container port
        O(container_port) on loopback; without it no canary runs. Services that are not instances (and not the
        canary) are brought up after the instances, without drain or verification.
    type: str
  instances:
    description:
      - The instances, in order, as the comfyui role's instance records (other record fields are ignored).
      - C(name) is the compose service and container name, for example V(comfyui-gpu0); C(url) is where the module
        reaches it (its published port on this host), for example V(http://127.0.0.1:8188).
    type: list
    elements: dict
    required: true
  packs:
    description:
      - The enabled node packs, each with C(name) (its directory in C(custom_nodes), used to find its import error
        in the logs) and C(expected_classes) (the classes that prove it loaded, checked on the canary and on every
        switched instance). comfyops.comfyui.comfyui_custom_node's C(packs) result is taken as it is.
    type: list
    elements: dict
    default: []
  canary:
    description: Run the canary before switching when the image or node packs change.
    type: bool
    default: true
  container_port:
    description: The port ComfyUI listens on inside the containers (the canary's published port is looked up).
    type: int
    default: 8188
  drain:
    description:
      - V(wait) lets running and pending jobs finish (up to O(drain_timeout)), V(interrupt) clears the queue and
        interrupts the running job, V(skip) restarts at once. Jobs left when the instance goes down are reported
        as cut.
    type: str
    choices: [wait, interrupt, skip]
    default: wait
  drain_timeout:
    description: Seconds to wait for an instance's jobs in V(wait) mode.
    type: float
    default: 1800
  drain_dir:
    description: Directory where an empty file named after an instance marks it as draining (the exporter answers
      C(/ready/<instance>) with 503 while it exists).
    type: path
  restart:
    description: Restart these instances (drained, one at a time, verified) instead of switching to a candidate.
    type: list
    elements: str
  verify:
    description: Verify every instance even when nothing changed.
    type: bool
    default: false
  state_dir:
    description: Host directory for the lock, the journal and the previous compose file; must not be writable by
      the containers.
    type: path
    required: true
  image_repository:
    description: Repository of the built images (for example V(comfyops/comfyui)); after a successful switch its
      images beyond O(keep_images) that neither the live nor the previous compose file uses are removed.
    type: str
  keep_images:
    description: How many images of O(image_repository) to keep (the live and the previous set count).
    type: int
    default: 2
  wait_timeout:
    description: Seconds to wait for an instance (or the canary) to answer C(/object_info) after a start.
    type: float
    default: 300
  delay:
    description: Seconds between two attempts while waiting.
    type: float
    default: 1
  stop_timeout:
    description: Seconds C(docker restart) gives ComfyUI to stop (V(restart) only; compose uses the service's
      C(stop_grace_period)).
    type: int
    default: 30
  lock_timeout:
    description: Seconds to wait for another run holding the host lock before failing with who holds it.
    type: float
    default: 600
  docker_bin:
    description: The docker command (name or path).
    type: str
    default: docker
extends_documentation_fragment:
  - comfyops.comfyui.comfyui_http
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    description: Reports which instances would be recreated and whether a canary would run; starts nothing.
    support: full
  diff_mode:
    description: Not supported; the compose file's diff is the template task's.
    support: none
  idempotent:
    description: Nothing is restarted when the candidate equals the live file and every instance runs it.
    support: full
  platform:
    platforms: posix
requirements:
  - The docker CLI with the compose v2 plugin on the host.
seealso:
  - module: comfyops.comfyui.comfyui_custom_node
  - module: comfyops.comfyui.comfyui_health
"""

EXAMPLES = r"""
- name: Switch to the candidate compose file
  comfyops.comfyui.comfyui_rollout:
    project_dir: /opt/comfyops/comfyui
    project_name: comfyui
    compose_file: /opt/comfyops/comfyui/compose.yml
    candidate_content: "{{ lookup('ansible.builtin.template', 'compose.yml.j2') }}"
    state_dir: /var/lib/comfyops/comfyui
    instances:
      - {name: comfyui-gpu0, url: "http://127.0.0.1:8188"}
      - {name: comfyui-gpu1, url: "http://127.0.0.1:8189"}
    packs:
      - {name: ComfyUI-LTXVideo, expected_classes: [LTXVBaseSampler, LTXVGemmaCLIPModelLoader]}
    image_repository: comfyops/comfyui

- name: Restart one instance after its jobs finished
  comfyops.comfyui.comfyui_rollout:
    project_dir: /opt/comfyops/comfyui
    project_name: comfyui
    compose_file: /opt/comfyops/comfyui/compose.yml
    state_dir: /var/lib/comfyops/comfyui
    instances: [{name: comfyui-gpu1, url: "http://127.0.0.1:8189"}]
    restart: [comfyui-gpu1]
"""

RETURN = r"""
instances:
  description: One entry per instance, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Instance name.
      type: str
    url:
      description: Its URL.
      type: str
    action:
      description: V(unchanged), V(started) (first deploy), V(recreated), V(restarted) or V(rolled_back).
      type: str
    drained_s:
      description: Seconds its drain took (null when it was not drained).
      type: float
    cut_jobs:
      description: Prompt ids that were still queued or running when it went down.
      type: list
      elements: str
    verified:
      description: Whether it answered with every expected class after its change (null when not checked).
      type: bool
    comfyui_version:
      description: The ComfyUI version it reports (null when not checked).
      type: str
    problem:
      description: What is wrong with it, when it did not verify.
      type: str
canary:
  description: The canary run (null when none was needed).
  returned: always
  type: dict
  contains:
    ran:
      description: Whether it ran.
      type: bool
    verified:
      description: Whether it loaded every expected class.
      type: bool
    seconds:
      description: How long the canary took, start to removal.
      type: float
    problem:
      description: Missing classes and the import error, when it failed.
      type: str
repaired:
  description: What was put right from an interrupted earlier run.
  returned: always
  type: list
  elements: str
rolled_back:
  description: Whether the instances went back to the previous set (only on failure).
  returned: always
  type: bool
verified:
  description: Whether every checked instance verified (null when none was checked).
  returned: always
  type: bool
removed:
  description: Instances of the live compose file that the candidate no longer has, stopped and removed after the
    others verified (their jobs are not drained).
  returned: always
  type: list
  elements: str
images_pruned:
  description: Images removed after the switch.
  returned: always
  type: list
  elements: str
live:
  description: What the live compose file gives the instances after the run (also after a failure).
  returned: always
  type: dict
  contains:
    image:
      description: Image reference.
      type: str
    image_id:
      description: Its image ID.
      type: str
    packs:
      description: The node packs mounted, each with C(name), C(commit) and C(path).
      type: list
      elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import comfyui_http_argument_spec
from ansible_collections.comfyops.comfyui.plugins.module_utils.instances import RECORD_FIELDS
from ansible_collections.comfyops.comfyui.plugins.module_utils.locks import LockTimeout
from ansible_collections.comfyops.comfyui.plugins.module_utils.rollout import Rollout, RolloutError


def _argument_spec():
    spec = dict(
        project_dir=dict(type="path", required=True),
        project_name=dict(type="str", required=True),
        compose_file=dict(type="path", required=True),
        candidate_content=dict(type="str"),
        # instance records and comfyui_custom_node's pack results are taken as they are (checked in _problems)
        instances=dict(type="list", elements="dict", required=True),
        packs=dict(type="list", elements="dict", default=[]),
        canary=dict(type="bool", default=True),
        container_port=dict(type="int", default=8188),
        drain=dict(type="str", default="wait", choices=["wait", "interrupt", "skip"]),
        drain_timeout=dict(type="float", default=1800.0),
        drain_dir=dict(type="path"),
        restart=dict(type="list", elements="str"),
        verify=dict(type="bool", default=False),
        state_dir=dict(type="path", required=True),
        image_repository=dict(type="str"),
        keep_images=dict(type="int", default=2),
        wait_timeout=dict(type="float", default=300.0),
        delay=dict(type="float", default=1.0),
        stop_timeout=dict(type="int", default=30),
        lock_timeout=dict(type="float", default=600.0),
        docker_bin=dict(type="str", default="docker"),
    )
    spec.update(comfyui_http_argument_spec())
    return spec


def _problems(p):
    """Bad input, caught before anything runs."""
    for pos, inst in enumerate(p["instances"]):
        unknown = sorted(set(inst) - {"name", "url"} - set(RECORD_FIELDS))
        if unknown:
            return "instances[%d]: unknown key(s) %s" % (pos, ", ".join(unknown))
        if not isinstance(inst.get("name"), str) or not isinstance(inst.get("url"), str):
            return "instances[%d] needs a name and a url, got %r" % (pos, inst)
    for pos, pack in enumerate(p["packs"]):
        classes = pack.get("expected_classes") or []
        if not isinstance(pack.get("name"), str) or not isinstance(classes, list) \
                or not all(isinstance(c, str) for c in classes):
            return "packs[%d] needs a name and a list of expected_classes, got %r" % (pos, pack)
    names = [i["name"] for i in p["instances"]]
    if not names:
        return "instances must not be empty"
    if len(set(names)) != len(names):
        return "instances must not repeat a name: %s" % ", ".join(names)
    if p["restart"] is None and not p["candidate_content"]:
        return "candidate_content is required unless restart is given"
    unknown = sorted(set(p["restart"] or []) - set(names))
    if unknown:
        return "restart names unknown instance(s) %s; this host has %s" % (", ".join(unknown), ", ".join(names))
    for option in ("drain_timeout", "wait_timeout", "lock_timeout"):
        if p[option] < 0:
            return "%s must be >= 0, got %s" % (option, p[option])
    if p["delay"] <= 0 or p["timeout"] <= 0:
        return "delay and timeout must be > 0"
    if not 1 <= p["container_port"] <= 65535:
        return "container_port must be 1-65535, got %s" % p["container_port"]
    return None


def main():
    module = AnsibleModule(argument_spec=_argument_spec(), supports_check_mode=True)
    problem = _problems(module.params)
    if problem:
        module.fail_json(msg="comfyui_rollout: " + problem)
    rollout = Rollout(module.params, check_mode=module.check_mode)
    try:
        result = rollout.run()
    except RolloutError as e:
        module.fail_json(msg=e.message, **(e.result or rollout.result()))
    except LockTimeout as e:
        # another run holds the host: say what is live all the same (read without the lock)
        rollout.live = rollout.describe_quietly()
        module.fail_json(msg=str(e), **rollout.result())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
