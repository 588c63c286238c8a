"""comfyui_custom_node through ansible-playbook (AnsiballZ, a real subprocess per git/docker call) on localhost.

The "container" is the ComfyUI emulator running as 0.28.0 behind a fake docker CLI whose `restart` really stops
and starts it (tests/integration/custom_node/fake_docker.py), so the emulator's PID tells whether the module
restarted ComfyUI. Packs come from local file:// git repositories of tests/fixtures/node_packs.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "custom_node"))
from rig import GPU0, IMPORT_ERROR, LTX_CLASSES, Rig, rig, shared_rig  # noqa: E402,F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).resolve().parent / "custom_node" / "custom_node.yml"


def playbook(tmp_path, args, check=False, diff=False, callback="ansible.posix.json"):
    """(rc, the module's result or None, stdout) of one ansible-playbook run."""
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(dict(nodes_args=args)))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
           "-e", "ansible_python_interpreter=" + sys.executable, "-e", "@" + str(vars_file), str(PLAYBOOK)]
    cmd += ["--check"] if check else []
    cmd += ["--diff"] if diff else []
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK=callback, ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=240)
    if callback != "ansible.posix.json":
        return proc.returncode, None, proc.stdout
    try:
        tasks = json.loads(proc.stdout)["plays"][0]["tasks"]
    except (ValueError, KeyError, IndexError):
        pytest.fail("ansible-playbook gave no JSON result (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout,
                                                                               proc.stderr))
    return proc.returncode, tasks[0]["hosts"]["localhost"], proc.stdout


def test_check_install_noop_and_upgrade(rig, tmp_path):
    packs = [rig.ltx_pack(), rig.probe_pack()]
    pid = rig.docker.pid(GPU0)

    rc, result, _out = playbook(tmp_path, rig.args(packs), check=True)
    assert rc == 0 and result["changed"] and not result["restarted"]
    assert [p["after"] for p in result["packs"]] == [rig.ltx.commits[0], rig.probe.commits[1]]
    assert set(os.listdir(rig.custom_nodes)) == rig.shipped and not rig.state_dir.exists()
    assert rig.docker.pid(GPU0) == pid and rig.docker.calls("restart") == []

    rc, result, _out = playbook(tmp_path, rig.args(packs))
    assert rc == 0 and result["changed"] and result["restarted"] and result["verified"]
    assert [p["classes_missing"] for p in result["packs"]] == [[], []]
    assert rig.docker.pid(GPU0) != pid
    classes = rig.classes()
    assert all(c in classes for c in LTX_CLASSES + ["AnsibleProbeNode"])
    assert classes["LTXVBaseSampler"]["python_module"] == "custom_nodes.ComfyUI-LTXVideo"

    pid = rig.docker.pid(GPU0)
    rig.git.clear()
    rc, result, _out = playbook(tmp_path, rig.args(packs))
    assert rc == 0 and result["changed"] is False and result["restarted"] is False
    assert rig.docker.pid(GPU0) == pid and len(rig.docker.calls("restart")) == 1
    assert set(rig.git.commands()) <= {"rev-parse", "config"}  # nothing left the host

    # the upgrade, shown as the default callback prints it with --diff
    rc, _result, out = playbook(tmp_path, rig.args([rig.ltx_pack(commit=1), rig.probe_pack()]), diff=True,
                                callback="ansible.builtin.default")
    assert rc == 0, out
    # the diff lines, whether the callback renders the dicts as YAML (ansible.cfg here) or JSON
    assert re.search(r'^-\s+"?commit"?: "?%s' % rig.ltx.commits[0], out, re.M), out
    assert re.search(r'^\+\s+"?commit"?: "?%s' % rig.ltx.commits[1], out, re.M), out
    assert "changed: [localhost]" in out
    assert len(rig.docker.calls("restart")) == 2 and rig.docker.pid(GPU0) != pid
    assert rig.head("ComfyUI-LTXVideo") == rig.ltx.commits[1]


def test_broken_pack_is_rolled_back_and_the_previous_set_keeps_serving(rig, tmp_path):
    rc, _result, _out = playbook(tmp_path, rig.args([rig.ltx_pack(), rig.probe_pack(version=rig.probe.commits[0])]))
    assert rc == 0
    rc, result, _out = playbook(tmp_path, rig.args([rig.ltx_pack(), rig.probe_pack(), rig.broken_pack()]))
    assert rc == 2
    assert result["failed"] and result["rolled_back"]
    assert ("broken_pack at %s: classes missing on %s: BrokenPackNode; import error: %s"
            % (rig.broken.commits[0][:12], rig.docker.url(GPU0), IMPORT_ERROR)) in result["msg"]
    assert result["msg"].endswith("rolled back ansible_probe_nodes, broken_pack; restarted %s: previous set "
                                  "answering again" % GPU0)
    assert rig.head("ansible_probe_nodes") == rig.probe.commits[0]
    assert not (rig.custom_nodes / "broken_pack").exists()
    classes = rig.classes()
    assert "AnsibleProbeNode" in classes and "LTXVBaseSampler" in classes and "BrokenPackNode" not in classes


def test_disable_then_remove(rig, tmp_path):
    assert playbook(tmp_path, rig.args([rig.probe_pack()]))[0] == 0
    rc, result, _out = playbook(tmp_path, rig.args([rig.probe_pack(enabled=False)]))
    assert rc == 0 and result["changed"] and result["restarted"]
    assert not (rig.custom_nodes / "ansible_probe_nodes").exists()
    assert rig.head("ansible_probe_nodes.disabled") == rig.probe.commits[1]
    assert "AnsibleProbeNode" not in rig.classes()

    rc, result, _out = playbook(tmp_path, rig.args([dict(name="ansible_probe_nodes", state="absent")]))
    assert rc == 0 and result["changed"]
    assert not any(n.startswith("ansible_probe_nodes") for n in os.listdir(rig.custom_nodes))
    assert "ansible_probe_nodes" not in rig.state()
