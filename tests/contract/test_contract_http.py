"""Replay reference/comfyui-api/index.json in recorded order against a fresh emulator (0.33.0).

Every step compares status and content type; steps with a recorded body compare it exactly where
the answer is deterministic, otherwise by JSON shape. Prompt ids the capture got are mapped to
the ones the emulator returns. Further HTTP behaviours of upstream (the /api prefix, the origin
check, 404/405 handling, upload name collisions, live model lists) follow.
"""
import json
import struct

import pytest

from contract_support import JSON_CT, REFERENCE_DIR, assert_shape, covers, load_ref, transcript_messages
from emulator_helpers import EMULATOR_DIR, encode_multipart, start_emulator

INDEX = load_ref("index.json")
INDEX_FILES = sorted({entry["file"] for entry in INDEX if entry.get("file")})
PNG = (EMULATOR_DIR / "input" / "example.png").read_bytes()
SUCCESS_GRAPH = next(e for e in INDEX if e.get("file") == "prompt_post_success.json")["request_body"]["prompt"]
HISTORY_MAPS = [(), ("*", "outputs"), ("*", "meta")]
SHAPE_MAPS = {
    "history_prompt.json": HISTORY_MAPS,
    "history_max_items_1.json": HISTORY_MAPS,
    "job_by_id.json": [("outputs",)],
    "jobs_after_prompt.json": [],
    "prompt_post_success.json": [],
    "system_stats.json": [],
    "api_system_stats.json": [],
}
EXACT = {"prompt_error_unknown_class.json", "prompt_error_missing_input.json", "prompt_error_value_out_of_range.json",
         "prompt_error_no_outputs.json", "prompt_error_no_prompt.json", "prompt_error_invalid_prompt_id.json",
         "object_info_EmptyImage.json", "object_info_unknown_class.json", "queue_idle.json", "queue_after.json",
         "prompt_get_idle.json", "embeddings.json", "extensions.json", "features.json", "models_folders.json",
         "models_checkpoints.json", "history_empty.json", "jobs_empty.json", "upload_image.json",
         "upload_image_subfolder_no_overwrite.json", "prompt_error_invalid_json.txt"}
assert EXACT | set(SHAPE_MAPS) | {"object_info_excerpt.json", "internal_folder_paths.json", "root_index_head.txt",
                                  "ws_transcript.jsonl"} == set(INDEX_FILES)


@pytest.fixture(scope="module")
def replay_emulator(tmp_path_factory):
    with start_emulator(tmp_path_factory.mktemp("replay"), custom_nodes=["ansible_probe_nodes"]) as emu:
        yield emu


def _request_body(entry):
    body = entry.get("request_body")
    if isinstance(body, dict):
        body = dict(body)
        if body.get("prompt") == "<EmptyImage->SaveImage>":
            body["prompt"] = SUCCESS_GRAPH
        return json.dumps(body).encode(), {"Content-Type": "application/json"}
    if body == "(empty)" or body is None:
        return None, {}
    if body.startswith("multipart"):
        fields = {"overwrite": "true"} if "overwrite=true" in body else {}
        if "subfolder=ansible" in body:
            fields.update(subfolder="ansible", type="input")
        files = {} if "without image" in entry.get("note", "") else {"image": ("ref_upload.png", PNG, "image/png")}
        if not files:
            fields["subfolder"] = "ansible"
        data, ctype = encode_multipart(fields, files)
        return data, {"Content-Type": ctype}
    return body.encode(), {"Content-Type": "application/json"}


