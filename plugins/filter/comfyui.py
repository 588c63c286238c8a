# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""comfyui_instances: the instance records of one host (module_utils/instances.py owns them); comfyui_list: a list
variable as an operator types it on the command line."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: comfyui_instances
short_description: The ComfyUI instance records of one host
version_added: "0.2.0"
author:
  - comfyops contributors
description:
  - Computes the instances the comfyui role runs on a host, one record each with C(name), C(gpu), C(port),
    C(bind_address), C(url) (how this host reaches it), C(internal_url) (how containers on the C(comfyui) network
    reach it) and C(suffix) (its proxy path segment, V(gpu0), V(cpu1)).
  - Numbers may be strings, as C(-e comfyui_cpu_instances=2) passes them, and a list may be a comma-separated
    string; other bad values fail with a message that names the variable.
  - URLs are right for IPv4, IPv6 (in brackets) and wildcard binds (probed on loopback).
options:
  _input:
    description: The role's settings, a dict with C(device), C(port), C(bind_address), C(container_port),
      C(cpu_instances), C(gpus) (requested indexes) and C(found_gpus) (indexes nvidia-smi found).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Compute the instances
  ansible.builtin.set_fact:
    instances: >-
      {{ {'device': 'cpu', 'port': comfyui_port, 'bind_address': '::1', 'cpu_instances': 2}
         | comfyops.comfyui.comfyui_instances }}
"""

RETURN = r"""
_value:
  description: One record per instance, in order.
  type: list
  elements: dict
