"""module_utils/custom_nodes: input checks, git helpers (against real local repositories), state, swap, log parsing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils.custom_nodes import (
    CONSTRAINTS_FILE,
    CustomNodeError,
    Docker,
    Git,
    Transaction,
    find_import_error,
    load_state,
    merged_constraints,
    normalize_packs,
    pack_name_problem,
    same_repo,
    save_state,
)

TESTS = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(TESTS / "integration" / "custom_node"))
from repos import PackRepo, git  # noqa: E402

API = TESTS / "fixtures" / "reference" / "comfyui-api"


def run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


class Recorder:
    """A run() that records every argv before running it."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        return run(argv)

    def git_commands(self):
        # the git subcommand follows the -c/-C options the helpers put first
        out = []
        for argv in self.calls:
            args = argv[1:]
            while args and args[0] in ("-c", "-C"):
                args = args[2:]
            out.append(args[0])
        return out


# ---------------------------------------------------------------------------------------------- input


@pytest.mark.parametrize("name, problem", [
    ("", "must be a non-empty directory name"),
    ("a/b", "must be a single directory name (no '/')"),
    ("..", "must be a single directory name (no '/')"),
    ("a\\b", "must be a single directory name (no '/')"),
    (".hidden", "must not start with '.'"),
    ("pack.disabled", "must not end in .disabled (use enabled: false)"),
    ("__pycache__", "is reserved by Python"),
])
def test_bad_pack_names(name, problem):
    assert pack_name_problem(name) == problem


@pytest.mark.parametrize("name", ["ComfyUI-LTXVideo", "ansible_probe_nodes", "pack with spaces", "v1.2"])
def test_good_pack_names(name):
    assert pack_name_problem(name) is None


def pack(**kw):
    return dict(dict(name="p", repo="file:///r", version=None, state="present", enabled=True, expected_classes=[],
                     constraints=[], install_requirements=True), **kw)


@pytest.mark.parametrize("items, message", [
    ([], "packs must not be empty"),
    ([pack(), pack()], "packs: name 'p' is given more than once"),
    ([pack(name="a/b")], "packs[0] (a/b): name must be a single directory name (no '/')"),
    ([pack(repo=None)], "packs[0] (p): repo is required with state=present"),
    ([pack(repo=None, state="latest")], "packs[0] (p): repo is required with state=latest"),
    ([pack(state="absent", version="v1")], "packs[0] (p): state=absent takes no version"),
    ([pack(repo="--upload-pack=touch /tmp/x")], "packs[0] (p): repo must not start with '-'"),
    ([pack(version="-x")], "packs[0] (p): version must not start with '-'"),
    ([pack(version="main\nx")], "packs[0] (p): version must be a single line"),
    ([pack(version="a b")], "packs[0] (p): version must be a commit, tag or branch name without spaces"),
    ([pack(state="latest", version="A" * 40)],
     "packs[0] (p): state=latest follows a branch or tag; for a fixed commit use state=present"),
    ([pack(constraints=["--index-url=http://evil"])],
     "packs[0] (p): constraint '--index-url=http://evil' must not start with '-'"),
])
def test_normalize_packs_rejects_with_a_clear_message(items, message):
    with pytest.raises(ValueError) as exc:
        normalize_packs(items)
    assert str(exc.value) == message


def test_normalize_packs_checks_global_constraints_and_normalizes():
    with pytest.raises(ValueError, match=r"^constraints: '-e \.' must not start with '-'$"):
        normalize_packs([pack()], ["-e ."])
    (p, gone) = normalize_packs([pack(version="ABCDEF" + "0" * 34, constraints=[" kornia<=0.8.2 ", ""]),
                                 pack(name="q", repo=None, state="absent", enabled=True)])
    assert p.version == "abcdef" + "0" * 34  # git prints lower case; compare like with like
    assert p.constraints == ["kornia<=0.8.2"]
    assert gone.enabled is False


def test_merged_constraints_are_shared_by_enabled_packs_only():
    a, b, c = normalize_packs([pack(name="a", constraints=["kornia<=0.8.2", "x==1"]),
                               pack(name="b", constraints=["x==1", "y<2"]),
                               pack(name="c", enabled=False, constraints=["z==3"])])
    assert merged_constraints(["torch==2.11.0", "x==1"], [a, b, c]) == ["torch==2.11.0", "x==1", "kornia<=0.8.2",
                                                                        "y<2"]


