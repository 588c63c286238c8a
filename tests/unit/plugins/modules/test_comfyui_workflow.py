"""comfyui_workflow: graph loading, parameter injection, error mapping (recorded shapes), media checks, the
WebSocket client, and whole runs against the ComfyUI emulator and the canned FakeComfyUI."""
from __future__ import annotations

import json
import socket
import struct
import sys
import time
import zlib
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_ws import (
    WebSocket,
    WebSocketClosed,
    WebSocketError,
    WebSocketTimeout,
    ws_url,
)
from ansible_collections.comfyops.comfyui.plugins.module_utils.media_probe import media_info
from ansible_collections.comfyops.comfyui.plugins.module_utils.workflow_run import (
    _history_outcome,
    _node_error_list,
    _output_files,
    _prompt_error,
    inject,
    load_graph,
)
from ansible_collections.comfyops.comfyui.plugins.modules import comfyui_workflow

TESTS = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(TESTS))
from emulator_helpers import start_emulator  # noqa: E402

ROOT = TESTS.parent
API = TESTS / "fixtures" / "reference" / "comfyui-api"
WORKFLOWS = ROOT / "playbooks" / "files" / "workflows"
TINY = WORKFLOWS / "tiny_image.json"
LTX2 = WORKFLOWS / "ltx2_t2v.json"


def ref(name):
    return json.loads((API / name).read_text())


# --- graph and parameters -------------------------------------------------------------------------------------------

def test_load_graph_from_file_text_dict_and_prompt_body(tmp_path):
    g = load_graph(workflow_path=str(TINY))
    assert g["1"]["class_type"] == "EmptyImage"
    assert load_graph(TINY.read_text()) == g
    assert load_graph({"prompt": g, "client_id": "x"}) == g
    original = json.loads(TINY.read_text())
    inject(load_graph(original), [dict(node="1", input="width", value=8)])
    assert original["1"]["inputs"]["width"] == 64  # the caller's dict is never modified


