"""--enable-manager: the ComfyUI-Manager v4 endpoints recorded in reference/comfyui-api/manager/."""
import configparser
import http.client
import time

import pytest

from contract_support import REFERENCE_DIR, assert_shape, covers, load_ref
from emulator_helpers import prepare_tree, start_emulator, wait_ready

LTX_URL = "https://github.com/Lightricks/ComfyUI-LTXVideo"
LTX_COMMIT = "aceeae9635f6d493f2893ba3c411a1c36031788a"


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("manager")
    root = prepare_tree(workdir, ["ComfyUI-LTXVideo", "broken_pack"])
    # A git checkout as the Manager sees it (HEAD and origin URL), without running git.
    git = root / "custom_nodes" / "ComfyUI-LTXVideo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/master\n")
    (git / "refs" / "heads" / "master").write_text(LTX_COMMIT + "\n")
    (git / "config").write_text(f'[core]\n\tbare = false\n[remote "origin"]\n\turl = {LTX_URL}.git\n')
    blocked = root / "custom_nodes" / "ComfyUI-Manager"
    blocked.mkdir()
    (blocked / "__init__.py").write_text("raise RuntimeError('a git clone of the Manager must be blocked')\n")
    with start_emulator(workdir, tree=root, args=["--enable-manager"]) as e:
        yield e


@covers("manager/features_with_manager.json")
def test_features_announce_csrf_post(emu):
    assert emu.get_json("/features") == load_ref("manager/features_with_manager.json")


@covers("manager/queue_status_idle.json")
def test_queue_status_idle(emu):
    assert emu.get_json("/v2/manager/queue/status") == load_ref("manager/queue_status_idle.json")


def test_version_is_plain_text_and_api_prefixed(emu):
    recorded = (REFERENCE_DIR / "manager" / "version.txt").read_text().strip()
    for path in ("/v2/manager/version", "/api/v2/manager/version"):
        result = emu.get(path)
        assert (result.status, result.text) == (200, recorded)
    assert emu.get("/manager/version").status == 404  # the v3 paths are gone


@covers("manager/customnode_installed.json")
def test_installed_lists_git_checkouts(emu):
    installed = emu.get_json("/v2/customnode/installed")
    assert_shape(installed, load_ref("manager/customnode_installed.json"))
    assert installed["ComfyUI-LTXVideo"] == {"ver": LTX_COMMIT, "cnr_id": "", "aux_id": "Lightricks/ComfyUI-LTXVideo",
                                             "enabled": True}


@covers("manager/import_fail_info_ltxvideo_on_0.33.json")
def test_import_fail_info_by_url(emu):
    result = emu.post_json("/v2/customnode/import_fail_info", {"url": LTX_URL})
    assert result.status == 200
    recorded = load_ref("manager/import_fail_info_ltxvideo_on_0.33.json")
    assert_shape(result.json(), recorded)
    assert result.json()["path"] == str(emu.root / "custom_nodes" / "ComfyUI-LTXVideo")
    assert result.json()["msg"].splitlines()[-1] == recorded["msg"].splitlines()[-1].replace(
        "/opt/comfyui/ComfyUI", str(emu.root))
    # Plain directories (not git or registry installs) are unknown to the Manager.
    assert emu.post_json("/v2/customnode/import_fail_info", {"cnr_id": "broken_pack"}).status == 400


@covers("manager/import_fail_info_bulk.json")
def test_import_fail_info_bulk(emu):
    result = emu.post_json("/v2/customnode/import_fail_info_bulk", {"urls": [LTX_URL], "cnr_ids": ["broken_pack"]})
    assert result.status == 200
    assert_shape(result.json(), load_ref("manager/import_fail_info_bulk.json"), [()])
    assert result.json()["broken_pack"] is None
    assert "interleaved_freqs_cis" in result.json()[LTX_URL]["error"]


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "text/plain"])
def test_csrf_guard_refuses_form_posts(emu, content_type):
    result = emu.request("POST", "/v2/customnode/import_fail_info", body=b"url=x",
                         headers={"Content-Type": content_type})
    assert (result.status, result.text) == (400, "Invalid Content-Type for this endpoint. Use application/json or "
                                                 "omit body.")


@covers("manager/config.ini.default")
def test_default_config_and_log_file(emu):
    written, recorded = configparser.ConfigParser(), configparser.ConfigParser()
    written.read(emu.root / "user" / "__manager" / "config.ini")
    recorded.read(REFERENCE_DIR / "manager" / "config.ini.default")
    assert dict(written["default"]) == dict(recorded["default"])
    assert "To see the GUI go to" in (emu.root / "user" / f"comfyui_{emu.port}.log").read_text()


def test_manager_git_clone_is_blocked(emu):
    assert f"Blocked by policy: {emu.root}/custom_nodes/ComfyUI-Manager" in emu.log_text()
    assert "must be blocked" not in emu.log_text()


def test_reboot_reexecutes_in_place(emu):
    pid = emu.process.pid
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        emu.post_json("/v2/manager/reboot", {})
    time.sleep(0.2)
    wait_ready(emu.url, emu.process, emu.log_path, 20)
    assert emu.process.pid == pid and emu.process.poll() is None
    assert emu.log_text().count("To see the GUI go to") == 2
    assert (emu.root / "user" / f"comfyui_{emu.port}.prev.log").is_file()
