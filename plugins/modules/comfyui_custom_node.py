#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: comfyui_custom_node
short_description: Install ComfyUI node packs at pinned git refs, restart once, verify their classes, roll back on failure
description:
  - Ensures node packs (git repositories) in ComfyUI's C(custom_nodes) directory on the host, a directory that is
    bind-mounted into the ComfyUI containers. All packs of one task are handled together, so ComfyUI restarts at
    most once.
  - A pack that must change is cloned into a staging directory, then swapped in with a rename; the old tree moves to
    a backup directory and stays there until the new set is verified. Staging and backups live in O(state_dir),
    outside C(custom_nodes), because ComfyUI tries to import every directory in C(custom_nodes).
  - A pack whose pinned commit is already checked out costs no network access; the module compares
    C(git rev-parse HEAD) with the wanted commit and resolves tags and branches in the local clone. Only
    O(packs[].state=latest), or a ref the local clone does not know, reaches the remote.
  - Each enabled pack's C(requirements.txt) is installed into ComfyUI's Python environment inside the first of
    O(containers) with C(docker exec <container> <pip_command> -r <requirements> -c <constraints>). What was
    installed (hash of C(requirements.txt), hash of the constraints, image ID of the container) is recorded in
    C(<state_dir>/state.json); the requirements are installed again when any of the three changes, so a new image
    gets its packages again.
  - When something that ComfyUI loads changed, the module restarts all O(containers) with one C(docker restart),
    waits up to O(wait_timeout) seconds for C(/object_info) on every URL of O(urls) and checks each pack's
    O(packs[].expected_classes). A pack that fails to import never stops ComfyUI; it only loses its classes.
  - If a URL does not answer or a class is missing, the module reads the pack's import error from C(/internal/logs)
    (falling back to C(docker logs)), moves every changed pack back to its previous tree, restarts again, waits, and
    fails with a message that names the pack and the import error. The previous set is running afterwards.
version_added: "0.1.0"
author:
  - comfyops contributors (@comfyops)
