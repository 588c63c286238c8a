"""The internal role comfyops.comfyui._common through ansible-playbook on the controller (local "hosts", nothing
changed): a play can neither apply it nor include its entry points, a role can, and the os and ports entry points
give their one message shape with the calling role's name. The apt_repo rollback needs a real apt host: the docker,
nvidia_container_toolkit and fleet scenarios test it (test_*_errors.py, fleet/test_nginx_repo_rollback.py).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INTERNAL = "comfyops.comfyui._common is internal to the collection's roles"

# One run, so each play has a host that gets through it ("dependency" passes the guard the way the collection's
# roles declare the role); a play whose hosts all failed would end the run.
PLAYBOOK = """
- name: A play that applies the internal role
  hosts: applied:dependency
  gather_facts: false
  roles:
    - comfyops.comfyui._common

- name: A play that includes an entry point
  hosts: included:dependency
  gather_facts: false
  tasks:
    - name: Include the os entry point
      ansible.builtin.include_role:
        name: comfyops.comfyui._common
        tasks_from: os
      vars:
        _common_os_supported: {Debian: ["12", "13"]}
      when: inventory_hostname == 'included'

- name: A role that uses the entry points
  hosts: via_role
  gather_facts: false
  roles:
    - probe
"""

# A stand-in for the collection's roles: it includes one entry point with the host's parameters.
PROBE_ROLE = """
- name: Check the platform
  ansible.builtin.include_role:
    name: comfyops.comfyui._common
    tasks_from: os
  vars:
    _common_os_supported: "{{ probe_supported }}"
    _common_os_architectures: "{{ probe_architectures | default([]) }}"
  when: probe_entry == 'os'

- name: Check the ports
  ansible.builtin.include_role:
    name: comfyops.comfyui._common
    tasks_from: ports
  vars:
    _common_ports: "{{ probe_ports }}"
    _common_ports_owners: "{{ probe_owners }}"
    _common_ports_vars: [probe_http_port, probe_https_port]
  when: probe_entry == 'ports'
"""


def os_release():
    fields = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    return fields["NAME"].strip('"').split()[0], fields["VERSION_ID"].strip('"')


@pytest.fixture(scope="module")
def listener():
    """A TCP port this process listens on, and the process name ss shows for it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1], Path("/proc/self/comm").read_text().strip()
    sock.close()


@pytest.fixture(scope="module")
def found(tmp_path_factory, listener):
    """{host: the message its run failed with, or None}, '_output': everything ansible-playbook said."""
    tmp = tmp_path_factory.mktemp("common")
    port, process = listener
    distribution, version = os_release()
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    via_role = {
        "os-supported": {"probe_entry": "os", "probe_supported": {distribution: [version]},
                         "probe_architectures": [platform.machine()]},
        "os-unsupported": {"probe_entry": "os", "probe_supported": {"Inferno": ["3", "4"], "Plan9": ["4"]}},
        "arch-unsupported": {"probe_entry": "os", "probe_supported": {distribution: [version]},
                             "probe_architectures": ["s390x"]},
        "port-taken": {"probe_entry": "ports", "probe_ports": [port], "probe_owners": ["nginx"]},
        "port-ours": {"probe_entry": "ports", "probe_ports": [port], "probe_owners": [process]},
    }
    inventory = {"all": {"hosts": {"applied": local, "included": local,
                                   "dependency": {**local, "_common_as_dependency": True}},
                         "children": {"via_role": {"hosts": {name: {**local, **variables}
                                                             for name, variables in via_role.items()}}}}}
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp / "play.yml").write_text(PLAYBOOK)
    (tmp / "roles" / "probe" / "tasks").mkdir(parents=True)
    (tmp / "roles" / "probe" / "tasks" / "main.yml").write_text(PROBE_ROLE)
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=str(tmp / "roles"))
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp / "inventory.yml"),
                           "--forks", "10", str(tmp / "play.yml")],
                          cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=300)
    try:
        plays = json.loads(proc.stdout)["plays"]
    except (ValueError, KeyError):
        pytest.fail("ansible-playbook gave no JSON result (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    out = {"applied": None, "included": None, "dependency": None, **{name: None for name in via_role}}
    for play in plays:
        for task in play["tasks"]:
            for name, result in task["hosts"].items():
                if result.get("failed"):
                    out[name] = result["msg"]
    out["_output"] = proc.stdout + proc.stderr
    return out


def test_a_play_cannot_apply_the_role(found):
    assert found["applied"] is not None and INTERNAL in found["applied"], found["_output"]
    assert "include_role and tasks_from" in found["applied"]


def test_a_role_that_declares_it_as_a_dependency_passes(found):
    assert found["dependency"] is None, found["dependency"]


def test_a_play_cannot_include_an_entry_point(found):
    assert found["included"] is not None and INTERNAL in found["included"], found["_output"]


def test_a_role_passes_on_a_supported_platform(found):
    assert found["os-supported"] is None, found["os-supported"]


def test_unsupported_os_names_the_calling_role_and_what_is_supported(found):
    distribution, version = os_release()
    message = found["os-unsupported"] or ""
    # the fact's version (Debian's point release, 12.11) begins with /etc/os-release's VERSION_ID
    assert message.startswith(f"probe role: unsupported operating system {distribution} {version}"), message
    assert message.endswith("; supported: Inferno 3/4, Plan9 4."), message


def test_unsupported_architecture(found):
    assert found["arch-unsupported"] == f"probe role: unsupported architecture {platform.machine()}; supported: s390x."


@pytest.fixture()
def ss():
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed on this controller")


def test_a_port_another_process_holds_is_a_clash(found, listener, ss):
    port, process = listener
    assert found["port-taken"] == (f"probe role: port clash: {port} ({process}) already used by another service on "
                                   "this host. Stop it, or choose other ports (probe_http_port, probe_https_port).")


def test_a_port_the_service_holds_is_free(found, ss):
    assert found["port-ours"] is None, found["port-ours"]


def test_no_traceback(found):
    assert "Traceback" not in found["_output"]