def _check_body(emu, entry, result):
    name = entry["file"]
    if name in EXACT:
        if name.endswith(".txt"):
            # The capture script added a final newline to the file; index.json shows the body without it.
            assert result.body == (REFERENCE_DIR / name).read_bytes().rstrip(b"\n")
        else:
            assert result.json() == load_ref(name)
    elif name == "root_index_head.txt":
        recorded = (REFERENCE_DIR / name).read_text()
        head = recorded[:recorded.index("<title>ComfyUI</title>")].replace('<link rel="icon" type="image/x-icon" '
                                                                           'href="./assets/favicon.ico"/>', "")
        assert result.text.startswith(head[:head.index("<meta charset")]) and "<title>ComfyUI</title>" in result.text
    elif name == "internal_folder_paths.json":
        recorded = json.loads((REFERENCE_DIR / name).read_text().replace("/opt/comfyui/ComfyUI", str(emu.root)))
        assert result.json() == recorded
    elif name == "object_info_excerpt.json":
        body = result.json()
        classes = set((REFERENCE_DIR / "object_info_classes.txt").read_text().splitlines())
        assert set(body) == classes | {"AnsibleProbeNode"}
        for class_name, definition in load_ref(name).items():
            assert body[class_name] == definition, class_name
    elif name == "ws_transcript.jsonl":
        pass  # checked by the WebSocket step itself
    else:
        assert_shape(result.json(), load_ref(name), SHAPE_MAPS[name])


def _run_ws_step(emu, entry):
    meta = next(line for line in map(json.loads, (REFERENCE_DIR / entry["file"]).read_text().splitlines()))
    client_id = entry["path"].split("clientId=")[1]
    with emu.ws(client_id) as ws:
        received = [ws.recv_json()]
        emu.post_json("/prompt", {"prompt": meta["graph"], "client_id": client_id})
        received += ws.collect_until(lambda m: m["type"] == "executing" and m["data"]["node"] is None)
    assert [m["type"] for m in received] == [m["type"] for m in transcript_messages(entry["file"])]


@covers("index.json", *INDEX_FILES)
def test_index_replay(replay_emulator, subtests):
    emu = replay_emulator
    ids = {}
    for number, entry in enumerate(INDEX):
        if "method" not in entry:
            continue  # the latency summary line
        with subtests.test(msg=f"#{number} {entry['method']} {entry['path']}"):
            if entry["method"] == "GET(ws)":
                _run_ws_step(emu, entry)
                continue
            path = entry["path"]
            for recorded, actual in ids.items():
                path = path.replace(recorded, actual)
            body, headers = _request_body(entry)
            result = emu.request(entry["method"], path, body=body, headers=headers)
            assert result.status == entry["status"], result.body[:300]
            if "content_type" in entry:
                assert result.headers.get("content-type", "") == entry["content_type"]
            if "body: b''" in entry.get("note", ""):
                assert result.body == b""
            if "PNG magic ok: True" in entry.get("note", ""):
                assert result.body.startswith(b"\x89PNG\r\n\x1a\n")
                assert result.headers["content-disposition"] == 'filename="ref_plain_00001_.png"'
            if entry["path"] == "/api/object_info":
                assert result.json().keys() == emu.get_json("/object_info").keys()
            if entry.get("file") == "prompt_post_success.json":
                ids[load_ref("prompt_post_success.json")["prompt_id"]] = result.json()["prompt_id"]
                emu.wait_for_history(result.json()["prompt_id"])
            if entry.get("file"):
                _check_body(emu, entry, result)


@covers("system_stats.json")
def test_system_stats_reflects_the_real_argv(replay_emulator):
    stats = replay_emulator.get_json("/system_stats")
    assert stats["system"]["argv"] == ["main.py", "--listen", "127.0.0.1", "--port", str(replay_emulator.port), "--cpu"]
    assert stats["system"]["comfyui_version"] == "0.33.0"
    assert stats["system"]["comfy_package_versions"] == load_ref("system_stats.json")["system"]["comfy_package_versions"]
    assert stats["devices"][0]["name"] == "cpu" and stats["devices"][0]["index"] is None


# -- more upstream HTTP behaviour, on a second emulator ------------------------------------------

@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    with start_emulator(tmp_path_factory.mktemp("http")) as emulator:
        yield emulator


@pytest.mark.parametrize("path", ["/system_stats", "/queue", "/prompt", "/embeddings", "/extensions", "/features",
                                  "/models", "/models/checkpoints", "/object_info/EmptyImage", "/history",
                                  "/object_info"])
