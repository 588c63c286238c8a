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
        "comfyui_image_name": "registry.internal/comfyops/comfyui", "comfyui_registry": "registry.internal:5000/x",
        "comfyui_pip_index_credentials": [{"host": "pypi.internal", "username": "ci", "password": "t0k$en!%@&"},
                                          {"host": "10.0.0.5", "username": "ci", "password": "x"}]}


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
    ("comfyui_torch_index_url", "https://u:p@pypi.internal/simple", "give them in comfyui_pip_index_credentials"),
    ("comfyui_pip_extra_args", ["https://tok@pypi.internal/simple"], "pip gets them as a build secret"),
    ("comfyui_pip_index_credentials", {"host": "x", "username": "u", "password": "p"}, "must be a list of {host,"),
    ("comfyui_pip_index_credentials", [{"host": "x", "username": "u"}], "entry 1 must have exactly the keys host,"),
    ("comfyui_pip_index_credentials", [{"host": "https://x/simple", "username": "u", "password": "p"}],
     "entry 1: host must be the index's host name"),
    ("comfyui_pip_index_credentials", [{"host": "x:8080", "username": "u", "password": "p"}], "(no scheme, port or path)"),
    ("comfyui_pip_index_credentials", [{"host": "x", "username": "u", "password": "p"},
                                       {"host": "x", "username": "v", "password": "q"}], "entry 2: x has an entry already"),
    ("comfyui_pip_index_credentials", [{"host": "x", "username": "", "password": "p"}], "entry 1: username must be a non-empty"),
    ("comfyui_pip_index_credentials", [{"host": "x", "username": "u", "password": 1234}], "password must be a non-empty string"),
    ("comfyui_pip_index_credentials", [{"host": "x", "username": "u", "password": "a b"}], "without spaces, quotes, \\ or #"),
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


@pytest.mark.parametrize("password", ["tok3n #1", 'tok3n"', "tok3n\\", "tok3n\n", "#tok3n", "tok3n'"])
def test_a_login_the_netrc_cannot_hold_is_refused_without_showing_it(password):
    problems = comfyui_settings_problems(
        {"comfyui_pip_index_credentials": [{"host": "pypi.internal", "username": "ci", "password": password}]})
    assert len(problems) == 1 and "password must be a non-empty string" in problems[0], problems
    assert "tok3n" not in problems[0]


def test_comfyui_list_and_the_filter_table():
    assert comfyui_list("comfyui-gpu0, comfyui-gpu1") == ["comfyui-gpu0", "comfyui-gpu1"]
    assert comfyui_list(["a"]) == ["a"] and comfyui_list(None) == []
    with pytest.raises(AnsibleFilterError, match="comfyui_restart_instances must be a list"):
        comfyui_list(5, "comfyui_restart_instances")
    with pytest.raises(AnsibleFilterError, match="expected a dict"):
        comfyui_settings_problems([])
    assert set(FilterModule().filters()) == {"comfyui_instances", "comfyui_list", "comfyui_settings_problems"}
