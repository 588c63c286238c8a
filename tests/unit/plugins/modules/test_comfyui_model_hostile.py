"""comfyui_model against a hostile container: the models directory is mounted read-write into containers that run
third-party code as root, so anything below it may be a planted link, FIFO or hard link, and files may change in
place. Each trap is planted as a container could, then the module runs as host root: no file outside models/
changes (hashes and modes before and after), and nothing false is reported. Also: bad input fails before
anything changes."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils import model_download
from ansible_collections.comfyops.comfyui.plugins.modules import comfyui_model

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from model_http_server import ModelServer  # noqa: E402

DATA = os.urandom(2 * 1024 * 1024 + 7)
SHA = hashlib.sha256(DATA).hexdigest()
TOKEN = "hf_HoStIlEtOkEn987654321"


@pytest.fixture
def srv():
    with ModelServer() as server:
        server.add("/m.safetensors", data=DATA)
        yield server


@pytest.fixture
def outside(tmp_path):
    """Host files a container must not be able to touch through the module (a stand-in for /etc)."""
    root = tmp_path / "etc"
    root.mkdir()
    (root / "shadow").write_bytes(b"root:$6$secret:19000:0:99999:7:::\n")
    os.chmod(root / "shadow", 0o600)
    (root / "passwd").write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    return root


def snapshot(root):
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(p.lstat().st_mode))
            for p in sorted(root.rglob("*")) if p.is_file()}


def run(run_module, tmp_path, check_mode=False, **args):
    args.setdefault("models_dir", str(tmp_path / "models"))
    args.setdefault("retry_delay", 0)
    args.setdefault("min_free_mb", 0)
    return run_module(comfyui_model.main, args, check_mode=check_mode)


def entry(srv, **kw):
    return dict(dict(url=srv.url + "/m.safetensors", folder="checkpoints", sha256=SHA), **kw)


def test_symlinked_folder_is_refused_and_nothing_is_written_outside(run_module, tmp_path, srv, outside):
    before = snapshot(outside)
    (tmp_path / "models/loras").mkdir(parents=True)
    os.symlink(outside, tmp_path / "models/loras/sub")
    failed, result = run(run_module, tmp_path, models=[entry(srv, folder="loras/sub"), entry(srv)])
    assert failed
    bad, good = result["models"]
    assert bad["action"] == "failed" and "models/loras/sub is a symbolic link" in bad["error"]
    assert "never followed" in bad["error"]
    assert good["action"] == "downloaded" and good["verified"]  # the rest of the list went on
    assert snapshot(outside) == before and sorted(p.name for p in outside.iterdir()) == ["passwd", "shadow"]


def test_symlinked_top_folder_is_refused_even_for_a_subfolder(run_module, tmp_path, srv, outside):
    before = snapshot(outside)
    (tmp_path / "models").mkdir()
    os.symlink(outside, tmp_path / "models/checkpoints")
    failed, result = run(run_module, tmp_path, models=[entry(srv, filename="deep/m.safetensors")])
    assert failed and "models/checkpoints is a symbolic link" in result["msg"]
    assert snapshot(outside) == before and not (outside / "deep").exists()
    assert srv.requests == []


def test_symlink_at_the_final_name_is_refused_not_followed(run_module, tmp_path, srv, outside):
    before = snapshot(outside)
    folder = tmp_path / "models/checkpoints"
    folder.mkdir(parents=True)
    os.symlink(outside / "shadow", folder / "m.safetensors")
    for sha in (SHA, None):  # with a checksum it would be hashed; without, presence would be reported
        failed, result = run(run_module, tmp_path, models=[entry(srv, sha256=sha)])
        assert failed and "checkpoints/m.safetensors is a symbolic link, not a regular file" in result["msg"]
        assert result["models"][0].get("verified") is None
    assert snapshot(outside) == before and os.path.islink(folder / "m.safetensors")


def test_symlink_as_dest_is_removed_itself_on_absent(run_module, tmp_path, outside):
    before = snapshot(outside)
    folder = tmp_path / "models/checkpoints"
    folder.mkdir(parents=True)
    os.symlink(outside / "shadow", folder / "m.safetensors")
    failed, result = run(run_module, tmp_path, folder="checkpoints", filename="m.safetensors", state="absent")
    assert not failed and result["models"][0]["action"] == "removed"
    assert not os.path.lexists(folder / "m.safetensors") and snapshot(outside) == before


@pytest.mark.parametrize("trap", ["symlink", "fifo"])
def test_planted_partial_next_to_the_file_is_never_used(run_module, tmp_path, srv, outside, trap):
    # Earlier versions kept <file>.partial next to the file; a container plants a link or a FIFO there.
    before = snapshot(outside)
    folder = tmp_path / "models/checkpoints"
    folder.mkdir(parents=True)
    if trap == "symlink":
        os.symlink(outside / "shadow", folder / "m.safetensors.partial")
    else:
        os.mkfifo(folder / "m.safetensors.partial")
    failed, result = run(run_module, tmp_path, models=[entry(srv)])
    assert not failed, result
    r = result["models"][0]
    assert (r["action"], r["resumed_from"], r["verified"]) == ("downloaded", 0, True)
    assert snapshot(outside) == before  # not appended to, not chmod-ed (0600 stays 0600)
    assert not os.path.lexists(folder / "m.safetensors.partial")  # the stale name is removed (the link itself)
    assert (folder / "m.safetensors").read_bytes() == DATA and not (folder / "m.safetensors").is_symlink()


@pytest.fixture
def partial_beside(monkeypatch):
    """The state dir on another file system than the model folder: the partial is kept next to the file."""
    monkeypatch.setattr(model_download.Downloader, "_renames_into", staticmethod(lambda src, dst: False))


@pytest.mark.parametrize("trap", ["symlink", "hardlink", "fifo"])
def test_planted_partial_when_it_lives_next_to_the_file(run_module, tmp_path, srv, outside, partial_beside, trap):
    before = snapshot(outside)
    folder = tmp_path / "models/checkpoints"
    folder.mkdir(parents=True)
    partial = folder / "m.safetensors.partial"
    if trap == "symlink":
        os.symlink(outside / "shadow", partial)
    elif trap == "hardlink":
        os.link(outside / "shadow", partial)  # same file system: a container could do this with a file it sees
    else:
        os.mkfifo(partial)
    failed, result = run(run_module, tmp_path, models=[entry(srv)])
    assert not failed, result
    r = result["models"][0]
    assert (r["action"], r["resumed_from"], r["verified"]) == ("downloaded", 0, True)
    assert snapshot(outside) == before
    assert any("not a partial download of this module" in w for w in result["warnings"])
    assert any("on another file system" in w for w in result["warnings"])
    assert (folder / "m.safetensors").read_bytes() == DATA and not partial.exists()


def test_fifo_at_the_final_name_fails_without_hanging(run_module, tmp_path, srv):
    folder = tmp_path / "models/checkpoints"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "m.safetensors")
    failed, result = run(run_module, tmp_path, models=[entry(srv)])
    assert failed and "checkpoints/m.safetensors is a FIFO, not a regular file" in result["msg"]


def test_model_changed_in_place_with_its_mtime_restored_is_read_again(run_module, tmp_path, srv):
    assert not run(run_module, tmp_path, models=[entry(srv)])[0]
    dest = tmp_path / "models/checkpoints/m.safetensors"
    st = dest.stat()
    with open(dest, "r+b") as f:  # what a container can do: same size, other bytes, mtime put back
        f.seek(1000)
        f.write(b"EVIL")
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (dest.stat().st_size, dest.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    failed, result = run(run_module, tmp_path, models=[entry(srv)])
    assert not failed, result
    r = result["models"][0]
    assert r["hash_source"] == "download" and r["action"] == "replaced"  # not "verified: true" from the cache
    assert dest.read_bytes() == DATA


def test_cache_in_the_container_writable_place_is_not_trusted(run_module, tmp_path, srv):
    # Earlier versions kept the cache in models/.comfyops, where a container can forge entries.
    dest = tmp_path / "models/checkpoints/m.safetensors"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"not the model at all")
    st = dest.stat()
    forged = {"version": 1, "files": {"checkpoints/m.safetensors": dict(size=st.st_size, mtime_ns=st.st_mtime_ns,
                                                                        sha256=SHA)}}
    (tmp_path / "models/.comfyops").mkdir()
    (tmp_path / "models/.comfyops/sha256_cache.json").write_text(json.dumps(forged))
    failed, result = run(run_module, tmp_path, models=[entry(srv)])
    assert not failed, result
    r = result["models"][0]
    assert r["action"] == "replaced" and r["verified"] and dest.read_bytes() == DATA


def test_cache_entry_whose_key_does_not_match_is_not_trusted(run_module, tmp_path, srv):
    assert not run(run_module, tmp_path, models=[entry(srv)])[0]
    cache_path = tmp_path / ".comfyops/models/sha256_cache.json"
    cache = json.loads(cache_path.read_text())
    dest = tmp_path / "models/checkpoints/m.safetensors"
    dest.unlink()
    dest.write_bytes(b"x" * len(DATA))  # another inode and ctime; size kept, mtime put back
    e = cache["files"]["checkpoints/m.safetensors"]
    os.utime(dest, ns=(e["mtime_ns"], e["mtime_ns"]))
    failed, result = run(run_module, tmp_path, models=[entry(srv)])
    assert not failed and result["models"][0]["action"] == "replaced" and dest.read_bytes() == DATA


def test_state_files_are_host_only(run_module, tmp_path, srv):
    srv.drop_next("/m.safetensors", after=100_000)
    assert run(run_module, tmp_path, retries=0, models=[entry(srv)])[0]
    state = tmp_path / ".comfyops/models"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("partials/checkpoints/m.safetensors.partial", "partials/checkpoints/m.safetensors.partial.json",
                 "locks/checkpoints/m.safetensors.lock"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    assert not (tmp_path / "models/.comfyops").exists()
    assert not list((tmp_path / "models").rglob("*.partial"))  # nothing a container could tamper with


@pytest.mark.parametrize("args, message", [
    (dict(models=[dict(url="http://x/y", folder="a", filename="evil\nname")]),
     "filename must not contain control characters (found U+000A)"),
    (dict(models=[dict(url="http://x/y", folder="ch\x1bpoints")]), "folder must not contain control characters"),
    (dict(models=[dict(url="http://x/y", folder="a", name="x\u202e")]), "name must not contain control characters"),
    (dict(models=[dict(url="http://x/a\nb", folder="a")]), "url must not contain control characters"),
    (dict(models=[dict(url="http://x/a b", folder="a")]), "must not contain spaces"),
    (dict(models=[dict(url="http://x/y", folder=["loras", "x"])]), "folder must be a string (quote it in YAML), got list"),
    (dict(url="http://x/y", folder=["loras", "x"]), "folder must be a string (quote it in YAML), got list"),
    (dict(models=[dict(url="http://x/y", folder="a", filename={"a": 1})]), "filename must be a string"),
    (dict(models=[dict(url="http://x/y", folder="a", filename="n" * 250)]), "longer than 240 bytes"),
    (dict(models=[dict(url="http://user:pw@x/y", folder="a")]), "do not put credentials in the url; use the token"),
    (dict(url="http://x/y", folder="a", token="hf_abc\r\nX-Evil: 1"), "token must be a string without spaces or control"),
    (dict(url="http://x/y", folder="a", connections=0), "connections must be at least 1"),
    (dict(url="http://x/y", folder="a", connections=64), "connections must be at most 32"),
    (dict(url="http://x/y", folder="a", lock_timeout=-1), "lock_timeout must not be negative"),
    (dict(url="http://x/y", folder="a", models_dir="relative/models"), "models_dir must be an absolute path"),
    (dict(url="http://x/y", folder="a", models_dir="/"), "models_dir must be an absolute path below /"),
    (dict(url="http://x/y", folder="a", state_dir="{models}/.state"), "state_dir {models}/.state is inside models_dir"),
    (dict(url="http://x/y", folder="a", cache_file="{models}/c.json"), "cache_file {models}/c.json is inside models_dir"),
    (dict(url="http://x/y", folder="a", status_file="{models}/s.json"), "is inside models_dir, which containers"),
])
def test_bad_input_fails_before_anything_changes(run_module, tmp_path, args, message):
    models = str(tmp_path / "models")
    args = {k: v.format(models=models) if isinstance(v, str) and k != "token" else v for k, v in args.items()}
    failed, result = run(run_module, tmp_path, **args)
    assert failed and message.format(models=models) in result["msg"], result["msg"]
    assert "hf_abc" not in result["msg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no models dir, no state dir


def test_control_characters_never_reach_a_path(run_module, tmp_path):
    # Only the entry's own message shows them, escaped (repr), never raw on a line of their own.
    failed, result = run(run_module, tmp_path, models=[dict(url="http://x/y", folder="a\nTASK [fake] ok")])
    assert failed and "\n" not in result["msg"] and "'a\\nTASK [fake] ok'" in result["msg"]


def test_token_with_control_characters_is_refused_without_echoing_it(run_module, tmp_path):
    failed, result = run(run_module, tmp_path, url="http://x/y", folder="a", token=TOKEN + "\n")
    assert failed and TOKEN not in json.dumps(result)
