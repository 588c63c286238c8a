"""comfyui_model at line rate: several ranged connections per file, resume of what a killed run left, files that
change on the server, checksums published by the origin, and several runs (hosts) on one data root.

Real files and a real local HTTP server with a per-connection rate cap (tests/model_http_server.py); the
throughput figures themselves are in bench/model_download.py, not in timed tests.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils import model_download
from ansible_collections.comfyops.comfyui.plugins.module_utils.locks import FileLock
from ansible_collections.comfyops.comfyui.plugins.module_utils.model_transfer import covered
from ansible_collections.comfyops.comfyui.plugins.modules import comfyui_model

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "tests"))
from model_http_server import ModelServer  # noqa: E402

MiB = 2**20
PIECE = MiB
RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")

# The module as its own process (a second host, or a run that gets killed): real AnsibleModule, stdout JSON.
RUNNER = """
import json, sys
sys.path.insert(0, sys.argv[3])
from ansible.module_utils.testing import patch_module_args
from ansible_collections.comfyops.comfyui.plugins.module_utils import model_download
from ansible_collections.comfyops.comfyui.plugins.modules import comfyui_model
model_download.PIECE_SIZE = int(sys.argv[2])
with open(sys.argv[1]) as f:
    args = json.load(f)
with patch_module_args(args):
    comfyui_model.main()