def test_every_route_is_also_served_under_api(emu, path):
    bare, prefixed = emu.get(path), emu.get("/api" + path)
    assert (prefixed.status, prefixed.content_type) == (bare.status, bare.content_type) == (200, JSON_CT)
    if path != "/system_stats":  # ram_free moves between the two calls
        assert prefixed.json() == bare.json()


@pytest.mark.parametrize("path, status", [
    ("/api/internal/folder_paths", 404),  # /internal is a sub-app without the /api twin
    ("/jobs", 404),                       # the Jobs API exists only under /api ...
    ("/api/api/jobs", 200),               # ... and, being a route, also gets the /api prefix
    ("/internal/logs", 200),
    ("/models/no_such_folder", 404),
])
def test_prefix_quirks(emu, path, status):
    assert emu.get(path).status == status


def test_unknown_path_is_a_bare_static_404(emu):
    result = emu.get("/no/such/route")
    assert (result.status, result.content_type, result.body) == (404, "application/octet-stream", b"")


def test_wrong_method_on_a_route_is_405(emu):
    result = emu.request("DELETE", "/prompt")
    assert result.status == 405 and "GET" in result.headers["allow"] and "POST" in result.headers["allow"]


def test_head_is_answered_for_get_routes(emu):
    result = emu.request("HEAD", "/system_stats")
    assert result.status == 200 and result.body == b"" and int(result.headers["content-length"]) > 0


@pytest.mark.parametrize("headers, status", [
    ({"Origin": "http://evil.example"}, 403),                          # loopback Host, foreign Origin
    ({"Origin": "http://127.0.0.1:{port}"}, 200),                      # same origin
    ({"Origin": "http://localhost:{port}", "Host": "localhost:{port}"}, 200),
    ({"Origin": "http://evil.example", "Host": "comfy.example.org"}, 200),  # non-loopback Host: not checked
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({}, 200),                                                           # plain API clients (no Origin)
])
def test_origin_only_middleware(emu, headers, status):
    headers = {k: v.format(port=emu.port) for k, v in headers.items()}
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
    result = emu.post_json("/prompt", {"prompt": graph}, headers=headers)
    # 400 (prompt_no_outputs) means the request got past the middleware into the handler.
    assert result.status == (403 if status == 403 else 400)
    if status == 403:
        assert result.body == b""


def test_get_is_origin_checked_too(emu):
    assert emu.get("/system_stats", headers={"Origin": "http://evil.example"}).status == 403


@covers("upload_image_name_collisions.json")
def test_upload_name_collisions(emu):
    recorded = load_ref("upload_image_name_collisions.json")["results"]
    other = PNG + b"different bytes, same name"

    def upload(data, **fields):
        body, ctype = encode_multipart(fields, {"image": ("ref_upload.png", data, "image/png")})
        result = emu.request("POST", "/upload/image", body=body, headers={"Content-Type": ctype})
        return {"status": result.status, "body": result.json()}

    upload(PNG, overwrite="true")  # the file "already exists in input/" in the recording
    assert upload(PNG) == recorded["same_bytes_no_overwrite"]
    assert upload(other) == recorded["different_bytes_no_overwrite"]
    assert upload(other, overwrite="true") == recorded["different_bytes_overwrite_true"]
    assert (emu.root / "input" / "ref_upload.png").read_bytes() == other


def test_uploaded_image_is_listed_by_load_image_and_viewable(emu):
    body, ctype = encode_multipart({"overwrite": "true"}, {"image": ("listed.png", PNG, "image/png")})
    assert emu.request("POST", "/upload/image", body=body, headers={"Content-Type": ctype}).status == 200
    choices = emu.get_json("/object_info/LoadImage")["LoadImage"]["input"]["required"]["image"][0]
    assert "listed.png" in choices
    view = emu.get("/view?filename=listed.png&type=input")
    assert (view.status, view.content_type, view.body) == (200, "image/png", PNG)


