"""The pack store of module_utils/custom_nodes: one immutable checkout per pack commit, against real local git
repositories."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils.custom_nodes import CustomNodeError, PackStore
from ansible_collections.comfyops.comfyui.plugins.module_utils.locks import FileLock

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
    with FileLock(str(tmp_path / "store" / ".locks" / "ComfyUI-LTXVideo.lock"), "gpu02's site.yml"):
        with pytest.raises(CustomNodeError) as e:
            store(tmp_path, [pack(repo, repo.commits[-1])], lock_timeout=0.2)
    assert "held by gpu02's site.yml" in str(e.value)


def test_store_metadata_cannot_collide_with_pack_names(tmp_path, repo):
    # pack names never start with '.', the store's own files always do
    packs = [pack(repo, "v1", name=n) for n in ("state.json", "ComfyUI-LTXVideo.lock", "ComfyUI-LTXVideo")]
    result = store(tmp_path, packs)
    assert [p["commit"] for p in result["packs"]] == [repo.commits[-1]] * 3
    assert sorted(os.listdir(tmp_path / "store")) == [".locks", ".state.json", ".state.lock", "ComfyUI-LTXVideo",
                                                      "ComfyUI-LTXVideo.lock", "state.json"]
    assert not store(tmp_path, packs)["changed"]


def test_a_symlinked_requirements_file_in_a_pack_is_refused_and_nothing_is_exported(tmp_path, repo):
    secret = tmp_path / "host-secret"
    secret.write_text("root:x:0:0\n")
    good = store(tmp_path, [pack(repo, "v1")])
    exported = tmp_path / "build" / "reqs" / "ComfyUI-LTXVideo.txt"
    before = exported.read_text()
    (repo.path / "requirements.txt").unlink()
    os.symlink(secret, repo.path / "requirements.txt")  # a pack repository can commit a symlink
    evil = repo.commit("symlinked requirements")
    with pytest.raises(CustomNodeError) as e:
        store(tmp_path, [pack(repo, evil)])
    assert "ComfyUI-LTXVideo: requirements %s cannot be read as a plain file" % (
        tmp_path / "store" / "ComfyUI-LTXVideo" / evil / "requirements.txt") in str(e.value)
    assert exported.read_text() == before and good["packs"][0]["requirements_sha256"]
    # the entry is kept (it is inert), and the next run knows its commit without git
    run = Recorder()
    with pytest.raises(CustomNodeError):
        store(tmp_path, [pack(repo, evil)], run=run)
    assert run.calls == []


def test_an_oversized_requirements_file_is_refused(tmp_path, repo):
    big = repo.commit("huge", files={"requirements.txt": "x" * ((1 << 20) + 1)})
    with pytest.raises(CustomNodeError, match="is larger than 1048576 bytes: not a requirements file"):
        store(tmp_path, [pack(repo, big)])
    assert not (tmp_path / "build" / "reqs").exists()


def test_planted_files_in_requirements_dir_are_replaced_not_followed(tmp_path, repo):
    reqs = tmp_path / "build" / "reqs"
    reqs.mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    target.chmod(0o600)
    os.symlink(target, reqs / "ComfyUI-LTXVideo.txt")
    os.mkfifo(reqs / "stale.txt")
    result = store(tmp_path, [pack(repo, "v1")])
    assert result["changed"]
    assert target.read_text() == "keep\n" and (target.stat().st_mode & 0o777) == 0o600
    copy = reqs / "ComfyUI-LTXVideo.txt"
    assert not copy.is_symlink() and copy.read_text() == "einops\nkornia\n"
    assert (copy.stat().st_mode & 0o777) == 0o644
    assert sorted(os.listdir(reqs)) == ["ComfyUI-LTXVideo.txt"]  # the FIFO went, no temporaries stayed


def test_a_tampered_state_cannot_point_outside_the_store(tmp_path, repo):
    store(tmp_path, [pack(repo, "v1")])
    state = tmp_path / "store" / ".state.json"
    data = json.loads(state.read_text())
    data["resolved"] = {k: "../../../etc" for k in data["resolved"]}
    state.write_text(json.dumps(data))
    result = store(tmp_path, [pack(repo, "v1")])  # the bad entry is ignored: one clone resolves v1 again
    assert result["packs"][0]["path"] == str(tmp_path / "store" / "ComfyUI-LTXVideo" / repo.commits[-1])
    assert not result["changed"]  # the entry was there already
    state.write_text("not json")
    assert store(tmp_path, [pack(repo, "v1")])["packs"][0]["commit"] == repo.commits[-1]


def test_two_hosts_on_one_store_keep_each_others_state(tmp_path, repo):
    other = PackRepo(tmp_path / "repo" / "ansible_probe_nodes", source="ansible_probe_nodes")
    other.tag("v1")
    store(tmp_path, [pack(repo, "v1")])
    store(tmp_path, [pack(other, "v1", name="ansible_probe_nodes")], requirements_dir=str(tmp_path / "b2"))
    run = Recorder()
    again = store(tmp_path, [pack(repo, "v1")], run=run)
    assert run.calls == [] and not again["changed"]


def test_a_failing_pack_keeps_what_was_cloned_before_it_and_changes_no_requirements(tmp_path, repo):
    store(tmp_path, [pack(repo, repo.commits[0])])
    reqs = tmp_path / "build" / "reqs"
    before = sorted(os.listdir(reqs)) if reqs.exists() else []
    with pytest.raises(CustomNodeError, match=r"^broken: git clone file:///nonexistent failed"):
        store(tmp_path, [pack(repo, "v1"), dict(pack(repo, "v1"), name="broken", repo="file:///nonexistent")])
    assert (sorted(os.listdir(reqs)) if reqs.exists() else []) == before  # the first pack's copy not written
    run = Recorder()
    store(tmp_path, [pack(repo, "v1")], run=run)
    assert run.calls == []  # v1's resolution was kept although the run failed


def test_check_mode_finds_an_entry_another_run_placed_without_cloning(tmp_path, repo):
    store(tmp_path, [pack(repo, "v1")])
    (tmp_path / "store" / ".state.json").unlink()  # this host has not seen v1 yet
    run = Recorder()
    result = store(tmp_path, [pack(repo, "v1")], run=run, check_mode=True)
    assert not result["changed"] and result["packs"][0]["commit"] == repo.commits[-1]
    assert [c[11] for c in run.calls] == ["ls-remote"]
    assert not (tmp_path / "store" / ".state.json").exists()


def test_check_mode_of_a_new_commit_leaves_its_requirements_copy_alone(tmp_path, repo):
    store(tmp_path, [pack(repo, "v1")])
    new = repo.commit("more", files={"requirements.txt": "einops\n"})
    result = store(tmp_path, [pack(repo, new)], check_mode=True)
    assert result["changed"] and result["packs"][0]["commit"] == new
    assert result["packs"][0]["path"] == str(tmp_path / "store" / "ComfyUI-LTXVideo" / new)  # where it would go
    assert result["diff"]["after"]["ComfyUI-LTXVideo"] == dict(commit=new,
                                                               requirements_sha256="unknown until cloned")
    assert not (tmp_path / "store" / "ComfyUI-LTXVideo" / new).exists()
    assert (tmp_path / "build" / "reqs" / "ComfyUI-LTXVideo.txt").read_text() == "einops\nkornia\n"


def test_latest_asks_the_remote_every_run_and_follows_the_branch(tmp_path, repo):
    run = Recorder()
    first = store(tmp_path, [pack(repo, "main", state="latest")], run=run)
    assert first["packs"][0]["commit"] == repo.commits[-1]
    run = Recorder()
    again = store(tmp_path, [pack(repo, "main", state="latest")], run=run)
    assert not again["changed"] and [c[11] for c in run.calls] == ["ls-remote"]
    moved = repo.commit("moved", files={"extra.py": "x = 2\n"})
    result = store(tmp_path, [pack(repo, "main", state="latest")])
    assert result["changed"] and result["packs"][0]["commit"] == moved
    with pytest.raises(CustomNodeError, match="ComfyUI-LTXVideo: version nope not found in "):
        store(tmp_path, [pack(repo, "nope", state="latest")])


def test_an_abbreviated_commit_is_resolved_once(tmp_path, repo):
    short = repo.commits[0][:10]
    assert store(tmp_path, [pack(repo, short)])["packs"][0]["commit"] == repo.commits[0]
    run = Recorder()
    assert not store(tmp_path, [pack(repo, short)], run=run)["changed"] and run.calls == []


def test_absent_drops_the_pack_from_the_set_and_keeps_its_entries(tmp_path, repo):
    store(tmp_path, [pack(repo, "v1")])
    gone = dict(name="ComfyUI-LTXVideo", state="absent")
    result = store(tmp_path, [gone])
    assert result["changed"] and result["packs"][0]["path"] is None and result["packs"][0]["enabled"] is False
    assert not (tmp_path / "build" / "reqs" / "ComfyUI-LTXVideo.txt").exists()
    assert (tmp_path / "store" / "ComfyUI-LTXVideo" / repo.commits[-1]).is_dir()  # a rollback may mount it
    assert result["diff"]["after"] == {} and result["diff"]["before"]["ComfyUI-LTXVideo"]["commit"] == repo.commits[-1]
    assert not store(tmp_path, [gone])["changed"]


def test_the_result_carries_the_merged_constraints(tmp_path, repo):
    result = store(tmp_path, [pack(repo, "v1", constraints=["kornia<=0.8.2"])], constraints=["torch==2.11.0"])
    assert result["constraints"] == ["torch==2.11.0", "kornia<=0.8.2"]
