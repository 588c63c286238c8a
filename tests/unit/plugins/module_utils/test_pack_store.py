"""module_utils/pack_store: one immutable checkout per pack commit, against real local git repositories."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils.custom_nodes import CustomNodeError
from ansible_collections.comfyops.comfyui.plugins.module_utils.locks import FileLock
from ansible_collections.comfyops.comfyui.plugins.module_utils.pack_store import PackStore

TESTS = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(TESTS / "integration" / "custom_node"))
from repos import PackRepo  # noqa: E402


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def repo(tmp_path):
    r = PackRepo(tmp_path / "repo" / "ComfyUI-LTXVideo", source="ComfyUI-LTXVideo")
    r.commit("requirements", files={"requirements.txt": "einops\nkornia\n"})
    r.tag("v1")
    return r


def store(tmp_path, packs, run=None, check_mode=False, **over):
    params = dict(store_dir=str(tmp_path / "store"), requirements_dir=str(tmp_path / "build" / "reqs"), packs=packs,
                  constraints=[], git_bin="git", lock_timeout=2)
    params.update(over)
    return PackStore(params, run or Recorder(), check_mode=check_mode).run()


def pack(repo, version, **over):
    item = dict(name="ComfyUI-LTXVideo", repo=repo.url, version=version, state="present", enabled=True,
                expected_classes=["LTXVBaseSampler"], constraints=[], install_requirements=True)
    item.update(over)
    return item


def test_a_tag_is_cloned_once_into_its_commit_directory_and_resolved_offline_after(tmp_path, repo):
    first = store(tmp_path, [pack(repo, "v1")])
    entry = tmp_path / "store" / "ComfyUI-LTXVideo" / repo.commits[-1]
    assert first["changed"] and first["packs"][0]["path"] == str(entry) and (entry / "__init__.py").is_file()
    assert first["packs"][0]["commit"] == repo.commits[-1]
    # requirements exported for the image build, with their hash
    assert (tmp_path / "build" / "reqs" / "ComfyUI-LTXVideo.txt").read_text() == "einops\nkornia\n"
    assert first["packs"][0]["requirements_sha256"]
    # the second run knows what v1 resolved to: no git at all
    run = Recorder()
    second = store(tmp_path, [pack(repo, "v1")], run=run)
    assert not second["changed"] and second["packs"][0]["path"] == str(entry)
    assert run.calls == []
    # no staging leftovers beside the entries
    assert sorted(os.listdir(tmp_path / "store" / "ComfyUI-LTXVideo")) == [repo.commits[-1]]


def test_a_new_commit_lands_beside_the_live_one_which_stays_as_it_was(tmp_path, repo):
    store(tmp_path, [pack(repo, repo.commits[0])])
    old = tmp_path / "store" / "ComfyUI-LTXVideo" / repo.commits[0]
    before = sorted(p.name for p in old.iterdir())
    new_commit = repo.commit("more", files={"extra.py": "x = 1\n"})
    result = store(tmp_path, [pack(repo, new_commit)])
    assert result["changed"] and result["packs"][0]["commit"] == new_commit
    assert sorted(p.name for p in old.iterdir()) == before  # untouched: a rollback can mount it again
    assert (tmp_path / "store" / "ComfyUI-LTXVideo" / new_commit / "extra.py").is_file()


def test_check_mode_resolves_with_ls_remote_and_writes_nothing(tmp_path, repo):
    result = store(tmp_path, [pack(repo, "v1")], check_mode=True)
    assert result["changed"] and result["packs"][0]["commit"] == repo.commits[-1]
    assert not (tmp_path / "store").exists() and not (tmp_path / "build").exists()


def test_a_disabled_pack_is_stored_but_its_requirements_are_not_exported(tmp_path, repo):
    store(tmp_path, [pack(repo, "v1")])
    result = store(tmp_path, [pack(repo, "v1", enabled=False)])
    assert result["packs"][0]["enabled"] is False and result["packs"][0]["requirements_sha256"] is None
    assert not (tmp_path / "build" / "reqs" / "ComfyUI-LTXVideo.txt").exists()  # stale copy removed


def test_an_unknown_version_fails_with_the_repo(tmp_path, repo):
    with pytest.raises(CustomNodeError) as e:
        store(tmp_path, [pack(repo, "no-such-tag")])
    assert "no-such-tag not found in " + repo.url in str(e.value)
    assert not list((tmp_path / "store" / "ComfyUI-LTXVideo").iterdir())  # no half-made entry


def test_a_requirements_file_that_is_a_fifo_is_refused_not_read(tmp_path, repo):
    commit = repo.commits[-1]
    entry = tmp_path / "store" / "ComfyUI-LTXVideo" / commit
    store(tmp_path, [pack(repo, commit)])
    (entry / "requirements.txt").unlink()
    os.mkfifo(entry / "requirements.txt")
    with pytest.raises(CustomNodeError) as e:
        store(tmp_path, [pack(repo, commit)])
    assert "not a regular file" in str(e.value)


def test_two_runs_on_one_store_clone_once(tmp_path, repo):
    runs = [Recorder(), Recorder()]
    results, errors = [], []

    def go(run):
        try:
            results.append(store(tmp_path, [pack(repo, repo.commits[-1])], run=run))
        except Exception as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)
    threads = [threading.Thread(target=go, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2
    clones = [c for r in runs for c in r.calls if "clone" in c]
    assert len(clones) == 1
    assert sorted(r["changed"] for r in results) == [False, True]


def test_a_held_pack_lock_makes_the_run_fail_naming_the_holder(tmp_path, repo):
    (tmp_path / "store").mkdir()
    with FileLock(str(tmp_path / "store" / "ComfyUI-LTXVideo.lock"), "gpu02's site.yml"):
        with pytest.raises(CustomNodeError) as e:
            store(tmp_path, [pack(repo, repo.commits[-1])], lock_timeout=0.2)
    assert "held by gpu02's site.yml" in str(e.value)