@covers("models_checkpoints.json")
def test_model_files_are_picked_up_live(emu):
    assert emu.get_json("/models/checkpoints") == load_ref("models_checkpoints.json")
    (emu.root / "models" / "checkpoints" / "ltx-2.3-22b-dev.safetensors").write_bytes(b"\0" * 16)
    (emu.root / "models" / "checkpoints" / "notes.txt").write_text("not a model")
    assert emu.get_json("/models/checkpoints") == ["ltx-2.3-22b-dev.safetensors"]
    ckpt = emu.get_json("/object_info/CheckpointLoaderSimple")["CheckpointLoaderSimple"]
    assert ckpt["input"]["required"]["ckpt_name"][0] == ["ltx-2.3-22b-dev.safetensors"]
    audio = emu.get_json("/object_info/LTXVAudioVAELoader")["LTXVAudioVAELoader"]
    assert audio["input"]["required"]["ckpt_name"][0] == ["ltx-2.3-22b-dev.safetensors"]


def test_embeddings_lists_file_stems(emu):
    (emu.root / "models" / "embeddings" / "easynegative.safetensors").write_bytes(b"\0")
    assert emu.get_json("/embeddings") == ["easynegative"]


def test_saved_png_is_valid_and_carries_the_prompt(emu):
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 8, "batch_size": 2, "color": 0x00FF00}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "sub/dir/probe"}}}
    prompt_id = emu.post_json("/prompt", {"prompt": graph}).json()["prompt_id"]
    outputs = emu.wait_for_history(prompt_id)["outputs"]["2"]["images"]
    assert [o["filename"] for o in outputs] == ["probe_00001_.png", "probe_00002_.png"]
    assert {o["subfolder"] for o in outputs} == {"sub/dir"}
    data = (emu.root / "output" / "sub" / "dir" / "probe_00002_.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and b"IHDR\x00\x00\x00\x10\x00\x00\x00\x08" in data
    chunk = data.index(b"tEXtprompt\x00")
    length = struct.unpack(">I", data[chunk - 4:chunk])[0]
    assert json.loads(data[chunk + 4:chunk + 4 + length].split(b"\x00", 1)[1]) == graph


def test_free_resets_the_node_cache(emu):
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 7}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    first = emu.wait_for_history(emu.post_json("/prompt", {"prompt": graph}).json()["prompt_id"])
    assert first["outputs"]["2"]["images"][0]["type"] == "temp"
    cached = emu.wait_for_history(emu.post_json("/prompt", {"prompt": graph}).json()["prompt_id"])
    assert cached["status"]["messages"][1][1]["nodes"] == ["1", "2"]
    assert emu.post_json("/free", {"unload_models": True, "free_memory": True}).status == 200
    again = emu.wait_for_history(emu.post_json("/prompt", {"prompt": graph}).json()["prompt_id"])
    assert again["status"]["messages"][1][1]["nodes"] == []


def test_internal_logs_are_one_string_of_timestamped_writes(emu):
    logs = emu.get_json("/internal/logs")
    assert isinstance(logs, str) and " - \x1b[32m[INFO]\x1b[0m To see the GUI go to: " in logs
    raw = emu.get_json("/internal/logs/raw")
    assert raw["size"] == {"cols": 80, "rows": 24}
    assert any(e["m"] == "\x1b[32m[INFO]\x1b[0m Starting server\n\n" for e in raw["entries"])


def test_prompt_metadata_in_history_keeps_sensitive_keys_out(emu):
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 1}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    prompt_id = emu.post_json("/prompt", {"prompt": graph, "extra_data": {"api_key_comfy_org": "secret", "x": 1}}
                              ).json()["prompt_id"]
    extra = emu.wait_for_history(prompt_id)["prompt"][3]
    assert extra["x"] == 1 and "api_key_comfy_org" not in extra and isinstance(extra["create_time"], int)
    assert "secret" not in json.dumps(emu.get_json("/api/jobs/" + prompt_id))