@pytest.mark.parametrize("value, message", [
    ("{not json", "is not valid JSON"),
    ([1, 2], "must be a JSON object"),
    ({"nodes": [], "links": []}, "UI (editor) format"),
    ({}, "has no nodes"),
    ({"1": {"inputs": {}}}, "node '1' is not an API-format node"),
])
def test_load_graph_errors(value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_graph(value)


def test_load_graph_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read workflow_path"):
        load_graph(workflow_path=str(tmp_path / "nope.json"))


def test_inject_by_id_and_by_title():
    g = load_graph(workflow_path=str(TINY))
    applied = inject(g, [dict(node="1", input="width", value=32), dict(title="Save", input="filename_prefix",
                                                                       value="run7")])
    assert g["1"]["inputs"]["width"] == 32 and g["2"]["inputs"]["filename_prefix"] == "run7"
    assert applied[0] == dict(node="1", title="Image", input="width", old=64, new=32, added=False)
    assert applied[1]["node"] == "2" and applied[1]["old"] == "comfyops_smoke"


def test_inject_title_matching_several_nodes_sets_all():
    g = load_graph({"1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}, "_meta": {"title": "N"}},
                    "10": {"class_type": "PrimitiveInt", "inputs": {"value": 1}, "_meta": {"title": "N"}},
                    "2": {"class_type": "PrimitiveInt", "inputs": {"value": 1}}})
    applied = inject(g, [dict(title="N", input="value", value=5)])
    assert [a["node"] for a in applied] == ["1", "10"] and g["2"]["inputs"]["value"] == 1
    inject(g, [dict(node="2", input="extra", value=True)])
    assert g["2"]["inputs"]["extra"] is True


@pytest.mark.parametrize("param, message", [
    (dict(node="9", input="x", value=1), "no node with id '9' in the workflow (ids: 1, 2)"),
    (dict(title="Nope", input="x", value=1), "no node titled 'Nope' in the workflow (titles: Image, Save)"),
    (dict(node="1", title="Image", input="x", value=1), "exactly one of node"),
    (dict(node="1", value=1), "input (the name of the node input to set) is required"),
    (dict(node="1", input="width"), "value is required"),
    (dict(node="2", input="images", value="x"), "is a link to node 1, not a value"),
    (dict(node="1", input="x", value=1, bogus=2), "unknown key(s) bogus"),
    ("x", "must be a dictionary"),
])
def test_inject_errors(param, message):
    with pytest.raises(ValueError) as exc:
        inject(load_graph(workflow_path=str(TINY)), [param])
    assert message in str(exc.value)


def test_ltx2_template_parameters_and_classes():
    g = load_graph(workflow_path=str(LTX2))
    params = dict(Prompt="a fox", Seed=7, Width=512, Height=320, Frames=9, FPS=24.0)
    inject(g, [dict(title=t, input="value", value=v) for t, v in params.items()])
    by_title = {n["_meta"]["title"]: n for n in g.values()}
    assert {t: by_title[t]["inputs"]["value"] for t in params} == params
    # the sizes and frame count reach the latent, the seed the noise, the prompt the encoder
    latent = by_title["Video Latent"]["inputs"]
    assert [latent[k] for k in ("width", "height", "length")] == [["4", 0], ["5", 0], ["6", 0]]
    assert g[by_title["Noise"]["inputs"]["noise_seed"][0]]["_meta"]["title"] == "Seed"
    # every class is one a ComfyUI 0.28.0 + LTXVideo server (the H100 capture) knows
    known = set((API / "gpu-h100" / "object_info_classes.txt").read_text().split("\n"))
    assert {n["class_type"] for n in g.values()} <= known
    # every link points at an existing node
    for node in g.values():
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in g
    assert [n["class_type"] for n in g.values()].count("SaveVideo") == 1


# --- error mapping (recorded shapes) ----------------------------------------------------------------------------------

def test_prompt_error_missing_input():
    msg, error, nodes = _prompt_error((API / "prompt_error_missing_input.json").read_bytes(), 400)
    assert msg == ("ComfyUI rejected the workflow (prompt_outputs_failed_validation): Prompt outputs failed "
                   "validation: node 1 (EmptyImage) input width: Required input is missing")
    assert error["node_id"] == "1" and error["node_type"] == "EmptyImage"
    assert nodes[0]["type"] == "required_input_missing" and nodes[0]["input_name"] == "width"


def test_prompt_error_value_out_of_range_names_the_title():
    graph = load_graph(workflow_path=str(TINY))
    msg, error, nodes = _prompt_error(ref("prompt_error_value_out_of_range.json"), 400, graph)
    assert "node 1 (EmptyImage, 'Image') input width: Value 99999 bigger than max of 16384" in msg
    assert nodes[0]["received_value"] == 99999


def test_prompt_error_unknown_class():
    msg, error, nodes = _prompt_error(ref("prompt_error_unknown_class.json"), 400)
    assert error == dict(type="missing_node_type", message="Node 'NoSuchNodeXYZ' not found. The custom node may not "
                         "be installed.", details="Node ID '#1'", node_id="1", node_type="NoSuchNodeXYZ")
    assert "(node 1, NoSuchNodeXYZ)" in msg and nodes == []


@pytest.mark.parametrize("name, kind", [("prompt_error_no_outputs.json", "prompt_no_outputs"),
                                        ("prompt_error_no_prompt.json", "no_prompt"),
                                        ("prompt_error_invalid_prompt_id.json", "invalid_prompt_id")])
def test_prompt_error_without_nodes(name, kind):
    msg, error, nodes = _prompt_error(ref(name), 400)
    assert error["type"] == kind and error["node_id"] is None and msg.startswith("ComfyUI rejected the workflow (%s)"
                                                                                 % kind)


def test_prompt_error_not_json():
    msg, error, nodes = _prompt_error((API / "prompt_error_invalid_json.txt").read_bytes(), 500)
    assert error["type"] == "http_500" and "Server got itself in trouble" in msg


def test_partial_validity_node_errors():
    nodes = _node_error_list(ref("prompt_error_missing_model_file.json")["response"]["node_errors"])
    assert nodes == [dict(node_id="1", class_type="CheckpointLoaderSimple", type="value_not_in_list",
                          message="Value not in list",
                          details="ckpt_name: 'ltx-2.3-22b-dev.safetensors' not in []", input_name="ckpt_name",
                          received_value="ltx-2.3-22b-dev.safetensors")]


def test_history_execution_error():
    entry = next(iter(ref("history_prompt_execution_error.json").values()))
    outcome, error, stamps = _history_outcome(entry)
    assert outcome == "error"
    assert (error["node_id"], error["node_type"], error["type"]) == ("2", "SaveImage", "Exception")
    assert error["message"].startswith("**** ERROR: Saving image outside the output folder is not allowed.")
    assert stamps["execution_start"] == 1795357459068


def test_history_success_outputs():
    entry = next(iter(ref("history_prompt.json").values()))
    assert _history_outcome(entry)[0] == "success"
    assert _output_files(entry["outputs"]) == [dict(node_id="2", kind="images", filename="ref_plain_00001_.png",
                                                    subfolder="", type="output")]
    assert _output_files({"9": {"images": [{"filename": "p.png", "type": "temp"}], "text": ["x"]}}) == []
    assert _output_files({"9": {"images": [{"filename": "p.png", "type": "temp"}]}}, types=("temp",))[0]["kind"] \
        == "images"


def test_history_interrupted_and_running():
    entry = {"status": {"status_str": "error", "completed": False, "messages": [
        ["execution_start", {"prompt_id": "p", "timestamp": 1}],
        ["execution_interrupted", {"prompt_id": "p", "node_id": "3", "node_type": "KSampler", "executed": [],
                                   "timestamp": 2}]]}}
    outcome, error, _details = _history_outcome(entry)
    assert outcome == "interrupted" and error["node_id"] == "3" and "KSampler" in error["message"]
    assert _history_outcome({"status": {}})[0] == "running"
    assert _history_outcome({"status": {"status_str": "error", "messages": []}})[0] == "error"


# --- media -----------------------------------------------------------------------------------------------------------

def _box(kind, payload):
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def make_mp4(frames, width=64, height=48):
    tkhd = _box(b"tkhd", b"\0" * 76 + struct.pack(">II", width << 16, height << 16))
    hdlr = _box(b"hdlr", b"\0" * 8 + b"vide" + b"\0" * 12)
    stsz = _box(b"stsz", b"\0" * 8 + struct.pack(">I", frames) + b"\0\0\0\x10" * frames)
    stbl = _box(b"stbl", stsz)
    minf = _box(b"minf", stbl)
    mdia = _box(b"mdia", hdlr + minf)
    trak = _box(b"trak", tkhd + mdia)
    audio = _box(b"trak", _box(b"mdia", _box(b"hdlr", b"\0" * 8 + b"soun" + b"\0" * 12)))
    return _box(b"ftyp", b"isom\0\0\2\0isomiso2mp41") + _box(b"moov", trak + audio) + _box(b"mdat", b"\0" * 64)


def make_webp(frames):
    vp8x = struct.pack("<4sI", b"VP8X", 10) + bytes([0x02, 0, 0, 0]) + (63).to_bytes(3, "little") \
        + (47).to_bytes(3, "little")
    anmf = b"".join(struct.pack("<4sI", b"ANMF", 17) + b"\0" * 17 + b"\0" for _frame in range(frames))
    body = b"WEBP" + vp8x + anmf
    return b"RIFF" + struct.pack("<I", len(body)) + body


def make_png(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + b"\0\0\0" * width for _row in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_media_info(tmp_path):
    cases = {"a.mp4": (make_mp4(97), dict(format="mp4", frames=97, width=64, height=48, valid=True)),
             "a.webp": (make_webp(9), dict(format="webp", frames=9, width=64, height=48, valid=True)),
             "a.png": (make_png(5, 3), dict(format="png", frames=1, width=5, height=3, valid=True))}
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert media_info(str(tmp_path / name)) == expected, name
    (tmp_path / "cut.mp4").write_bytes(make_mp4(9)[:60])
    assert media_info(str(tmp_path / "cut.mp4"))["valid"] is False
    (tmp_path / "x.bin").write_bytes(b"hello")
    assert media_info(str(tmp_path / "x.bin")) is None


# --- WebSocket client ---------------------------------------------------------------------------------------------------

def test_ws_url_keeps_sub_path():
    assert ws_url("http://h:8188", "/ws?clientId=a") == "ws://h:8188/ws?clientId=a"
    assert ws_url("https://h/comfyui/gpu0/", "/ws?clientId=a") == "wss://h/comfyui/gpu0/ws?clientId=a"
    with pytest.raises(ValueError):
        ws_url("ftp://h", "/ws")


def _frame(opcode, payload, fin=True):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


def _read_client_frame(sock):
    data = b""
    while len(data) < 2:
        data += sock.recv(2 - len(data))
    n = data[1] & 0x7F
    mask = sock.recv(4)
    payload = b""
    while len(payload) < n:
        payload += sock.recv(n - len(payload))
    return data[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_ws_frames_ping_fragments_binary_close():
    server, client = socket.socketpair()
    ws = WebSocket(client, buffered=_frame(0x1, b'{"a":1}')[:3])  # part of a frame from the handshake read
    server.sendall(_frame(0x1, b'{"a":1}')[3:] + _frame(0x9, b"hi") + _frame(0x1, b"frag", fin=False)
                   + _frame(0x0, b"mented") + _frame(0x2, b"\0\1" * 40000) + _frame(0x8, struct.pack(">H", 1001) + b"bye"))
    assert ws.recv(timeout=2) == (0x1, '{"a":1}')
    assert ws.recv(timeout=2) == (0x1, "fragmented")
    assert _read_client_frame(server) == (0xA, b"hi")  # the ping was answered
    assert ws.recv(timeout=2) == (0x2, b"\0\1" * 40000)
    with pytest.raises(WebSocketClosed) as exc:
        ws.recv(timeout=2)
    assert exc.value.code == 1001 and exc.value.reason == "bye"
    assert _read_client_frame(server) == (0x8, struct.pack(">H", 1001))
    with pytest.raises(WebSocketClosed):
        ws.recv(timeout=1)
    ws.close()
    server.close()


def test_ws_timeout_keeps_partial_frame():
    server, client = socket.socketpair()
    ws = WebSocket(client)
    frame = _frame(0x1, b"x" * 300)
    server.sendall(frame[:100])
    with pytest.raises(WebSocketTimeout):
        ws.recv(timeout=0.05)
    server.sendall(frame[100:])
    assert ws.recv(timeout=1) == (0x1, "x" * 300)
    server.close()
    with pytest.raises(WebSocketClosed):
        ws.recv(timeout=1)


def test_ws_handshake_refused_and_bad_url(comfy):
    with pytest.raises(WebSocketError, match="handshake refused: HTTP/1.1 404"):
        WebSocket.connect(ws_url(comfy.url, "/ws?clientId=x"), timeout=2)
    with pytest.raises(WebSocketError, match="not a ws"):
        WebSocket.connect("http://127.0.0.1:1/ws")


def test_ws_handshake_carries_the_proxy_credentials(comfy):
    # behind NGINX with basic auth the upgrade request needs the same Authorization header as the HTTP calls
    params = dict(headers={"X-Trace": "t1"}, url_username="ops", url_password="s3cret")
    with pytest.raises(WebSocketError):
        WebSocket.connect(ws_url(comfy.url, "/ws?clientId=x"), headers=comfyui_workflow.websocket_headers(params),
                          timeout=2)
    sent = comfy.requests[-1]["headers"]
    assert sent["Authorization"] == "Basic b3BzOnMzY3JldA==" and sent["X-Trace"] == "t1"


def test_ws_connect_refused(free_port):
    with pytest.raises(WebSocketError, match="cannot connect"):
        WebSocket.connect("ws://127.0.0.1:%d/ws" % free_port, timeout=2)


# --- whole runs --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wf-emulator")
    with start_emulator(workdir, env={"COMFYUI_EMULATOR_STEP_SECONDS": "0.05"}) as emulator:
        (emulator.root / "models" / "checkpoints" / "tiny.safetensors").write_bytes(b"")
        yield emulator


def slow_graph(steps):
    """A KSampler job that takes steps * 0.05 s on the emulator and stops at the next step when interrupted."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["1", 1]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": int(time.time() * 1000) % 100000,
                                                   "steps": steps, "cfg": 1.0, "sampler_name": "euler",
                                                   "scheduler": "simple", "positive": ["2", 0],
                                                   "negative": ["2", 0], "latent_image": ["3", 0], "denoise": 1.0},
              "_meta": {"title": "Sampler"}},
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "slow"}},
    }


def wf(run_module, check_mode=False, **args):
    args.setdefault("retry_delay", 0)
    args.setdefault("poll_interval", 0.1)
    return run_module(comfyui_workflow.main, args, check_mode=check_mode)


def test_run_over_websocket_fetches_outputs(run_module, emu, tmp_path):
    failed, result = wf(run_module, url=emu.url, workflow_path=str(TINY), dest=str(tmp_path / "out"),
                        parameters=[dict(title="Save", input="filename_prefix", value="ws_run"),
                                    dict(node="1", input="color", value=255)])
    assert not failed, result
    assert result["changed"] and result["status"] == "success" and result["progress_via"] == "websocket"
    assert result["events"] >= 5 and result["ws_error"] is None
    (out,) = result["outputs"]
    assert out["filename"].startswith("ws_run_") and out["path"] == str(tmp_path / "out" / out["filename"])
    assert out["media"] == dict(format="png", frames=1, width=64, height=64, valid=True)
    assert result["output_paths"] == [out["path"]]
    assert result["timings"]["total_s"] >= result["timings"]["run_s"] >= 0
    assert result["workflow"]["1"]["inputs"]["color"] == 255


def test_polling_when_websocket_is_off(run_module, emu, tmp_path):
    failed, result = wf(run_module, url=emu.url + "/api/", workflow_path=str(TINY), use_websocket=False,
                        parameters=[dict(title="Save", input="filename_prefix", value="polled")])
    assert not failed, result
    assert result["progress_via"] == "polling" and result["outputs"][0]["filename"].startswith("polled_")
    assert result["output_paths"] == []  # no dest: listed, not fetched


def test_check_mode_and_creates(run_module, emu, tmp_path):
    before = emu.get_json("/history")
    failed, result = wf(run_module, check_mode=True, url=emu.url, workflow_path=str(TINY),
                        parameters=[dict(title="Image", input="width", value=8)])
    assert not failed and result["changed"] and result["status"] == "would_run"
    assert result["workflow"]["1"]["inputs"]["width"] == 8
    (tmp_path / "done.png").write_bytes(b"x")
    failed, result = wf(run_module, url=emu.url, workflow_path=str(TINY), creates=str(tmp_path / "*.png"))
    assert not failed and not result["changed"] and result["status"] == "skipped"
    assert result["output_paths"] == [str(tmp_path / "done.png")]
    assert emu.get_json("/history") == before


def test_validation_error_names_the_node(run_module, emu):
    failed, result = wf(run_module, url=emu.url, workflow_path=str(TINY),
                        parameters=[dict(title="Image", input="width", value=99999)])
    assert failed and result["status"] == "rejected" and result["changed"] is False
    assert "node 1 (EmptyImage, 'Image') input width: Value 99999 bigger than max of 16384" in result["msg"]
    assert result["error"]["node_id"] == "1" and result["node_errors"][0]["type"] == "value_bigger_than_max"


def test_partial_queue_is_cancelled(run_module, emu):
    graph = load_graph(workflow_path=str(TINY))
    graph["3"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "missing.safetensors"}}
    graph["4"] = {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "never"}}
    graph["5"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    graph["6"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["3", 2]}}
    graph["7"] = {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "never"}}
    failed, result = wf(run_module, url=emu.url, workflow=graph)
    assert failed and result["status"] == "rejected" and result["prompt_id"]
    assert "queued only the valid part" in result["msg"] and "node 3 (CheckpointLoaderSimple) input ckpt_name" \
        in result["msg"]
    assert result["changed"] is True  # it reached the queue before it was cancelled


def test_execution_error_reported_with_node(run_module, emu):
    failed, result = wf(run_module, url=emu.url, workflow_path=str(TINY),
                        parameters=[dict(title="Save", input="filename_prefix", value="../escape")])
    assert failed and result["status"] == "error"
    assert result["error"]["node_id"] == "2" and result["error"]["node_type"] == "SaveImage"
    assert "the job failed at node 2 (SaveImage)" in result["msg"]
    assert "Saving image outside the output folder is not allowed" in result["msg"]


def test_timeout_interrupts_the_job(run_module, emu):
    started = time.monotonic()
    failed, result = wf(run_module, url=emu.url, workflow=slow_graph(400), job_timeout=3.0)
    assert failed and result["status"] == "timeout" and result["interrupted"] is True, result["msg"]
    assert time.monotonic() - started < 15  # 400 steps would take 20 s (generous: the 2 cores may be busy)
    assert result["error"]["type"] == "timeout"
    if result["final_state"] != "interrupted":
        # the emulator's worker never got the CPU within 3 s (a loaded CI machine): the job was still pending,
        # so the cancel deleted it from the queue; the module must say so and the job must never run
        time.sleep(1)
        assert result["final_state"] == "removed"
        assert emu.get_json("/history/" + result["prompt_id"]) == {}
        assert result["prompt_id"] not in json.dumps(emu.get_json("/queue"))
        return
    deadline = time.monotonic() + 10  # the emulator records the interruption as its worker gets the CPU
    while True:
        entry = emu.get_json("/history/" + result["prompt_id"]).get(result["prompt_id"])
        if entry and entry["status"]["messages"][-1][0] == "execution_interrupted" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"


def test_ws_progress_events_from_a_sampler(run_module, emu):
    failed, result = wf(run_module, url=emu.url, workflow=slow_graph(6))
    assert not failed, result
    assert result["progress_via"] == "websocket" and result["events"] >= 6 + 5


def test_uploads_are_injected(run_module, emu, tmp_path):
    img = tmp_path / "in.png"
    img.write_bytes(make_png(4, 4))
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}, "_meta": {"title": "Start"}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "up"}}}
    failed, result = wf(run_module, url=emu.url, workflow=graph, dest=str(tmp_path / "o"),
                        uploads=[dict(path=str(img), filename="ansible_in.png", subfolder="t", title="Start")])
    assert not failed, result
    assert result["uploads"][0]["value"] == "t/ansible_in.png"
    assert result["workflow"]["1"]["inputs"]["image"] == "t/ansible_in.png"
    assert result["outputs"][0]["media"]["width"] == 4


def test_transient_errors_are_retried_validation_errors_are_not(run_module, comfy):
    history = ref("history_prompt.json")
    pid = next(iter(history))
    comfy.set("/history/" + pid, history)
    comfy.set("/prompt", ref("prompt_post_success.json"), status=[503, 502, 200])
    failed, result = wf(run_module, url=comfy.url, workflow_path=str(TINY), use_websocket=True)
    assert not failed, result
    assert comfy.count("/prompt") == 3 and result["prompt_id"] == pid
    assert result["progress_via"] == "polling" and "404" in result["ws_error"]  # FakeComfyUI has no /ws
    comfy.set("/prompt", ref("prompt_error_missing_input.json"), status=400)
    failed, result = wf(run_module, url=comfy.url, workflow_path=str(TINY), use_websocket=False)
    assert failed and comfy.count("/prompt") == 4 and result["error"]["node_type"] == "EmptyImage"


def test_lost_answer_is_not_submitted_twice(run_module, comfy):
    # the server queues the job but the answer never comes back (connection closed)
    comfy.set("/prompt", b"", close=True)
    queued = {}

    def queue_with_our_prompt():
        for r in comfy.requests:
            if r["path"] == "/prompt":
                queued["id"] = json.loads(r["body"])["prompt_id"]
        return queued["id"]

    orig_get = comfy.routes.get

    class Routes(dict):
        def get(self, path, default=None):
            if path == "/queue" and comfy.count("/prompt"):
                pid = queue_with_our_prompt()
                return type(orig_get("/queue"))({"queue_running": [[0, pid, {}, {}, []]], "queue_pending": []})
            if path.startswith("/history/") and "id" in queued and path.endswith(queued["id"]) \
                    and comfy.count("/queue") >= 1:
                entry = next(iter(ref("history_prompt.json").values()))
                return type(orig_get("/queue"))({queued["id"]: entry})
            return dict.get(self, path, default)

    comfy.routes = Routes(comfy.routes)
    failed, result = wf(run_module, url=comfy.url, workflow_path=str(TINY), use_websocket=False, retries=2)
    assert not failed, result
    assert comfy.count("/prompt") == 1 and result["prompt_id"] == queued["id"]


def test_unreachable_instance_fails_after_retries(run_module, free_port):
    failed, result = wf(run_module, url="http://127.0.0.1:%d" % free_port, workflow_path=str(TINY), retries=1,
                        use_websocket=False)
    assert failed and result["status"] == "failed" and "Connection refused" in result["msg"]
    assert result["changed"] is False


@pytest.mark.parametrize("args, message", [
    (dict(workflow_path="/nonexistent.json"), "cannot read workflow_path"),
    (dict(job_timeout=0), "job_timeout must be greater than 0"),
    (dict(retries=-1), "must not be negative"),
    (dict(url="ftp://x"), "url: not an http(s) URL"),
    (dict(uploads=[dict(path="/x", title="Nope")]), "no node titled 'Nope'"),
])
def test_argument_errors(run_module, args, message):
    args = dict(dict(url="http://127.0.0.1:1", workflow=TINY.read_text()), **args)
    if "workflow_path" in args:
        args.pop("workflow")
    failed, result = wf(run_module, **args)
    assert failed and message in result["msg"], result["msg"]


def test_ws_client_against_the_emulator(emu):
    ws = WebSocket.connect(ws_url(emu.url + "/api", "/ws?clientId=unit-ws"), timeout=5)
    opcode, text = ws.recv(timeout=5)
    assert json.loads(text) == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                                           "sid": "unit-ws"}}
    ws.send_text(json.dumps({"type": "feature_flags", "data": {}}))
    opcode, text = ws.recv(timeout=5)
    assert json.loads(text)["type"] == "feature_flags"
    ws.ping(b"p")  # answered with a pong, which recv skips
    emu.post_json("/prompt", {"prompt": json.loads(TINY.read_text()), "client_id": "unit-ws"})
    types = []
    while "execution_success" not in types:
        types.append(json.loads(ws.recv(timeout=5)[1])["type"])
    assert types[0] == "status" and "executed" in types
    ws.close()
    assert ws.closed
