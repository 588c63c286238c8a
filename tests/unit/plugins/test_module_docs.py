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
MODULES = ["comfyui_health", "nvidia_gpu_info"]


def ansible_doc(*args):
    # from the repo root, so ansible.cfg's collections_path finds the collection
    return subprocess.run([str(ANSIBLE_DOC), *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1"))


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
    assert attributes["check_mode"]["support"] == "full"
    assert attributes["diff_mode"]["support"] == "none"
    assert attributes["idempotent"]["support"] == "full"
    assert all(a.get("description") for a in attributes.values())
    examples = yaml.safe_load(doc["examples"])
    assert examples and any("comfyops.comfyui." + module in task for task in examples)
    assert doc["return"]


@pytest.mark.parametrize("module", MODULES)
def test_documented_options_match_argument_spec(docs, module, argument_spec_of):
    options = docs["comfyops.comfyui." + module]["doc"]["options"]
    spec = argument_spec_of(module)
    assert sorted(options) == sorted(spec)
    for name, s in spec.items():
        opt = options[name]
        assert opt["type"] == s.get("type", "str"), name
        assert opt.get("default") == s.get("default"), name
        assert opt.get("elements") == s.get("elements"), name
        assert sorted(opt.get("aliases", [])) == sorted(s.get("aliases", [])), name


def test_http_fragment_matches_shared_spec(docs):
    options = docs["comfyops.comfyui.comfyui_health"]["doc"]["options"]
    for name in comfyui_http_argument_spec():
        assert name in options