def test_same_repo_ignores_trailing_slash_and_dot_git():
    assert same_repo("https://github.com/Lightricks/ComfyUI-LTXVideo.git", "https://github.com/Lightricks/ComfyUI-LTXVideo/")
    assert not same_repo("https://github.com/a/x", "https://github.com/b/x")
    assert not same_repo(None, "file:///r")


# ---------------------------------------------------------------------------------------------- logs


def test_import_errors_from_the_recorded_internal_logs():
    logs = json.loads((API / "internal_logs_excerpt.json").read_text())
    assert "\x1b[" in logs  # the colour codes are part of the recording
    assert find_import_error(logs, "ansible_broken_import") == "No module named 'nonexistent_dependency_for_ansible_test'"
    assert find_import_error(logs, "ansible_runtime_error") == "probe pack deliberately fails during import"
    assert find_import_error(logs, "ansible_no_mappings") == (
        "skipped due to the lack of NODE_CLASS_MAPPINGS or comfy_entrypoint (need one).")
    assert find_import_error(logs, "ansible_probe_nodes") is None
    # the path must end in the pack's directory, not merely contain it
    assert find_import_error(logs, "broken_import") is None


def test_import_error_of_ltxvideo_on_a_too_new_comfyui():
    log = (API / "logs" / "startup_v0.33.0_ltxvideo_import_failed.log").read_text()
    assert find_import_error(log, "ComfyUI-LTXVideo") == (
        "cannot import name 'interleaved_freqs_cis' from 'comfy.ldm.lightricks.model' "
        "(/opt/comfyui/ComfyUI/comfy/ldm/lightricks/model.py)")


def test_the_last_import_error_wins():
    log = ("Cannot import /a/custom_nodes/p module for custom nodes: old\n"
           "Cannot import /a/custom_nodes/p module for custom nodes: new\n")
    assert find_import_error(log, "p") == "new"
    assert find_import_error("", "p") is None


# ---------------------------------------------------------------------------------------------- state, files


def test_state_roundtrip_missing_and_corrupt(tmp_path):
    path = tmp_path / "state.json"
    assert load_state(str(path)) == ({}, None)
    save_state(str(path), {"p": {"commit": "abc"}})
    assert load_state(str(path)) == ({"p": {"commit": "abc"}}, None)
    assert json.loads(path.read_text())["format"] == 1
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    for garbage in ("{not json", '{"packs": []}'):
        path.write_text(garbage)
        packs, warning = load_state(str(path))
        assert packs == {} and "ignoring unreadable state file" in warning


def test_transaction_rollback_restores_everything(tmp_path):
    live, staged, backup = tmp_path / "live", tmp_path / "staged", tmp_path / "backup"
    live.mkdir()
    (live / "old").write_text("old")
    staged.mkdir()
    (staged / "new").write_text("new")
    conf = tmp_path / CONSTRAINTS_FILE
    conf.write_text("a==1\n")
    fresh = tmp_path / "fresh.txt"
    txn = Transaction()
    assert txn.empty
    txn.move(str(live), str(backup), backup=True)
    txn.place(str(staged), str(live))
    txn.write(str(conf), "b==2\n")
    txn.write(str(fresh), "x\n")
    assert (live / "new").exists() and conf.read_text() == "b==2\n"
    assert txn.rollback() == []
    assert sorted(p.name for p in live.iterdir()) == ["old"]
    assert not backup.exists() and not staged.exists() and not fresh.exists()
    assert conf.read_text() == "a==1\n"


def test_transaction_commit_drops_backups_and_rollback_goes_on_past_errors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "c").write_text("c")
    txn = Transaction()
    txn.move(str(tmp_path / "a"), str(tmp_path / "b"), backup=True)
    txn.write(str(tmp_path / "c"), None)
    txn.commit()
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    assert txn.rollback() == []  # nothing left to undo

    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("f")
    txn.move(str(tmp_path / "d"), str(tmp_path / "e"))
    txn.move(str(tmp_path / "f"), str(tmp_path / "g"))
    os.rmdir(tmp_path / "e")  # someone removed it meanwhile
    errors = txn.rollback()
    assert len(errors) == 1 and "No such file" in errors[0]
    assert (tmp_path / "f").read_text() == "f"


