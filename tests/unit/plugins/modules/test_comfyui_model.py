"""comfyui_model against a local HTTP server with Range support that can cut connections mid-body."""
from __future__ import annotations

import builtins
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils import model_download
from ansible_collections.comfyops.comfyui.plugins.module_utils.model_download import (
    Downloader,
    DownloadError,
    HashCache,
    StatusFile,
    normalize_specs,
    redact,
)
from ansible_collections.comfyops.comfyui.plugins.modules import comfyui_model

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from model_http_server import ModelServer  # noqa: E402

DATA = os.urandom(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(DATA).hexdigest()
TOKEN = "hf_SeCrEtToKeN1234567890"


def state(tmp_path):
    """The default state dir: <parent of models_dir>/.comfyops/models (host-only, not in the container mount)."""
    return tmp_path / ".comfyops" / "models"


def partial_of(tmp_path, rel="checkpoints/m.safetensors"):
    path = state(tmp_path) / "partials" / (rel + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def srv():
    with ModelServer() as server:
        server.add("/m.safetensors", data=DATA)
        yield server


def run(run_module, tmp_path, check_mode=False, **args):
    args.setdefault("models_dir", str(tmp_path / "models"))
    args.setdefault("retry_delay", 0)
    args.setdefault("min_free_mb", 0)
    return run_module(comfyui_model.main, args, check_mode=check_mode)


def one(url, **kw):
    return dict(dict(url=url, folder="checkpoints", sha256=SHA), **kw)


@pytest.fixture
def hash_calls(monkeypatch):
    calls = []
    real = model_download.hash_file

    def counting(path, *a, **kw):
        calls.append(str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(model_download, "hash_file", counting)
    return calls


def test_download_verifies_renames_and_records(run_module, tmp_path, srv, hash_calls):
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])
    assert not failed, result
    (r,) = result["models"]
    dest = tmp_path / "models" / "checkpoints" / "m.safetensors"
    assert r["action"] == "downloaded" and r["changed"] and r["verified"] and r["hash_source"] == "download"
    assert r["sha256"] == SHA and r["size"] == len(DATA) == r["bytes_downloaded"]
    assert dest.read_bytes() == DATA and oct(dest.stat().st_mode & 0o777) == "0o644"
    assert not (dest.parent / "m.safetensors.partial").exists() and not partial_of(tmp_path).exists()
    assert hash_calls == []  # hashed while streaming: the data was never read back
    cache = json.loads((state(tmp_path) / "sha256_cache.json").read_text())
    assert cache["files"]["checkpoints/m.safetensors"]["sha256"] == SHA
    status = json.loads(Path(result["status_file"]).read_text())
    assert status["finished"] is True
    entry = status["files"]["checkpoints/m.safetensors"]
    assert entry["state"] == "done" and entry["bytes"] == entry["total"] == len(DATA) and entry["percent"] == 100.0


def test_noop_reads_nothing_when_the_cache_matches(run_module, tmp_path, srv, monkeypatch):
    assert not run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])[0]
    dest = str(tmp_path / "models" / "checkpoints" / "m.safetensors")
    real_open = builtins.open

    def guarded_open(file, *a, **kw):
        assert str(file) != dest, "the model file was opened on a no-op run"
        return real_open(file, *a, **kw)

    def no_hash(*a, **kw):
        raise AssertionError("hash_file called on a no-op run")

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(model_download, "hash_file", no_hash)
    before = len(srv.requests)
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])
    assert not failed and result["changed"] is False
    (r,) = result["models"]
    assert (r["action"], r["hash_source"], r["verified"]) == ("none", "cache", True)
    assert len(srv.requests) == before  # no network either


def test_existing_file_without_cache_is_hashed_once_then_cached(run_module, tmp_path, srv, hash_calls):
    dest = tmp_path / "models" / "checkpoints" / "m.safetensors"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(DATA)
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])
    assert not failed and not result["changed"] and result["models"][0]["hash_source"] == "computed"
    assert hash_calls == [str(dest)]
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])
    assert result["models"][0]["hash_source"] == "cache" and hash_calls == [str(dest)]
    # touching the file invalidates the cache entry
    os.utime(dest, ns=(dest.stat().st_atime_ns, dest.stat().st_mtime_ns + 10**9))
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])
    assert result["models"][0]["hash_source"] == "computed" and len(hash_calls) == 2
    assert srv.gets("/m.safetensors") == []


