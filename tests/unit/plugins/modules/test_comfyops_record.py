"""comfyops_record: the deployment record's schema, merge, atomic write and the messages for broken files."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils import record as rec
from ansible_collections.comfyops.comfyui.plugins.modules import comfyops_record

DOCS = Path(__file__).resolve().parents[4] / "docs" / "deployment-record.md"


def comfyui_section(**over):
    section = dict(
        instances=[{"name": "comfyui-cpu0", "gpu": None, "port": 8188, "bind_address": "127.0.0.1",
                    "url": "http://127.0.0.1:8188", "internal_url": "http://comfyui-cpu0:8188", "suffix": "cpu0"}],
        internal_url="http://comfyui:8188", network="comfyui", device="cpu", image="comfyops/comfyui:abc",
        image_id="sha256:1", comfyui_version="0.28.0", source={"repo": "r", "ref": "v0.28.0"}, manager="v4",
        node_packs=[{"name": "ComfyUI-LTXVideo", "commit": "aceeae96", "repo": "r", "version": "v", "enabled": True}],
        data_root="/srv/comfyui", project_dir="/opt/comfyops/comfyui", verified=True, last_error=None)
    section.update(over)
    return section


def test_present_writes_the_section_keeps_the_others_and_is_idempotent(tmp_path, run_module):
    path = tmp_path / "facts.d" / "comfyops.fact"
    path.parent.mkdir()
    path.write_text(json.dumps({"nginx": {"url": "https://p/comfyui/"}}))
    failed, result = run_module(comfyops_record.main, dict(path=str(path), section="comfyui",
                                                           content=comfyui_section()))
    assert not failed and result["changed"]
    data = json.loads(path.read_text())
    assert data["nginx"] == {"url": "https://p/comfyui/"} and data["comfyui"]["image"] == "comfyops/comfyui:abc"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", data["comfyui"]["changed_at"])
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    stamp = data["comfyui"]["changed_at"]
    failed, again = run_module(comfyops_record.main, dict(path=str(path), section="comfyui", content=comfyui_section()))
    assert not failed and not again["changed"] and json.loads(path.read_text())["comfyui"]["changed_at"] == stamp
    assert [p.name for p in path.parent.iterdir()] == ["comfyops.fact"]  # no temporary left behind


def test_check_mode_reports_without_writing(tmp_path, run_module):
    path = tmp_path / "comfyops.fact"
    failed, result = run_module(comfyops_record.main, dict(path=str(path), section="comfyui",
                                                           content=comfyui_section()), check_mode=True)
    assert not failed and result["changed"] and not path.exists()


def test_content_against_the_schema_is_refused_with_the_field(tmp_path, run_module):
    failed, result = run_module(comfyops_record.main, dict(
        path=str(tmp_path / "f"), section="comfyui", content=comfyui_section(image=5, colour="red")))
    assert failed
    assert "comfyui.image must be str or null, got int" in result["msg"]
    assert "comfyui has unknown field(s) colour" in result["msg"]


def test_a_truncated_file_is_named_in_the_message(tmp_path, run_module):
    path = tmp_path / "comfyops.fact"
    path.write_text('{"comfyui": {"instances": [')
    failed, result = run_module(comfyops_record.main, dict(path=str(path), section="nginx", state="read"))
    assert failed and str(path) in result["msg"] and "not valid JSON" in result["msg"] and "truncated" in result["msg"]


def test_read_refuses_an_instance_record_carrying_configuration_syntax(tmp_path, run_module):
    path = tmp_path / "comfyops.fact"
    hostile = comfyui_section()
    hostile["instances"][0]["port"] = "8188; } server { listen 80"
    path.write_text(json.dumps({"comfyui": hostile}))
    failed, result = run_module(comfyops_record.main, dict(path=str(path), section="comfyui", state="read"))
    assert failed and "comfyui.instances[0]: port must be a whole number" in result["msg"]


def test_absent_removes_only_its_section(tmp_path, run_module):
    path = tmp_path / "comfyops.fact"
    path.write_text(json.dumps({"comfyui": comfyui_section(), "nginx": {"url": "u"}}))
    failed, result = run_module(comfyops_record.main, dict(path=str(path), section="comfyui", state="absent"))
    assert not failed and result["changed"] and set(json.loads(path.read_text())) == {"nginx", "format"}


def test_a_symlinked_record_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("{}")
    (tmp_path / "comfyops.fact").symlink_to(target)
    with pytest.raises(rec.RecordFileError, match="cannot be read"):
        rec.read(str(tmp_path / "comfyops.fact"))


def test_the_documented_schema_is_the_enforced_one():
    text = DOCS.read_text()
    for section, fields in rec.SCHEMA.items():
        for field in fields:
            assert "`%s.%s`" % (section, field) in text, "%s.%s is not documented in %s" % (section, field, DOCS)
    documented = set(re.findall(r"`((?:comfyui|nginx)\.[a-z_]+)`", text))
    enforced = {"%s.%s" % (s, f) for s, fields in rec.SCHEMA.items() for f in fields}
    assert documented <= enforced, documented - enforced
