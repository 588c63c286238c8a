from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.modules import comfyui_health
from ansible_collections.comfyops.comfyui.plugins.modules.comfyui_health import (
    normalize_instances,
    normalize_required_models,
)

API = Path(__file__).resolve().parents[3] / "fixtures" / "reference" / "comfyui-api"
GPU = API / "gpu-h100"

LTX = ["LTXVBaseSampler", "LTXVGemmaCLIPModelLoader", "Set VAE Decoder Noise"]


def health(run_module, check_mode=False, **args):
    return run_module(comfyui_health.main, args, check_mode=check_mode)


def test_healthy_gpu_instance_reports_everything(run_module, comfy):
    comfy.set("/models/checkpoints", ["ltx-2.3-22b-dev.safetensors"])
    failed, result = health(run_module, url=comfy.url, expected_classes=LTX, require_gpu=True, min_vram_mb=80000,
                            required_models={"checkpoints": ["ltx-2.3-22b-dev.safetensors"]})
    assert not failed
    assert result["changed"] is False
    assert result["healthy"] is True
    (inst,) = result["instances"]
    assert inst["name"] == "127.0.0.1:%d" % comfy.port
    assert inst["url"] == comfy.url
    assert inst["healthy"] and inst["problems"] == [] and inst["error"] is None
    assert list(inst["checks"]) == ["ui", "system_stats", "object_info", "queue", "models"]
    assert all(c["ok"] for c in inst["checks"].values())
    assert inst["checks"]["ui"]["status"] == 200 and inst["checks"]["ui"]["content_type"] == "text/html"
    assert inst["checks"]["object_info"]["class_count"] == 880
    assert inst["versions"] == {"comfyui": "0.28.0", "python": "3.12.3", "pytorch": "2.11.0+cu130",
                                "frontend": "1.45.21"}
    # vram_total 85017493504 B and vram_free 84465090560 B from the H100 capture
    assert inst["devices"] == [{"name": "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync", "type": "cuda", "index": 0,
                                "vram_total_mb": 81079, "vram_free_mb": 80552}]
    assert inst["queue"] == {"running": 0, "pending": 0}
    assert inst["missing_classes"] == [] and inst["missing_models"] == []
    assert inst["ready_after_s"] < 1 and inst["latency_ms"] > 0


def test_object_info_fetched_once_and_only_when_classes_expected(run_module, comfy):
    health(run_module, url=comfy.url, expected_classes=LTX)
    assert comfy.count("/object_info") == 1
    assert comfy.count("/system_stats") == 1
    failed, result = health(run_module, url=comfy.url)
    assert not failed
    assert comfy.count("/object_info") == 1
    assert result["instances"][0]["checks"]["object_info"] == {"ok": True, "skipped": True}
    assert result["instances"][0]["checks"]["models"] == {"ok": True, "skipped": True}


def test_missing_classes_and_models_give_one_clear_message(run_module, comfy):
    failed, result = health(
        run_module,
        instances=[{"name": "gpu0", "url": comfy.url}],
        expected_classes=["LTXVBaseSampler", "LTXVLoader", "Set VAE Decoder Noise", "Set VAE Decoder"],
        required_models=[{"folder": "checkpoints", "name": "x.safetensors"}, "loras/ltxv/ltx2/l.safetensors"],
    )
    assert failed
    assert result["msg"] == (
        "ComfyUI health failed: gpu0 (%s): object_info missing classes: LTXVLoader, Set VAE Decoder; "
        "models missing: checkpoints/x.safetensors, loras/ltxv/ltx2/l.safetensors" % comfy.url
    )
    inst = result["instances"][0]
    assert result["healthy"] is False and inst["healthy"] is False
    assert inst["missing_classes"] == ["LTXVLoader", "Set VAE Decoder"]
    assert inst["missing_models"] == ["checkpoints/x.safetensors", "loras/ltxv/ltx2/l.safetensors"]
    assert inst["checks"]["object_info"]["ok"] is False
    assert inst["checks"]["models"]["ok"] is False
    assert inst["checks"]["ui"]["ok"] and inst["checks"]["queue"]["ok"]