# ---------------------------------------------------------------------------------------------- git


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = PackRepo(tmp_path_factory.mktemp("repos") / "probe", "ansible_probe_nodes")
    repo.tag("v1", annotated=True)
    repo.commit("second", {"extra.py": "X = 1\n"})
    repo.tag("v2")
    git(repo.path, "branch", "stable", repo.commits[0])
    return repo


def test_ls_remote_resolves_tags_branches_and_head(repo):
    rec = Recorder()
    g = Git(rec)
    first, second = repo.commits
    assert g.ls_remote(repo.url, None) == second
    assert g.ls_remote(repo.url, "v1") == first  # the peeled commit, not the annotated tag object
    assert g.ls_remote(repo.url, "v2") == second
    assert g.ls_remote(repo.url, "stable") == first
    assert g.ls_remote(repo.url, "nope") is None
    assert rec.git_commands() == ["ls-remote"] * 5
    # a full commit needs no remote at all
    assert g.ls_remote(repo.url, second) == second and len(rec.calls) == 5
    with pytest.raises(CustomNodeError, match=r"^git ls-remote file:///nonexistent failed \(rc 128\): "):
        g.ls_remote("file:///nonexistent", "main")


def test_clone_checks_out_a_detached_commit_and_resolves_locally_afterwards(repo, tmp_path):
    g = Git(run)
    first, second = repo.commits
    dest = str(tmp_path / "c")
    assert g.clone(repo.url, dest, "v1") == first
    assert g.head(dest) == first
    assert git(dest, "status", "--porcelain") == ""
    assert g.origin(dest) == repo.url
    rec = Recorder()
    local = Git(rec)
    assert local.resolve(dest, "v2") == second
    assert local.resolve(dest, "main") == second
    assert local.resolve(dest, "stable") == first
    assert local.resolve(dest, first[:8]) == first
    assert local.resolve(dest, "nope") is None
    assert set(rec.git_commands()) == {"rev-parse"}


def test_clone_detaches_head(repo, tmp_path):
    dest = str(tmp_path / "c")
    Git(run).clone(repo.url, dest, "main")
    rc, _out, _err = run(["git", "-C", dest, "symbolic-ref", "-q", "HEAD"])
    assert rc == 1  # detached: nobody's branch moves under the checkout


def test_clone_default_branch_unreachable_commit_and_missing_version(repo, tmp_path):
    g = Git(run)
    assert g.clone(repo.url, str(tmp_path / "a"), None) == repo.commits[1]
    # a commit no branch or tag reaches (a pull request head) is fetched by name
    side = PackRepo(tmp_path / "side", "ansible_probe_nodes")
    dangling = side.commit("dangling", {"x.py": "X = 2\n"})
    git(side.path, "reset", "-q", "--hard", side.commits[0])
    assert g.clone(side.url, str(tmp_path / "b"), dangling) == dangling
    with pytest.raises(CustomNodeError, match=r"^version v9 not found in file://"):
        g.clone(repo.url, str(tmp_path / "c"), "v9")
    with pytest.raises(CustomNodeError, match=r"^git clone file:///nonexistent failed \(rc 128\)"):
        g.clone("file:///nonexistent", str(tmp_path / "d"), None)


def test_no_answers_for_a_directory_inside_another_repository(repo, tmp_path):
    # custom_nodes inside a ComfyUI checkout: a plain directory there must not report ComfyUI's commit
    outer = PackRepo(tmp_path / "ComfyUI", "no_mappings_pack")
    plain = outer.path / "custom_nodes" / "plain"
    plain.mkdir(parents=True)
    g = Git(run)
    assert g.head(str(plain)) is None and g.origin(str(plain)) is None
    assert g.head(str(tmp_path / "missing")) is None


# ---------------------------------------------------------------------------------------------- docker


def test_docker_errors_name_the_command():
    def failing(argv):
        return 1, "", "Error response from daemon: No such container: %s\n" % argv[-1]

    d = Docker(failing, "docker")
    with pytest.raises(CustomNodeError, match=r"^docker inspect gpu9 failed \(rc 1\): Error response from daemon"):
        d.image("gpu9")
    with pytest.raises(CustomNodeError, match=r"^docker restart gpu0 gpu9 failed \(rc 1\): "):
        d.restart(["gpu0", "gpu9"])
    assert d.logs("gpu9", 0) == ""