"""


def state(tmp_path):
    return tmp_path / ".comfyops" / "models"


@pytest.fixture
def small_pieces(monkeypatch):
    monkeypatch.setattr(model_download, "PIECE_SIZE", PIECE)


def run(run_module, tmp_path, **args):
    args.setdefault("models_dir", str(tmp_path / "models"))
    args.setdefault("retry_delay", 0)
    args.setdefault("min_free_mb", 0)
    return run_module(comfyui_model.main, args)


def spawn(tmp_path, name, args):
    path = tmp_path / ("%s.json" % name)
    path.write_text(json.dumps(dict(dict(retry_delay=0, min_free_mb=0), **args)))
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(path), str(PIECE), str(ROOT / ".ansible/collections")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ranges_of(gets):
    out = []
    for g in gets:
        m = RANGE_RE.match(g["headers"].get("Range") or "")
        out.append((int(m.group(1)), int(m.group(2)) + 1 if m.group(2) else None) if m else (0, None))
    return out


def test_segmented_download_uses_n_connections_at_once_and_reads_nothing_back(run_module, tmp_path, small_pieces):
    data = os.urandom(24 * MiB + 12345)
    with ModelServer(rate=8 * MiB) as srv:  # 8 MiB/s per connection: 4 connections take about 0.75 s
        srv.add("/big.safetensors", data=data)
        failed, result = run(run_module, tmp_path, connections=4, models=[
            dict(url=srv.url + "/big.safetensors", folder="checkpoints", sha256=hashlib.sha256(data).hexdigest())])
    assert not failed, result
    (r,) = result["models"]
    assert (r["action"], r["verified"], r["sha256_source"], r["connections"]) == ("downloaded", True, "given", 4)
    # four GETs were being answered at the same time (the server may count one more for a moment: a connection
    # the client closed, e.g. the first full-length GET after its first piece, is noticed at the next send)
    assert srv.max_active["/big.safetensors"] >= 4
    assert r["bytes_downloaded"] == len(data)               # every byte fetched once
    assert r["bytes_read_back"] == 0                        # and hashed from memory: never read back
    assert (tmp_path / "models/checkpoints/big.safetensors").read_bytes() == data
    gets = srv.gets("/big.safetensors")
    assert len(gets) >= 25 and srv.connections < len(gets)  # pieces in order, over keep-alive connections
    assert all(g["headers"].get("If-Range") == srv.entries["/big.safetensors"].etag for g in gets[1:])
    starts = sorted(a for a, _b in ranges_of(gets))
    assert starts[0] == 0 and len(set(starts)) == len(starts)
    assert "4 connections" in result["summary"][0] and "sha256 verified (given)" in result["summary"][0]


def test_segmented_download_of_a_sparse_file_with_the_default_pieces(run_module, tmp_path):
    # The real piece size (32 MiB): a 256 MiB sparse file served with sendfile, no rate cap.
    size = 256 * MiB
    source = tmp_path / "served" / "sparse.safetensors"
    source.parent.mkdir()
    with open(source, "wb") as f:
        f.truncate(size)
    sha = hashlib.sha256()
    zeros = bytes(16 * MiB)
    for _chunk in range(size // len(zeros)):
        sha.update(zeros)
    with ModelServer() as srv:
        srv.add("/sparse.safetensors", file=str(source))
        failed, result = run(run_module, tmp_path, connections=4, models=[
            dict(url=srv.url + "/sparse.safetensors", folder="checkpoints", sha256=sha.hexdigest())])
    assert not failed, result
    (r,) = result["models"]
    assert r["verified"] and r["connections"] == 4 and r["size"] == size and r["bytes_downloaded"] == size
    assert srv.max_active["/sparse.safetensors"] >= 4
    assert r["bytes_read_back"] <= size  # at most one read, however far the hash lagged behind the network


def test_through_a_proxy_every_piece_is_a_request_of_its_own(run_module, tmp_path, small_pieces, monkeypatch):
    data = os.urandom(8 * MiB)
    with ModelServer() as srv:
        srv.add("/p.safetensors", data=data)
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", srv.url)  # the server answers absolute-form requests for itself
        failed, result = run(run_module, tmp_path, connections=4, models=[
            dict(url=srv.url + "/p.safetensors", folder="checkpoints", sha256=hashlib.sha256(data).hexdigest())])
        gets = srv.gets("/p.safetensors")
    assert not failed, result
    assert result["models"][0]["connections"] == 4 and result["models"][0]["verified"]
    assert len(gets) >= 8 and all(g["proxied"] for g in gets)
    assert (tmp_path / "models/checkpoints/p.safetensors").read_bytes() == data


def test_a_keep_alive_connection_the_server_closed_is_opened_again(run_module, tmp_path, small_pieces):
    data = os.urandom(8 * MiB)
    with ModelServer() as srv:
        srv.add("/k.safetensors", data=data, close_after=True)  # closes after each answer, without saying so
        failed, result = run(run_module, tmp_path, connections=2, models=[
            dict(url=srv.url + "/k.safetensors", folder="checkpoints", sha256=hashlib.sha256(data).hexdigest())])
        gets, connections = srv.gets("/k.safetensors"), srv.connections
    assert not failed, result
    assert result["models"][0]["verified"] and result["models"][0]["bytes_downloaded"] == len(data)
    assert connections == len(gets)  # each piece on a new connection, after the reused one turned out closed
    assert (tmp_path / "models/checkpoints/k.safetensors").read_bytes() == data


def test_small_files_use_one_connection(run_module, tmp_path, small_pieces):
    data = os.urandom(2 * PIECE)  # not more than two pieces: not worth more connections
    with ModelServer() as srv:
        srv.add("/s.bin", data=data)
        failed, result = run(run_module, tmp_path, connections=4, models=[
            dict(url=srv.url + "/s.bin", folder="vae", sha256=hashlib.sha256(data).hexdigest())])
    assert not failed and result["models"][0]["connections"] == 1
    assert [g["headers"].get("Range") for g in srv.gets("/s.bin")] == [None]


def test_killed_run_resumes_only_the_missing_ranges(run_module, tmp_path, small_pieces):
    data = os.urandom(32 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    sidecar = state(tmp_path) / "partials/checkpoints/k.safetensors.partial.json"
    with ModelServer(rate=3 * MiB) as srv:
        url = srv.add("/k.safetensors", data=data)
        args = dict(models_dir=str(tmp_path / "models"), connections=4,
                    models=[dict(url=url, folder="checkpoints", sha256=sha)])
        proc = spawn(tmp_path, "killed", args)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            record = json.loads(sidecar.read_text()) if sidecar.exists() else None
            if record and covered(record["done"], record["size"]) >= 6 * MiB:
                break
            time.sleep(0.05)
        proc.kill()
        proc.communicate()
        record = json.loads(sidecar.read_text())
        on_disk = covered(record["done"], record["size"])
        assert 6 * MiB <= on_disk < len(data) and len(record["done"]) >= 1
        first_run_gets = len(srv.gets("/k.safetensors"))

        failed, result = run(run_module, tmp_path, **args)
        assert not failed, result
        gets = srv.gets("/k.safetensors")[first_run_gets:]
    (r,) = result["models"]
    assert (r["action"], r["verified"]) == ("resumed", True)
    assert r["resumed_from"] == on_disk and r["bytes_downloaded"] == len(data) - on_disk
    # the bytes of the killed run were read once, to hash them; the new ones arrived slower than that read, so
    # they were hashed from memory
    assert r["bytes_read_back"] == on_disk
    assert (tmp_path / "models/checkpoints/k.safetensors").read_bytes() == data
    assert not sidecar.exists() and not sidecar.with_suffix("").exists()
    # every request of the second run started in a gap the first one left
    assert not [start for start, _end in ranges_of(gets) if any(a <= start < b for a, b in record["done"])]
    assert all(g["headers"].get("If-Range") == record["etag"] for g in gets)


def test_file_changed_on_the_server_between_runs_is_not_spliced(run_module, tmp_path):
    old, new = os.urandom(3 * MiB), os.urandom(3 * MiB)
    with ModelServer() as srv:
        url = srv.add("/c.safetensors", data=old)
        srv.drop_next("/c.safetensors", after=MiB)
        failed, _result = run(run_module, tmp_path, retries=0, models=[dict(url=url, folder="checkpoints")])
        assert failed
        old_etag = srv.entries["/c.safetensors"].etag
        srv.change("/c.safetensors", new)  # same size, new content, new ETag
        failed, result = run(run_module, tmp_path, models=[dict(url=url, folder="checkpoints")])
        assert not failed, result
        last = srv.gets("/c.safetensors")[-1]
    assert (last["headers"]["Range"], last["headers"]["If-Range"]) == ("bytes=%d-" % MiB, old_etag)
    (r,) = result["models"]
    assert (r["action"], r["resumed_from"], r["sha256"]) == ("downloaded", 0, hashlib.sha256(new).hexdigest())
    assert (tmp_path / "models/checkpoints/c.safetensors").read_bytes() == new
    assert any("changed since the partial download" in w for w in result["warnings"])


def test_changed_file_is_detected_by_its_etag_when_the_server_ignores_if_range(run_module, tmp_path):
    old, new = os.urandom(3 * MiB), os.urandom(3 * MiB)
    with ModelServer() as srv:
        url = srv.add("/c.safetensors", data=old, if_range=False)
        srv.drop_next("/c.safetensors", after=MiB)
        assert run(run_module, tmp_path, retries=0, models=[dict(url=url, folder="checkpoints")])[0]
        srv.change("/c.safetensors", new)
        failed, result = run(run_module, tmp_path, models=[
            dict(url=url, folder="checkpoints", sha256=hashlib.sha256(new).hexdigest())])
        ranges = [g["headers"].get("Range") for g in srv.gets("/c.safetensors")]
    assert not failed, result
    assert ranges == [None, "bytes=%d-" % MiB, None]  # the 206 with another ETag was dropped, then from 0
    assert result["models"][0]["verified"] and result["models"][0]["resumed_from"] == 0
    assert (tmp_path / "models/checkpoints/c.safetensors").read_bytes() == new
    assert any("ETag changed" in w and "never spliced" in w for w in result["warnings"])


def test_file_changed_during_a_segmented_download_starts_over(run_module, tmp_path, small_pieces):
    old, new = os.urandom(12 * MiB), os.urandom(12 * MiB)
    with ModelServer() as srv:
        url = srv.add("/m.safetensors", data=old)
        srv.change_after("/m.safetensors", gets=3, data=new)
        failed, result = run(run_module, tmp_path, connections=3, models=[
            dict(url=url, folder="checkpoints", sha256=hashlib.sha256(new).hexdigest())])
    assert not failed, result
    assert (tmp_path / "models/checkpoints/m.safetensors").read_bytes() == new
    assert result["models"][0]["verified"] and result["models"][0]["action"] == "downloaded"
    assert any("started over" in w for w in result["warnings"])


def test_origin_checksum_from_x_linked_etag(run_module, tmp_path):
    data = os.urandom(2 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    with ModelServer() as srv:
        # like Hugging Face: /resolve/ answers a redirect to the CDN with the LFS sha256 in X-Linked-Etag
        srv.add("/resolve/main/m.safetensors", redirect=srv.url + "/cdn/m.safetensors?sig=1", linked_sha256=sha)
        srv.add("/cdn/m.safetensors", data=data)
        models = [dict(url=srv.url + "/resolve/main/m.safetensors", folder="checkpoints")]
        failed, result = run(run_module, tmp_path, models=models)
        assert not failed, result
        assert len(srv.heads("/resolve/main/m.safetensors")) == 1
        r = result["models"][0]
        assert (r["verified"], r["sha256_source"], r["sha256"]) == (True, "origin", sha)
        assert "sha256 verified (origin)" in result["summary"][0]
        requests = len(srv.requests)
        failed, result = run(run_module, tmp_path, models=models)
        r = result["models"][0]
        assert (r["action"], r["hash_source"], r["verified"], r["sha256_source"]) == ("none", "cache", True, "origin")
        assert len(srv.requests) == requests  # a no-op asks nothing


def test_wrong_origin_checksum_fails_and_keeps_nothing(run_module, tmp_path):
    data = os.urandom(MiB)
    with ModelServer() as srv:
        srv.add("/m.safetensors", data=data, linked_sha256="1" * 64)
        failed, result = run(run_module, tmp_path, models=[dict(url=srv.url + "/m.safetensors", folder="checkpoints")])
    assert failed and "expected %s (published by the origin), got %s" % ("1" * 64, hashlib.sha256(data).hexdigest()) \
        in result["msg"]
    assert list((tmp_path / "models/checkpoints").iterdir()) == []
    assert not list((state(tmp_path) / "partials").rglob("*.partial"))


def test_given_checksum_that_the_origin_contradicts_fails_before_downloading(run_module, tmp_path):
    data = os.urandom(2 * MiB)
    with ModelServer() as srv:
        srv.add("/m.safetensors", data=data, linked_sha256=hashlib.sha256(data).hexdigest())
        failed, result = run(run_module, tmp_path, models=[
            dict(url=srv.url + "/m.safetensors", folder="checkpoints", sha256="2" * 64)])
    assert failed and "the origin publishes sha256 %s" % hashlib.sha256(data).hexdigest() in result["msg"]
    assert "the entry says %s" % ("2" * 64) in result["msg"]
    assert list((tmp_path / "models/checkpoints").iterdir()) == []


def test_three_runs_on_one_data_root_download_once_and_all_verify(tmp_path):
    data = os.urandom(12 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    with ModelServer(rate=4 * MiB) as srv:  # 2 connections x 4 MiB/s: about 1.5 s, the runs overlap
        url = srv.add("/shared.safetensors", data=data)
        args = dict(models_dir=str(tmp_path / "models"), connections=2, lock_timeout=60,
                    models=[dict(url=url, folder="checkpoints", sha256=sha)])
        procs = [spawn(tmp_path, "host%d" % i, args) for i in range(3)]
        outs = [p.communicate(timeout=120) for p in procs]
        sent = srv.sent["/shared.safetensors"]
    results = [json.loads(out) for out, _err in outs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    actions = sorted(r["models"][0]["action"] for r in results)
    assert actions == ["downloaded", "none", "none"]
    assert all(r["models"][0]["verified"] for r in results)
    waiting = [r["models"][0] for r in results if r["models"][0]["action"] == "none"]
    assert all(m["hash_source"] == "cache" and m["sha256"] == sha for m in waiting)
    assert sent <= len(data) + 2 * MiB  # one download (plus what was in flight when a piece was split)
    assert (tmp_path / "models/checkpoints/shared.safetensors").read_bytes() == data


def test_lock_held_elsewhere_times_out_naming_the_holder(run_module, tmp_path):
    lock_path = state(tmp_path) / "locks/checkpoints/m.safetensors.lock"
    lock_path.parent.mkdir(parents=True)
    holder = FileLock(str(lock_path), "checkpoints/m.safetensors (another host)", timeout=0).acquire()
    try:
        with ModelServer() as srv:
            srv.add("/m.safetensors", data=b"x" * 1000)
            failed, result = run(run_module, tmp_path, lock_timeout=0.3, models=[
                dict(url=srv.url + "/m.safetensors", folder="checkpoints")])
            assert srv.requests == []
    finally:
        holder.release()
    assert failed
    assert "checkpoints/m.safetensors: could not take the lock %s within 0.3s" % lock_path in result["msg"]
    assert "held by checkpoints/m.safetensors (another host) (pid %d on %s" % (os.getpid(), socket.gethostname()) \
        in result["msg"]
    assert "raise lock_timeout" in result["msg"]
    assert list((tmp_path / "models/checkpoints").iterdir()) == []
