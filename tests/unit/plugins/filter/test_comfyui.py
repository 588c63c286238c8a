"""plugins/filter/comfyui.py in-process: the comfyui role's setting checks and comfyui_list (the checks playbook
test runs the same through ansible-playbook, where coverage cannot follow a filter)."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.comfyops.comfyui.plugins.filter.comfyui import (
    FilterModule,
    comfyui_list,
    comfyui_settings_problems,
)

GOOD = {"comfyui_data_root": "/srv/comfyui", "comfyui_project_dir": "/opt/comfyops/comfyui",
        "comfyui_state_dir": "/var/lib/comfyops/comfyui", "comfyui_port": "8188", "comfyui_bind_address": "::1",
        "comfyui_env": {"HF_HOME": "/opt/comfyui/models/.hf", "N": 3}, "comfyui_extra_args": ["--preview-method", "auto"],
        "comfyui_extra_volumes": ["/srv/loras:/opt/comfyui/models/loras/extra:ro"],
        "comfyui_pip_extra_args": ["--extra-index-url", "https://pypi.internal/simple"],
        "comfyui_source_repo": "ssh://git@git.internal/ComfyUI.git", "comfyui_stop_grace_period": "2m",
        "comfyui_image_name": "registry.internal/comfyops/comfyui", "comfyui_registry": "registry.internal:5000/x"}


def test_good_settings_have_no_problems():
    assert comfyui_settings_problems(GOOD) == []


@pytest.mark.parametrize("name, value, text", [
    ("comfyui_data_root", "/", "is a system directory"),
    ("comfyui_data_root", "/usr/local/", "is a system directory"),
    ("comfyui_data_root", "/srv/comfyui/", "must be a normalized path (no .., // or trailing /): /srv/comfyui"),
    ("comfyui_state_dir", 5, "must be an absolute path"),
    ("comfyui_env", ["A=1"], "must be a dict of NAME: value"),
    ("comfyui_env", {"A": {"b": 1}}, "must be one line without '"),
    ("comfyui_extra_volumes", "/a:/b", "must be a list"),
    ("comfyui_extra_volumes", ["/:/host"], "would give the containers"),
    ("comfyui_extra_volumes", ["/a:/b:rx"], "must be /host/path:/container/path[:ro]"),
    ("comfyui_extra_args", ["--a\n--b"], "must not contain control characters"),
    ("comfyui_registry", "https://u:p@r.internal", "carries credentials in the URL: log the hosts in to the registry"),
    ("comfyui_torch_index_url", "https://u:p@pypi.internal/simple", "pip runs inside docker build, where no host file"),
    ("comfyui_pip_extra_args", ["https://tok@pypi.internal/simple"], "let the index admit the hosts without credentials"),
    ("comfyui_source_repo", "https://u:p@git.internal/ComfyUI.git", "use a credential helper or a netrc file in root's"),
    ("comfyui_torch_index_url", 5, "must be a single-line string"),
    ("comfyui_image_name", "Comfy/UI", "must be an image repository"),
    ("comfyui_bind_address", "a b", "is not an IPv4/IPv6 address or host name"),
    ("comfyui_user", True, "must be an integer"),
])
def test_each_bad_setting_is_named(name, value, text):
    problems = comfyui_settings_problems({name: value})
    assert len(problems) == 1 and problems[0].startswith(name) and text in problems[0], problems


def test_credentials_never_appear_in_a_problem():
    problems = comfyui_settings_problems({"comfyui_pip_extra_args": ["https://ci:tok3n@x/simple"],
                                         "comfyui_source_repo": "ftp://u:tok3n@x/y"})
    assert problems and all("tok3n" not in p for p in problems), problems


def test_comfyui_list_and_the_filter_table():
    assert comfyui_list("comfyui-gpu0, comfyui-gpu1") == ["comfyui-gpu0", "comfyui-gpu1"]
    assert comfyui_list(["a"]) == ["a"] and comfyui_list(None) == []
    with pytest.raises(AnsibleFilterError, match="comfyui_restart_instances must be a list"):
        comfyui_list(5, "comfyui_restart_instances")
    with pytest.raises(AnsibleFilterError, match="expected a dict"):
        comfyui_settings_problems([])
    assert set(FilterModule().filters()) == {"comfyui_instances", "comfyui_list", "comfyui_settings_problems"}
