#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: comfyops_record
short_description: Read or write one section of the comfyops deployment record (/etc/ansible/facts.d/comfyops.fact)
description:
  - The deployment record is one JSON object with a section per role (C(comfyui), C(nginx)), following the schema
    in the collection's C(docs/deployment-record.md). Ansible shows it as C(ansible_local.comfyops).
  - V(present) replaces one section (checked against the schema first), keeps the others, and writes the file
    atomically, only when the content changed; C(changed_at) moves only then.
  - V(read) returns one section after checking it; a truncated or invalid file fails with a message that names the
    file, and an instance record that could carry configuration syntax (a hostile or broken host) is refused.
version_added: "0.2.0"
author:
  - comfyops contributors (@comfyops)
options:
  path:
    description: The record file.
    type: path
    default: /etc/ansible/facts.d/comfyops.fact
  section:
    description: The section to read or write.
    type: str
    required: true
    choices: [comfyui, nginx]
  content:
    description: The section's new content (V(present)); C(changed_at) is set by the module.
    type: dict
  state:
    description: V(present) writes the section, V(absent) removes it, V(read) only reads it.
    type: str
    choices: [present, absent, read]
    default: present
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    description: Reports whether the section would change; writes nothing.
    support: full
  diff_mode:
    description: Shows the section before and after.
    support: full
  idempotent:
    description: The same content twice leaves the file and C(changed_at) alone.
    support: full
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Record the proxy
  comfyops.comfyui.comfyops_record:
    section: nginx
    content: "{{ proxy_state }}"

- name: Read a GPU host's instances
  comfyops.comfyui.comfyops_record:
    section: comfyui
    state: read
  delegate_to: gpu01
  register: gpu01_record
"""

RETURN = r"""
section:
  description: The section after the run (null when absent).
  returned: always
  type: dict
record:
  description: The whole record after the run.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comfyops.comfyui.plugins.module_utils import record as rec


def _act(module):
    p = module.params
    current = rec.read(p["path"])
    section = current.get(p["section"])
    if p["state"] == "read":
        problems = rec.section_problems(p["section"], section) if section is not None else []
        if problems:
            raise rec.RecordFileError("deployment record %s: %s" % (p["path"], "; ".join(problems)))
        return dict(changed=False, section=section, record=current)
    if p["state"] == "absent":
        new = {k: v for k, v in current.items() if k != p["section"]}
        new["format"] = rec.FORMAT
        changed = p["section"] in current
    else:
        problems = rec.section_problems(p["section"], dict(p["content"] or {}, changed_at="x"))
        if problems:
            module.fail_json(msg="comfyops_record: the %s section does not follow the schema: %s"
                             % (p["section"], "; ".join(problems)))
        new, changed = rec.merge(current, p["section"], p["content"])
    if changed and not module.check_mode:
        rec.write(p["path"], new)
    result = dict(changed=changed, section=new.get(p["section"]), record=new)
    if module._diff:
        result["diff"] = dict(before=section or {}, after=new.get(p["section"]) or {},
                              before_header="%s %s" % (p["path"], p["section"]),
                              after_header="%s %s" % (p["path"], p["section"]))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/ansible/facts.d/comfyops.fact"),
            section=dict(type="str", required=True, choices=list(rec.SCHEMA)),
            content=dict(type="dict"),
            state=dict(type="str", default="present", choices=["present", "absent", "read"]),
        ),
        required_if=[("state", "present", ["content"])],
        supports_check_mode=True,
    )
    try:
        module.exit_json(**_act(module))
    except rec.RecordFileError as e:
        module.fail_json(msg=str(e))
    except OSError as e:
        module.fail_json(msg="comfyops_record: %s" % e)


if __name__ == "__main__":
    main()