def test_fail_on_unhealthy_false_reports_without_failing(run_module, comfy):
    failed, result = health(run_module, url=comfy.url, expected_classes=["Nope"], fail_on_unhealthy=False)
    assert not failed
    assert result["healthy"] is False
    assert result["instances"][0]["problems"] == ["object_info missing classes: Nope"]


def test_check_mode_probes_the_same_and_never_changes(run_module, comfy):
    failed, result = health(run_module, check_mode=True, url=comfy.url, expected_classes=LTX)
    assert not failed and result["changed"] is False and result["healthy"]
    assert comfy.count("/object_info") == 1
    failed, result = health(run_module, check_mode=True, url=comfy.url, expected_classes=["Nope"])
    assert failed and "object_info missing classes: Nope" in result["msg"]


def test_cpu_instance_fails_require_gpu_and_min_vram(run_module, comfy):
    comfy.set("/system_stats", (API / "system_stats.json").read_bytes())
    failed, result = health(run_module, url=comfy.url, require_gpu=True, min_vram_mb=32000)
    assert failed
    inst = result["instances"][0]
    assert inst["problems"] == ["system_stats: no GPU device (devices: cpu)",
                                "system_stats: VRAM 24105 MiB < min_vram_mb 32000"]
    assert inst["checks"]["system_stats"]["ok"] is False
    assert inst["checks"]["system_stats"]["error"] == "no GPU device (devices: cpu); VRAM 24105 MiB < min_vram_mb 32000"
    assert inst["versions"]["comfyui"] == "0.33.0"
    assert inst["devices"][0]["type"] == "cpu"


def test_min_vram_counts_the_cpu_when_there_is_no_gpu(run_module, comfy):
    comfy.set("/system_stats", (API / "system_stats.json").read_bytes())
    failed, _result = health(run_module, url=comfy.url, min_vram_mb=24000)
    assert not failed


def test_min_vram_with_unknown_vram(run_module, comfy):
    stats = json.loads((GPU / "system_stats.json").read_text())
    stats["devices"][0].pop("vram_total")
    stats["devices"].append("garbage")  # ignored, not a traceback
    comfy.set("/system_stats", stats)
    failed, result = health(run_module, url=comfy.url, min_vram_mb=1)
    assert failed and result["instances"][0]["problems"] == ["system_stats: VRAM unknown MiB < min_vram_mb 1"]


def test_ui_not_html(run_module, comfy):
    comfy.set("/", b"{}", content_type="application/json")
    failed, result = health(run_module, url=comfy.url)
    assert failed
    assert result["instances"][0]["problems"] == ["ui: GET / answered application/json, not text/html"]
    assert result["instances"][0]["checks"]["ui"]["status"] == 200


def test_errors_of_individual_checks_are_named(run_module, comfy):
    comfy.set("/", b"", status=404, content_type="application/octet-stream")
    comfy.set("/object_info", b"500 Internal Server Error\n\nServer got itself in trouble", status=500,
              content_type="text/plain")
    comfy.set("/queue", {"unexpected": True})
    failed, result = health(run_module, url=comfy.url, expected_classes=["KSampler"],
                            required_models={"nosuchfolder": ["a.safetensors"]})
    assert failed
    u = comfy.url
    assert result["instances"][0]["problems"] == [
        "ui: GET %s/: HTTP 404: Not Found" % u,
        "object_info: GET %s/object_info: HTTP 500: 500 Internal Server Error Server got itself in trouble" % u,
        "queue: GET /queue: not a ComfyUI queue answer",
        "models: GET %s/models/nosuchfolder: HTTP 404: Not Found" % u,
        "models missing: nosuchfolder/a.safetensors",
    ]
    checks = result["instances"][0]["checks"]
    assert checks["ui"]["status"] == 404
    assert checks["models"]["error"] == "GET %s/models/nosuchfolder: HTTP 404: Not Found" % u
    assert result["instances"][0]["queue"] is None


