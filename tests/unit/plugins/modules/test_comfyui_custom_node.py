"""comfyui_custom_node as Ansible runs it: options and their errors, check mode, --diff, idempotence, credentials,
hostile repositories. Real git against local repositories; git_bin is a wrapper that logs each git process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.modules import comfyui_custom_node

ROOT = Path(__file__).resolve().parents[4]
TESTS = ROOT / "tests"
sys.path.insert(0, str(TESTS / "integration" / "custom_node"))
from repos import PackRepo, RecordingGit, git  # noqa: E402

LTX_CLASSES = ["LTXVBaseSampler", "Set VAE Decoder Noise"]


@pytest.fixture
def module(run_module):
    def call(args, check_mode=False, diff=False):
        if diff:
            args = dict(args, _ansible_diff=True)
        return run_module(comfyui_custom_node.main, args, check_mode=check_mode)
    return call


@pytest.fixture
def rig(tmp_path):
    class Rig:
        ltx = PackRepo(tmp_path / "repos" / "ComfyUI-LTXVideo", "ComfyUI-LTXVideo")
        probe = PackRepo(tmp_path / "repos" / "ansible_probe_nodes", "ansible_probe_nodes")
        store = tmp_path / "data" / ".comfyops" / "packs"
        reqs = tmp_path / "project" / "build" / "pack-requirements"
        git = RecordingGit(tmp_path / "bin")

        def args(self, packs, **kw):
            return dict(dict(store_dir=str(self.store), requirements_dir=str(self.reqs), packs=packs,
                             git_bin=str(self.git.bin)), **kw)

        def ltx_pack(self, **kw):
            return dict(dict(name="ComfyUI-LTXVideo", repo=self.ltx.url, version=self.ltx.commits[0],
                             expected_classes=LTX_CLASSES, constraints=["kornia<=0.8.2"]), **kw)

        def probe_pack(self, **kw):
            return dict(dict(name="ansible_probe_nodes", repo=self.probe.url, version="v1",
                             expected_classes=["AnsibleProbeNode"]), **kw)

    r = Rig()
    r.ltx.commit("pin kornia", {"requirements.txt": (r.ltx.path / "requirements.txt").read_text() + "kornia<=0.8.2\n"})
    r.probe.tag("v1")
    return r


def ok(outcome):
    failed, result = outcome
    assert not failed, result["msg"]
    return result


def fails(outcome):
    failed, result = outcome
    assert failed, result
    return result["msg"]


def tree(path):
    """Every path under path with its content or link target, to prove a failed run changed nothing."""
    if not os.path.lexists(path):
        return None
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            out[os.path.relpath(p, path)] = os.readlink(p) if os.path.islink(p) else (
                open(p, "rb").read() if os.path.isfile(p) else "dir")
    return out


# ---------------------------------------------------------------------------------------------------- runs


def test_first_run_places_and_exports_then_a_second_run_starts_no_git_at_all(rig, module):
    args = rig.args([rig.ltx_pack(), rig.probe_pack()], constraints=["torch==2.11.0"])
    result = ok(module(args))
    ltx, probe = result["packs"]
    assert result["changed"] and ltx["changed"] and probe["changed"]
    assert ltx["path"] == str(rig.store / "ComfyUI-LTXVideo" / rig.ltx.commits[0])
    assert probe["commit"] == rig.probe.commits[0] and probe["path"].endswith("/" + rig.probe.commits[0])
    assert (Path(ltx["path"]) / "__init__.py").is_file() and (Path(probe["path"]) / "__init__.py").is_file()
    assert ltx["expected_classes"] == LTX_CLASSES and ltx["enabled"] is True
    assert os.listdir(rig.reqs) == ["ComfyUI-LTXVideo.txt"]  # the probe has no requirements
    assert probe["requirements_sha256"] is None and ltx["requirements_sha256"]
    assert result["constraints"] == ["torch==2.11.0", "kornia<=0.8.2"]
    assert "diff" not in result
    assert "clone" in rig.git.commands()

    rig.git.clear()
    again = ok(module(args))
    assert not again["changed"] and not any(p["changed"] for p in again["packs"])
    assert again["packs"] == [dict(p, changed=False) for p in result["packs"]]
    assert rig.git.commands() == []  # not one git process


def test_a_new_commit_lands_beside_the_live_entry_with_a_diff(rig, module):
    ok(module(rig.args([rig.ltx_pack()])))
    old = rig.store / "ComfyUI-LTXVideo" / rig.ltx.commits[0]
    old_tree = tree(old)
    result = ok(module(rig.args([rig.ltx_pack(version=rig.ltx.commits[1])]), diff=True))
    assert result["changed"] and result["packs"][0]["commit"] == rig.ltx.commits[1]
    assert tree(old) == old_tree
    before, after = result["diff"]["before"]["ComfyUI-LTXVideo"], result["diff"]["after"]["ComfyUI-LTXVideo"]
    assert (before["commit"], after["commit"]) == (rig.ltx.commits[0], rig.ltx.commits[1])
    assert before["requirements_sha256"] != after["requirements_sha256"]  # kornia was pinned in requirements.txt
    assert after["requirements_sha256"] == result["packs"][0]["requirements_sha256"]
    assert "kornia<=0.8.2" in (rig.reqs / "ComfyUI-LTXVideo.txt").read_text()
    # --diff of a no-op run: before == after
    again = ok(module(rig.args([rig.ltx_pack(version=rig.ltx.commits[1])]), diff=True))
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]


def test_check_mode_reports_the_plan_and_writes_nothing(rig, module, tmp_path):
    args = rig.args([rig.ltx_pack(), rig.probe_pack()])
    result = ok(module(args, check_mode=True, diff=True))
    assert result["changed"]
    ltx, probe = result["packs"]
    assert ltx["commit"] == rig.ltx.commits[0] and probe["commit"] == rig.probe.commits[0]  # v1 via ls-remote
    assert rig.git.commands() == ["ls-remote"]  # the pinned commit needs no git at all
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["ansible_probe_nodes"]["commit"] == rig.probe.commits[0]
    assert not (tmp_path / "data").exists() and not (tmp_path / "project").exists()
    # after a real run, check mode sees nothing to do, and still writes nothing
    ok(module(args))
    snapshot = tree(tmp_path / "data"), tree(tmp_path / "project")
    rig.git.clear()
    assert not ok(module(args, check_mode=True))["changed"]
    assert rig.git.commands() == [] and (tree(tmp_path / "data"), tree(tmp_path / "project")) == snapshot


def test_disabling_a_pack_removes_its_requirements_copy_and_is_a_change(rig, module):
    ok(module(rig.args([rig.ltx_pack()])))
    result = ok(module(rig.args([rig.ltx_pack(enabled=False)]), diff=True))
    assert result["changed"] and result["packs"][0]["enabled"] is False
    assert result["packs"][0]["path"]  # still in the store; the role mounts only enabled packs
    assert os.listdir(rig.reqs) == []
    assert result["diff"]["after"]["ComfyUI-LTXVideo"]["requirements_sha256"] is None
    assert not ok(module(rig.args([rig.ltx_pack(enabled=False)])))["changed"]
    assert ok(module(rig.args([rig.ltx_pack(install_requirements=False, enabled=True)])))["packs"][0][
        "requirements_sha256"] is None


def test_without_requirements_dir_nothing_is_read_or_exported(rig, module):
    result = ok(module(rig.args([rig.ltx_pack()], requirements_dir=None)))
    assert result["packs"][0]["requirements_sha256"] is None and not rig.reqs.exists()


def test_a_clone_that_fails_names_the_pack_and_leaves_no_entry(rig, module):
    msg = fails(module(rig.args([rig.ltx_pack(version="no-such-tag")])))
    assert msg == "comfyui_custom_node: ComfyUI-LTXVideo: version no-such-tag not found in %s" % rig.ltx.url
    assert os.listdir(rig.store / "ComfyUI-LTXVideo") == [] and not rig.reqs.exists()


def test_a_fifo_as_requirements_never_hangs_the_module(rig, module):
    ok(module(rig.args([rig.ltx_pack()], requirements_dir=None)))
    entry = rig.store / "ComfyUI-LTXVideo" / rig.ltx.commits[0]
    (entry / "requirements.txt").unlink()
    os.mkfifo(entry / "requirements.txt")  # the store is root's: this stands for a damaged entry
    msg = fails(module(rig.args([rig.ltx_pack()])))
    assert msg.endswith("requirements.txt is not a regular file") and not rig.reqs.exists()


def test_file_system_errors_are_messages(rig, module, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    msg = fails(module(rig.args([rig.ltx_pack()], store_dir=str(blocker / "store"))))
    assert msg.startswith("comfyui_custom_node: [Errno 20] Not a directory")


# ---------------------------------------------------------------------------------------------------- hostile input


def _marker_hook(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\ntouch '%s'\n" % marker)
    path.chmod(0o755)


def test_hooks_and_fsmonitor_of_the_source_repository_never_run(rig, module, tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    for hook in ("post-checkout", "reference-transaction", "pre-upload-pack", "post-update", "post-merge"):
        _marker_hook(rig.probe.path / ".git" / "hooks" / hook, markers / hook)
    _marker_hook(tmp_path / "fsmonitor.sh", markers / "fsmonitor")
    git(rig.probe.path, "config", "core.fsmonitor", str(tmp_path / "fsmonitor.sh"))
    # and the host's git config tries too: a template directory's hooks reach every new clone
    _marker_hook(tmp_path / "templates" / "hooks" / "post-checkout", markers / "template-post-checkout")
    config = tmp_path / "gitconfig"
    config.write_text("[init]\n\ttemplateDir = %s\n" % (tmp_path / "templates"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    result = ok(module(rig.args([rig.probe_pack(), rig.probe_pack(name="by-path", repo=str(rig.probe.path))])))
    assert [p["commit"] for p in result["packs"]] == [rig.probe.commits[0]] * 2
    assert os.listdir(markers) == []


def test_credentials_in_a_repo_url_are_refused_and_never_shown(rig, tmp_path):
    # the real module process: its JSON carries the invocation (module_args) that -v shows
    secret, user = "ghp_S3cretT0ken", "robot"
    args = rig.args([rig.ltx_pack(repo="https://%s:%s@git.example.invalid/o/r.git" % (user, secret)),
                     rig.probe_pack(repo="https://%s@git.example.invalid/o/p.git" % (secret + "2"))])
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, str(ROOT / "plugins" / "modules" / "comfyui_custom_node.py"),
                           str(args_file)], capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / ".ansible" / "collections")))
    output = proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert proc.returncode == 1 and result["failed"]
    assert result["msg"].startswith("comfyui_custom_node: packs[0] (ComfyUI-LTXVideo): repo "
                                    "https://***:***@git.example.invalid/o/r.git carries credentials")
    assert "credential helper" in result["msg"] and ".netrc" in result["msg"]
    assert secret not in output and user not in output
    assert result["invocation"]["module_args"]["packs"][1]["repo"] == "https://********@git.example.invalid/o/p.git"
    assert not rig.store.exists() and rig.git.commands() == []


@pytest.mark.parametrize("change, message", [
    (dict(store_dir="relative/packs"), "store_dir must be an absolute path, got 'relative/packs'"),
    (dict(store_dir="/"), "store_dir must not be /"),
    (dict(requirements_dir="build"), "requirements_dir must be an absolute path, got 'build'"),
    (dict(requirements_dir="STORE/reqs"), "requirements_dir and store_dir must not contain each other"),
    (dict(lock_timeout=-1), "lock_timeout must be >= 0, got -1.0"),
    (dict(git_bin=" "), "git_bin must not be empty"),
    (dict(packs=[]), "packs must not be empty"),
    (dict(packs=[dict(name="evil #", repo="file:///r")]),
     "packs[0] (evil #): name may only contain letters, digits and . _ + - (it becomes a directory and a compose "
     "mount)"),
    (dict(packs=[dict(name="p", repo="file:///r", version="main\n--upload-pack=x")]),
     "packs[0] (p): version must be a commit, tag or branch name (no spaces, control characters, ~ ^ : ? * [ \\ .. "
     "@{)"),
    (dict(packs=[dict(name="p", repo="file:///r", constraints=["--extra-index-url=http://evil"])]),
     "packs[0] (p): constraint '--extra-index-url=http://evil' must not start with '-'"),
    (dict(constraints=["-r /etc/shadow"]), "constraints: '-r /etc/shadow' must not start with '-'"),
])
def test_option_errors_come_before_anything_changes(rig, module, change, message):
    args = rig.args([rig.ltx_pack()])
    args.update({k: (v.replace("STORE", str(rig.store)) if isinstance(v, str) else v) for k, v in change.items()})
    assert fails(module(args)) == "comfyui_custom_node: " + message
    assert not rig.store.exists() and not rig.reqs.exists() and rig.git.commands() == []


@pytest.mark.parametrize("option", ["custom_nodes_dir", "containers", "urls", "pip_command", "state_dir", "owner",
                                    "wait_timeout", "docker_bin", "url_password"])
def test_the_in_place_options_are_gone(rig, module, option):
    msg = fails(module(dict(rig.args([rig.ltx_pack()]), **{option: "x"})))
    assert "Unsupported parameters" in msg and option in msg
    assert not rig.store.exists()


def test_store_dir_is_required(rig, module):
    assert "missing required arguments: store_dir" in fails(module(dict(packs=[rig.ltx_pack()])))
