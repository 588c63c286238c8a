# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the nginx role renders, computed and checked before it reaches the config: upstream servers and
per-instance paths from the comfyui role's instances, the proxy's public origins, and its settings' problems.
Everything that ends up in the config is checked here, so no value can carry NGINX syntax (`;`, `{`, a newline)."""

from __future__ import annotations

import ipaddress
import re

# Each filter's documentation is in its sidecar file (nginx_upstreams.yml, ...): one file holds four filters.

from ansible.errors import AnsibleFilterError
from ansible_collections.comfyops.comfyui.plugins.module_utils.settings_checks import (
    CONTROL as _CONTROL,
    each,
    int_range,
    matches,
    plain,
    problems,
)

_LOOPBACK_OR_ANY = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""}
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# DNS names as resolvers take them (underscores appear in real inventories); no trailing dot, no all-digit TLD.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS = re.compile(r"^%s(?:\.%s)*\Z" % (_LABEL, _LABEL))
_URL = re.compile(r"^http://(?P<host>\[[^\]]*\]|[^/:\[\]@?#]*)(?::(?P<port>[0-9]{1,5}))?/?\Z")
_ORIGIN = re.compile(r"^(?P<scheme>(?i:https?))://(?P<host>\[[^\]]*\]|[^/:\[\]@?#]*)(?::(?P<port>[0-9]{1,5}))?/?\Z")
_TIME = re.compile(r"^[0-9]+(ms|s|m|h|d|w|M|y)?\Z")
_SIZE = re.compile(r"^[0-9]+[kKmMgG]?\Z")
_BASE_PATH = re.compile(r"^/[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*/?\Z")
_RATE = re.compile(r"^([0-9]+r/[sm])?\Z")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+\Z")
_CIPHERS = re.compile(r"^[A-Za-z0-9_:+!@=.-]+\Z")
# Unquoted in the config: a path must not end a directive or open a block.
_PATH = re.compile(r"^/[^\s\x00-\x1f\x7f;{}\"'$\\#]*\Z")
_TLS_PROTOCOLS = {"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _host(value):
    """value as NGINX and URLs take it (IPv6 in brackets), or ValueError saying what is wrong."""
    problem = ValueError("not an IPv4 address, [IPv6] address or DNS name")
    if not isinstance(value, str) or not value or "%" in value:
        raise problem
    bracketed = value.startswith("[") and value.endswith("]")
    try:
        ip = ipaddress.ip_address(value[1:-1] if bracketed else value)
    except ValueError:
        ip = None
    if ip is not None and (ip.version == 6 or not bracketed):
        return "[%s]" % ip.compressed if ip.version == 6 else ip.compressed
    if not bracketed and len(value) <= 253 and _DNS.match(value) and not value.rsplit(".", 1)[-1].isdigit():
        return value
    raise problem


def _port(value):
    """value as an int 1-65535, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise ValueError("not an integer port")
    if not 1 <= int(value) <= 65535:
        raise ValueError("not a port between 1 and 65535")
    return int(value)


def _server(host, name, url, port, address, local):
    """host:port NGINX connects to for one instance; the fields come from another host, so each is checked."""
    where = "nginx_upstreams: host %s, instance %s:" % (host, name)
    try:
        port = _port(port)
    except ValueError as exc:
        raise AnsibleFilterError("%s port %r is %s: re-run the comfyui role on %s" % (where, port, exc, host))
    ip = "127.0.0.1"
    if url:
        match = _URL.match(url) if isinstance(url, str) else None
        try:
            if not match:
                raise ValueError("not http://<address>:<port>")
            if match.group("port"):
                _port(match.group("port"))
            ip = _host(match.group("host"))
        except ValueError as exc:
            raise AnsibleFilterError("%s url %r is %s, which the comfyui role never records: re-run the comfyui "
                                     "role on %s" % (where, url, exc, host))
    if not local and ip.strip("[]") in _LOOPBACK_OR_ANY:
        if not address:
            raise AnsibleFilterError("nginx_upstreams: no address for host %r (set nginx_upstream_address)" % host)
        try:
            ip = _host(address)
        except ValueError as exc:
            raise AnsibleFilterError("nginx_upstreams: host %s: its address %r (nginx_upstream_address, else "
                                     "ansible_host, else the inventory name) is %s" % (host, address, exc))
    return "%s:%d" % (ip, port)