def test_unexpected_shapes(run_module, comfy):
    comfy.set("/queue", b"not json", content_type="text/plain")
    comfy.set("/object_info", ["not", "a", "dict"])
    comfy.set("/models/checkpoints", {"not": "a list"})
    failed, result = health(run_module, url=comfy.url, expected_classes=["KSampler"],
                            required_models={"checkpoints": "a.safetensors"})
    problems = result["instances"][0]["problems"]
    assert failed
    assert problems[0] == "object_info: GET /object_info: not a ComfyUI object_info answer"
    assert problems[1].startswith("queue: %s/queue: answer is not JSON" % comfy.url)
    assert problems[2:] == ["models: GET /models/checkpoints: not a list of files",
                            "models missing: checkpoints/a.safetensors"]


def test_unreachable_until_deadline(run_module, free_port):
    url = "http://127.0.0.1:%d" % free_port
    t0 = time.monotonic()
    failed, result = health(run_module, instances=[{"name": "gpu0", "url": url}], wait_timeout=0.6, delay=0.1)
    elapsed = time.monotonic() - t0
    assert failed
    assert 0.55 < elapsed < 3
    inst = result["instances"][0]
    assert inst["error"].startswith("not ready within 0.6 s: GET %s/system_stats: " % url)
    assert "Connection refused" in inst["error"]
    assert result["msg"] == "ComfyUI health failed: gpu0 (%s): %s" % (url, inst["error"])
    assert inst["ready_after_s"] is None and inst["latency_ms"] is None
    assert inst["checks"]["ui"] == {"ok": False, "error": "not checked: instance not ready"}
    assert inst["checks"]["system_stats"] == {"ok": False, "error": inst["error"]}


def test_slow_start_becomes_healthy(run_module, comfy_factory, free_port):
    threading.Timer(0.5, lambda: comfy_factory(free_port).start()).start()
    failed, result = health(run_module, url="http://127.0.0.1:%d" % free_port, expected_classes=LTX,
                            wait_timeout=15, delay=0.1)
    assert not failed
    assert result["instances"][0]["ready_after_s"] >= 0.4


def test_proxy_502_while_starting_is_retried(run_module, comfy):
    comfy.set("/system_stats", (GPU / "system_stats.json").read_bytes(), status=[502, 503, 200])
    failed, result = health(run_module, url=comfy.url, wait_timeout=10, delay=0.05)
    assert not failed
    assert comfy.count("/system_stats") == 3


def test_4xx_is_not_waited_for(run_module, comfy):
    comfy.set("/system_stats", b"401 Unauthorized", status=401, content_type="text/plain")
    t0 = time.monotonic()
    failed, result = health(run_module, url=comfy.url, wait_timeout=30, delay=0.05)
    assert failed and time.monotonic() - t0 < 5
    assert comfy.count("/system_stats") == 1
    assert result["instances"][0]["error"] == \
        "not ready: GET %s/system_stats: HTTP 401: 401 Unauthorized" % comfy.url


def test_something_else_on_the_port_is_not_comfyui(run_module, comfy):
    comfy.set("/system_stats", {"status": "ok"})
    failed, result = health(run_module, url=comfy.url, wait_timeout=5)
    assert failed
    assert result["instances"][0]["error"] == \
        "not ready: GET %s/system_stats: not a ComfyUI /system_stats answer" % comfy.url


