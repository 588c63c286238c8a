"""Custom-node loading, as measured on upstream (comfyui-facts.md section 5 and the startup logs)."""
import os
import re

import pytest

from contract_support import REFERENCE_DIR, assert_shape, covers, load_ref
from emulator_helpers import prepare_tree, start_emulator

PACKS = ["ComfyUI-LTXVideo", "ansible_probe_nodes", "broken_pack", "runtime_error_pack", "no_mappings_pack",
         "single_file_pack.py", "dup_class_a", "dup_class_b"]
INFO, WARNING = "\x1b[32m[INFO]\x1b[0m ", "\x1b[1m\x1b[33m[WARNING]\x1b[0m "
IMPORT_TIME = re.compile(r"^\x1b\[32m\[INFO\]\x1b\[0m +\d+\.\d seconds( \(IMPORT FAILED\))?: (.+)$")
NEVER_LOAD = "raise RuntimeError('this module must never be imported')\n"


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("custom_nodes")
    root = prepare_tree(workdir, PACKS)
    custom = root / "custom_nodes"
    # Entries the loader must skip without a word.
    (custom / "old_pack.disabled").mkdir()
    (custom / "old_pack.disabled" / "__init__.py").write_text(NEVER_LOAD)
    (custom / "__pycache__").mkdir()
    (custom / "__pycache__" / "__init__.py").write_text(NEVER_LOAD)
    (custom / "notes.txt").write_text("not a module")
    (custom / "single.py.disabled").write_text(NEVER_LOAD)
    with start_emulator(workdir, tree=root) as e:
        yield e


def import_times(log):
    """{pack file name: failed?} from the "Import times for custom nodes:" block."""
    rows = {}
    for line in log.split("Import times for custom nodes:\n", 1)[1].splitlines():
        match = IMPORT_TIME.match(line)
        if not match:
            break
        rows[os.path.basename(match.group(2))] = bool(match.group(1))
    return rows


@covers("custom_node_probe_object_info.json")
def test_probe_pack_shows_up_as_recorded(emu):
    assert emu.get_json("/object_info/AnsibleProbeNode") == load_ref("custom_node_probe_object_info.json")


def test_core_class_wins_silently_over_a_custom_one(emu):
    assert emu.get_json("/object_info/EmptyImage") == load_ref("object_info_EmptyImage.json")
    assert not [line for line in emu.log_text().splitlines() if line.startswith(WARNING) and "ansible_probe" in line]


def test_import_times_block_marks_failures(emu):
    rows = import_times(emu.log_text())
    assert rows == {"ComfyUI-LTXVideo": True, "ansible_probe_nodes": False, "broken_pack": True,
                    "runtime_error_pack": True, "no_mappings_pack": True, "single_file_pack.py": False,
                    "dup_class_a": False, "dup_class_b": False, "websocket_image_save.py": False}
    assert f"{INFO}\nImport times for custom nodes:\n" in emu.log_text()


def test_failed_imports_are_logged_like_upstream(emu):
    log, custom = emu.log_text(), f"{emu.root}/custom_nodes"
    assert (f"{WARNING}Cannot import {custom}/broken_pack module for custom nodes: "
            "No module named 'nonexistent_dependency_for_ansible_test'\n") in log
    assert (f"{WARNING}Cannot import {custom}/runtime_error_pack module for custom nodes: "
            "probe pack deliberately fails during import\n") in log
    assert (f"{WARNING}Skip {custom}/no_mappings_pack module for custom nodes due to the lack of "
            "NODE_CLASS_MAPPINGS or comfy_entrypoint (need one).\n") in log
    assert f"{WARNING}Traceback (most recent call last):\n" in log
    assert "ModuleNotFoundError: No module named 'nonexistent_dependency_for_ansible_test'" in log
    info = emu.get_json("/object_info")
    assert "BrokenPackNode" not in info
    assert "requirements.txt" not in log  # ComfyUI never reads a pack's requirements


def test_ltxvideo_head_fails_on_0_33_with_the_recorded_error(emu):
    recorded = (REFERENCE_DIR / "logs" / "startup_v0.33.0_ltxvideo_import_failed.log").read_text()
    line = next(l for l in recorded.splitlines() if "Cannot import" in l and "ComfyUI-LTXVideo" in l)
    expected = line.replace("/opt/comfyui/ComfyUI", str(emu.root))
    assert expected + "\n" in emu.log_text()
    assert not any(v["python_module"] == "custom_nodes.ComfyUI-LTXVideo" for v in emu.get_json("/object_info").values())


