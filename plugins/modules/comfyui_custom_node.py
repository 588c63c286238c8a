#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: comfyui_custom_node
short_description: Put ComfyUI node packs at pinned git refs into a store of immutable, per-commit checkouts
description:
  - Ensures each node pack (a git repository) at its pinned commit in a store on the host, one directory per pack
    commit, C(<store_dir>/<name>/<commit>). A commit not in the store yet is cloned into a staging directory
    beside the entries and renamed into place once complete; an entry is never changed afterwards.
  - The caller mounts the entries of a set read-only into the ComfyUI containers (C(custom_nodes/<name>)) and
    switches the instances to them with M(comfyops.comfyui.comfyui_rollout) (canary, drain, one instance at a
    time, classes verified, rollback). A new commit lands beside the live one, so nothing live changes here, and a
    rollback mounts the previous entry again. The comfyui role does both.
  - Nothing a container can write is ever touched. The store must live where no container mounts it writable
    (the comfyui role uses C(<data root>/.comfyops/packs)). Git runs only in the staging clone (or outside any
    repository), with hooks, C(core.fsmonitor), C(ext::) URLs and submodules turned off, and without
    C(safe.directory) overrides.
  - Each enabled pack's C(requirements.txt) (a regular file of at most 1 MiB, never followed through a symlink) is
    copied to O(requirements_dir) for the image build, which installs them; nothing is installed with pip here.
  - What a tag or branch resolved to is remembered in C(<store_dir>/.state.json), so a re-run with the same packs
    starts no git process at all. Only O(packs[].state=latest) asks the remote (C(git ls-remote)) on every run.
  - One lock per pack (C(<store_dir>/.locks/<name>.lock)) keeps two hosts on one shared store from cloning the
    same commit at once; a run that waits longer than O(lock_timeout) fails saying who holds it.
version_added: "0.1.0"
author:
  - comfyops contributors (@comfyops)