def test_instances_are_probed_in_parallel(run_module, comfy_factory):
    servers = [comfy_factory().start() for _server in range(4)]
    for s in servers:
        s.set("/object_info", {"KSampler": {}}, delay=0.5)
    t0 = time.monotonic()
    failed, result = health(run_module, instances=[s.url for s in servers], expected_classes=["KSampler"])
    elapsed = time.monotonic() - t0
    assert not failed and len(result["instances"]) == 4
    assert [i["url"] for i in result["instances"]] == [s.url for s in servers]
    assert elapsed < 1.5, "4 x 0.5 s sequentially would be 2 s"


def test_max_workers_bounds_parallelism_and_all_get_probed(run_module, comfy_factory):
    servers = [comfy_factory().start() for _server in range(3)]
    for s in servers:
        s.set("/object_info", {"KSampler": {}}, delay=0.3)
    t0 = time.monotonic()
    failed, result = health(run_module, instances=[s.url for s in servers], expected_classes=["KSampler"],
                            max_workers=1)
    assert not failed
    assert time.monotonic() - t0 >= 0.9


def test_a_healthy_probe_asks_each_endpoint_once_small_ones_first(run_module, comfy):
    failed, result = health(run_module, url=comfy.url, expected_classes=["KSampler"],
                            required_models={"checkpoints": ["x.safetensors"]})
    assert failed and result["instances"][0]["missing_models"] == ["checkpoints/x.safetensors"]
    paths = [r["path"] for r in comfy.requests]
    # ComfyUI builds /object_info on its only event loop: the cheap requests go before it, none twice
    assert paths == ["/system_stats", "/", "/queue", "/models/checkpoints", "/object_info"]


def test_one_unhealthy_instance_among_several(run_module, comfy_factory, free_port):
    good = comfy_factory().start()
    down = "http://127.0.0.1:%d" % free_port
    failed, result = health(run_module, instances=[{"name": "gpu0", "url": good.url}, {"name": "gpu1", "url": down}],
                            wait_timeout=0.2, delay=0.1)
    assert failed
    assert [i["healthy"] for i in result["instances"]] == [True, False]
    assert result["msg"].startswith("ComfyUI health failed: gpu1 (%s): not ready within 0.2 s: " % down)
    assert "gpu0" not in result["msg"]


def test_several_failed_instances_are_all_named(run_module, comfy_factory):
    a, b = comfy_factory().start(), comfy_factory().start()
    failed, result = health(run_module, instances=[{"name": "gpu0", "url": a.url}, {"name": "gpu1", "url": b.url}],
                            expected_classes=["Missing Node"])
    assert result["msg"] == ("ComfyUI health failed: gpu0 (%s): object_info missing classes: Missing Node | "
                             "gpu1 (%s): object_info missing classes: Missing Node" % (a.url, b.url))


def test_auth_headers_reach_every_request(run_module, comfy):
    failed, result = health(run_module, url=comfy.url, expected_classes=["KSampler"], required_models=["loras/x"],
                            headers={"X-Proxy-Token": "t"}, url_username="ops", url_password="pw",
                            fail_on_unhealthy=False)
    assert not failed
    assert {r["path"] for r in comfy.requests} == {"/system_stats", "/", "/object_info", "/queue", "/models/loras"}
    assert all(r["headers"].get("X-Proxy-Token") == "t" and r["headers"]["Authorization"].startswith("Basic ")
               for r in comfy.requests)


def test_sub_path_url_behind_a_proxy(run_module, comfy):
    for path in ("/", "/system_stats", "/queue"):
        comfy.routes["/comfyui/gpu0" + path] = comfy.routes[path]
    failed, result = health(run_module, url=comfy.url + "/comfyui/gpu0/")
    assert not failed
    assert result["instances"][0]["name"] == "127.0.0.1:%d/comfyui/gpu0" % comfy.port