def test_retry_within_the_run_resumes_without_rereading(run_module, tmp_path, srv, hash_calls):
    srv.drop_next("/m.safetensors", after=1_000_000)
    srv.drop_next("/m.safetensors", after=2_000_000)
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")], retries=2)
    assert not failed, result
    gets = srv.gets("/m.safetensors")
    assert [g["headers"].get("Range") for g in gets] == [None, "bytes=1000000-", "bytes=2000000-"]
    assert hash_calls == []  # the running hash was kept across the retries
    assert (tmp_path / "models/checkpoints/m.safetensors").read_bytes() == DATA
    assert result["models"][0]["bytes_downloaded"] == len(DATA)


def test_interrupted_run_fails_keeps_partial_and_next_run_resumes(run_module, tmp_path, srv, hash_calls):
    srv.drop_next("/m.safetensors", after=1_500_000)
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")], retries=0)
    assert failed
    partial = partial_of(tmp_path)
    assert partial.stat().st_size == 1_500_000
    assert "connection closed after 1500000 of %d bytes" % len(DATA) in result["msg"]
    assert "the next run resumes" in result["msg"]
    status = json.loads((state(tmp_path) / "download_status.json").read_text())
    assert status["files"]["checkpoints/m.safetensors"]["state"] == "failed"

    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])
    assert not failed, result
    r = result["models"][0]
    assert (r["action"], r["resumed_from"], r["bytes_downloaded"]) == ("resumed", 1_500_000, len(DATA) - 1_500_000)
    assert srv.gets("/m.safetensors")[-1]["headers"]["Range"] == "bytes=1500000-"
    assert hash_calls == [str(partial)]  # the partial bytes were read once
    assert not partial.exists()
    assert (tmp_path / "models/checkpoints/m.safetensors").read_bytes() == DATA


def test_server_without_range_support_gets_a_full_download(run_module, tmp_path, srv):
    srv.entries["/m.safetensors"].ranges = False
    partial = partial_of(tmp_path)
    partial.write_bytes(b"garbage that is not the start of the file")
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])
    assert not failed, result
    assert result["models"][0]["action"] == "downloaded"
    assert (tmp_path / "models/checkpoints/m.safetensors").read_bytes() == DATA


def test_wrong_content_range_restarts_from_zero(run_module, tmp_path, srv):
    srv.entries["/m.safetensors"].bad_range = True
    partial = partial_of(tmp_path)
    partial.write_bytes(DATA[:1000])
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])
    assert not failed, result
    assert [g["headers"].get("Range") for g in srv.gets("/m.safetensors")] == ["bytes=1000-", None]
    assert (tmp_path / "models/checkpoints/m.safetensors").read_bytes() == DATA


def test_complete_partial_gets_416_and_is_verified(run_module, tmp_path, srv):
    partial = partial_of(tmp_path)
    partial.write_bytes(DATA)
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])
    assert not failed, result
    assert result["models"][0]["bytes_downloaded"] == 0
    assert (tmp_path / "models/checkpoints/m.safetensors").read_bytes() == DATA


def test_checksum_mismatch_deletes_partial_and_fails_clearly(run_module, tmp_path, srv):
    wrong = "0" * 64
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors", sha256=wrong)])
    assert failed
    assert "sha256 mismatch: expected %s, got %s" % (wrong, SHA) in result["msg"]
    assert "partial file was deleted" in result["msg"]
    folder = tmp_path / "models/checkpoints"
    assert list(folder.iterdir()) == []
    assert result["models"][0]["action"] == "failed"


def test_wrong_existing_file_is_replaced(run_module, tmp_path, srv):
    dest = tmp_path / "models/checkpoints/m.safetensors"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"old")
    failed, result = run_module(comfyui_model.main, dict(
        models_dir=str(tmp_path / "models"), min_free_mb=0, _ansible_diff=True,
        url=srv.url + "/m.safetensors", folder="checkpoints", sha256=SHA))
    assert not failed, result
    assert result["models"][0]["action"] == "replaced"
    assert result["diff"] == [dict(before_header=str(dest), after_header=str(dest),
                                   before=hashlib.sha256(b"old").hexdigest() + "\n", after=SHA + "\n")]
    assert dest.read_bytes() == DATA


def test_token_goes_to_the_origin_only_and_is_never_shown(run_module, tmp_path, srv):
    srv.entries["/m.safetensors"].token = TOKEN
    # the "CDN": same server under another host name, reached through a redirect
    srv.add("/gated.safetensors", redirect="http://localhost:%d/m-cdn.safetensors?X-Amz-Signature=abc" % srv.port)
    srv.add("/m-cdn.safetensors", data=DATA)
    failed, result = run(run_module, tmp_path, token=TOKEN, models=[
        one(srv.url + "/m.safetensors"),
        one(srv.url + "/gated.safetensors", filename="g.safetensors"),
    ])
    assert not failed, result
    assert srv.gets("/m.safetensors")[0]["headers"]["Authorization"] == "Bearer " + TOKEN
    assert srv.gets("/gated.safetensors")[0]["headers"]["Authorization"] == "Bearer " + TOKEN
    assert "Authorization" not in srv.gets("/m-cdn.safetensors")[0]["headers"]
    assert TOKEN not in json.dumps(result)
    assert TOKEN not in (state(tmp_path) / "download_status.json").read_text()


