"""ComfyUI 0.28.0 with the ComfyUI-LTXVideo stand-in: the recordings made on the 0.28.0 server."""
import pytest

from contract_support import REFERENCE_DIR, assert_shape, covers, load_ref, load_transcript, transcript_messages
from emulator_helpers import start_emulator

TRANSCRIPT = "ws_transcript_ltxvideo_node.jsonl"


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    with start_emulator(tmp_path_factory.mktemp("ltx"), custom_nodes=["ComfyUI-LTXVideo"], version="0.28.0") as e:
        yield e


def ltx_detail():
    lines = (REFERENCE_DIR / "ltxvideo_classes_detail.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return {row[0]: row[1:] for row in (line.split("\t") for line in lines)}


@covers(TRANSCRIPT)
def test_ltxvideo_node_runs(emu):
    meta = load_transcript(TRANSCRIPT)[0]
    with emu.ws("ansible-ref-2c1912c2") as ws:
        received = [ws.recv_json()]
        answer = emu.post_json("/prompt", {"prompt": meta["graph"], "client_id": "ansible-ref-2c1912c2"})
        prompt_id = answer.json()["prompt_id"]
        received += ws.collect_until(lambda m: m["type"] == "executing" and m["data"]["node"] is None)
    recorded = transcript_messages(TRANSCRIPT)
    assert_shape(answer.json(), next(line["body"] for line in load_transcript(TRANSCRIPT) if line["kind"] == "http"))
    assert [m["type"] for m in received] == [m["type"] for m in recorded]
    for got, want in zip(received, recorded):
        assert_shape(got, want, [("data", "nodes")])
    executed = next(m for m in received if m["type"] == "executed")["data"]
    assert executed["output"] == {"text": ["98"]} and executed["prompt_id"] == prompt_id


def test_all_78_classes_with_recorded_names_and_categories(emu):
    classes = (REFERENCE_DIR / "ltxvideo_classes.txt").read_text(encoding="utf-8").splitlines()
    info = emu.get_json("/object_info")
    ours = {name for name, entry in info.items() if entry["python_module"] == "custom_nodes.ComfyUI-LTXVideo"}
    assert ours == set(classes) and len(classes) == 78
    for name, (display, category, module, output_node) in ltx_detail().items():
        entry = info[name]
        assert (entry["display_name"], entry["category"], entry["python_module"], entry["output_node"]) == \
            (None if display == "None" else display, category, module, output_node == "True"), name
    assert "Set VAE Decoder Noise" in info  # a class name with spaces
    assert len(info) == 881  # 802 core + 78 LTXVideo + SaveImageWebsocket, as measured on 0.28.0


@covers("ltxvideo_object_info_excerpt.json")
def test_recorded_ltxvideo_definitions(emu):
    for name, definition in load_ref("ltxvideo_object_info_excerpt.json").items():
        assert emu.get_json(f"/object_info/{name}") == {name: definition}
    spaced = emu.get_json("/object_info/Set%20VAE%20Decoder%20Noise")
    assert list(spaced) == ["Set VAE Decoder Noise"]


@covers("system_stats_v0.28.0.json")
def test_system_stats_of_0_28(emu):
    stats = emu.get_json("/system_stats")
    recorded = load_ref("system_stats_v0.28.0.json")
    assert_shape(stats, recorded)
    for key in ("comfyui_version", "required_frontend_version", "installed_templates_version",
                "required_templates_version", "comfy_package_versions"):
        assert stats["system"][key] == recorded["system"][key], key


@covers("internal_logs_raw_excerpt.json")
def test_raw_logs_show_the_pack_import_and_the_listener(emu):
    raw = emu.get_json("/internal/logs/raw")
    assert_shape(raw, load_ref("internal_logs_raw_excerpt.json"))
    messages = [entry["m"] for entry in raw["entries"]]
    pack = f"seconds: {emu.root}/custom_nodes/ComfyUI-LTXVideo\n"
    assert any(m.startswith("\x1b[32m[INFO]\x1b[0m ") and m.endswith(pack) for m in messages)
    assert "\x1b[32m[INFO]\x1b[0m Starting server\n\n" in messages
    assert f"\x1b[32m[INFO]\x1b[0m To see the GUI go to: http://127.0.0.1:{emu.port}\n" in messages


def test_pack_frontend_files_are_listed_and_served(emu):
    extensions = emu.get_json("/extensions")
    ours = sorted(e for e in extensions if e.startswith("/extensions/ComfyUI-LTXVideo/"))
    assert ours == ["/extensions/ComfyUI-LTXVideo/js/guider_parameters_advanced.js",
                    "/extensions/ComfyUI-LTXVideo/js/sparse_track_editor.js"]
    served = emu.get(ours[0])
    assert served.status == 200 and served.content_type == "application/javascript; charset=utf-8"
