"""The pieces of comfyui_model's download path on their own: byte-range bookkeeping, the hash cache shared by
several runs, resume records, progress lines, header parsing and the safe opens below models_dir."""
from __future__ import annotations

import hashlib
import json
import os
import threading

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils.model_files import (
    UnsafePathError,
    hash_range,
    open_regular,
    open_subdir,
)
from ansible_collections.comfyops.comfyui.plugins.module_utils.model_http import linked_sha256, strong_etag
from ansible_collections.comfyops.comfyui.plugins.module_utils.model_state import HashCache, Sidecar, progress_line
from ansible_collections.comfyops.comfyui.plugins.module_utils.model_transfer import add_range, covered, holes


def test_ranges_merge_and_leave_the_right_holes():
    ranges = []
    for a, b in ((10, 20), (30, 40), (20, 30), (50, 60), (0, 5)):
        add_range(ranges, a, b)
    assert ranges == [[0, 5], [10, 40], [50, 60]]
    assert holes(ranges, 70) == [[5, 10], [40, 50], [60, 70]]
    assert holes(ranges, 60) == [[5, 10], [40, 50]]
    assert holes([], None) == [[0, None]] and holes([[0, 7]], None) == [[7, None]]
    assert covered(ranges, 70) == 45 and covered(ranges, 55) == 40


def test_cache_keys_on_ctime_and_inode(tmp_path):
    f = tmp_path / "m.bin"
    f.write_bytes(b"abc")
    cache = HashCache(str(tmp_path / "cache.json"))
    st = f.stat()
    cache.put("m.bin", st, "a" * 64, "given")
    assert cache.lookup("m.bin", st)["source"] == "given"
    f.write_bytes(b"xyz")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only ctime tells
    assert cache.lookup("m.bin", f.stat()) is None


def test_cache_saves_of_several_runs_merge(tmp_path):
    path = str(tmp_path / "state" / "cache.json")
    f = tmp_path / "m.bin"
    f.write_bytes(b"abc")
    st = f.stat()
    one, two = HashCache(path), HashCache(path)
    one.put("a", st, "a" * 64, "given")
    two.put("b", st, "b" * 64, "origin")
    threads = [threading.Thread(target=c.save) for c in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = json.loads(open(path).read())["files"]
    assert sorted(files) == ["a", "b"]
    assert HashCache(path).lookup("b", st)["sha256"] == "b" * 64
    # a run that started before the other saved finds the entry on its next lookup
    late = HashCache(path)
    other = HashCache(path)
    other.put("c", st, "c" * 64, "given")
    other.save()
    assert late.lookup("c", st)["sha256"] == "c" * 64
    two.remove("a")
    two.save()
    assert sorted(json.loads(open(path).read())["files"]) == ["b", "c"]


def test_cache_of_an_older_format_or_damaged_is_ignored(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text(json.dumps({"version": 1, "files": {"m": {"size": 3, "mtime_ns": 1, "sha256": "a" * 64}}}))
    assert HashCache(str(path)).entries == {}
    path.write_text("{not json")
    assert HashCache(str(path)).entries == {}


def test_sidecar_rejects_malformed_records(tmp_path):
    sidecar = Sidecar(str(tmp_path / "p.json"))
    assert sidecar.load() is None
    sidecar.save(dict(url="http://x/y", done=[[0, 10], [20, 30]], size=40))
    assert sidecar.load()["done"] == [[0, 10], [20, 30]]
    for done in ([[10, 0]], [[0]], "0-10", [[0, "10"]], [[-1, 5]]):
        (tmp_path / "p.json").write_text(json.dumps(dict(version=1, done=done)))
        assert sidecar.load() is None, done
    sidecar.remove()
    sidecar.remove()  # twice is fine
    assert not (tmp_path / "p.json").exists()


def test_progress_line_has_rate_and_eta():
    line = progress_line("checkpoints/ltx.safetensors", dict(state="downloading", bytes=3 * 2**30, total=8 * 2**30,
                                                             percent=37.5, rate_mb_s=81.2, eta_s=3725, connections=4))
    assert line == "checkpoints/ltx.safetensors  downloading   37.5%  3.00 GiB/8.00 GiB  81.2 MiB/s  ETA 1:02:05  4 conn"
    assert progress_line("a/b", dict(state="failed", bytes=0, total=None, error="HTTP 404")).endswith("error: HTTP 404")


def test_header_parsing():
    sha = "ab" * 32
    assert linked_sha256({"X-Linked-Etag": '"%s"' % sha.upper()}) == sha
    assert linked_sha256({"X-Linked-Etag": 'W/"%s"' % sha}) == sha
    assert linked_sha256({"X-Linked-Etag": '"abc"'}) is None and linked_sha256({}) is None
    assert strong_etag({"ETag": '"x1"'}) == '"x1"'
    assert strong_etag({"ETag": 'W/"x1"'}) is None and strong_etag({}) is None


def test_open_subdir_creates_real_directories_and_refuses_links(tmp_path):
    root_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = open_subdir(root_fd, ["a", "b"], True, str(tmp_path))
        os.close(fd)
        assert (tmp_path / "a/b").is_dir()
        assert open_subdir(root_fd, ["a", "missing"], False, str(tmp_path)) is None
        os.symlink(tmp_path / "a", tmp_path / "link")
        with pytest.raises(UnsafePathError, match="link is a symbolic link"):
            open_subdir(root_fd, ["link", "b"], True, str(tmp_path))
        (tmp_path / "file").write_text("x")
        with pytest.raises(UnsafePathError, match="file is not a directory"):
            open_subdir(root_fd, ["file"], True, str(tmp_path))
    finally:
        os.close(root_fd)


def test_open_regular_refuses_fifos_links_and_hard_links(tmp_path):
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(UnsafePathError, match="is a FIFO"):
            open_regular(dir_fd, "fifo", os.O_RDWR, "fifo")  # O_NONBLOCK: no hang without a reader
        (tmp_path / "real").write_bytes(b"data")
        os.symlink(tmp_path / "real", tmp_path / "link")
        with pytest.raises(UnsafePathError, match="is a symbolic link"):
            open_regular(dir_fd, "link", os.O_RDONLY, "link")
        os.link(tmp_path / "real", tmp_path / "hard")
        with pytest.raises(UnsafePathError, match="2 hard links"):
            open_regular(dir_fd, "hard", os.O_RDWR, "hard", single_link=True)
        fd, st = open_regular(dir_fd, "real", os.O_RDONLY, "real")
        try:
            h = hashlib.sha256()
            assert hash_range(fd, h, 1, 3) == 2 and h.hexdigest() == hashlib.sha256(b"at").hexdigest()
            with pytest.raises(OSError, match="truncated"):
                hash_range(fd, hashlib.sha256(), 0, 10)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