def test_token_never_in_error_text(run_module, tmp_path, srv):
    srv.entries["/m.safetensors"].token = "another"
    failed, result = run(run_module, tmp_path, token=TOKEN, models=[
        one(srv.url + "/m.safetensors"),
        one(srv.url + "/missing.safetensors?token=" + TOKEN),
    ])
    assert failed
    text = json.dumps(result)
    assert TOKEN not in text
    assert "HTTP 401" in result["msg"] and "token was refused" in result["msg"]
    assert "HTTP 404" in result["msg"] and "missing.safetensors?..." in result["msg"]
    assert TOKEN not in (state(tmp_path) / "download_status.json").read_text()
    # and the exception raised by the library itself carries the masked text
    downloader = Downloader(str(tmp_path / "models"), token=TOKEN, retries=0)
    spec = normalize_specs([dict(url=srv.url + "/missing/" + TOKEN, folder="x", filename="y")], "present")[0]
    with pytest.raises(DownloadError) as exc:
        downloader.ensure(spec)
    assert TOKEN not in str(exc.value) and model_download.REDACTED in str(exc.value)
    assert redact("a %s b" % TOKEN, [TOKEN, None]) == "a ******** b"


def test_missing_token_hint(run_module, tmp_path, srv):
    srv.entries["/m.safetensors"].token = TOKEN
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])
    assert failed and "set token" in result["msg"]
    assert len(srv.gets("/m.safetensors")) == 1  # 4xx is not retried


def test_transient_5xx_is_retried_then_reported(run_module, tmp_path, srv):
    srv.entries["/m.safetensors"].status = 503
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")], retries=2)
    assert failed and "HTTP 503" in result["msg"] and "gave up after 3 attempt(s)" in result["msg"]
    assert len(srv.gets("/m.safetensors")) == 3


def test_check_mode_changes_nothing(run_module, tmp_path, srv):
    failed, result = run(run_module, tmp_path, check_mode=True, models=[one(srv.url + "/m.safetensors")])
    assert not failed and result["changed"] and result["models"][0]["action"] == "would_download"
    assert not (tmp_path / "models").exists() and srv.requests == []
    partial = partial_of(tmp_path)
    partial.write_bytes(DATA[:10])
    failed, result = run(run_module, tmp_path, check_mode=True, models=[one(srv.url + "/m.safetensors")])
    assert result["models"][0]["action"] == "would_resume" and result["models"][0]["resumed_from"] == 10
    assert result["status_file"] is None and not (tmp_path / "models/.comfyops").exists()
    assert not (state(tmp_path) / "download_status.json").exists() and not (tmp_path / "models/checkpoints").exists()


def test_absent_removes_file_partial_and_cache_entry(run_module, tmp_path, srv):
    assert not run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])[0]
    folder = tmp_path / "models/checkpoints"
    (folder / "m.safetensors.partial").write_bytes(b"x")
    failed, result = run(run_module, tmp_path, check_mode=True, folder="checkpoints", filename="m.safetensors",
                         state="absent")
    assert result["models"][0]["action"] == "would_remove" and (folder / "m.safetensors").exists()
    failed, result = run(run_module, tmp_path, folder="checkpoints", filename="m.safetensors", state="absent")
    assert not failed and result["changed"] and result["models"][0]["action"] == "removed"
    assert list(folder.iterdir()) == []
    cache = json.loads((state(tmp_path) / "sha256_cache.json").read_text())
    assert cache["files"] == {}
    failed, result = run(run_module, tmp_path, folder="checkpoints", filename="m.safetensors", state="absent")
    assert not result["changed"]


def test_parallel_list_with_subfolders_and_no_checksum(run_module, tmp_path, srv):
    models = []
    for i in range(5):
        srv.add("/f%d.bin" % i, data=DATA[: 100_000 * (i + 1)])
        models.append(dict(url=srv.url + "/f%d.bin" % i, folder="text_encoders", filename="gemma/f%d.bin" % i))
    failed, result = run(run_module, tmp_path, models=models, max_parallel=3)
    assert not failed, result
    for i, r in enumerate(result["models"]):
        assert r["action"] == "downloaded" and r["verified"] is False
        assert r["sha256"] == hashlib.sha256(DATA[: 100_000 * (i + 1)]).hexdigest()
        assert (tmp_path / ("models/text_encoders/gemma/f%d.bin" % i)).stat().st_size == 100_000 * (i + 1)
    failed, result = run(run_module, tmp_path, models=models)
    assert not result["changed"] and all(r["hash_source"] == "cache" for r in result["models"])


