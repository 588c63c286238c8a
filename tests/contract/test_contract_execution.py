"""Running graphs: the recorded WebSocket transcripts, runtime errors, interrupts and partial validity.

The module shares one emulator (0.33.0). Tests run in file order: the fresh run must come before
the cached re-run of the same graph.
"""
import json
import struct
import time

import pytest

from contract_support import assert_shape, covers, load_ref, load_transcript, transcript_messages
from emulator_helpers import start_emulator

FRESH = load_transcript("ws_transcript.jsonl")
FRESH_GRAPH = FRESH[0]["graph"]
WS_MAPS = [("data", "nodes")]


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    # ImageBlur takes 1 s per node here, long enough to inspect the busy queue and interrupt it.
    with start_emulator(tmp_path_factory.mktemp("execution"), env={"COMFYUI_EMULATOR_IMAGEBLUR_SECONDS": "1.0"}) as e:
        yield e


def finished(prompt_id):
    return lambda m: m["type"] == "executing" and m["data"]["node"] is None and m["data"]["prompt_id"] == prompt_id


def run_and_collect(emu, graph, client_id):
    """Connect, submit, and return (POST answer, every message from the connect status to the end)."""
    with emu.ws(client_id) as ws:
        received = [ws.recv_json()]
        answer = emu.post_json("/prompt", {"prompt": graph, "client_id": client_id})
        assert answer.status == 200, answer.body
        received += ws.collect_until(finished(answer.json()["prompt_id"]))
    return answer, received


def assert_matches_transcript(received, name):
    recorded = transcript_messages(name)
    assert [m["type"] for m in received] == [m["type"] for m in recorded]
    for got, expected in zip(received, recorded):
        assert_shape(got, expected, WS_MAPS)


@covers("ws_transcript.jsonl")
def test_fresh_run_message_order(emu):
    client_id = FRESH[0]["url"].split("clientId=")[1]
    answer, received = run_and_collect(emu, FRESH_GRAPH, client_id)
    assert_shape(answer.json(), next(line["body"] for line in FRESH if line["kind"] == "http"))
    assert_matches_transcript(received, "ws_transcript.jsonl")
    assert received[0]["data"]["sid"] == client_id
    executed = next(m for m in received if m["type"] == "executed")
    assert executed["data"]["output"] == next(m for m in transcript_messages("ws_transcript.jsonl")
                                              if m["type"] == "executed")["data"]["output"]
    assert (emu.root / "output" / "ref_ws_00001_.png").read_bytes().startswith(b"\x89PNG")


@covers("ws_transcript_cached.jsonl")
def test_identical_graph_is_answered_from_the_cache(emu):
    run_and_collect(emu, FRESH_GRAPH, "warm-up")  # makes the test independent of the one above
    client_id = load_transcript("ws_transcript_cached.jsonl")[0]["url"].split("clientId=")[1]
    answer, received = run_and_collect(emu, FRESH_GRAPH, client_id)
    assert_matches_transcript(received, "ws_transcript_cached.jsonl")
    assert next(m for m in received if m["type"] == "execution_cached")["data"]["nodes"] == ["1", "2"]
    assert not (emu.root / "output" / "ref_ws_00002_.png").exists()


@covers("ws_transcript_execution_error.jsonl", "history_prompt_execution_error.json")
def test_runtime_error_of_save_image_outside_the_output_dir(emu):
    transcript = load_transcript("ws_transcript_execution_error.jsonl")
    answer, received = run_and_collect(emu, transcript[0]["graph"], "error-client")
    assert_matches_transcript(received, "ws_transcript_execution_error.jsonl")
    error = next(m for m in received if m["type"] == "execution_error")["data"]
    recorded = next(m for m in transcript_messages("ws_transcript_execution_error.jsonl")
                    if m["type"] == "execution_error")["data"]
    assert error["exception_message"] == recorded["exception_message"].replace("/opt/comfyui/ComfyUI", str(emu.root))
    for key in ("node_id", "node_type", "executed", "exception_type", "current_outputs"):
        assert error[key] == recorded[key], key
    assert error["current_inputs"]["filename_prefix"] == ["../escape_attempt"]

    prompt_id = answer.json()["prompt_id"]
    history = emu.get_json(f"/history/{prompt_id}")
    assert_shape(history, load_ref("history_prompt_execution_error.json"), [()])
    assert history[prompt_id]["status"]["status_str"] == "error"
    assert history[prompt_id]["status"]["completed"] is False
    assert emu.get_json(f"/api/jobs/{prompt_id}")["status"] == "failed"
    assert "!!! Exception during processing !!!" in emu.log_text()