def nginx_upstreams(hosts, base_path="/comfyui", local=True):
    if not isinstance(hosts, list):
        raise AnsibleFilterError("nginx_upstreams: expected a list of hosts, got %s" % type(hosts).__name__)
    base = "/" + str(base_path).strip("/")
    out, paths = [], set()
    for entry in hosts:
        host = str(entry.get("host", ""))
        if not _SAFE.match(host):
            raise AnsibleFilterError("nginx_upstreams: host name %r cannot be used in a URL path" % host)
        instances = entry.get("instances") or []
        if not isinstance(instances, list):
            raise AnsibleFilterError("nginx_upstreams: host %s: instances must be a list" % host)
        for inst in instances:
            name = str(inst.get("name", "")) if isinstance(inst, dict) else ""
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
                "server": _server(host, name, inst.get("url"), inst["port"], entry.get("address"), local),
                "path": path,
                "upstream": "comfyops_" + re.sub(r"[^A-Za-z0-9_]", "_", ("" if local else host + "_") + suffix),
            })
    return out


def _origin(scheme, host, port):
    return "%s://%s%s" % (scheme, host, "" if int(port) == _DEFAULT_PORTS[scheme] else ":%d" % int(port))


def nginx_origins(public_host, tls=False, http_port=80, https_port=443, redirect=True, root_vhost=False,
                  root_vhost_port=8080, root_vhost_server_name="_"):
    """The origins browsers send for the proxy's public URLs (scheme://host[:port], default ports omitted); the
    first is the main URL's."""
    try:
        host = _host(public_host).lower()
    except ValueError as exc:
        raise AnsibleFilterError("nginx role: nginx_public_host %r is %s" % (public_host, exc))
    # Argument validation templates this before the role's checks run: bad ports get a clear message here too.
    for name, value in (("nginx_http_port", http_port), ("nginx_https_port", https_port),
                        ("nginx_root_vhost_port", root_vhost_port)):
        try:
            _port(value)
        except ValueError as exc:
            raise AnsibleFilterError("nginx role: %s %r is %s" % (name, value, exc))
    scheme = "https" if tls else "http"
    out = [_origin(scheme, host, https_port if tls else http_port)]
    if tls and not redirect:
        out.append(_origin("http", host, http_port))
    if root_vhost:
        names = [n for n in str(root_vhost_server_name).split() if n != "_" and _host_check(n) is None]
        for name in names or [host]:
            out.append(_origin(scheme, name.lower(), root_vhost_port))
    return list(dict.fromkeys(out))


# The checks of nginx_settings_problems: check(value) returns what is wrong (a phrase) or None. Checks of lists
# name the entry ("entry 'x' ...").
def _host_check(value):
    try:
        _host(value)
    except ValueError as exc:
        return "is %s" % exc
    return None


def _listen_address(value):
    if value == "*":
        return None
    if isinstance(value, str) and _host_check(value) is None and ":" in value and not value.startswith("["):
        return "is an IPv6 address without brackets: write [%s]" % value
    return _host_check(value)


def _server_names(value):
    if not isinstance(value, str) or not value.split():
        return "must be one or more names separated by spaces"
    if _CONTROL.search(value):
        return "must not contain control characters (a newline, a tab)"
    for name in value.split():
        if name == "_" or name.startswith("[") and _host_check(name) is None:
            continue
        if name.startswith("~"):
            return "has %r: regular-expression names are not supported" % name
        bare = name[2:] if name.startswith("*.") else name[1:] if name.startswith(".") else name
        bare = bare[:-2] if bare.endswith(".*") else bare
        if not (_DNS.match(bare) and len(bare) <= 253):
            return "has %r, which is not _, a DNS name, *.name, .name or name.*" % name
    return None


def _allowed_origin(value):
    match = _ORIGIN.match(value) if isinstance(value, str) else None
    if not match:
        return "is not scheme://host[:port] as browsers send it (http or https, no path, no trailing slash)"
    try:
        host = _host(match.group("host"))
        port = _port(match.group("port")) if match.group("port") else _DEFAULT_PORTS[match.group("scheme").lower()]
    except ValueError as exc:
        return "has a host or port that is %s" % exc
    scheme = match.group("scheme").lower()
    canonical = _origin(scheme, host.lower(), port)
    if canonical != value:
        return "is not what a browser sends: write %s" % canonical
    return None


