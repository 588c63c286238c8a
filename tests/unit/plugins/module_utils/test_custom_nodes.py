"""module_utils/custom_nodes: input checks, git hardened against hostile repositories and config (real local
repositories), ComfyUI's import errors. The store itself: test_pack_store.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils.custom_nodes import (
    CustomNodeError,
    _Git,
    _merged_constraints,
    find_import_error,
    normalize_packs,
    pack_name_problem,
    repo_url_secrets,
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
    # each of these would change the compose line <entry>:/opt/comfyui/custom_nodes/<name>:ro
    ("evil #", "may only contain letters, digits and . _ + - (it becomes a directory and a compose mount)"),
    ("x:rw", "may only contain letters, digits and . _ + - (it becomes a directory and a compose mount)"),
    ("two\nlines", "may only contain letters, digits and . _ + - (it becomes a directory and a compose mount)"),
    ("pack with spaces", "may only contain letters, digits and . _ + - (it becomes a directory and a compose mount)"),
    (["a"], "must be a non-empty directory name"),
])
def test_bad_pack_names(name, problem):
    assert pack_name_problem(name) == problem


@pytest.mark.parametrize("name", ["ComfyUI-LTXVideo", "ansible_probe_nodes", "v1.2", "rgthree-comfy", "a+b"])
def test_good_pack_names(name):
    assert pack_name_problem(name) is None


def pack(**kw):
    return dict(dict(name="p", repo="file:///r", version=None, state="present", enabled=True, expected_classes=[],
                     constraints=[], install_requirements=True), **kw)


BAD_REF = "must be a commit, tag or branch name (no spaces, control characters, ~ ^ : ? * [ \\ .. @{)"


@pytest.mark.parametrize("items, message", [
    ([], "packs must not be empty"),
    ([pack(), pack()], "packs: name 'p' is given more than once"),
    ([pack(name="a/b")], "packs[0] (a/b): name must be a single directory name (no '/')"),
    ([pack(name="a\nb")], "packs[0] ('a\\nb'): name may only contain letters, digits and . _ + - (it becomes a "
                          "directory and a compose mount)"),
    ([pack(repo=None)], "packs[0] (p): repo is required with state=present"),
    ([pack(repo="  ")], "packs[0] (p): repo is required with state=present"),
    ([pack(repo=None, state="latest")], "packs[0] (p): repo is required with state=latest"),
    ([pack(state="absent", version="v1")], "packs[0] (p): state=absent takes no version"),
    ([pack(repo="--upload-pack=touch /tmp/x")], "packs[0] (p): repo must not start with '-'"),
    ([pack(repo="file:///r\n--x")], "packs[0] (p): repo must be a single line without control characters"),
    ([pack(version="-x")], "packs[0] (p): version must not start with '-'"),
    ([pack(version="main\nx")], "packs[0] (p): version " + BAD_REF),
    ([pack(version="a b")], "packs[0] (p): version " + BAD_REF),
    ([pack(version="")], "packs[0] (p): version " + BAD_REF),
    ([pack(version="main~1")], "packs[0] (p): version " + BAD_REF),
    ([pack(version="v1:x")], "packs[0] (p): version " + BAD_REF),
    ([pack(version="HEAD@{1}")], "packs[0] (p): version " + BAD_REF),
    ([pack(version="a..b")], "packs[0] (p): version " + BAD_REF),
    ([pack(state="latest", version="A" * 40)],
     "packs[0] (p): state=latest follows a branch or tag; for a fixed commit use state=present"),
    ([pack(constraints=["--index-url=http://evil"])],
     "packs[0] (p): constraint '--index-url=http://evil' must not start with '-'"),
    ([pack(constraints=["x\n--index-url=http://evil"])],
     "packs[0] (p): constraint 'x\\n--index-url=http://evil' must be a single line"),
])
def test_normalize_packs_rejects_with_a_clear_message(items, message):
    with pytest.raises(ValueError) as exc:
        normalize_packs(items)
    assert str(exc.value) == message


def test_normalize_packs_checks_global_constraints_and_normalizes():
    with pytest.raises(ValueError, match=r"^constraints: '-e \.' must not start with '-'$"):
        normalize_packs([pack()], ["-e ."])
    (p, gone, tag) = normalize_packs([pack(version="ABCDEF" + "0" * 34, constraints=[" kornia<=0.8.2 ", ""]),
                                      pack(name="q", repo=None, state="absent", enabled=True),
                                      pack(name="t", version="Release-1.0", repo="git@github.com:o/r.git")])
    assert p.version == "abcdef" + "0" * 34  # git prints lower case; compare like with like
    assert p.constraints == ["kornia<=0.8.2"]
    assert gone.enabled is False
    assert tag.version == "Release-1.0"  # a tag is not lower-cased


def test_merged_constraints_are_shared_by_enabled_packs_only():
    a, b, c = normalize_packs([pack(name="a", constraints=["kornia<=0.8.2", "x==1"]),
                               pack(name="b", constraints=["x==1", "y<2"]),
                               pack(name="c", enabled=False, constraints=["z==3"])])
    assert _merged_constraints(["torch==2.11.0", "x==1"], [a, b, c]) == ["torch==2.11.0", "x==1", "kornia<=0.8.2",
                                                                         "y<2"]


# ---------------------------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("url, secrets, shown", [
    ("https://bob:tok3n@git.example/o/r.git", ["bob", "tok3n"], "https://***:***@git.example/o/r.git"),
    # GitHub takes a token as the user name: it is masked too
    ("https://ghp_abc123@github.com/o/r.git", ["ghp_abc123"], "https://***@github.com/o/r.git"),
    ("HTTP://u:p%40ss@h/r", ["p%40ss", "p@ss", "u"], "HTTP://***:***@h/r"),
    ("https://:tok@h/r", ["tok"], "https://:***@h/r"),
    ("ssh://git:hunter2@h/r.git", ["hunter2"], "ssh://git:***@h/r.git"),
    ("https://u:pw@[bad/r", ["pw", "u"], "https://***:***@[bad/r"),  # urlsplit would raise here
])
def test_credentials_in_urls_are_refused_masked(url, secrets, shown):
    assert repo_url_secrets(url) == sorted(secrets)
    with pytest.raises(ValueError) as exc:
        normalize_packs([pack(repo=url)])
    msg = str(exc.value)
    assert msg.startswith("packs[0] (p): repo %s carries credentials" % shown)
    assert "credential helper" in msg and "~/.netrc" in msg
    assert not any(s in msg for s in secrets if s not in ("u", "git"))


@pytest.mark.parametrize("url", [
    "https://github.com/Lightricks/ComfyUI-LTXVideo.git", "ssh://git@github.com/o/r.git", "git@github.com:o/r.git",
    "file:///srv/repos/r", "/srv/repos/r", "https://h/r@v1",  # an @ in the path is no user info
])
def test_urls_without_credentials_pass(url):
    assert repo_url_secrets(url) == []
    assert normalize_packs([pack(repo=url)])[0].repo == url


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


def test_the_last_import_error_wins_and_a_read_only_mount_path_is_recognised():
    log = ("Cannot import /a/custom_nodes/p module for custom nodes: old\n"
           "Cannot import /a/custom_nodes/p module for custom nodes: new\n")
    assert find_import_error(log, "p") == "new"
    assert find_import_error("", "p") is None
    # the line of docker logs comfyui_rollout reads (the store entry is mounted as custom_nodes/<name>)
    line = ("2026-08-22 10:00:01 WARNING Cannot import /opt/comfyui/custom_nodes/ComfyUI-LTXVideo module for custom "
            "nodes: cannot import name 'interleaved_freqs_cis' from 'comfy.ldm.lightricks.model'")
    assert find_import_error(line, "ComfyUI-LTXVideo") == (
        "cannot import name 'interleaved_freqs_cis' from 'comfy.ldm.lightricks.model'")


# ---------------------------------------------------------------------------------------------- git


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = PackRepo(tmp_path_factory.mktemp("repos") / "probe", "ansible_probe_nodes")
    repo.tag("v1", annotated=True)
    repo.commit("second", {"extra.py": "X = 1\n"})
    repo.tag("v2")
    git(repo.path, "branch", "stable", repo.commits[0])
    return repo


def test_every_git_call_disables_hooks_and_fsmonitor_and_overrides_no_safe_directory(repo, tmp_path):
    rec = Recorder()
    g = _Git(rec)
    g.ls_remote(repo.url, "v1")
    g.clone(repo.url, str(tmp_path / "c"), "v2")
    assert rec.git_commands() == ["ls-remote", "clone", "rev-parse", "checkout"]
    for argv in rec.calls:
        assert argv[1:9] == ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
                             "-c", "protocol.ext.allow=never", "-c", "submodule.recurse=false"]
        assert argv[9] == "-C" and argv[10] in ("/", str(tmp_path / "c"))  # never the module's working directory
        assert not any("safe.directory" in a for a in argv)
    assert "--no-local" in rec.calls[1]


def test_ls_remote_resolves_tags_branches_and_head(repo):
    rec = Recorder()
    g = _Git(rec)
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


def test_ls_remote_ignores_a_repository_around_the_working_directory(repo, tmp_path, monkeypatch):
    # a repository config in the module's working directory could name a credential helper (a command) or
    # redirect URLs; here it redirects repo.url to another repository
    other = PackRepo(tmp_path / "other", "ansible_probe_nodes")
    other.commit("elsewhere", {"x.py": "X = 3\n"})
    hostile = tmp_path / "cwd"
    hostile.mkdir()
    git(hostile, "init", "-q")
    git(hostile, "config", "url.%s.insteadOf" % other.url, repo.url)
    monkeypatch.chdir(hostile)
    assert run(["git", "ls-remote", repo.url, "HEAD"])[1].split()[0] == other.commits[-1]  # the trap works
    assert _Git(run).ls_remote(repo.url, None) == repo.commits[-1]


def test_clone_checks_out_a_detached_commit_and_resolves_locally_afterwards(repo, tmp_path):
    g = _Git(run)
    first, second = repo.commits
    dest = str(tmp_path / "c")
    assert g.clone(repo.url, dest, "v1") == first
    assert git(dest, "rev-parse", "HEAD") == first
    assert git(dest, "status", "--porcelain") == ""
    assert git(dest, "config", "--get", "remote.origin.url") == repo.url
    rc, _out, _err = run(["git", "-C", dest, "symbolic-ref", "-q", "HEAD"])
    assert rc == 1  # detached: nobody's branch moves under the checkout
    rec = Recorder()
    local = _Git(rec)
    assert local.resolve(dest, "v2") == second
    assert local.resolve(dest, "main") == second
    assert local.resolve(dest, "stable") == first
    assert local.resolve(dest, first[:8]) == first
    assert local.resolve(dest, "nope") is None
    assert set(rec.git_commands()) == {"rev-parse"}


def test_clone_default_branch_unreachable_commit_and_missing_version(repo, tmp_path):
    g = _Git(run)
    assert g.clone(repo.url, str(tmp_path / "a"), None) == repo.commits[1]
    # a commit no branch or tag reaches (a pull request head) is fetched by name, in the new clone
    side = PackRepo(tmp_path / "side", "ansible_probe_nodes")
    dangling = side.commit("dangling", {"x.py": "X = 2\n"})
    git(side.path, "reset", "-q", "--hard", side.commits[0])
    assert g.clone(side.url, str(tmp_path / "b"), dangling) == dangling
    with pytest.raises(CustomNodeError, match=r"^version v9 not found in file://"):
        g.clone(repo.url, str(tmp_path / "c"), "v9")
    with pytest.raises(CustomNodeError, match=r"^git clone file:///nonexistent failed \(rc 128\)"):
        g.clone("file:///nonexistent", str(tmp_path / "d"), None)


def test_a_local_path_is_cloned_through_the_transport_not_hard_linked(repo, tmp_path):
    dest = tmp_path / "c"
    _Git(run).clone(str(repo.path), str(dest), "v2")
    source = {os.stat(p).st_ino for p in (repo.path / ".git" / "objects").rglob("*") if p.is_file()}
    cloned = {os.stat(p).st_ino for p in (dest / ".git" / "objects").rglob("*") if p.is_file()}
    assert cloned and not source & cloned


def _marker_hook(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\ntouch '%s'\n" % marker)
    path.chmod(0o755)


def test_hooks_and_fsmonitor_never_run_on_clone(repo, tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    # traps in the source repository: its own hooks and an fsmonitor command in its config
    source = PackRepo(tmp_path / "source", "ansible_probe_nodes")
    for hook in ("post-checkout", "reference-transaction", "pre-upload-pack", "post-update"):
        _marker_hook(source.path / ".git" / "hooks" / hook, markers / ("source-" + hook))
    _marker_hook(tmp_path / "fsmonitor.sh", markers / "source-fsmonitor")
    git(source.path, "config", "core.fsmonitor", str(tmp_path / "fsmonitor.sh"))
    # traps in the host's config: a template directory whose hooks every new clone gets, a global fsmonitor
    _marker_hook(tmp_path / "templates" / "hooks" / "post-checkout", markers / "template-post-checkout")
    _marker_hook(tmp_path / "templates" / "hooks" / "reference-transaction", markers / "template-reference-tx")
    _marker_hook(tmp_path / "global-fsmonitor.sh", markers / "global-fsmonitor")
    config = tmp_path / "gitconfig"
    config.write_text("[init]\n\ttemplateDir = %s\n[core]\n\tfsmonitor = %s\n"
                      % (tmp_path / "templates", tmp_path / "global-fsmonitor.sh"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))

    # the host traps are real: plain git runs them
    assert run(["git", "clone", "-q", source.url, str(tmp_path / "plain")])[0] == 0
    assert run(["git", "-C", str(tmp_path / "plain"), "status"])[0] == 0
    assert {p.name for p in markers.iterdir()} >= {"template-post-checkout", "global-fsmonitor"}
    for p in markers.iterdir():
        p.unlink()

    dest = tmp_path / "c"
    assert _Git(run).clone(source.url, str(dest), "main") == source.commits[-1]
    _Git(run).clone(str(source.path), str(tmp_path / "c2"), None)  # a plain path too
    assert (dest / "__init__.py").is_file()
    assert sorted(p.name for p in markers.iterdir()) == []