@covers("ws_transcript_interrupt.jsonl", "queue_busy_and_interrupt.json", "queue.json")
def test_delete_pending_and_interrupt_running(emu):
    recorded = load_ref("queue_busy_and_interrupt.json")
    first_graph = recorded["queue_busy"]["queue_running"][0][2]
    second_graph = recorded["queue_busy"]["queue_pending"][0][2]
    client_id = "ansible-ref-dc2ef781"
    with emu.ws(client_id) as ws:
        received = [ws.recv_json()]
        first = emu.post_json("/prompt", {"prompt": first_graph, "client_id": client_id}).json()["prompt_id"]
        # Queue the second prompt only once the worker took the first, as in the capture; otherwise
        # the status values (1, 1, 2) depend on thread timing.
        received += ws.collect_until(lambda m: m["type"] == "execution_start")
        second = emu.post_json("/prompt", {"prompt": second_graph, "client_id": client_id}).json()["prompt_id"]
        received += ws.collect_until(lambda m: m["type"] == "executing" and m["data"]["node"] == "2")

        # While the first ImageBlur runs: one running, one pending.
        assert_shape(emu.get_json("/queue"), recorded["queue_busy"])
        assert emu.get_json("/prompt") == recorded["prompt_get_busy"]
        jobs = emu.get("/api/jobs")
        assert jobs.status == recorded["jobs_busy"]["status"]
        # Earlier tests left finished jobs behind; the recording saw only these two.
        body = dict(jobs.json(), jobs=[job for job in jobs.json()["jobs"] if job["id"] in (first, second)])
        assert_shape(body, recorded["jobs_busy"]["body"])
        assert [job["status"] for job in body["jobs"]] == ["pending", "in_progress"]

        assert emu.post_json("/queue", {"delete": [second]}).status == 200
        assert emu.post_json("/interrupt", {"prompt_id": first}).status == 200
        received += ws.collect_until(finished(first))

    expected = transcript_messages("ws_transcript_interrupt.jsonl")
    # Status messages interleave with the worker's by timing; their own order is fixed.
    assert [m["data"]["status"]["exec_info"]["queue_remaining"] for m in received if m["type"] == "status"] == \
        [m["data"]["status"]["exec_info"]["queue_remaining"] for m in expected if m["type"] == "status"]
    events, expected_events = ([m for m in msgs if m["type"] != "status"] for msgs in (received, expected))
    # The capture stopped after the final status; upstream (and the emulator) then send "executing" null.
    assert [m["type"] for m in events] == [m["type"] for m in expected_events] + ["executing"]
    for got, want in zip(events, expected_events):
        assert_shape(got, want, WS_MAPS)
    interrupted = next(m for m in events if m["type"] == "execution_interrupted")["data"]
    assert (interrupted["node_id"], interrupted["node_type"], interrupted["executed"]) == ("3", "ImageBlur", ["1", "2"])

    history = emu.get_json(f"/history/{first}")
    assert_shape(history, recorded["history_interrupted"], [()])
    assert history[first]["status"]["messages"][-1][0] == "execution_interrupted"
    assert emu.get_json(f"/history/{second}") == recorded["history_deleted_pending"]
    job = emu.get(f"/api/jobs/{first}")
    assert job.status == recorded["job_interrupted"]["status"]
    assert_shape(job.json(), recorded["job_interrupted"]["body"])
    gone = emu.get(f"/api/jobs/{second}")
    assert (gone.status, gone.json()) == (recorded["job_deleted_pending"]["status"], recorded["job_deleted_pending"]["body"])
    assert emu.get_json("/queue") == load_ref("queue.json")


@covers("prompt_error_missing_model_file.json")
def test_partially_valid_prompt_runs_only_its_valid_outputs(emu):
    recorded = load_ref("prompt_error_missing_model_file.json")
    answer = emu.post_json("/prompt", recorded["request"])
    assert answer.status == recorded["status"]
    assert_shape(answer.json(), recorded["response"])
    assert answer.json()["node_errors"] == recorded["response"]["node_errors"]
    entry = emu.wait_for_history(answer.json()["prompt_id"])
    # The recorded follow-up: only output 4 ran, the prompt still counts as a success.
    assert entry["prompt"][4] == ["4"]
    assert list(entry["outputs"]) == ["4"]
    assert entry["status"]["status_str"] == "success"
    latent = entry["outputs"]["4"]["latents"][0]
    data = (emu.root / "output" / latent["subfolder"] / latent["filename"]).read_bytes()
    header = json.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])
    assert header["latent_tensor"]["shape"] == [1, 128, 13, 16, 24]
    assert "Failed to validate prompt for output 9:" in emu.log_text()


