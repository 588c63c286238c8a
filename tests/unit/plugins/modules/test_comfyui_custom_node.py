"""comfyui_custom_node in-process: real git repositories, the ComfyUI emulator as the "container", a fake docker CLI.

One emulator (ComfyUI 0.28.0, which the ComfyUI-LTXVideo stand-in needs) serves the whole module; the fake docker's
`restart` really stops and starts it, so restart -> wait -> verify -> rollback run for real. Each test starts from
an empty custom_nodes directory (the `rig` fixture clears what the previous test installed).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils.custom_nodes import NodeManager, Pack, Plan
from ansible_collections.comfyops.comfyui.plugins.modules import comfyui_custom_node
from emulator_helpers import http_request, free_port as pick_port

TESTS = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(TESTS / "integration" / "custom_node"))
from repos import PackRepo, probe_pack_source  # noqa: E402
from rig import GPU0, IMAGE_A, IMPORT_ERROR, LTX_CLASSES, Rig, run, rig, shared_rig  # noqa: E402,F401 (fixtures)


@pytest.fixture
def module(run_module):
    def call(args, check_mode=False, diff=False):
        if diff:
            args = dict(args, _ansible_diff=True)
        return run_module(comfyui_custom_node.main, args, check_mode=check_mode)
    return call


def ok(outcome):
    failed, result = outcome
    assert not failed, result["msg"]
    return result


def by_name(result):
    return {p["name"]: p for p in result["packs"]}


# ---------------------------------------------------------------------------------------------------- happy paths


def test_install_verifies_then_a_second_run_is_a_fast_offline_no_op(rig, module):
    pid = rig.docker.pid(GPU0)
    args = rig.args([rig.ltx_pack(), rig.probe_pack()])
    result = ok(module(args))
    assert result["changed"] and result["restarted"] and result["verified"] and not result["rolled_back"]
    ltx, probe = result["packs"]
    assert (ltx["before"], ltx["after"]) == (None, rig.ltx.commits[0])
    assert (probe["before"], probe["after"]) == (None, rig.probe.commits[1])
    assert ltx["classes_found"] == LTX_CLASSES and ltx["classes_missing"] == []
    assert probe["classes_found"] == ["AnsibleProbeNode"]
    assert ltx["requirements_installed"] and not probe["requirements_installed"]  # the probe has no requirements
    assert rig.docker.pid(GPU0) != pid and len(rig.docker.calls("restart")) == 1
    assert "Set VAE Decoder Noise" in rig.classes() and "AnsibleProbeNode" in rig.classes()
    # pip ran once, in the container, on container paths, with the merged constraints
    assert rig.docker.execs() == [dict(container=GPU0, argv=[
        "python3", "-m", "pip", "install", "--user", "--no-warn-script-location",
        "-r", "/opt/comfyui/custom_nodes/ComfyUI-LTXVideo/requirements.txt",
        "-c", "/opt/comfyui/custom_nodes/.comfyops-constraints.txt"])]
    assert (rig.custom_nodes / ".comfyops-constraints.txt").read_text().splitlines()[1:] == ["kornia<=0.8.2"]
    state = rig.state()
    assert state["ComfyUI-LTXVideo"]["commit"] == rig.ltx.commits[0]
    assert state["ComfyUI-LTXVideo"]["requirements"]["image"] == IMAGE_A
    assert state["ansible_probe_nodes"]["requirements"] is None
    assert sorted(os.listdir(rig.state_dir)) == ["previous", "state.json"]
    assert os.listdir(rig.state_dir / "previous") == []

    rig.git.clear()
    calls = len(rig.docker.calls())
    pid = rig.docker.pid(GPU0)
    started = time.monotonic()
    again = ok(module(args))
    elapsed = time.monotonic() - started
    assert again["changed"] is False and again["restarted"] is False
    assert [(p["before"], p["after"], p["changed"]) for p in again["packs"]] == [
        (rig.ltx.commits[0], rig.ltx.commits[0], False), (rig.probe.commits[1], rig.probe.commits[1], False)]
    assert rig.docker.pid(GPU0) == pid
    # one docker inspect for the image, nothing else; git only read local refs
    assert [c[0] for c in rig.docker.calls()[calls:]] == ["inspect"]
    assert set(rig.git.commands()) <= {"rev-parse", "config"}
    assert elapsed < 1.0, "no-op took %.2f s for 2 packs" % elapsed


def test_upgrade_restarts_once_reinstalls_only_changed_requirements_and_diffs(rig, module):
    ok(module(rig.args([rig.ltx_pack(), rig.probe_pack(version=rig.probe.commits[0])])))
    calls = len(rig.docker.calls("restart"))
    execs = len(rig.docker.execs())
    result = ok(module(rig.args([rig.ltx_pack(commit=1), rig.probe_pack(version=rig.probe.commits[1])]), diff=True))
    assert result["restarted"] and len(rig.docker.calls("restart")) == calls + 1
    ltx, probe = result["packs"]
    assert (ltx["before"], ltx["after"], ltx["changed"]) == (rig.ltx.commits[0], rig.ltx.commits[1], True)
    assert (probe["before"], probe["after"], probe["changed"]) == (rig.probe.commits[0], rig.probe.commits[1], True)
    # only LTXVideo's requirements.txt changed between the commits
    assert ltx["requirements_installed"] and not probe["requirements_installed"]
    assert [e["argv"][-3] for e in rig.docker.execs()[execs:]] == [
        "/opt/comfyui/custom_nodes/ComfyUI-LTXVideo/requirements.txt"]
    assert result["diff"]["before"] == {"ComfyUI-LTXVideo": {"commit": rig.ltx.commits[0], "enabled": True},
                                        "ansible_probe_nodes": {"commit": rig.probe.commits[0], "enabled": True}}
    assert result["diff"]["after"] == {"ComfyUI-LTXVideo": {"commit": rig.ltx.commits[1], "enabled": True},
                                       "ansible_probe_nodes": {"commit": rig.probe.commits[1], "enabled": True}}
    assert rig.head("ComfyUI-LTXVideo") == rig.ltx.commits[1]
    assert os.listdir(rig.state_dir / "previous") == []  # the old trees go once the new set is verified


def test_image_or_constraint_change_reinstalls_requirements_and_restarts(rig, module):
    args = rig.args([rig.ltx_pack()])
    ok(module(args))
    rig.docker.set_image("sha256:" + "b" * 64)
    result = ok(module(args))
    (ltx,) = result["packs"]
    assert result["changed"] and result["restarted"] and ltx["requirements_installed"]
    assert ltx["before"] == ltx["after"] == rig.ltx.commits[0]
    assert rig.state()["ComfyUI-LTXVideo"]["requirements"]["image"] == "sha256:" + "b" * 64

    index = ["--index-url", "http://127.0.0.1:9/simple"]
    result = ok(module(dict(args, constraints=["torch==2.11.0"], pip_extra_args=index)))
    assert result["packs"][0]["requirements_installed"] and result["restarted"]
    assert result["pip_command"][6:8] == index and rig.docker.execs()[-1]["argv"] == result["pip_command"]
    assert (rig.custom_nodes / ".comfyops-constraints.txt").read_text().splitlines()[1:] == [
        "torch==2.11.0", "kornia<=0.8.2"]
    assert ok(module(dict(args, constraints=["torch==2.11.0"])))["changed"] is False
    assert len(rig.docker.execs()) == 3


def test_disable_enable_and_remove(rig, module):
    ok(module(rig.args([rig.probe_pack()])))
    result = ok(module(rig.args([rig.probe_pack(enabled=False)])))
    (probe,) = result["packs"]
    assert result["changed"] and result["restarted"] and probe["enabled"] is False
    assert probe["before"] == probe["after"] == rig.probe.commits[1]
    assert probe["path"] == str(rig.custom_nodes / "ansible_probe_nodes.disabled")
    assert probe["classes_found"] is None  # a disabled pack is not imported, so not checked
    assert not (rig.custom_nodes / "ansible_probe_nodes").exists()
    assert rig.head("ansible_probe_nodes.disabled") == rig.probe.commits[1]
    assert "AnsibleProbeNode" not in rig.classes()
    assert ok(module(rig.args([rig.probe_pack(enabled=False)])))["changed"] is False

    result = ok(module(rig.args([rig.probe_pack()])))
    assert result["changed"] and "AnsibleProbeNode" in rig.classes()

    restarts = len(rig.docker.calls("restart"))
    result = ok(module(rig.args([dict(name="ansible_probe_nodes", state="absent")]), diff=True))
    assert result["changed"] and result["restarted"] and len(rig.docker.calls("restart")) == restarts + 1
    assert result["packs"][0]["before"] == rig.probe.commits[1] and result["packs"][0]["path"] is None
    assert result["diff"]["after"] == {}
    assert not (rig.custom_nodes / "ansible_probe_nodes").exists() and "ansible_probe_nodes" not in rig.state()
    assert "AnsibleProbeNode" not in rig.classes()
    again = ok(module(rig.args([dict(name="ansible_probe_nodes", state="absent")])))
    assert again["changed"] is False and again["restarted"] is False


def test_requirements_false_skips_pip(rig, module):
    result = ok(module(rig.args([rig.ltx_pack(requirements=False)])))
    assert result["restarted"] and not result["packs"][0]["requirements_installed"]
    assert rig.docker.execs() == [] and result["image"] is None


def test_changes_to_a_disabled_pack_need_no_restart(rig, module):
    ok(module(rig.args([rig.probe_pack(version=rig.probe.commits[0], enabled=False)])))
    restarts = len(rig.docker.calls("restart"))
    result = ok(module(rig.args([rig.probe_pack(version=rig.probe.commits[1], enabled=False)])))
    assert result["changed"] and not result["restart_needed"] and not result["restarted"]
    assert rig.head("ansible_probe_nodes.disabled") == rig.probe.commits[1]
    assert len(rig.docker.calls("restart")) == restarts


def test_two_containers_restart_in_one_call_and_are_both_verified(rig, module):
    rig.docker.add("comfyui-gpu1", pick_port())
    rig.docker.start("comfyui-gpu1")
    try:
        result = ok(module(rig.args([rig.probe_pack()], containers=[GPU0, "comfyui-gpu1"],
                                    urls=[rig.docker.url(GPU0), rig.docker.url("comfyui-gpu1")])))
        assert result["verified"]
        assert rig.docker.calls("restart") == [["restart", GPU0, "comfyui-gpu1"]]
        gpu1 = json.loads(http_request(rig.docker.url("comfyui-gpu1"), "GET", "/object_info").body)
        assert "AnsibleProbeNode" in gpu1
    finally:
        rig.docker.remove("comfyui-gpu1")


# ---------------------------------------------------------------------------------------------------- refs


def test_latest_follows_the_branch(rig, module, tmp_path):
    repo = PackRepo(tmp_path / "follow", "ansible_probe_nodes")
    pack = dict(name="follow", repo=repo.url, version="main", state="latest", expected_classes=["AnsibleProbeNode"])
    assert ok(module(rig.offline_args([pack])))["packs"][0]["after"] == repo.commits[0]
    rig.git.clear()
    assert ok(module(rig.offline_args([pack])))["changed"] is False
    assert "ls-remote" in rig.git.commands() and "clone" not in rig.git.commands()
    new = repo.commit("more", {"x.py": "X = 1\n"})
    result = ok(module(rig.offline_args([pack])))
    assert (result["packs"][0]["before"], result["packs"][0]["after"]) == (repo.commits[0], new)
    assert rig.head("follow") == new


def test_latest_fails_for_a_ref_the_remote_does_not_have(rig, module, tmp_path):
    repo = PackRepo(tmp_path / "follow", "ansible_probe_nodes")
    ok(module(rig.offline_args([dict(name="follow", repo=repo.url)])))
    failed, result = module(rig.offline_args([dict(name="follow", repo=repo.url, version="gone", state="latest")]))
    assert failed and result["msg"] == "follow: version gone not found in %s" % repo.url


def test_present_without_version_keeps_whatever_commit_is_there(rig, module, tmp_path):
    repo = PackRepo(tmp_path / "anyref", "ansible_probe_nodes")
    pack = dict(name="anyref", repo=repo.url)
    assert ok(module(rig.offline_args([pack])))["packs"][0]["after"] == repo.commits[0]
    repo.commit("upstream moved on", {"x.py": "X = 1\n"})
    rig.git.clear()
    result = ok(module(rig.offline_args([pack])))
    assert result["changed"] is False and result["packs"][0]["after"] == repo.commits[0]
    assert set(rig.git.commands()) <= {"rev-parse", "config"}


def test_a_tag_unknown_locally_that_names_the_same_commit_changes_nothing(rig, module):
    ok(module(rig.offline_args([rig.probe_pack(version="main")])))
    tag = "t-%d" % time.monotonic_ns()
    rig.probe.tag(tag)
    rig.git.clear()
    result = ok(module(rig.args([rig.probe_pack(version=tag)])))
    # only a clone could tell; it named the commit already there, so nothing moved and nothing restarted
    assert "clone" in rig.git.commands()
    assert result["changed"] is False and rig.docker.calls("restart") == []
    # that run fetched the tag into the checkout, so the next one answers locally
    rig.git.clear()
    assert ok(module(rig.offline_args([rig.probe_pack(version=tag)])))["changed"] is False
    assert set(rig.git.commands()) <= {"rev-parse", "config"}


def test_a_directory_not_from_the_repo_is_replaced(rig, module):
    foreign = rig.custom_nodes / "ansible_probe_nodes"
    shutil.copytree(TESTS / "fixtures" / "node_packs" / "ansible_probe_nodes", foreign)
    result = ok(module(rig.offline_args([rig.probe_pack()])))
    assert result["changed"] and result["packs"][0]["before"] is None
    assert rig.head("ansible_probe_nodes") == rig.probe.commits[1]


def test_both_enabled_and_disabled_copies_are_refused(rig, module):
    (rig.custom_nodes / "ansible_probe_nodes").mkdir()
    (rig.custom_nodes / "ansible_probe_nodes.disabled").mkdir()
    failed, result = module(rig.offline_args([rig.probe_pack()]))
    assert failed and result["msg"] == "ansible_probe_nodes: both %s and %s.disabled exist; remove one of them" % (
        rig.custom_nodes / "ansible_probe_nodes", rig.custom_nodes / "ansible_probe_nodes")
    # absent takes both away
    assert ok(module(rig.offline_args([dict(name="ansible_probe_nodes", state="absent")])))["changed"]
    assert not any(n.startswith("ansible_probe_nodes") for n in os.listdir(rig.custom_nodes))


def test_unknown_version_fails_before_touching_anything(rig, module):
    failed, result = module(rig.args([rig.probe_pack(version="v9.9")]))
    assert failed and result["msg"] == "ansible_probe_nodes: version v9.9 not found in %s" % rig.probe.url
    assert result["rolled_back"] is False  # nothing had been touched
    assert not (rig.custom_nodes / "ansible_probe_nodes").exists()
    assert rig.docker.calls("restart") == []


# ---------------------------------------------------------------------------------------------------- check mode


def test_check_mode_reports_the_plan_and_touches_nothing(rig, module):
    before = sorted(os.listdir(rig.custom_nodes))
    result = ok(module(rig.args([rig.ltx_pack(), rig.probe_pack()]), check_mode=True, diff=True))
    ltx, probe = result["packs"]
    assert result["changed"] and result["restart_needed"] and not result["restarted"]
    assert ltx["after"] == rig.ltx.commits[0] and probe["after"] == rig.probe.commits[1]  # via ls-remote
    assert ltx["requirements_installed"] and probe["changed"]
    assert result["diff"]["before"] == {} and set(result["diff"]["after"]) == {"ComfyUI-LTXVideo", "ansible_probe_nodes"}
    assert sorted(os.listdir(rig.custom_nodes)) == before and not rig.state_dir.exists()
    assert [c[0] for c in rig.docker.calls()] == ["inspect"]
    assert set(rig.git.commands()) == {"ls-remote"}

    ok(module(rig.args([rig.ltx_pack(), rig.probe_pack(version=rig.probe.commits[0])])))
    state = rig.state()
    calls = len(rig.docker.calls())
    result = ok(module(rig.args([rig.ltx_pack(commit=1), rig.probe_pack(version=rig.probe.commits[0], enabled=False)]),
                       check_mode=True))
    ltx, probe = result["packs"]
    assert (ltx["before"], ltx["after"], ltx["changed"]) == (rig.ltx.commits[0], rig.ltx.commits[1], True)
    assert probe["changed"] and probe["enabled"] is False
    assert rig.head("ComfyUI-LTXVideo") == rig.ltx.commits[0]
    assert (rig.custom_nodes / "ansible_probe_nodes").is_dir() and rig.state() == state
    assert [c[0] for c in rig.docker.calls()[calls:]] == ["inspect"]


def test_check_mode_asks_the_remote_for_a_tag_the_clone_does_not_know(rig, module):
    ok(module(rig.offline_args([rig.probe_pack(version=rig.probe.commits[0])])))
    tag = "c-%d" % time.monotonic_ns()
    rig.probe.tag(tag)  # on the second commit
    rig.git.clear()
    result = ok(module(rig.offline_args([rig.probe_pack(version=tag)]), check_mode=True))
    assert result["changed"] and result["packs"][0]["after"] == rig.probe.commits[1]
    assert "ls-remote" in rig.git.commands() and "clone" not in rig.git.commands()
    assert rig.head("ansible_probe_nodes") == rig.probe.commits[0]


def test_check_mode_cannot_name_an_abbreviated_commit_it_does_not_have(rig, module):
    result = ok(module(rig.args([rig.probe_pack(version=rig.probe.commits[0][:10])]), check_mode=True, diff=True))
    assert result["changed"] and result["packs"][0]["after"] is None
    assert result["diff"]["after"]["ansible_probe_nodes"]["commit"] == "unknown: would clone %s %s" % (
        rig.probe.url, rig.probe.commits[0][:10])


# ---------------------------------------------------------------------------------------------------- failures


def test_broken_pack_rolls_back_every_changed_pack_and_names_the_import_error(rig, module):
    ok(module(rig.args([rig.probe_pack(version=rig.probe.commits[0])])))
    state = rig.state()
    restarts = len(rig.docker.calls("restart"))
    failed, result = module(rig.args([rig.probe_pack(version=rig.probe.commits[1]), rig.broken_pack()]))
    assert failed
    broken_commit = rig.broken.commits[0]
    assert result["msg"] == (
        "node pack verification failed: broken_pack at %s: classes missing on %s: BrokenPackNode; import error: %s. "
        "rolled back ansible_probe_nodes, broken_pack; restarted %s: previous set answering again"
        % (broken_commit[:12], rig.docker.url(GPU0), IMPORT_ERROR, GPU0))
    assert result["rolled_back"] and result["restarted"] and "diff" not in result
    packs = by_name(result)
    assert packs["broken_pack"]["import_error"] == IMPORT_ERROR
    assert packs["broken_pack"]["classes_missing"] == ["BrokenPackNode"]
    assert packs["ansible_probe_nodes"]["classes_found"] == ["AnsibleProbeNode"]
    # restarted for the change and again for the rollback; the previous set is what runs now
    assert len(rig.docker.calls("restart")) == restarts + 2
    assert rig.head("ansible_probe_nodes") == rig.probe.commits[0]
    assert not (rig.custom_nodes / "broken_pack").exists()
    assert rig.state() == state
    classes = rig.classes()
    assert "AnsibleProbeNode" in classes and "BrokenPackNode" not in classes
    assert os.listdir(rig.state_dir / "previous") == []


def test_missing_classes_without_an_import_error(rig, module, tmp_path):
    repo = PackRepo(tmp_path / "renamed", "ansible_probe_nodes")
    repo.commit("rename the class", {"__init__.py": probe_pack_source("RenamedProbe")})
    failed, result = module(rig.args([dict(name="renamed", repo=repo.url, expected_classes=["AnsibleProbeNode"])]))
    assert failed
    assert "renamed at %s: classes missing on %s: AnsibleProbeNode; import error: none logged for renamed" % (
        repo.commits[1][:12], rig.docker.url(GPU0)) in result["msg"]
    assert not (rig.custom_nodes / "renamed").exists()


def test_a_pack_that_kills_comfyui_at_startup_is_rolled_back(rig, module, tmp_path):
    repo = PackRepo(tmp_path / "killer", "ansible_probe_nodes")
    repo.commit("die at start-up", {"prestartup_script.py": "import os\nprint('killer: exiting')\nos._exit(3)\n"})
    failed, result = module(rig.args([dict(name="killer", repo=repo.url)], wait_timeout=2))
    assert failed
    assert result["msg"].startswith("node pack verification failed: %s: not ready within 2 s: " % rig.docker.url(GPU0))
    assert "; last log lines of %s:\n" % GPU0 in result["msg"] and "killer: exiting" in result["msg"]
    assert result["msg"].endswith("rolled back killer; restarted %s: previous set answering again" % GPU0)
    assert not (rig.custom_nodes / "killer").exists()
    assert http_request(rig.docker.url(GPU0), "GET", "/").status == 200


def test_pip_failure_rolls_back_before_any_restart(rig, module):
    rig.docker.fail_pip("ERROR: No matching distribution found for kornia<=0.8.2\n")
    failed, result = module(rig.args([rig.ltx_pack(), rig.probe_pack()]))
    assert failed
    assert result["msg"] == (
        "pip install in container %s failed (rc 1) for ComfyUI-LTXVideo: ERROR: No matching distribution found for "
        "kornia<=0.8.2; the node packs were rolled back (packages pip installed before it failed stay in the user "
        "base)" % GPU0)
    assert result["rolled_back"] and not result["restarted"]
    assert result["pip_command"][-4:] == ["-r", "/opt/comfyui/custom_nodes/ComfyUI-LTXVideo/requirements.txt",
                                          "-c", "/opt/comfyui/custom_nodes/.comfyops-constraints.txt"]
    assert rig.docker.calls("restart") == []
    assert set(os.listdir(rig.custom_nodes)) == rig.shipped  # constraints file and packs gone again
    assert not (rig.state_dir / "state.json").exists()


def test_a_wrong_container_fails_before_touching_anything(rig, module):
    failed, result = module(rig.args([rig.ltx_pack()], containers=["nope"]))
    assert failed and result["msg"].startswith("docker inspect nope failed (rc 1): Error response from daemon: "
                                               "No such container: nope")
    assert set(os.listdir(rig.custom_nodes)) == rig.shipped


# ---------------------------------------------------------------------------------------------------- other modes


def test_without_containers_packs_are_placed_and_installed_later(rig, module):
    result = ok(module(rig.args([rig.ltx_pack()], containers=[], urls=[])))
    assert result["changed"] and not result["restarted"] and result["restart_needed"]
    assert result["warnings"] == ["no containers given: ComfyUI must be restarted to load the changed node packs"]
    assert rig.state()["ComfyUI-LTXVideo"]["requirements"] is None and rig.docker.calls() == []
    result = ok(module(rig.args([rig.ltx_pack()])))
    assert result["packs"][0]["requirements_installed"] and result["restarted"] and result["verified"]
    assert result["packs"][0]["before"] == result["packs"][0]["after"] == rig.ltx.commits[0]


def test_urls_without_containers_warn(rig, module):
    result = ok(module(rig.args([rig.probe_pack()], containers=[])))
    assert "urls are only checked after a restart, and without containers there is none" in result["warnings"]


def test_owner_and_group_are_applied_to_placed_trees(rig, module):
    import grp
    import pwd

    uid, gid = os.getuid(), os.getgid()
    ok(module(rig.args([rig.ltx_pack(), rig.probe_pack()], containers=[], urls=[], owner=str(uid),
                       group=grp.getgrgid(gid).gr_name, constraints=["torch==2.11.0"])))
    assert (rig.custom_nodes / "ComfyUI-LTXVideo" / "web" / "js").stat().st_uid == uid
    ok(module(rig.args([rig.probe_pack()], containers=[], urls=[], owner=pwd.getpwuid(uid).pw_name)))
    failed, result = module(rig.args([rig.probe_pack()], owner="no-such-user-comfyops"))
    assert failed and result["msg"] == "owner 'no-such-user-comfyops' does not exist on the host"


def test_an_unreadable_state_file_costs_a_reinstall_not_a_failure(rig, module):
    args = rig.args([rig.ltx_pack()])
    ok(module(args))
    (rig.state_dir / "state.json").write_text("{truncated")
    result = ok(module(args))
    assert result["warnings"] == ["ignoring unreadable state file %s: requirements will be installed again"
                                  % (rig.state_dir / "state.json")]
    assert result["packs"][0]["requirements_installed"] and result["restarted"]
    assert rig.state()["ComfyUI-LTXVideo"]["commit"] == rig.ltx.commits[0]


def test_file_system_errors_are_messages(rig, module):
    (rig.state_dir / "state.json").mkdir(parents=True)
    failed, result = module(rig.args([rig.probe_pack()]))
    assert failed and result["msg"] == "comfyui_custom_node: [Errno 21] Is a directory: '%s'" % (
        rig.state_dir / "state.json")


def test_wait_reports_instances_that_never_answer_properly(comfy, free_port, tmp_path):
    comfy.set("/object_info", ["not", "a", "dict"])
    params = dict(packs=[dict(name="p", repo="file:///r")], custom_nodes_dir=str(tmp_path / "cn"),
                  urls=[comfy.url, comfy.url + "/missing/", "http://127.0.0.1:%d" % free_port],
                  wait_timeout=0.3, delay=0.1, timeout=5)
    comfy.set("/missing/object_info", b"", status=404, content_type="application/octet-stream")
    answers = NodeManager(params, run).wait_ready()
    # neither a wrong answer nor a 4xx gets better by waiting
    assert answers[comfy.url] == "not ready: GET %s/object_info: not a ComfyUI object_info answer" % comfy.url
    assert answers[comfy.url + "/missing/"].startswith("not ready: GET %s/missing/object_info: HTTP 404" % comfy.url)
    assert answers["http://127.0.0.1:%d" % free_port].startswith("not ready within 0.3 s: ")


def test_import_error_falls_back_to_docker_logs(comfy, tmp_path):
    # a proxy in front of ComfyUI (here the canned server) may not pass /internal/logs on
    logs = "\x1b[1m\x1b[33m[WARNING]\x1b[0m Cannot import /opt/comfyui/custom_nodes/p module for custom nodes: boom\n"
    calls = []

    def fake_run(argv):
        calls.append(argv)
        return 0, "", logs

    params = dict(packs=[dict(name="p", repo="file:///r")], custom_nodes_dir=str(tmp_path / "cn"),
                  containers=["gpu0"], urls=[comfy.url], container_custom_nodes_dir="/opt/comfyui/custom_nodes",
                  wait_timeout=1, delay=0.1, timeout=5)
    manager = NodeManager(params, fake_run)
    plan = Plan(Pack("p", "file:///r"), (None, None))
    assert manager._import_error(plan, comfy.url, since=1000.5) == "boom"
    assert comfy.count("/internal/logs") == 1
    assert calls == [["docker", "logs", "--since", "999", "gpu0"]]


# ---------------------------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("packs, extra, message", [
    ([{"name": "p", "repo": "file:///r", "state": "gone"}], {},
     "value of state must be one of: present, absent, latest, got: gone found in packs"),
    ([{"repo": "file:///r"}], {}, "missing required arguments: name found in packs"),
    ([{"name": "p"}], {}, "packs[0] (p): repo is required with state=present"),
    ([{"name": "p", "state": "absent", "version": "v1"}], {}, "packs[0] (p): state=absent takes no version"),
    ([{"name": "p", "repo": "file:///r"}, {"name": "p", "repo": "file:///s"}], {},
     "packs: name 'p' is given more than once"),
    ([{"name": "../p", "repo": "file:///r"}], {}, "packs[0] (../p): name must be a single directory name (no '/')"),
    ([], {}, "packs must not be empty"),
    ([{"name": "p", "repo": "file:///r"}], {"delay": 0}, "delay must be > 0, got 0.0"),
    ([{"name": "p", "repo": "file:///r"}], {"wait_timeout": -1}, "wait_timeout must be >= 0, got -1.0"),
    ([{"name": "p", "repo": "file:///r"}], {"pip_command": []}, "pip_command must not be empty"),
    ([{"name": "p", "repo": "file:///r"}], {"containers": ["a", "a"]}, "containers must not repeat a name: a, a"),
])
def test_argument_errors_are_messages_not_tracebacks(module, tmp_path, packs, extra, message):
    failed, result = module(dict(dict(packs=packs, custom_nodes_dir=str(tmp_path / "cn")), **extra))
    assert failed and result["msg"] == message


def test_state_dir_inside_custom_nodes_is_refused(module, tmp_path):
    failed, result = module(dict(packs=[{"name": "p", "repo": "file:///r"}], custom_nodes_dir=str(tmp_path / "cn"),
                                 state_dir=str(tmp_path / "cn" / ".state")))
    assert failed and result["msg"] == (
        "state_dir %s must not be inside custom_nodes_dir %s: ComfyUI would try to import the staging and backup "
        "directories" % (tmp_path / "cn" / ".state", tmp_path / "cn"))


def test_state_dir_on_another_file_system_is_refused(module, tmp_path):
    if os.stat(tmp_path).st_dev == os.stat("/dev/shm").st_dev:
        pytest.skip("/dev/shm is not a separate file system here")
    failed, result = module(dict(packs=[{"name": "p", "repo": "file:///r"}], custom_nodes_dir=str(tmp_path / "cn"),
                                 state_dir="/dev/shm/comfyops-test-%d" % os.getpid()))
    shutil.rmtree("/dev/shm/comfyops-test-%d" % os.getpid(), ignore_errors=True)
    assert failed and "are on different file systems; the swap needs a rename" in result["msg"]


def test_documentation_matches_the_argument_spec(argument_spec_of):
    import yaml

    from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import comfyui_http_argument_spec

    doc = yaml.safe_load(comfyui_custom_node.DOCUMENTATION)
    captured = argument_spec_of("comfyui_custom_node")
    http = comfyui_http_argument_spec()
    assert sorted(doc["options"]) == sorted(set(captured) - set(http))

    def same(options, spec):
        for name, s in spec.items():
            opt = options[name]
            assert opt["type"] == s.get("type", "str"), name
            assert opt.get("default") == s.get("default"), name
            assert opt.get("elements") == s.get("elements"), name
            assert bool(opt.get("required")) == bool(s.get("required")), name
            assert opt.get("choices") == s.get("choices"), name
            assert sorted(opt.get("aliases", [])) == sorted(s.get("aliases", [])), name
            if "options" in s:
                assert sorted(opt["suboptions"]) == sorted(s["options"]), name
                same(opt["suboptions"], s["options"])

    same(doc["options"], {k: v for k, v in captured.items() if k not in http})
    assert doc["attributes"]["check_mode"]["support"] == "full"
    assert doc["attributes"]["diff_mode"]["support"] == "full"
    assert doc["attributes"]["idempotent"]["support"] == "full"
    examples = yaml.safe_load(comfyui_custom_node.EXAMPLES)
    assert all("comfyops.comfyui.comfyui_custom_node" in task for task in examples)
    yaml.safe_load(comfyui_custom_node.RETURN)
