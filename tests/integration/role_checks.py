"""Shared by the roles' setting-check tests: one ansible-playbook run of a role's tasks/checks.yml, one local
"host" per case with its own variables, so each verdict and message is the role's own."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = """
- name: The role's setting checks
  hosts: all
  gather_facts: false
  tasks:
    - name: Run the checks
      ansible.builtin.include_role:
        name: comfyops.comfyui.%s
        tasks_from: checks
"""


def verdicts(role, cases, tmp):
    """{case: None when it passed, else the message it failed with, '_output': all output}."""
    inventory = {"all": {"hosts": {name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                          **variables} for name, (variables, _expected) in cases.items()}}}
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp / "checks.yml").write_text(PLAYBOOK % role)
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp / "inventory.yml"),
                           "--forks", "10", str(tmp / "checks.yml")],
                          cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=300)
    try:
        tasks = json.loads(proc.stdout)["plays"][0]["tasks"]
    except (ValueError, KeyError, IndexError):
        pytest.fail("ansible-playbook gave no JSON result (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    out = {name: None for name in cases}
    for task in tasks:
        for name, result in task["hosts"].items():
            if result.get("failed"):
                out[name] = result["msg"]
    out["_output"] = proc.stdout + proc.stderr
    return out


def check_case(role, cases, found, case):
    expected = cases[case][1]
    message = found[case]
    if expected is None:
        assert message is None, message
    else:
        assert message is not None, "%s passed the checks" % case
        assert message.startswith("%s role: " % role)
        for text in expected:
            assert text in message, message