def test_sampler_reports_progress_and_stops_at_once_on_interrupt(emu):
    (emu.root / "models" / "checkpoints" / "model.safetensors").write_bytes(b"\0" * 8)
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "4": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": 1, "steps": 500, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["2", 0], "negative": ["2", 0], "latent_image": ["3", 0], "denoise": 1.0}},
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "sampled"}}}
    with emu.ws("sampler") as ws:
        ws.recv_json()
        prompt_id = emu.post_json("/prompt", {"prompt": graph, "client_id": "sampler"}).json()["prompt_id"]
        progress = ws.collect_until(lambda m: m["type"] == "progress")[-1]["data"]
        assert progress == {"value": 1, "max": 500, "prompt_id": prompt_id, "node": "4"}
        started = time.monotonic()
        emu.post_json("/interrupt", {})
        messages = ws.collect_until(finished(prompt_id))
    assert time.monotonic() - started < 2  # 500 steps would take 10 s
    interrupted = next(m for m in messages if m["type"] == "execution_interrupted")["data"]
    assert interrupted["node_id"] == "4" and interrupted["node_type"] == "KSampler"


def test_per_node_events_are_broadcast_when_the_prompt_has_no_client_id(emu):
    graph = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "broadcast"}},
             "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    with emu.ws("listener") as ws:
        ws.recv_json()
        prompt_id = emu.post_json("/prompt", {"prompt": graph}).json()["prompt_id"]
        messages = ws.collect_until(lambda m: m["type"] == "status" and m["data"]["status"]["exec_info"][
            "queue_remaining"] == 0)
    types = [m["type"] for m in messages]
    assert "executing" in types and "executed" in types and "progress_state" in types
    assert "execution_start" not in types and "execution_success" not in types
    assert emu.wait_for_history(prompt_id)["outputs"]["2"] == {"text": ["broadcast"]}


def test_save_image_websocket_sends_binary_png_frames(emu):
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 2, "color": 0}},
             "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}
    with emu.ws("binary") as ws:
        ws.recv_json()
        emu.post_json("/prompt", {"prompt": graph, "client_id": "binary"})
        frames = []
        while len(frames) < 2:
            opcode, payload = ws.recv()
            if opcode == 2:
                frames.append(payload)
    for frame in frames:
        assert struct.unpack(">II", frame[:8]) == (1, 2)  # PREVIEW_IMAGE, PNG
        assert frame[8:16] == b"\x89PNG\r\n\x1a\n"


def test_feature_flags_are_answered_on_the_first_message(emu):
    with emu.ws("flags") as ws:
        ws.recv_json()
        ws.send_text(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        reply = ws.recv_json()
    assert reply == {"type": "feature_flags", "data": emu.get_json("/features")}


def test_load_image_of_a_missing_file_fails_validation(emu):
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    answer = emu.post_json("/prompt", {"prompt": graph})
    assert answer.status == 400
    error = answer.json()["node_errors"]["1"]["errors"][0]
    assert error["type"] == "custom_validation_failed" and "Invalid image file: missing.png" in error["details"]


def test_load_image_runs_on_the_shipped_example(emu):
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "copied"}}}
    entry = emu.wait_for_history(emu.post_json("/prompt", {"prompt": graph}).json()["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    copied = (emu.root / "output" / "copied_00001_.png").read_bytes()
    assert struct.unpack(">II", copied[16:24]) == struct.unpack(">II", (emu.root / "input" / "example.png").read_bytes()[16:24])


def test_stub_classes_fail_at_run_time_not_validation(emu):
    graph = {"1": {"class_type": "ImageStitch", "inputs": {}},
             "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    answer = emu.post_json("/prompt", {"prompt": graph})
    assert answer.status == 200
    entry = emu.wait_for_history(answer.json()["prompt_id"])
    error = entry["status"]["messages"][-1]
    assert error[0] == "execution_error" and "no implementation" in error[1]["exception_message"]