options:
  packs:
    description:
      - The node packs to manage. Packs not listed are left alone in the store.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Directory name of the pack, in the store and in C(custom_nodes), for example V(ComfyUI-LTXVideo).
            ComfyUI reports its classes with C(python_module) C(custom_nodes.<name>).
          - Letters, digits and C(. _ + -) only (it becomes a path and a line of the compose file); it must not
            start with C(.) or end in C(.disabled).
        type: str
        required: true
      repo:
        description:
          - Git URL of the pack (C(https://), C(ssh://), C(git@host:path), C(file://) or an absolute path). Git is
            only ever run against this URL.
          - Required unless O(packs[].state=absent).
          - Must not carry credentials (C(https://user:token@host/...) or C(https://token@host/...)), which would
            end up in results, the store's state and the checkout's C(.git/config). Give them to git instead, with
            a credential helper or a C(~/.netrc) (mode 0600) in the home of the user the module runs as. The
            refusal shows the URL with C(***) in place of the credentials.
        type: str
      version:
        description:
          - Commit (full or abbreviated), tag or branch to check out. The checkout is always a detached HEAD.
          - Without a version, V(present) takes the default branch once and stays at that commit; V(latest) follows
            the default branch.
          - A tag or branch with V(present) stays at the commit it resolved to the first time; use V(latest) to
            follow it.
        type: str
      state:
        description:
          - V(present) ensures the pack at O(packs[].version) in the store. V(latest) asks the remote on every run
            and places the commit the branch or tag points to now. V(absent) takes the pack out of the set (its
            requirements copy is removed and the store forgets it as part of the set); its entries stay (a rollback may
            still mount them).
        type: str
        choices: [present, absent, latest]
        default: present
      enabled:
        description:
          - A disabled pack is still placed in the store, but its requirements are not exported; the comfyui role
            does not mount it.
        type: bool
        default: true
      expected_classes:
        description:
          - Node class names the pack must register (names may contain spaces, V(Set VAE Decoder Noise); give a
            YAML list). Returned as they are, for M(comfyops.comfyui.comfyui_rollout), which checks them.
        type: list
        elements: str
        default: []
      constraints:
        description:
          - pip constraint lines for this pack, for example V(kornia<=0.8.2). Merged with those of the other
            enabled packs and the top-level O(constraints) into RV(constraints).
        type: list
        elements: str
        default: []
      install_requirements:
        description:
          - Whether to export the pack's C(requirements.txt) to O(requirements_dir).
        type: bool
        default: true
        aliases: [requirements]
  store_dir:
    description:
      - The store, an absolute path on the host that no container mounts writable. Created when missing.
      - Several hosts may share one store (an NFS or EFS data root); the locks and the merged state keep them
        apart.
    type: path
    required: true
    version_added: "0.2.0"
  requirements_dir:
    description:
      - Directory that receives a copy of each enabled pack's C(requirements.txt) as C(<name>.txt), for an image
        build that installs them. The module owns it (other C(.txt) files there are removed).
      - Without it, no requirements are read or exported.
    type: path
    version_added: "0.2.0"
  constraints:
    description:
      - pip constraint lines for the whole Python environment (all packs share it), for example to keep the
        image's V(torch==2.11.0). Lines must be requirement specifiers, not pip options.
      - Checked, merged with the packs' O(packs[].constraints) and returned as RV(constraints) for the image
        build.
    type: list
    elements: str
    default: []
  lock_timeout:
    description:
      - Seconds to wait for another run holding a pack's lock (or the state's) before failing with who holds it.
    type: float
    default: 600
    version_added: "0.2.0"
  git_bin:
    description:
      - The git command (name or path).
    type: str
    default: git
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    description: Plans with the store and its state, and C(git ls-remote) for a ref seen for the first time;
      clones, writes and locks nothing.
    support: full
  diff_mode:
    description: Shows each pack's commit and requirements hash before and after.
    support: full
  idempotent:
    description: A second run with the same packs changes nothing and starts no git process (except
      O(packs[].state=latest), which asks the remote).
    support: full
  platform:
    platforms: posix
notes:
  - Git submodules are not cloned. Store entries are never removed by this module.
  - Every pack of a host belongs in one task, so O(requirements_dir) holds the requirements of the whole set.
  - Up to version 0.1.0 the module also worked in place (C(custom_nodes_dir)), in a directory the containers
    could write, running git and pip there as root. ComfyUI containers run third-party code, so that mode was
    removed; see the changelog for the migration.
requirements:
  - git on the host.
seealso:
  - module: comfyops.comfyui.comfyui_rollout
  - module: comfyops.comfyui.comfyui_health
"""

EXAMPLES = r"""
- name: LTX-2 nodes at the tested commit, into the store
  comfyops.comfyui.comfyui_custom_node:
    store_dir: /srv/comfyui/.comfyops/packs
    requirements_dir: /opt/comfyops/comfyui/build/pack-requirements
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

- name: Follow a branch, keep a disabled pack in the store, drop another from the set
  comfyops.comfyui.comfyui_custom_node:
    store_dir: /srv/comfyui/.comfyops/packs
    requirements_dir: /opt/comfyops/comfyui/build/pack-requirements
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
  register: nodes

- name: The enabled entries as read-only compose mounts
  ansible.builtin.debug:
    msg: "{{ item.path }}:/opt/comfyui/custom_nodes/{{ item.name }}:ro"
  loop: "{{ nodes.packs | selectattr('enabled') | selectattr('path') }}"
  loop_control:
    label: "{{ item.name }}"
"""

RETURN = r"""
changed:
  description: Whether an entry was placed in the store or a requirements copy was written or removed.
  returned: always
  type: bool
store_dir:
  description: The store's absolute path.
  returned: always
  type: str
  sample: /srv/comfyui/.comfyops/packs
constraints:
  description: The top-level O(constraints) and those of the enabled packs, merged, without repeats.
  returned: always
  type: list
  elements: str
  sample: [torch==2.11.0, kornia<=0.8.2]
packs:
  description: One entry per pack, in the order given; the shape M(comfyops.comfyui.comfyui_rollout) takes.
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
    commit:
      description: The commit of the pack's entry (null for V(absent), and in check mode when only a clone could
        tell, as for an abbreviated commit).
      type: str
      sample: aceeae9635f6d493f2893ba3c411a1c36031788a
    path:
      description: The entry on the host, C(<store_dir>/<name>/<commit>), to mount read-only; in check mode where
        it would be placed. Null when RV(packs[].commit) is.
      type: str
      sample: /srv/comfyui/.comfyops/packs/ComfyUI-LTXVideo/aceeae9635f6d493f2893ba3c411a1c36031788a
    enabled:
      description: Whether the pack is enabled (false for V(absent)).
      type: bool
    changed:
      description: Whether this pack's entry was placed or its requirements copy written or removed.
      type: bool
    expected_classes:
      description: The pack's O(packs[].expected_classes).
      type: list
      elements: str
    requirements_sha256:
      description: SHA-256 of the requirements exported for the pack (null when none were).
      type: str
diff:
  description: Commit and requirements hash per pack, before and after.
  returned: in diff mode (C(--diff))
  type: dict
  sample:
    before: {ComfyUI-LTXVideo: {commit: 5b1f04d2a2e3c4e06c8d1fd0c4a8d1bb0e0d6f11, requirements_sha256: null}}
    after: {ComfyUI-LTXVideo: {commit: aceeae9635f6d493f2893ba3c411a1c36031788a, requirements_sha256: 9c1e0a...}}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comfyops.comfyui.plugins.module_utils.custom_nodes import (
    CustomNodeError,
    PackStore,
    repo_url_secrets,
)


def _path_problem(option, value):
    if not os.path.isabs(value):
        return "%s must be an absolute path, got %r" % (option, value)
    if os.path.normpath(value) == "/":
        return "%s must not be /" % option
    return None


def _problems(p):
    """The first option problem AnsibleModule cannot see, or None."""
    problem = _path_problem("store_dir", p["store_dir"])
    if problem:
        return problem
    if p["requirements_dir"]:
        problem = _path_problem("requirements_dir", p["requirements_dir"])
        if problem:
            return problem
        store, reqs = os.path.normpath(p["store_dir"]), os.path.normpath(p["requirements_dir"])
        if reqs == store or reqs.startswith(store + "/") or store.startswith(reqs + "/"):
            return "requirements_dir and store_dir must not contain each other"
    if p["lock_timeout"] < 0:
        return "lock_timeout must be >= 0, got %s" % p["lock_timeout"]
    if not p["git_bin"].strip():
        return "git_bin must not be empty"
    return None


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
    module = AnsibleModule(
        argument_spec=dict(
            packs=dict(type="list", elements="dict", required=True, options=pack_options),
            store_dir=dict(type="path", required=True),
            requirements_dir=dict(type="path"),
            constraints=dict(type="list", elements="str", default=[]),
            lock_timeout=dict(type="float", default=600.0),
            git_bin=dict(type="str", default="git"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    # masked wherever the result shows them (the invocation's module_args included); the URL is refused below
    for item in p["packs"]:
        module.no_log_values.update(repo_url_secrets(item.get("repo")))
    problem = _problems(p)
    if problem:
        module.fail_json(msg="comfyui_custom_node: " + problem)

    def run(argv):
        # a list, never a shell; git must fail instead of asking for credentials nobody can type
        return module.run_command(argv, environ_update={"GIT_TERMINAL_PROMPT": "0"})

    try:
        result = PackStore(p, run, check_mode=module.check_mode).run()
    except (ValueError, CustomNodeError) as e:
        module.fail_json(msg="comfyui_custom_node: %s" % e)
    except OSError as e:  # permission denied or a full disk in the store or requirements_dir
        module.fail_json(msg="comfyui_custom_node: %s" % e)
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
