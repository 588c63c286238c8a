# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The upstream servers and per-instance paths the nginx role renders, from the comfyui role's instances."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

DOCUMENTATION = r"""
---
name: nginx_upstreams
short_description: NGINX upstream servers and per-instance paths for ComfyUI instances
version_added: "0.1.0"
author:
  - comfyops contributors
description:
  - Takes, per ComfyUI host, the instances the comfyui role recorded (C(name), C(port), C(url)) and returns one
    entry per instance with the address NGINX connects to, the per-instance path and an upstream name.
  - In local mode (one host, NGINX on the ComfyUI host itself) the instance URLs are used as they are and the
    paths are C(<base>/<suffix>/), the suffix being the instance name without C(comfyui-) (C(gpu0), C(cpu1)).
  - Otherwise (a separate proxy host) an instance published on a loopback or wildcard address is reached at
    the host's C(address), and the paths are C(<base>/<host>/<suffix>/), so equal instance names on two hosts
    do not clash.
options:
  _input:
    description: List of C({host, address, instances}) dicts; C(instances) as in the comfyui role's fact.
    type: list
    elements: dict
    required: true
  base_path:
    description: The location all instances are served under.
    type: str
    default: /comfyui
  local:
    description: Local mode (see above).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Compute the upstreams
  ansible.builtin.set_fact:
    upstreams: "{{ [{'host': inventory_hostname, 'address': '127.0.0.1', 'instances': instances}]
                   | comfyops.comfyui.nginx_upstreams(local=true) }}"
"""

RETURN = r"""
_value:
  description: C({host, name, suffix, server, path, upstream}) per instance, in input order.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

_LOOPBACK_OR_ANY = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""}
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _server(host, url, port, address, local):
    parsed = urlsplit(url) if url else None
    ip = parsed.hostname if parsed and parsed.hostname else "127.0.0.1"
    if not local and ip in _LOOPBACK_OR_ANY:
        if not address:
            raise AnsibleFilterError("nginx_upstreams: no address for host %r (set nginx_upstream_address)" % host)
        ip = address
    if ":" in ip and not ip.startswith("["):
        ip = "[%s]" % ip
    return "%s:%d" % (ip, int(port))


def nginx_upstreams(hosts, base_path="/comfyui", local=True):
    if not isinstance(hosts, list):
        raise AnsibleFilterError("nginx_upstreams: expected a list of hosts, got %s" % type(hosts).__name__)
    base = "/" + str(base_path).strip("/")
    out, paths = [], set()
    for entry in hosts:
        host = str(entry.get("host", ""))
        if not _SAFE.match(host):
            raise AnsibleFilterError("nginx_upstreams: host name %r cannot be used in a URL path" % host)
        for inst in entry.get("instances") or []:
            name = str(inst.get("name", ""))
            if not _SAFE.match(name) or "port" not in inst:
                raise AnsibleFilterError("nginx_upstreams: instance %r of %s lacks a usable name or port" % (inst, host))
            suffix = name[len("comfyui-"):] if name.startswith("comfyui-") else name
            path = "%s/%s/" % (base, suffix) if local else "%s/%s/%s/" % (base, host, suffix)
            if path in paths:
                raise AnsibleFilterError("nginx_upstreams: two instances would both be served at %s" % path)
            paths.add(path)
            out.append({
                "host": host,
                "name": name,
                "suffix": suffix,
                "server": _server(host, inst.get("url"), inst["port"], entry.get("address"), local),
                "path": path,
                "upstream": "comfyops_" + re.sub(r"[^A-Za-z0-9_]", "_", ("" if local else host + "_") + suffix),
            })
    return out


class FilterModule(object):
    def filters(self):
        return {"nginx_upstreams": nginx_upstreams}