@covers("internal_logs_excerpt.json")
def test_internal_logs_keep_the_import_failures(emu):
    logs = emu.get_json("/internal/logs")
    assert_shape(logs, load_ref("internal_logs_excerpt.json"))
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6} - "
    custom = re.escape(f"{emu.root}/custom_nodes")
    assert re.search(stamp + re.escape(WARNING) + "Cannot import " + custom + "/broken_pack module", logs)
    assert re.search(stamp + re.escape(INFO) + r" +\d\.\d seconds \(IMPORT FAILED\): " + custom + "/no_mappings_pack",
                     logs)


def test_skipped_entries_leave_no_trace(emu):
    log = emu.log_text()
    for name in ("old_pack.disabled", "__pycache__", "notes.txt", "single.py.disabled", "must never be imported"):
        assert name not in log


def test_python_module_is_the_directory_or_file_stem(emu):
    info = emu.get_json("/object_info")
    assert info["SingleFileProbe"]["python_module"] == "custom_nodes.single_file_pack"
    assert info["SingleFileProbe"]["display_name"] == "Single File Probe"
    assert info["SaveImageWebsocket"]["python_module"] == "custom_nodes.websocket_image_save"


def test_later_pack_in_listdir_order_overwrites_earlier(emu):
    order = [name for name in os.listdir(emu.root / "custom_nodes") if name.startswith("dup_class_")]
    winner = order[-1]
    entry = emu.get_json("/object_info/DuplicateProbe")["DuplicateProbe"]
    assert entry["python_module"] == f"custom_nodes.{winner}"
    assert entry["category"] == f"ansible/probe/{winner[-1]}"


def test_prestartup_script_runs_before_any_node_import(emu):
    log = emu.log_text()
    ran = log.index("ansible_probe_nodes: prestartup_script.py ran")
    assert ran < log.index("Prestartup times for custom nodes:") < log.index("Import times for custom nodes:")
    assert f"seconds: {emu.root}/custom_nodes/ansible_probe_nodes\n" in log.split("Import times")[0]


@pytest.mark.parametrize("flags, loaded, absent, line", [
    (["--disable-all-custom-nodes"], [], ["AnsibleProbeNode", "SaveImageWebsocket", "SingleFileProbe"],
     "Skipping loading of custom nodes"),
    (["--disable-all-custom-nodes", "--whitelist-custom-nodes", "ansible_probe_nodes", "single_file_pack.py"],
     ["AnsibleProbeNode", "SingleFileProbe"], ["SaveImageWebsocket", "DuplicateProbe"],
     "Skipping websocket_image_save.py due to disable_all_custom_nodes and whitelist_custom_nodes"),
])
def test_disable_all_and_whitelist(tmp_path, flags, loaded, absent, line):
    with start_emulator(tmp_path, args=flags, custom_nodes=["ansible_probe_nodes", "single_file_pack.py",
                                                            "dup_class_a"]) as emu:
        info = emu.get_json("/object_info")
        log = emu.log_text()
    assert all(name in info for name in loaded) and not any(name in info for name in absent)
    assert line in log
    assert ("prestartup_script.py ran" in log) == ("AnsibleProbeNode" in loaded)


def test_startup_log_follows_the_recorded_order(emu):
    landmarks = ["Checkpoint files will always be loaded safely.", "Total VRAM ", "pytorch version: ",
                 "Set vram state to: DISABLED", "Device: cpu", "Python version: ", "ComfyUI version: 0.33.0",
                 "comfyui-frontend-package version: 1.49.6", "[Prompt Server] web root: ", "Asset seeder disabled",
                 "Import times for custom nodes:", "Context impl SQLiteImpl.", "Using RAM pressure cache.",
                 "Starting server", "To see the GUI go to: http://127.0.0.1:"]
    recorded = (REFERENCE_DIR / "logs" / "startup_v0.33.0_probe_packs.log").read_text()
    ours = emu.log_text()
    for log in (recorded, ours):
        positions = [log.index(landmark) for landmark in landmarks]
        assert positions == sorted(positions)
    for line in ours.splitlines():
        if line.startswith("\x1b"):
            assert re.match(r"^\x1b\[(32m\[INFO\]|1m\x1b\[33m\[WARNING\]|1m\x1b\[31m\[ERROR\])\x1b\[0m ", line), line
