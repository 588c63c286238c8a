"""The comfyui role's setting checks (roles/comfyui/tasks/checks.yml, the first thing its preflight does) through
ansible-playbook: one run, one local "host" per case, each with its own variables, so each case's verdict and
message is the role's own. The checks touch no host (tests/integration/comfyui/test_comfyui_errors.py shows on a
real host that a failing preflight leaves it as it was).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from role_checks import check_case, verdicts

ROOT = Path(__file__).resolve().parents[2]
SECRET = "pip-index-sentinel"

# name: (variables, None when the checks pass, else texts the failure says)
CASES = {
    "defaults": ({}, None),
    "numbers-typed-on-the-command-line": ({"comfyui_port": "8288", "comfyui_cpu_instances": "2",
                                           "comfyui_drain_timeout": "0", "comfyui_user": "1000"}, None),
    "data-root-is-slash": ({"comfyui_data_root": "/"},
                           ["comfyui_data_root='/' is a system directory: give the role a directory of its own"]),
    "data-root-is-var": ({"comfyui_data_root": "/var/"}, ["comfyui_data_root='/var/' is a system directory"]),
    "data-root-relative": ({"comfyui_data_root": "srv/comfyui"}, ["comfyui_data_root='srv/comfyui' must be an absolute path"]),
    "state-dir-dotdot": ({"comfyui_state_dir": "/srv/comfyui/../../etc"},
                         ["comfyui_state_dir='/srv/comfyui/../../etc' is a system directory"]),
    "project-dir-newline": ({"comfyui_project_dir": "/opt/x\n/etc"}, ["comfyui_project_dir='/opt/x\\n/etc' must be an absolute path"]),
    "port-out-of-range": ({"comfyui_port": 70000}, ["comfyui_port=70000 must be between 1 and 65535"]),
    "port-not-a-number": ({"comfyui_port": "88a8"}, ["comfyui_port='88a8' must be an integer"]),
    "negative-instances": ({"comfyui_cpu_instances": -1}, ["comfyui_cpu_instances=-1 must be between 1 and 64"]),
    "empty-bind-address": ({"comfyui_bind_address": ""}, ["comfyui_bind_address='' must be an address or host name"]),
    "bind-address-syntax": ({"comfyui_bind_address": "127.0.0.1; }"}, ["is not an IPv4/IPv6 address or host name"]),
    "env-quote": ({"comfyui_env": {"TOKEN": "it's"}},
                  ["comfyui_env has a value for TOKEN that must be one line without '"]),
    "env-newline": ({"comfyui_env": {"A": "1\nB=2"}}, ["comfyui_env has a value for A that must be one line"]),
    "env-name": ({"comfyui_env": {"1BAD": "x"}}, ["comfyui_env has the name '1BAD'"]),
    "env-dollar-is-fine": ({"comfyui_env": {"PASS": "a$b #c"}}, None),
    "docker-socket-volume": ({"comfyui_extra_volumes": ["/var/run/docker.sock:/var/run/docker.sock"]},
                             ["would give the containers (third-party node code) the host or its Docker daemon"]),
    "relative-volume": ({"comfyui_extra_volumes": ["data:/data"]}, ["must be /host/path:/container/path[:ro]"]),
    "pip-index-password": ({"comfyui_pip_extra_args": ["--extra-index-url", "https://ci:%s@pypi.internal/simple" % SECRET]},
                           ["comfyui_pip_extra_args entry 'https://***@pypi.internal/simple' carries credentials"]),
    "pip-index-login": ({"comfyui_pip_index_credentials": [{"host": "pypi.internal", "username": "ci",
                                                            "password": SECRET}]}, None),
    "pip-index-login-with-a-url": ({"comfyui_pip_index_credentials": [{"host": "https://pypi.internal/simple",
                                                                       "username": "ci", "password": SECRET}]},
                                   ["comfyui_pip_index_credentials entry 1: host must be the index's host name"]),
    "pip-index-login-with-a-space": ({"comfyui_pip_index_credentials": [{"host": "pypi.internal", "username": "ci",
                                                                         "password": SECRET + " x"}]},
                                     ["comfyui_pip_index_credentials entry 1: password must be a non-empty string"]),
    "source-repo-password": ({"comfyui_source_repo": "https://bot:%s@git.internal/ComfyUI.git" % SECRET},
                             ["comfyui_source_repo='https://***@git.internal/ComfyUI.git' carries credentials"]),
    "token-as-user-name": ({"comfyui_ltxvideo_repo": "https://%s@github.com/Lightricks/ComfyUI-LTXVideo.git" % SECRET},
                           ["comfyui_ltxvideo_repo='https://***@github.com/Lightricks/ComfyUI-LTXVideo.git' carries"]),
    "ssh-login-is-fine": ({"comfyui_ltxvideo_repo": "ssh://git@github.com/Lightricks/ComfyUI-LTXVideo.git"}, None),
    "grace-period": ({"comfyui_stop_grace_period": "30 s"}, ["comfyui_stop_grace_period='30 s' must be a duration"]),
    "keep-no-image": ({"comfyui_keep_images": 0}, ["comfyui_keep_images=0 must be at least 1"]),
    "project-name": ({"comfyui_project_name": "Comfy UI"}, ["comfyui_project_name='Comfy UI' must be lower-case"]),
}


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    return verdicts("comfyui", CASES, tmp_path_factory.mktemp("comfyui-checks"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_case(found, case):
    check_case("comfyui", CASES, found, case)


def test_no_secret_and_no_traceback_in_the_output(found):
    assert SECRET not in found["_output"]
    assert "Traceback" not in found["_output"]