"""

import posixpath
import re
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError
from ansible_collections.comfyops.comfyui.plugins.module_utils.instances import (
    RecordError,
    check_address,
    instances,
    to_list,
)
from ansible_collections.comfyops.comfyui.plugins.module_utils.settings_checks import (
    CONTROL,
    each,
    int_range,
    matches,
    plain,
    problems,
)

# What a data root, project or state directory must not be: removing it (remove.yml) would take the system along.
_SYSTEM_DIRS = {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt", "/opt", "/proc",
                "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/local", "/var", "/var/lib"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_DOCKER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}\Z")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*[a-z0-9]\Z")
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h)\Z")


def comfyui_instances(settings):
    if not isinstance(settings, dict):
        raise AnsibleFilterError("comfyui_instances: expected a dict of settings, got %s" % type(settings).__name__)
    try:
        return instances(
            settings.get("device"), settings.get("port", 8188), settings.get("bind_address", "127.0.0.1"),
            container_port=settings.get("container_port", 8188), cpu_instances=settings.get("cpu_instances", 1),
            gpus=settings.get("gpus"), found_gpus=settings.get("found_gpus"))
    except RecordError as e:
        raise AnsibleFilterError("comfyui role: %s" % e)


def comfyui_list(value, variable="value"):
    """A list from a list or a comma-separated string (-e comfyui_restart_instances=comfyui-gpu0,comfyui-gpu1)."""
    try:
        return to_list(value, variable)
    except RecordError as e:
        raise AnsibleFilterError(str(e))


def _own_dir(value):
    """An absolute, normalized directory the role may create and (remove.yml) remove: never / or a system dir."""
    if not isinstance(value, str) or CONTROL.search(value) or not value.startswith("/"):
        return "must be an absolute path"
    if posixpath.normpath(value) in _SYSTEM_DIRS:
        return "is a system directory: give the role a directory of its own, such as /srv/comfyui"
    if posixpath.normpath(value) != value:
        return "must be a normalized path (no .., // or trailing /): %s" % posixpath.normpath(value)
    return None


# where credentials go instead of the URL, by who uses it
_GIT_CREDENTIALS = ("use a credential helper or a netrc file in root's home on the hosts instead (git runs there as "
                    "root), so they never appear in output, files or the image")
_PIP_CREDENTIALS = ("give them in comfyui_pip_index_credentials (host, username, password) instead: pip gets them "
                    "as a build secret, never in argv, output or the image")
_REGISTRY_CREDENTIALS = "log the hosts in to the registry instead (docker login as root)"


def _no_userinfo(advice):
    def check(value):
        if not isinstance(value, str) or CONTROL.search(value):
            return "must be a single-line string"
        parts = urlsplit(value)
        # a token may be the user name alone (https://ghp_x@github.com/...); ssh://git@host is a login, not a secret
        if parts.password is not None or (parts.scheme in ("http", "https") and parts.username is not None):
            return "carries credentials in the URL: " + advice
        return None
    return check


_NETRC_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\Z")
# what a netrc token cannot hold (the parsers of the Pythons in build images differ on quoting)
_NETRC_TOKEN = re.compile(r"^[^\s\"'\\#]+\Z")


def _pip_credentials(value):
    """The entries of the netrc pip reads in the build; a message never shows a value (a password is one)."""
    if not isinstance(value, list):
        return "must be a list of {host, username, password}"
    hosts = set()
    for n, entry in enumerate(value, 1):
        if not isinstance(entry, dict) or set(entry) != {"host", "username", "password"}:
            return "entry %d must have exactly the keys host, username and password" % n
        host = entry["host"]
        if not isinstance(host, str) or not _NETRC_HOST.match(host):
            return "entry %d: host must be the index's host name or IPv4 address as in its URL (no scheme, port or path)" % n
        if host in hosts:
            return "entry %d: %s has an entry already (pip uses one login per host)" % (n, host)
        hosts.add(host)
        for key in ("username", "password"):
            if not isinstance(entry[key], str) or not _NETRC_TOKEN.match(entry[key]):
                return ("entry %d: %s must be a non-empty string without spaces, quotes, \\ or # (a netrc cannot "
                        "hold them)" % (n, key))
    return None


def _env(value):
    if not isinstance(value, dict):
        return "must be a dict of NAME: value"
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            return "has the name %r: names are letters, digits and _, not starting with a digit" % (name,)
        text = item if isinstance(item, str) else str(item)
        if isinstance(item, (dict, list)) or CONTROL.search(text) or "'" in text:
            return "has a value for %s that must be one line without ' (compose takes it as it is)" % name
    return None


def _volume(value):
    problem = plain(value, forbid="")
    if problem:
        return problem
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(p.startswith("/") for p in parts[:2]) or (
            len(parts) == 3 and parts[2] not in ("ro", "rw", "z", "Z", "ro,z", "ro,Z")):
        return "must be /host/path:/container/path[:ro]"
    if parts[0].rstrip("/") in ("/var/run/docker.sock", "/run/docker.sock", "") or parts[0] == "/":
        return "would give the containers (third-party node code) the host or its Docker daemon"
    return None


def _address(value):
    try:
        check_address(value, "it")
    except RecordError as e:
        return str(e)[len("it"):].strip() if str(e).startswith("it") else str(e)
    return None


_CHECKS = {
    "comfyui_bind_address": _address,
    "comfyui_data_root": _own_dir,
    "comfyui_project_dir": _own_dir,
    "comfyui_state_dir": _own_dir,
    "comfyui_port": int_range(1, 65535),
    "comfyui_cpu_instances": int_range(1, 64),
    "comfyui_user": int_range(0, 2 ** 31 - 1),
    "comfyui_group": int_range(0, 2 ** 31 - 1),
    "comfyui_min_free_gb": int_range(0),
    "comfyui_health_timeout": int_range(1),
    "comfyui_drain_timeout": int_range(0),
    "comfyui_keep_images": int_range(1),
    "comfyui_lock_timeout": int_range(0),
    "comfyui_models_max_parallel": int_range(1, 64),
    "comfyui_models_connections": int_range(1, 32),
    "comfyui_models_min_free_mb": int_range(0),
    "comfyui_stop_grace_period": matches(_DURATION, "a duration like 30s or 2m"),
    "comfyui_project_name": matches(_DOCKER_NAME, "lower-case letters, digits, _, . and -"),
    "comfyui_network_name": matches(_DOCKER_NAME, "lower-case letters, digits, _, . and -"),
    "comfyui_network_alias": matches(_DOCKER_NAME, "lower-case letters, digits, _, . and -"),
    "comfyui_image_name": matches(_IMAGE, "an image repository like comfyops/comfyui"),
    "comfyui_env": _env,
    "comfyui_extra_args": each(lambda v: plain(str(v), forbid="")),
    "comfyui_extra_volumes": each(_volume),
    "comfyui_pip_extra_args": each(_no_userinfo(_PIP_CREDENTIALS)),
    "comfyui_pip_index_credentials": _pip_credentials,
    "comfyui_source_repo": _no_userinfo(_GIT_CREDENTIALS),
    "comfyui_ltxvideo_repo": _no_userinfo(_GIT_CREDENTIALS),
    "comfyui_torch_index_url": _no_userinfo(_PIP_CREDENTIALS),
    "comfyui_registry": _no_userinfo(_REGISTRY_CREDENTIALS),
}


def comfyui_settings_problems(settings):
    """One line per comfyui role variable in `settings` that is unusable, naming it; unknown names are ignored."""
    if not isinstance(settings, dict):
        raise AnsibleFilterError("comfyui_settings_problems: expected a dict, got %s" % type(settings).__name__)
    return problems(settings, _CHECKS)


class FilterModule(object):
    def filters(self):
        return {"comfyui_instances": comfyui_instances, "comfyui_list": comfyui_list,
                "comfyui_settings_problems": comfyui_settings_problems}