def _allow_entry(value):
    try:
        network = ipaddress.ip_network(value, strict=False) if isinstance(value, str) else None
    except ValueError:
        network = None
    if network is None:
        return "is not an IPv4/IPv6 address or CIDR (like 10.0.0.0/8)"
    if network.prefixlen == 0:
        return "allows every client, so it is no allow-list (set nginx_allow_anonymous: true if that is meant)"
    return None


def _realm(value):
    problem = plain(value)
    if problem is None and value.lower() == "off":
        return "must not be 'off' (NGINX would switch basic auth off)"
    return problem


def _headers(value):
    if not isinstance(value, dict):
        return "must be a dict of header names and values"
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            return "has a header name %r that is not letters, digits and -" % (name,)
        problem = plain(text)
        if problem:
            return "has a value for %s that %s" % (name, problem)
    return None


def _path(value):
    if value == "" or isinstance(value, str) and _PATH.match(value):
        return None
    return "must be an absolute path without spaces, quotes, control characters, ; { } $ # or \\"


_CHECKS = {
    "nginx_http_port": int_range(1, 65535),
    "nginx_https_port": int_range(1, 65535),
    "nginx_root_vhost_port": int_range(1, 65535),
    "nginx_upstream_max_fails": int_range(0),
    "nginx_upstream_keepalive": int_range(1),
    "nginx_prompt_rate_burst": int_range(0),
    "nginx_hsts_max_age": int_range(0),
    "nginx_upstream_fail_timeout": matches(_TIME, "an NGINX time like 30s"),
    "nginx_proxy_connect_timeout": matches(_TIME, "an NGINX time like 60s"),
    "nginx_proxy_send_timeout": matches(_TIME, "an NGINX time like 1800s"),
    "nginx_proxy_read_timeout": matches(_TIME, "an NGINX time like 1800s"),
    "nginx_client_max_body_size": matches(_SIZE, "a size like 10G or 500m"),
    "nginx_prompt_rate_limit": matches(_RATE, "empty or a rate like 2r/s or 30r/m"),
    "nginx_base_path": matches(_BASE_PATH, "a path like /comfyui"),
    "nginx_tls_ciphers": matches(_CIPHERS, "an OpenSSL cipher list (names separated by :)"),
    "nginx_tls_protocols": each(lambda v: None if v in _TLS_PROTOCOLS else "is not one of "
                                + ", ".join(sorted(_TLS_PROTOCOLS)), allow_empty=False),
    "nginx_listen_addresses": each(_listen_address, allow_empty=False),
    "nginx_server_name": _server_names,
    "nginx_root_vhost_server_name": _server_names,
    "nginx_public_host": _host_check,
    "nginx_allowed_origins": each(_allowed_origin),
    "nginx_allow": each(_allow_entry),
    "nginx_basic_auth_realm": _realm,
    "nginx_security_headers": _headers,
    "nginx_tls_certificate": _path,
    "nginx_tls_certificate_key": _path,
    "nginx_tls_client_ca": _path,
    "nginx_tls_selfsigned_dir": _path,
    "nginx_basic_auth_file": _path,
    "nginx_config_file": _path,
    # certificate names only (no NGINX config): wildcards allowed
    "nginx_tls_selfsigned_names": each(lambda v: _host_check(v[2:] if isinstance(v, str) and v.startswith("*.") else v),
                                       allow_empty=False),
    "nginx_upstream_hosts": each(lambda v: None if isinstance(v, str) and _SAFE.match(v)
                                 else "is not an inventory host name", allow_empty=False),
}


def nginx_settings_problems(settings):
    """One line per setting in `settings` (a dict of the role's variables) that cannot go into the config as it
    is, naming the variable; variables without a check are ignored."""
    if not isinstance(settings, dict):
        raise AnsibleFilterError("nginx_settings_problems: expected a dict, got %s" % type(settings).__name__)
    return problems(settings, _CHECKS)


class FilterModule(object):
    def filters(self):
        return {
            "nginx_upstreams": nginx_upstreams,
            "nginx_origins": nginx_origins,
            "nginx_settings_problems": nginx_settings_problems,
        }
