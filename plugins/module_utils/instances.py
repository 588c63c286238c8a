# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ComfyUI instance record: one owner for what an instance is and how it is reached.

The comfyui role computes the records (filter comfyops.comfyui.comfyui_instances), writes them to the fact file,
and every consumer (the nginx role, the playbooks, comfyui_health, comfyui_rollout) reads them as they are. Values
may arrive as strings (``-e comfyui_cpu_instances=2``): they are converted here, or refused with a message that
names the variable.
"""

from __future__ import annotations

import ipaddress
import re

RECORD_FIELDS = ("name", "gpu", "port", "bind_address", "url", "internal_url", "suffix")
# Addresses that mean "every interface"; a probe on the same host then goes to loopback.
_WILDCARDS = {"0.0.0.0", "::"}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class RecordError(ValueError):
    """Bad input for the record; the message names the variable and what to do."""


def is_loopback(address):
    """True for 127.0.0.0/8, ::1 and localhost (bracketed IPv6 accepted): the one loopback rule."""
    host = str(address or "").strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(address):
    host = str(address or "").strip().strip("[]")
    return host in _WILDCARDS


def url_host(address):
    """The host part of a URL for an address: IPv6 literals in brackets."""
    host = str(address).strip().strip("[]")
    try:
        if ipaddress.ip_address(host).version == 6:
            return "[%s]" % host
    except ValueError:
        pass
    return host


def check_address(value, variable):
    """An IPv4/IPv6 address or host name, stripped of IPv6 brackets; RecordError otherwise."""
    text = "" if value is None else str(value).strip()
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if not host:
        raise RecordError("%s must be an address or host name, got an empty value" % variable)
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if host in _WILDCARDS or _HOSTNAME.match(host):
        return host
    raise RecordError("%s=%r is not an IPv4/IPv6 address or host name" % (variable, value))


def to_int(value, variable, low=None, high=None):
    """An int from an int or a string of digits (as -e passes it); RecordError with the range otherwise."""
    if isinstance(value, bool):
        raise RecordError("%s must be a whole number, got %r" % (variable, value))
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.match(r"^\s*-?\d+\s*$", value):
        number = int(value)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise RecordError("%s must be a whole number, got %r" % (variable, value))
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = "%s-%s" % (low, high) if high is not None else ">= %s" % low
        raise RecordError("%s must be %s, got %d" % (variable, bounds, number))
    return number


def to_list(value, variable):
    """A list from a list or a comma-separated string (as -e passes it)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise RecordError("%s must be a list (or a comma-separated string), got %r" % (variable, value))


def instances(device, port, bind_address, container_port=8188, cpu_instances=1, gpus=None, found_gpus=None):
    """The records of one host's instances, in order.

    device gpu: one instance per GPU index in gpus (or every index in found_gpus when gpus is empty), named
    comfyui-gpu<N>, port + N; device cpu: cpu_instances instances comfyui-cpu<n>, port + n.
    """
    if device not in ("gpu", "cpu"):
        raise RecordError("comfyui_device must be gpu or cpu, got %r" % (device,))
    base_port = to_int(port, "comfyui_port", 1, 65535)
    bind = check_address(bind_address, "comfyui_bind_address")
    probe_host = "127.0.0.1" if is_wildcard(bind) else bind
    if device == "gpu":
        wanted = [to_int(g, "comfyui_gpus[]", 0, 1023) for g in to_list(gpus, "comfyui_gpus")]
        indexes = wanted or [to_int(g, "GPU index", 0, 1023) for g in (found_gpus or [])]
        if len(set(indexes)) != len(indexes):
            raise RecordError("comfyui_gpus names a GPU twice: %s" % indexes)
        numbered = [("gpu%d" % i, i, i) for i in indexes]
    else:
        count = to_int(cpu_instances, "comfyui_cpu_instances", 1, 64)
        numbered = [("cpu%d" % n, None, n) for n in range(count)]
    out = []
    for suffix, gpu, offset in numbered:
        host_port = base_port + offset
        if host_port > 65535:
            raise RecordError("comfyui_port=%d leaves no room for instance %s (port %d > 65535)"
                              % (base_port, suffix, host_port))
        name = "comfyui-" + suffix
        out.append(dict(name=name, gpu=gpu, port=host_port, bind_address=bind, suffix=suffix,
                        url="http://%s:%d" % (url_host(probe_host), host_port),
                        internal_url="http://%s:%d" % (name, container_port)))
    return out


def record_problem(record):
    """Why a record (read back from a host's fact file, so from a host that may be compromised) cannot be used,
    or None: every field a consumer pastes into configuration is checked."""
    if not isinstance(record, dict):
        return "not a mapping"
    name = record.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        return "name %r is not a plain instance name" % (name,)
    try:
        to_int(record.get("port"), "port", 1, 65535)
        check_address(record.get("bind_address", "127.0.0.1"), "bind_address")
    except RecordError as e:
        return str(e)
    suffix = record.get("suffix", name[len("comfyui-"):] if name.startswith("comfyui-") else name)
    if not isinstance(suffix, str) or not _NAME.match(suffix):
        return "suffix %r is not a plain path segment" % (suffix,)
    for field in ("url", "internal_url"):
        if field in record and not _plain_url(record[field]):
            return "%s %r is not an http URL with a plain host and port" % (field, record[field])
    return None


def _plain_url(value):
    """http://host:port with an address or host name, nothing else (a trailing / allowed)."""
    match = re.match(r"^http://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})/?\Z", value) if isinstance(value, str) else None
    if not match:
        return False
    try:
        check_address(match.group(1), "url")
        to_int(match.group(2), "url", 1, 65535)
    except RecordError:
        return False
    return True