options:
  packs:
    description:
      - The node packs to manage. Packs not listed are left alone.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Directory name of the pack in O(custom_nodes_dir), for example V(ComfyUI-LTXVideo). ComfyUI reports its
            classes with C(python_module) C(custom_nodes.<name>).
          - A single path component; it must not start with C(.) or end in C(.disabled).
        type: str
        required: true
      repo:
        description:
          - Git URL of the pack. Git is only ever run against this URL.
          - Required unless O(packs[].state=absent). A checkout whose C(origin) is another URL is replaced.
        type: str
      version:
        description:
          - Commit (full or abbreviated), tag or branch to check out. The checkout is always a detached HEAD.
          - Without a version, V(present) accepts any commit already checked out from O(packs[].repo) and a new
            clone takes the default branch; V(latest) follows the default branch.
          - A branch with V(present) stays at the commit last fetched; use V(latest) to follow it.
        type: str
      state:
        description:
          - V(present) ensures the pack at O(packs[].version). V(latest) asks the remote (C(git ls-remote)) on every
            run and moves to the current commit of the branch or tag. V(absent) removes C(<name>) and
            C(<name>.disabled).
        type: str
        choices: [present, absent, latest]
        default: present
      enabled:
        description:
          - With V(false) the pack lives at C(<name>.disabled), which ComfyUI skips. Its requirements are not
            installed and its classes are not checked.
        type: bool
        default: true
      expected_classes:
        description:
          - Node class names the pack must register, checked in C(/object_info) of every URL after a restart.
            Names may contain spaces (V(Set VAE Decoder Noise)); give a YAML list.
          - Without it the module only checks that ComfyUI answers after the restart.
        type: list
        elements: str
        default: []
      constraints:
        description:
          - pip constraint lines for this pack, for example V(kornia<=0.8.2).
          - All packs share one Python environment, so the constraints of all enabled packs and the top-level
            O(constraints) are merged into one file that every pip run uses.
        type: list
        elements: str
        default: []
      install_requirements:
        description:
          - Whether to install the pack's C(requirements.txt).
        type: bool
        default: true
        aliases: [requirements]
  custom_nodes_dir:
    description:
      - In-place mode, for ComfyUI installs that mount one shared C(custom_nodes) directory read-write. The host
        directory that is mounted as ComfyUI's C(custom_nodes) in the containers. Created when missing.
      - Exactly one of O(custom_nodes_dir) and O(store_dir) is required.
    type: path
  store_dir:
    description:
      - Store mode, which the comfyui role uses. Each pack commit is cloned into its own directory
        C(<store_dir>/<name>/<commit>) (a staging clone renamed into place) and never changed afterwards; the
        caller mounts the entries read-only into the containers and switches them with
        M(comfyops.comfyui.comfyui_rollout), so a new commit never touches what is live.
      - Nothing is restarted, installed with pip or verified in this mode: O(containers) and O(urls) must be empty.
      - What a tag or branch resolved to is kept in C(<store_dir>/state.json), so a re-run uses no network; one
        lock per pack keeps two hosts on one shared store from cloning the same commit at once.
    type: path
    version_added: "0.2.0"
  requirements_dir:
    description:
      - Store mode only. Directory that receives a copy of each enabled pack's C(requirements.txt) as
        C(<name>.txt) (stale copies are removed), for an image build that installs them.
    type: path
    version_added: "0.2.0"
  lock_timeout:
    description:
      - Store mode only. Seconds to wait for another run holding a pack's lock before failing with who holds it.
    type: float
    default: 600
    version_added: "0.2.0"
  state_dir:
    description:
      - Directory for the state file (C(state.json)), the staging clones (C(staging/)) and the trees kept for
        rollback (C(previous/)). Must be on the same file system as O(custom_nodes_dir) (the swap is a rename)
        and not inside it.
      - Defaults to C(.comfyops-nodes) next to O(custom_nodes_dir).
    type: path
  containers:
    description:
      - Names of the ComfyUI containers that share O(custom_nodes_dir) (one per GPU). pip runs in the first; all
        are restarted, with one C(docker restart), when something changed.
      - Without containers nothing is installed with pip or restarted (the module warns when a restart is due),
        and nothing is verified.
    type: list
    elements: str
    default: []
  urls:
    description:
      - Base URLs of the instances, for example V(http://127.0.0.1:8188), checked after a restart.
      - When O(containers) has as many entries as O(urls), the logs of a URL's container (same position) are read
        if its C(/internal/logs) has no import error; otherwise the first container's.
    type: list
    elements: str
    default: []
  container_custom_nodes_dir:
    description:
      - Where O(custom_nodes_dir) is mounted inside the containers; pip reads the requirements and constraints
        files from there.
    type: str
    default: /opt/comfyui/custom_nodes
  constraints:
    description:
      - pip constraint lines for every pack, for example to keep the image's V(torch==2.11.0) from being replaced.
      - Written, together with the packs' O(packs[].constraints), to C(.comfyops-constraints.txt) in
        O(custom_nodes_dir) (ComfyUI ignores files that are not C(.py)) and passed to pip with C(-c). Lines must be
        requirement specifiers, not pip options.
    type: list
    elements: str
    default: []
  pip_command:
    description:
      - The command run in the container to install requirements, without the C(-r)/C(-c) arguments the module
        appends. The comfyui role sets C(PYTHONUSERBASE) to a persistent volume, so C(--user) installs survive the
        re-creation of the container.
    type: list
    elements: str
    default: [python3, -m, pip, install, --user, --no-warn-script-location]
  pip_extra_args:
    description:
      - Further arguments for pip, added after O(pip_command), for example
        V([--index-url, https://pypi.internal.example/simple]).
    type: list
    elements: str
    default: []
  owner:
    description:
      - User that owns the trees the module places (and the constraints file), for a container that does not run
        as root. Applied when a pack is placed, not checked on later runs.
    type: str
  group:
    description:
      - Group of the trees the module places, as for O(owner).
    type: str
  wait_timeout:
    description:
      - Seconds to wait, after a restart, for every URL to answer C(/object_info) (one deadline for all).
        ComfyUI needs about 10 s on CPU and 20-25 s on a GPU host, more with ComfyUI-Manager.
    type: float
    default: 180
  delay:
    description:
      - Seconds between two attempts while waiting.
    type: float
    default: 1
  docker_bin:
    description:
      - The docker command (name or path).
    type: str
    default: docker
  git_bin:
    description:
      - The git command (name or path).
    type: str
    default: git
extends_documentation_fragment:
  - comfyops.comfyui.comfyui_http
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    description: Plans with the local clones (and C(git ls-remote) where they cannot answer); changes and restarts
      nothing. A pack whose commit would change is reported as needing its requirements installed.
    support: full
  diff_mode:
    description: Shows the commit and enabled state of each pack before and after.
    support: full
  idempotent:
    description: A second run with the same packs changes nothing, restarts nothing and uses no network.
    support: full
  platform:
    platforms: posix
notes:
  - Local changes inside a pack directory are discarded when the pack is replaced. Git submodules are not cloned.
  - pip cannot undo an install. When a change is rolled back, packages that pip installed for it stay in the user
    base; use O(constraints) to keep core packages (torch) fixed.
  - Manage all packs of a host in one task, so the constraints file holds every pack's constraints and ComfyUI
    restarts once.
requirements:
  - git and the docker CLI on the host.
seealso:
  - module: comfyops.comfyui.comfyui_health
"""

EXAMPLES = r"""
- name: LTX-2 nodes at the tested commit, on two GPU instances
  comfyops.comfyui.comfyui_custom_node:
    custom_nodes_dir: /srv/comfyui/custom_nodes
    containers: [comfyui-gpu0, comfyui-gpu1]
    urls: [http://127.0.0.1:8188, http://127.0.0.1:8189]
    constraints:
      - torch==2.11.0
    packs:
      - name: ComfyUI-LTXVideo
        repo: https://github.com/Lightricks/ComfyUI-LTXVideo.git
        version: aceeae9635f6d493f2893ba3c411a1c36031788a
        constraints:
          - kornia<=0.8.2
        expected_classes:
          - LTXVBaseSampler
          - LTXVGemmaCLIPModelLoader
          - Set VAE Decoder Noise
  register: nodes

- name: Follow a branch, disable one pack, remove another
  comfyops.comfyui.comfyui_custom_node:
    custom_nodes_dir: /srv/comfyui/custom_nodes
    containers: [comfyui-gpu0]
    urls: [http://127.0.0.1:8188]
    wait_timeout: 300
    packs:
      - name: ComfyUI-KJNodes
        repo: https://github.com/kijai/ComfyUI-KJNodes.git
        version: main
        state: latest
        expected_classes: [GetImageSizeAndCount]
      - name: ComfyUI-Impact-Pack
        repo: https://github.com/ltdrdata/ComfyUI-Impact-Pack.git
        version: "8.8.1"
        enabled: false
      - name: old-experiment
        state: absent

- name: Lay the packs down before the containers exist (installed and verified by a later run)
  comfyops.comfyui.comfyui_custom_node:
    custom_nodes_dir: /srv/comfyui/custom_nodes
    owner: "1000"
    group: "1000"
    packs: "{{ comfyui_custom_nodes }}"
"""

RETURN = r"""
changed:
  description: Whether any pack changed (cloned, swapped, renamed, removed or its requirements installed).
  returned: always
  type: bool
restarted:
  description: Whether the containers were restarted.
  returned: always
  type: bool
  sample: true
restart_needed:
  description: Whether the changes need a restart of ComfyUI (in check mode, or when no O(containers) were given).
  returned: always
  type: bool
  sample: true
verified:
  description: Whether the expected classes were checked on every URL after a restart and found.
  returned: always
  type: bool
  sample: true
rolled_back:
  description: Whether the change was rolled back (only ever true on failure).
  returned: always
  type: bool
  sample: false
image:
  description: Image ID of the first container (null when nothing needed installing).
  returned: always
  type: str
  sample: sha256:4f1c6d0e3b2a...
pip_command:
  description: The command run in the first container (null when pip did not run).
  returned: always
  type: list
  elements: str
  sample: [python3, -m, pip, install, --user, --no-warn-script-location, -r,
           /opt/comfyui/custom_nodes/ComfyUI-LTXVideo/requirements.txt, -c,
           /opt/comfyui/custom_nodes/.comfyops-constraints.txt]
state_file:
  description: Path of the state file on the host.
  returned: always
  type: str
  sample: /srv/comfyui/.comfyops-nodes/state.json
packs:
  description: One entry per pack, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Pack name.
      type: str
      sample: ComfyUI-LTXVideo
    state:
      description: The requested state.
      type: str
      sample: present
    repo:
      description: Git URL.
      type: str
    version:
      description: The requested version.
      type: str
    path:
      description: Host path of the pack (C(<name>) or C(<name>.disabled)); null for V(absent).
      type: str
      sample: /srv/comfyui/custom_nodes/ComfyUI-LTXVideo
    before:
      description: Commit checked out before the run (null when missing or not a git checkout).
      type: str
      sample: 5b1f04d2a2e3c4e06c8d1fd0c4a8d1bb0e0d6f11
    after:
      description: Commit checked out after the run (null for V(absent), and in check mode when only a clone could
        tell). When the task failed and rolled back (RV(rolled_back=true)), the commit that was tried.
      type: str
      sample: aceeae9635f6d493f2893ba3c411a1c36031788a
    changed:
      description: Whether this pack changed.
      type: bool
    enabled:
      description: Whether the pack is enabled after the run.
      type: bool
    requirements_installed:
      description: Whether pip installed its requirements (in check mode, whether it would).
      type: bool
    classes_found:
      description: Expected classes present on every URL; null when not checked (no restart, no URLs, or no
        O(packs[].expected_classes)).
      type: list
      elements: str
    classes_missing:
      description: Expected classes missing on at least one URL; null when not checked.
      type: list
      elements: str
    import_error:
      description: The import error ComfyUI logged for the pack when its classes were missing, else null.
      type: str
      sample: "cannot import name 'interleaved_freqs_cis' from 'comfy.ldm.lightricks.model'"
diff:
  description: Commit and enabled state per pack before and after.
  returned: in diff mode (C(--diff))
  type: dict
  sample:
    before: {ComfyUI-LTXVideo: {commit: 5b1f04d2a2e3c4e06c8d1fd0c4a8d1bb0e0d6f11, enabled: true}}
    after: {ComfyUI-LTXVideo: {commit: aceeae9635f6d493f2893ba3c411a1c36031788a, enabled: true}}
"""

import grp
import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import comfyui_http_argument_spec
from ansible_collections.comfyops.comfyui.plugins.module_utils.custom_nodes import (
    DEFAULT_PIP_COMMAND,
    CustomNodeError,
    NodeManager,
)
from ansible_collections.comfyops.comfyui.plugins.module_utils.pack_store import PackStore


def _id(value, lookup, attr, what):
    """Numeric id of a user/group name or number; -1 (unchanged) when not given."""
    if value is None:
        return -1
    if value.isdigit():
        return int(value)
    try:
        return getattr(lookup(value), attr)
    except KeyError:
        raise ValueError("%s %r does not exist on the host" % (what, value))


def _run_store(module):
    p = module.params
    for option in ("containers", "urls"):
        if p[option]:
            module.fail_json(msg="%s is not used with store_dir: comfyops.comfyui.comfyui_rollout switches the "
                                 "instances to the stored packs" % option)
    if p["state_dir"]:
        module.fail_json(msg="state_dir is not used with store_dir (the store keeps its own state.json)")

    def run(argv):
        return module.run_command(argv, environ_update={"GIT_TERMINAL_PROMPT": "0"})

    try:
        result = PackStore(p, run, check_mode=module.check_mode).run()
    except ValueError as e:
        module.fail_json(msg=str(e))
    except CustomNodeError as e:
        module.fail_json(msg=e.message, **e.result)
    except OSError as e:
        module.fail_json(msg="comfyui_custom_node: %s" % e)
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


def main():
    pack_options = dict(
        name=dict(type="str", required=True),
        repo=dict(type="str"),
        version=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent", "latest"]),
        enabled=dict(type="bool", default=True),
        expected_classes=dict(type="list", elements="str", default=[]),
        constraints=dict(type="list", elements="str", default=[]),
        install_requirements=dict(type="bool", default=True, aliases=["requirements"]),
    )
    argument_spec = dict(
        packs=dict(type="list", elements="dict", required=True, options=pack_options),
        custom_nodes_dir=dict(type="path"),
        store_dir=dict(type="path"),
        requirements_dir=dict(type="path"),
        lock_timeout=dict(type="float", default=600.0),
        state_dir=dict(type="path"),
        containers=dict(type="list", elements="str", default=[]),
        urls=dict(type="list", elements="str", default=[]),
        container_custom_nodes_dir=dict(type="str", default="/opt/comfyui/custom_nodes"),
        constraints=dict(type="list", elements="str", default=[]),
        pip_command=dict(type="list", elements="str", default=list(DEFAULT_PIP_COMMAND)),
        pip_extra_args=dict(type="list", elements="str", default=[]),
        owner=dict(type="str"),
        group=dict(type="str"),
        wait_timeout=dict(type="float", default=180.0),
        delay=dict(type="float", default=1.0),
        docker_bin=dict(type="str", default="docker"),
        git_bin=dict(type="str", default="git"),
    )
    argument_spec.update(comfyui_http_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[("custom_nodes_dir", "store_dir")],
                           mutually_exclusive=[("custom_nodes_dir", "store_dir")])
    p = module.params
    if p["store_dir"]:
        _run_store(module)

    if p["wait_timeout"] < 0:
        module.fail_json(msg="wait_timeout must be >= 0, got %s" % p["wait_timeout"])
    for option in ("delay", "timeout"):
        if p[option] <= 0:
            module.fail_json(msg="%s must be > 0, got %s" % (option, p[option]))
    if not p["pip_command"]:
        module.fail_json(msg="pip_command must not be empty")
    if len(set(p["containers"])) != len(p["containers"]):
        module.fail_json(msg="containers must not repeat a name: %s" % ", ".join(p["containers"]))
    if p["urls"] and not p["containers"]:
        module.warn("urls are only checked after a restart, and without containers there is none")

    def run(argv):
        # a list, never a shell; git must fail instead of asking for credentials nobody can type
        return module.run_command(argv, environ_update={"GIT_TERMINAL_PROMPT": "0"})

    try:
        uid = _id(p["owner"], pwd.getpwnam, "pw_uid", "owner")
        gid = _id(p["group"], grp.getgrnam, "gr_gid", "group")
        manager = NodeManager(p, run, check_mode=module.check_mode, warn=module.warn, uid=uid, gid=gid)
        result = manager.run()
    except ValueError as e:
        module.fail_json(msg=str(e))
    except CustomNodeError as e:
        if not module._diff:
            e.result.pop("diff", None)
        module.fail_json(msg=e.message, **e.result)
    except OSError as e:  # e.g. permission denied on the state file or custom_nodes_dir
        module.fail_json(msg="comfyui_custom_node: %s" % e)
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
