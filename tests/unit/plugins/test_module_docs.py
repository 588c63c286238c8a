"""The modules' DOCUMENTATION/EXAMPLES/RETURN load through ansible-doc and agree with the argument specs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import comfyui_http_argument_spec

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_DOC = Path(sys.executable).parent / "ansible-doc"
ATTRIBUTES = {  # check_mode, diff_mode, idempotent support
    "comfyui_health": ("full", "none", "full"),
    "nvidia_gpu_info": ("full", "none", "full"),
    "comfyui_model": ("full", "full", "full"),
    "comfyui_custom_node": ("full", "full", "full"),
    "comfyui_workflow": ("full", "none", "none"),  # runs a job: not idempotent by nature
}
MODULES = sorted(ATTRIBUTES)


def ansible_doc(*args):
    # from the repo root, so ansible.cfg's collections_path finds the collection
    return subprocess.run([str(ANSIBLE_DOC), *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1"), check=False)


@pytest.fixture(scope="module")
def docs():
    proc = ansible_doc("--json", *("comfyops.comfyui." + m for m in MODULES))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    proc = ansible_doc("comfyops.comfyui." + module)
    assert proc.returncode == 0, proc.stderr
    assert "MODULE comfyops.comfyui.%s" % module in proc.stdout
    assert "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr


@pytest.mark.parametrize("module", MODULES)
def test_attributes_and_examples(docs, module):
    doc = docs["comfyops.comfyui." + module]
    attributes = doc["doc"]["attributes"]
    assert tuple(attributes[a]["support"] for a in ("check_mode", "diff_mode", "idempotent")) == ATTRIBUTES[module]
    assert all(a.get("description") for a in attributes.values())
    examples = yaml.safe_load(doc["examples"])
    assert examples and any("comfyops.comfyui." + module in task for task in examples)
    assert doc["return"]


def _compare(options, spec, path):
    assert sorted(options) == sorted(spec), path
    for name, s in spec.items():
        opt = options[name]
        assert opt["type"] == s.get("type", "str"), (path, name)
        assert opt.get("default") == s.get("default"), (path, name)
        assert opt.get("elements") == s.get("elements"), (path, name)
        assert bool(opt.get("required")) == bool(s.get("required")), (path, name)
        assert sorted(opt.get("choices", [])) == sorted(s.get("choices", [])), (path, name)
        assert sorted(opt.get("aliases", [])) == sorted(s.get("aliases", [])), (path, name)
        if s.get("options"):
            _compare(opt["suboptions"], s["options"], path + "." + name)


@pytest.mark.parametrize("module", MODULES)
def test_documented_options_match_argument_spec(docs, module, argument_spec_of):
    _compare(docs["comfyops.comfyui." + module]["doc"]["options"], argument_spec_of(module), module)


def test_http_fragment_matches_shared_spec(docs):
    options = docs["comfyops.comfyui.comfyui_health"]["doc"]["options"]
    for name in comfyui_http_argument_spec():
        assert name in options


def test_no_log_on_secrets(argument_spec_of):
    assert argument_spec_of("comfyui_model")["token"]["no_log"] is True
    for module in ("comfyui_health", "comfyui_workflow"):
        assert argument_spec_of(module)["url_password"]["no_log"] is True