def test_free_space_checked_before_any_request(run_module, tmp_path, srv):
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors", size=len(DATA))],
                         min_free_mb=10**9)
    assert failed and "not enough free space" in result["msg"] and "checkpoints/m.safetensors" in result["msg"]
    assert srv.requests == []


def test_free_space_checked_against_the_announced_size(run_module, tmp_path, srv, monkeypatch):
    monkeypatch.setattr(model_download.shutil, "disk_usage", lambda p: type("U", (), dict(free=len(DATA) // 2))())
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors")])
    assert failed and "not enough free space" in result["msg"] and "3 MiB needed" in result["msg"]
    assert not (tmp_path / "models/checkpoints/m.safetensors.partial").exists()


def test_announced_size_must_match(run_module, tmp_path, srv):
    failed, result = run(run_module, tmp_path, models=[one(srv.url + "/m.safetensors", size=5)])
    assert failed and "the server announces %d bytes, the entry says size=5" % len(DATA) in result["msg"]


@pytest.mark.parametrize("args, message", [
    (dict(models=[dict(url="ftp://x/y", folder="a")]), "url must be an http(s) URL"),
    (dict(models=[dict(url="http://u:p@x/y", folder="a")]), "do not put credentials in the url"),
    (dict(models=[dict(folder="a", filename="b")]), "url is required when state=present"),
    (dict(models=[dict(url="http://x/y", folder="../a")]), "must not contain empty, '.' or '..'"),
    (dict(models=[dict(url="http://x/y", folder="/abs")]), "must be a relative path"),
    (dict(models=[dict(url="http://x/", folder="a")]), "filename must be a non-empty string"),
    (dict(models=[dict(url="http://x/y", folder="a", sha256="abc")]), "sha256 must be 64 hexadecimal digits"),
    (dict(models=[dict(url="http://x/y", folder="a"), dict(url="http://z/y", folder="a")]), "a/y is listed twice"),
    (dict(models=[dict(url="http://x/y.partial", folder="a")]), "must not end in .partial"),
    (dict(models=[dict(url="http://x/y", folder=".comfyops")]), "state directory"),
    (dict(url="http://x/y"), "one of models or folder"),
    (dict(url="http://x/y", folder="a", mode="999"), "invalid literal"),
    (dict(url="http://x/y", folder="a", max_parallel=0), "max_parallel must be at least 1"),
    (dict(url="http://x/y", folder="a", retries=-1), "retries must not be negative"),
])
def test_argument_validation(run_module, tmp_path, args, message):
    failed, result = run(run_module, tmp_path, **args)
    assert failed and message in result["msg"], result["msg"]


def test_models_and_single_file_options_are_exclusive(run_module, tmp_path):
    failed, result = run(run_module, tmp_path, models=[dict(url="http://x/y", folder="a")], folder="b")
    assert failed and "not both" in result["msg"]


def test_status_file_is_throttled_and_atomic(tmp_path):
    now = [0.0]
    path = tmp_path / "s" / "status.json"
    specs = normalize_specs([dict(url="http://x/a.bin", folder="f", size=100)], "present")
    status = StatusFile(str(path), specs, interval=1.0, clock=lambda: now[0])
    assert json.loads(path.read_text())["files"]["f/a.bin"]["state"] == "pending"
    status.update("f/a.bin", state="downloading", bytes=10)           # state change: written at once
    status.update("f/a.bin", bytes=50)                                # within the interval: not yet
    assert json.loads(path.read_text())["files"]["f/a.bin"]["bytes"] == 10
    now[0] = 1.5
    status.update("f/a.bin", bytes=60, rate_mb_s=1.0, eta_s=3)
    entry = json.loads(path.read_text())["files"]["f/a.bin"]
    assert (entry["bytes"], entry["percent"], entry["eta_s"]) == (60, 60.0, 3)
    status.finish()
    assert json.loads(path.read_text())["finished"] is True
    # no temporary files left behind; the one-line-per-file text is the only other file
    assert sorted(p.name for p in path.parent.iterdir()) == ["status.json", "status.txt"]


def test_damaged_cache_is_ignored(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text("{not json")
    cache = HashCache(str(path))
    assert cache.entries == {}