@pytest.mark.parametrize("args, message", [
    ({}, "one of the following is required: url, instances"),
    ({"url": "http://a", "instances": ["http://b"]}, "parameters are mutually exclusive: url|instances"),
    ({"instances": []}, "instances must not be empty"),
    ({"url": "127.0.0.1:8188"}, "instances[0]: not an http(s) URL with a host: '127.0.0.1:8188'"),
    ({"instances": [{"name": "a"}]}, "instances[0]: not an http(s) URL with a host: None"),
    ({"instances": [{"url": "http://a", "colour": 1}]}, "instances[0]: unknown key(s) colour (allowed: name, url"),
    ({"instances": [5]}, "instances[0]: expected a URL or a dict with name and url, got 5"),
    ({"instances": ["http://a:1", "http://a:1"]}, "instance names must be unique; repeated: a:1 (give each a name)"),
    ({"url": "http://a", "wait_timeout": -1}, "wait_timeout must be >= 0, got -1.0"),
    ({"url": "http://a", "delay": 0}, "delay must be > 0, got 0.0"),
    ({"url": "http://a", "max_workers": 0}, "max_workers must be > 0, got 0"),
    ({"url": "http://a", "min_vram_mb": -5}, "min_vram_mb must be >= 0, got -5"),
    ({"url": "http://a", "required_models": "checkpoints/x"},
     "required_models: expected a dict of folder to file names or a list, got 'checkpoints/x'"),
    ({"url": "http://a", "required_models": ["x.safetensors"]},
     "required_models[0]: expected {folder: ..., name: ...} or 'folder/name', got 'x.safetensors'"),
    ({"url": "http://a", "required_models": {"checkpoints": 3}},
     "required_models[checkpoints]: expected a list of file names, got 3"),
    ({"url": "http://a", "timeout": "soon"}, "argument 'timeout' is of type str"),
])
def test_bad_arguments_fail_clearly(run_module, args, message):
    failed, result = health(run_module, **args)
    assert failed
    assert message in result["msg"]


def test_normalize_instances_names():
    assert normalize_instances(None, ["http://10.0.0.5:8188", {"url": "https://p/comfyui/gpu1/", "name": "gpu1"},
                                      {"url": "https://p/comfyui/gpu2/"}]) == [
        ("10.0.0.5:8188", "http://10.0.0.5:8188"),
        ("gpu1", "https://p/comfyui/gpu1/"),
        ("p/comfyui/gpu2", "https://p/comfyui/gpu2/"),
    ]
    assert normalize_instances("http://h:1", None) == [("h:1", "http://h:1")]


def test_normalize_required_models_shapes():
    assert normalize_required_models(None) == {}
    assert normalize_required_models({"checkpoints": ["a", "b", "a"], "loras": "ltxv/x"}) == \
        {"checkpoints": ["a", "b"], "loras": ["ltxv/x"]}
    assert normalize_required_models([{"folder": "loras", "name": "ltxv/ltx2/x.safetensors"},
                                      "checkpoints/a", "loras/y"]) == \
        {"loras": ["ltxv/ltx2/x.safetensors", "y"], "checkpoints": ["a"]}


@pytest.mark.parametrize("value, message", [
    ([{"folder": "a/b", "name": "x"}], "required_models[0]: folder must be a models folder name"),
    ([{"folder": "loras", "name": ""}], "required_models[0]: name must be a non-empty file name"),
    ([{"folder": "loras", "name": "x", "sha256": "0"}], "required_models[0]: unknown key(s) sha256"),
    ({"": ["x"]}, "required_models[]: folder must be a models folder name"),
])
def test_normalize_required_models_errors(value, message):
    with pytest.raises(ValueError) as exc:
        normalize_required_models(value)
    assert str(exc.value).startswith(message)


def test_an_instance_url_with_credentials_fails_without_echoing_them(run_module):
    failed, result = run_module(comfyui_health.main, {"instances": [
        {"name": "gpu0", "url": "https://operator:health-sentinel@proxy.example/comfyui/gpu0/"}]})
    assert failed and "url_username and url_password" in result["msg"]
    assert "health-sentinel" not in json.dumps(result)
