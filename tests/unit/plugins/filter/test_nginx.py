"""The nginx role's filters (upstreams, origins, settings checks) and its templates rendered with them (no NGINX
needed; tests/integration/fleet/ checks the rendered config's behaviour with real clients)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from ansible_collections.comfyops.comfyui.plugins.filter.nginx import (
    FilterModule,
    nginx_origins,
    nginx_settings_problems,
    nginx_upstreams,
)

ROLE = Path(__file__).resolve().parents[4] / "roles" / "nginx"


def instances(*ports, kind="gpu", host="127.0.0.1"):
    return [{"name": f"comfyui-{kind}{n}", "port": p, "url": f"http://{host}:{p}"} for n, p in enumerate(ports)]


def test_local_mode_uses_the_instance_urls_and_short_paths():
    out = nginx_upstreams([{"host": "gpu-01", "address": "10.0.0.5", "instances": instances(8188, 8189)}])
    assert out == [
        {"host": "gpu-01", "name": "comfyui-gpu0", "suffix": "gpu0", "server": "127.0.0.1:8188",
         "path": "/comfyui/gpu0/", "upstream": "comfyops_gpu0"},
        {"host": "gpu-01", "name": "comfyui-gpu1", "suffix": "gpu1", "server": "127.0.0.1:8189",
         "path": "/comfyui/gpu1/", "upstream": "comfyops_gpu1"},
    ]


def test_proxy_mode_reaches_hosts_at_their_address_and_paths_carry_the_host():
    hosts = [{"host": "gpu-01", "address": "10.0.0.5", "instances": instances(8188, 8189)},
             {"host": "gpu-02.lan", "address": "10.0.0.6", "instances": instances(8188, kind="cpu")}]
    out = nginx_upstreams(hosts, base_path="/ai/comfy/", local=False)
    assert [(u["server"], u["path"], u["upstream"]) for u in out] == [
        ("10.0.0.5:8188", "/ai/comfy/gpu-01/gpu0/", "comfyops_gpu_01_gpu0"),
        ("10.0.0.5:8189", "/ai/comfy/gpu-01/gpu1/", "comfyops_gpu_01_gpu1"),
        ("10.0.0.6:8188", "/ai/comfy/gpu-02.lan/cpu0/", "comfyops_gpu_02_lan_cpu0"),
    ]


def test_an_instance_bound_to_a_specific_address_is_reached_there():
    hosts = [{"host": "gpu-01", "address": "gpu-01.example", "instances": instances(8188, host="192.168.1.9")}]
    assert nginx_upstreams(hosts, local=False)[0]["server"] == "192.168.1.9:8188"
    hosts = [{"host": "gpu-01", "address": "fd00::5", "instances": instances(8188)}]
    assert nginx_upstreams(hosts, local=False)[0]["server"] == "[fd00::5]:8188"


@pytest.mark.parametrize("hosts, message", [
    ([{"host": "a b", "instances": instances(1)}], "cannot be used in a URL path"),
    ([{"host": "h", "instances": [{"name": "comfyui-gpu0"}]}], "lacks a usable name or port"),
    ([{"host": "h", "instances": instances(1) + instances(2)}], "both be served at /comfyui/gpu0/"),
    ([{"host": "h", "address": "", "instances": instances(1)}], "no address for host"),
    ("not a list", "expected a list"),
])
def test_bad_input_is_refused(hosts, message):
    with pytest.raises(AnsibleFilterError, match=message):
        nginx_upstreams(hosts, local=not (isinstance(hosts, list) and "address" in hosts[0]))


def test_filters_are_registered():
    assert FilterModule().filters() == {"nginx_upstreams": nginx_upstreams,
                                        "nginx_origins": nginx_origins, "nginx_settings_problems": nginx_settings_problems}


# A GPU host's fact file is another machine's data: nothing in it may reach the proxy config as syntax.
INJECTION = "127.0.0.1:8188; } server { listen 9999; location / { proxy_pass http://evil; } #"


@pytest.mark.parametrize("instance, field", [
    ({"url": "http://" + INJECTION}, "url"),
    ({"url": "http://127.0.0.1:8188\n}"}, "url"),
    ({"url": "http://127.0.0.1:8188/;"}, "url"),
    ({"url": "http://127.0.0.1:8188/extra/path"}, "url"),
    ({"url": "http://user@127.0.0.1:8188"}, "url"),
    ({"url": "https://127.0.0.1:8188"}, "url"),
    ({"url": "http://fd00::5:8188"}, "url"),          # IPv6 without brackets
    ({"url": "http://[fd00::5%eth0]:8188"}, "url"),  # zone ids have no place in NGINX
    ({"url": "http://[not-v6]:8188"}, "url"),
    ({"url": "http://256.1.1.1:8188"}, "url"),
    ({"url": "http://1.2.3:8188"}, "url"),            # all-digit last label: neither IPv4 nor a name
    ({"url": "http://127.0.0.1:99999"}, "url"),
    ({"url": "http://a b:8188"}, "url"),
    ({"url": ["http://127.0.0.1:8188"]}, "url"),
    ({"port": "8188; }"}, "port"),
    ({"port": 0}, "port"),
    ({"port": 65536}, "port"),
    ({"port": True}, "port"),
    ({"port": 8188.5}, "port"),
    ({"port": -1}, "port"),
])
def test_hostile_or_broken_instance_fields_are_refused_naming_host_and_field(instance, field):
    inst = {"name": "comfyui-gpu0", "port": 8188, "url": "http://127.0.0.1:8188", **instance}
    with pytest.raises(AnsibleFilterError) as err:
        nginx_upstreams([{"host": "gpu-07", "address": "10.0.0.7", "instances": [inst]}], local=False)
    message = str(err.value)
    assert "host gpu-07, instance comfyui-gpu0: %s " % field in message, message
    assert message.endswith("re-run the comfyui role on gpu-07")
    assert "\n" not in message  # control characters are shown escaped, never raw


@pytest.mark.parametrize("address", [INJECTION, "10.0.0.1\n", "10.0.0.1;", "gpu 01", "gpu-01.", "-gpu", "fd00::5%eth0",
                                     "[10.0.0.1]", "http://10.0.0.1", "a" * 64 + ".example"])
def test_hostile_upstream_address_is_refused(address):
    with pytest.raises(AnsibleFilterError, match=r"host gpu-07: its address .* \(nginx_upstream_address"):
        nginx_upstreams([{"host": "gpu-07", "address": address, "instances": instances(8188)}], local=False)


@pytest.mark.parametrize("address, server", [
    ("10.0.0.7", "10.0.0.7:8188"), ("gpu-07.lan", "gpu-07.lan:8188"), ("gpu_07", "gpu_07:8188"),
    ("fd00::7", "[fd00::7]:8188"), ("[fd00::7]", "[fd00::7]:8188"), ("FD00:0:0::7", "[fd00::7]:8188"),
])
def test_upstream_addresses_ipv4_ipv6_and_names(address, server):
    out = nginx_upstreams([{"host": "gpu-07", "address": address, "instances": instances(8188)}], local=False)
    assert out[0]["server"] == server


@pytest.mark.parametrize("url, server", [
    ("http://[fd00::9]:8188", "[fd00::9]:8188"), ("http://gpu-07.lan:8188/", "gpu-07.lan:8188"),
    ("http://192.168.1.9:8188", "192.168.1.9:8188"),
])
def test_instance_urls_ipv6_and_names(url, server):
    inst = [{"name": "comfyui-gpu0", "port": 8188, "url": url}]
    assert nginx_upstreams([{"host": "h", "address": "10.0.0.1", "instances": inst}], local=False)[0]["server"] == server


@pytest.mark.parametrize("kwargs, origins", [
    ({}, ["http://proxy.example"]),
    ({"http_port": 8080}, ["http://proxy.example:8080"]),
    ({"tls": True}, ["https://proxy.example"]),
    ({"tls": True, "https_port": 8443}, ["https://proxy.example:8443"]),
    ({"tls": True, "redirect": False}, ["https://proxy.example", "http://proxy.example"]),
    ({"tls": True, "redirect": False, "http_port": 443, "https_port": 80}, ["https://proxy.example:80",
                                                                            "http://proxy.example:443"]),
    ({"tls": True, "root_vhost": True}, ["https://proxy.example", "https://proxy.example:8080"]),
    ({"root_vhost": True, "root_vhost_port": 80, "root_vhost_server_name": "root.example *.x.example"},
     ["http://proxy.example", "http://root.example"]),
    ({"root_vhost": True, "root_vhost_port": 80, "root_vhost_server_name": "_"}, ["http://proxy.example"]),
])
def test_default_origins_are_what_a_browser_sends(kwargs, origins):
    assert nginx_origins("proxy.example", **kwargs) == origins


def test_origins_lower_case_and_bracket_the_host():
    assert nginx_origins("Proxy.Example") == ["http://proxy.example"]
    assert nginx_origins("fd00::1", tls=True) == ["https://[fd00::1]"]
    assert nginx_origins("10.0.0.5", http_port=8080) == ["http://10.0.0.5:8080"]


@pytest.mark.parametrize("host", ["proxy.example; }", "proxy\n", "", "http://proxy", "proxy.example:80"])
def test_origins_refuse_a_bad_public_host(host):
    with pytest.raises(AnsibleFilterError, match="nginx_public_host"):
        nginx_origins(host)


@pytest.mark.parametrize("kwargs, message", [
    ({"http_port": "abc"}, "nginx_http_port 'abc' is not an integer port"),
    ({"https_port": 0}, "nginx_https_port 0 is not a port between 1 and 65535"),
    ({"root_vhost_port": "8080; }"}, "nginx_root_vhost_port"),
])
def test_origins_refuse_bad_ports(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        nginx_origins("proxy.example", **kwargs)


# name, value, what the problem says (None: accepted)
SETTINGS = [
    ("nginx_http_port", 80, None), ("nginx_http_port", 70000, "between 1 and 65535"),
    ("nginx_https_port", 0, "between 1 and 65535"), ("nginx_root_vhost_port", "80x80", "must be an integer"),
    ("nginx_https_port", True, "must be an integer"),
    ("nginx_upstream_keepalive", 0, "at least 1"), ("nginx_upstream_max_fails", -1, "at least 0"),
    ("nginx_proxy_read_timeout", "1800s", None), ("nginx_proxy_read_timeout", "30m; }", "an NGINX time"),
    ("nginx_upstream_fail_timeout", "30 s", "an NGINX time"),
    ("nginx_client_max_body_size", "10G", None), ("nginx_client_max_body_size", "10GB", "a size"),
    ("nginx_prompt_rate_limit", "", None), ("nginx_prompt_rate_limit", "2r/s", None),
    ("nginx_prompt_rate_limit", "2r/h", "a rate"),
    ("nginx_base_path", "/comfyui", None), ("nginx_base_path", "/comfyui { }", "a path like /comfyui"),
    ("nginx_base_path", "/a\nb", "a path like /comfyui"),
    ("nginx_tls_ciphers", "ECDHE-RSA-AES128-GCM-SHA256:!aNULL", None), ("nginx_tls_ciphers", "A; ssl off", "cipher list"),
    ("nginx_tls_protocols", ["TLSv1.3"], None), ("nginx_tls_protocols", ["TLSv1.3;"], "is not one of"),
    ("nginx_tls_protocols", [], "must not be empty"),
    ("nginx_listen_addresses", ["0.0.0.0", "[::]", "127.0.0.1", "*", "proxy.lan"], None),
    ("nginx_listen_addresses", ["::"], "without brackets: write [::]"),
    ("nginx_listen_addresses", ["0.0.0.0:80"], "is not an IPv4"), ("nginx_listen_addresses", [], "must not be empty"),
    ("nginx_listen_addresses", "0.0.0.0", "must be a list"),
    ("nginx_server_name", "_", None), ("nginx_server_name", "comfy.example.com *.comfy.example.com .x.example www.*", None),
    ("nginx_server_name", "comfy.example.com; return 200", "'comfy.example.com;'"),
    ("nginx_server_name", "~^(?<x>.+)$", "regular-expression names are not supported"),
    ("nginx_server_name", "a\nb", "control characters"), ("nginx_root_vhost_server_name", "", "one or more names"),
    ("nginx_public_host", "comfy.example.com", None), ("nginx_public_host", "fd00::1", None),
    ("nginx_public_host", "comfy.example.com/x", "is not an IPv4"),
    ("nginx_allowed_origins", ["https://comfy.example.com", "http://10.0.0.5:8080", "http://[fd00::1]"], None),
    ("nginx_allowed_origins", [], None),
    ("nginx_allowed_origins", ["https://comfy.example.com/"], "write https://comfy.example.com"),
    ("nginx_allowed_origins", ["https://comfy.example.com:443"], "write https://comfy.example.com"),
    ("nginx_allowed_origins", ["HTTPS://Comfy.Example.com"], "write https://comfy.example.com"),
    ("nginx_allowed_origins", ["comfy.example.com"], "is not scheme://host[:port]"),
    ("nginx_allowed_origins", ["*"], "is not scheme://host[:port]"),
    ("nginx_allowed_origins", ["null"], "is not scheme://host[:port]"),
    ("nginx_allowed_origins", ['https://a.example" 1; default 1; "'], "has a host or port that is not"),
    ("nginx_allowed_origins", ["https://a.example\n"], "has a host or port that is not"),
    ("nginx_allowed_origins", ["https://a.example/comfyui/"], "is not scheme://host[:port]"),
    ("nginx_allowed_origins", ["https://a.example:99999"], "host or port"),
    ("nginx_allowed_origins", ["ftp://a.example"], "is not scheme://host[:port]"),
    ("nginx_allow", ["10.0.0.0/8", "192.0.2.7", "fd00::/8"], None),
    ("nginx_allow", ["all"], "is not an IPv4/IPv6 address or CIDR"),
    ("nginx_allow", ["0.0.0.0/0"], "allows every client"), ("nginx_allow", ["::/0"], "allows every client"),
    ("nginx_allow", ["10.0.0.0/8; allow all"], "is not an IPv4/IPv6"),
    ("nginx_basic_auth_realm", "ComfyUI", None), ("nginx_basic_auth_realm", "off", "would switch basic auth off"),
    ("nginx_basic_auth_realm", "OFF", "would switch basic auth off"),
    ("nginx_basic_auth_realm", 'x"; auth_basic off; #', 'must not contain "'),
    ("nginx_basic_auth_realm", "x\ny", "control characters"),
    ("nginx_security_headers", {"X-Frame-Options": "DENY"}, None),
    ("nginx_security_headers", {"X-A": 'v" always; add_header X "y'}, 'value for X-A that must not contain "'),
    ("nginx_security_headers", {"X-A": "v\r\nSet-Cookie: a=b"}, "control characters"),
    ("nginx_security_headers", {"X A": "v"}, "header name 'X A'"),
    ("nginx_security_headers", ["X-A"], "must be a dict"),
    ("nginx_tls_certificate", "", None), ("nginx_tls_certificate", "/etc/ssl/a.pem", None),
    ("nginx_tls_certificate", "/etc/ssl/a.pem; ssl off", "absolute path"),
    ("nginx_tls_client_ca", "relative/ca.pem", "absolute path"),
    ("nginx_basic_auth_file", "/etc/nginx/a b", "absolute path"),
    ("nginx_tls_selfsigned_dir", "/etc/ssl/x\n", "absolute path"),
    ("nginx_tls_selfsigned_names", ["fleet-gpu0", "127.0.0.1", "fd00::1", "*.comfy.example.com"], None),
    ("nginx_tls_selfsigned_names", ["*"], "is not an IPv4"), ("nginx_tls_selfsigned_names", [], "must not be empty"),
    ("nginx_tls_selfsigned_names", ["a\nb"], "is not an IPv4"),
    ("nginx_upstream_hosts", ["gpu-01", "gpu-02.lan"], None), ("nginx_upstream_hosts", ["gpu 01"], "inventory host"),
    ("nginx_not_checked", "anything; }", None),
]


@pytest.mark.parametrize("name, value, problem", SETTINGS)
def test_settings_problems(name, value, problem):
    out = nginx_settings_problems({name: value})
    if problem is None:
        assert out == []
    else:
        assert len(out) == 1 and out[0].startswith(name) and problem in out[0], out
        assert "\n" not in out[0] and "\r" not in out[0]


def test_settings_problems_reports_every_bad_setting():
    out = nginx_settings_problems({"nginx_http_port": 0, "nginx_https_port": 443, "nginx_allow": ["all"]})
    assert [line.split()[0] for line in out] == ["nginx_http_port=0", "nginx_allow"]
    with pytest.raises(AnsibleFilterError, match="expected a dict"):
        nginx_settings_problems(["nginx_http_port"])


def test_the_role_defaults_pass_the_checks():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values = {k: v for k, v in defaults.items() if not (isinstance(v, str) and "{{" in v)}
    values.update(nginx_public_host="gpu-01", nginx_tls_selfsigned_names=["gpu-01"], nginx_upstream_hosts=["gpu-01"],
                  nginx_allowed_origins=nginx_origins("gpu-01"))
    assert nginx_settings_problems(values) == []


# Rendering: the role's defaults plus a few facts, with Ansible's filters that the templates use.
def render(template, **overrides):
    env = Environment(loader=FileSystemLoader(str(ROLE / "templates")), undefined=StrictUndefined,
                      trim_blocks=True, keep_trailing_newline=True)
    env.filters["urlsplit"] = lambda url, part: __import__("urllib.parse").parse.urlsplit(url).hostname
    # the role converts -e strings ("false", "8080") with | bool and | int, as Ansible does
    env.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).strip().lower() in ("yes", "on", "1", "true")
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values = {k: v for k, v in defaults.items() if not (isinstance(v, str) and "{{" in v)}
    values.update(yaml.safe_load((ROLE / "vars" / "main.yml").read_text()))
    values.update(ansible_managed="managed", ansible_facts={"architecture": "x86_64"}, nginx_basic_auth=False,
                  nginx_org_repo_url="https://nginx.org/packages/debian", nginx_org_repo_suite="trixie",
                  _nginx_base_path="/comfyui", _nginx_main_ports=[80],
                  _nginx_upstreams=nginx_upstreams([{"host": "h", "instances": instances(8188, 8189)}]),
                  nginx_allowed_origins=["http://h"])
    values.update(overrides)
    return env.get_template(template).render(**values)


def test_site_has_the_comfyui_locations_and_proxy_settings():
    conf = render("comfyops-comfyui.conf.j2")
    for line in ["hash $remote_addr consistent;", "server 127.0.0.1:8188 max_fails=3 fail_timeout=30s;",
                 "location /comfyui/ {", "proxy_pass http://comfyops_comfyui/;", "location /comfyui/gpu1/ {",
                 "proxy_pass http://comfyops_gpu1/;", "return 301 /comfyui/;", "proxy_read_timeout 1800s;",
                 "proxy_send_timeout 1800s;", "proxy_connect_timeout 60s;", "client_max_body_size 10G;",
                 "proxy_set_header Host $host;", "proxy_set_header X-Forwarded-Proto $scheme;",
                 "listen 0.0.0.0:80 default_server;", "listen [::]:80 default_server;", "server_tokens off;"]:
        assert line in conf, line
    assert "ssl" not in conf and "auth_basic" not in conf and "limit_req" not in conf
    assert conf.count("{") == conf.count("}")


def server_blocks(conf):
    """The text of each top-level server block."""
    return ["server {" + part.split("\n}\n", 1)[0] for part in conf.split("\nserver {")[1:]]


def test_origin_maps_allow_the_listed_origins_and_requests_without_one():
    conf = render("comfyops-comfyui.conf.j2",
                  nginx_allowed_origins=["https://comfy.example.com", "http://10.0.0.5:8080", "https://comfy.example.com"])
    origin_map = conf.split("map $http_origin $comfyops_origin_allowed {")[1].split("}")[0]
    assert [line.split() for line in origin_map.strip().splitlines()] == [
        ["default", "0;"], ['""', "1;"], ['"https://comfy.example.com"', "1;"], ['"http://10.0.0.5:8080"', "1;"]]
    method_map = conf.split('map "$request_method:$http_upgrade" $comfyops_origin_required {')[1].split("}")[0]
    # only plain GET/HEAD/OPTIONS (no Upgrade header) are exempt; every other method and every upgrade needs it
    assert [line.split() for line in method_map.strip().splitlines()] == [
        ["default", "1;"], ["GET:", "0;"], ["HEAD:", "0;"], ["OPTIONS:", "0;"]]
    assert 'map "$comfyops_origin_required$comfyops_origin_allowed" $comfyops_cross_site {' in conf
    assert "    10      1;" in conf.split("$comfyops_cross_site {")[1].split("}")[0]


def test_every_comfyui_server_refuses_cross_site_before_auth_and_proxying():
    conf = render("comfyops-comfyui.conf.j2", nginx_tls_mode="provided", _nginx_tls_certificate="/c.pem",
                  _nginx_tls_certificate_key="/k.pem", nginx_basic_auth=True, nginx_root_vhost=True,
                  _nginx_main_ports=[80, 443], __nginx_tls_cert_stat={"stat": {"checksum": "abc"}})
    redirect, main, root = server_blocks(conf)
    assert "return 301 https://" in redirect and "comfyops_cross_site" not in redirect
    for block in (main, root):
        check = block.index("if ($comfyops_cross_site) {\n        return 403;\n    }")
        assert check < block.index("auth_basic ") < block.index("location ")


def test_security_headers_on_every_answer_replacing_comfyuis_own():
    conf = render("comfyops-comfyui.conf.j2")
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["nginx_security_headers"]
    assert {"X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy", "Referrer-Policy",
            "Permissions-Policy", "Cross-Origin-Opener-Policy"} <= set(defaults)
    # no script policy: ComfyUI's frontend and custom node UIs rely on inline and dynamic code
    assert defaults["Content-Security-Policy"] == "frame-ancestors 'self'"
    for name, value in defaults.items():
        assert f'add_header {name} "{value}" always;' in conf
        assert f"proxy_hide_header {name};" in conf


def test_client_certificates_also_refuse_the_plain_http_listener():
    conf = render("comfyops-comfyui.conf.j2", nginx_tls_mode="selfsigned", _nginx_tls_certificate="/c.pem",
                  _nginx_tls_certificate_key="/k.pem", nginx_tls_redirect=False, nginx_tls_client_ca="/etc/ssl/ca.pem",
                  _nginx_main_ports=[80, 443], __nginx_tls_cert_stat={"stat": {"checksum": "abc"}})
    (main,) = server_blocks(conf)
    assert "listen 0.0.0.0:80 default_server;" in main and "listen 0.0.0.0:443 ssl default_server;" in main
    for line in ["ssl_client_certificate /etc/ssl/ca.pem;", "ssl_verify_client on;",
                 "if ($ssl_client_verify != SUCCESS) {\n        return 403;"]:
        assert line in main, line
    assert "ssl_verify_client" not in render("comfyops-comfyui.conf.j2")


def test_site_with_tls_redirect_auth_rate_limit_root_vhost_and_extra_directives():
    conf = render("comfyops-comfyui.conf.j2", nginx_tls_mode="provided", _nginx_tls_certificate="/c.pem",
                  _nginx_tls_certificate_key="/k.pem", nginx_hsts=True, nginx_basic_auth=True, nginx_allow=["10.0.0.0/8"],
                  nginx_prompt_rate_limit="2r/s", nginx_root_vhost=True, _nginx_main_ports=[80, 443],
                  nginx_extra_directives=["gzip off;"], __nginx_tls_cert_stat={"stat": {"checksum": "abc"}})
    for line in ["return 301 https://$host$request_uri;", "listen 0.0.0.0:443 ssl default_server;",
                 "ssl_certificate /c.pem;", "Strict-Transport-Security", "auth_basic_user_file /etc/nginx/comfyops.htpasswd;",
                 "allow 10.0.0.0/8;", "deny all;", "limit_req_zone $comfyops_prompt_limit_key zone=comfyops_prompt:10m rate=2r/s;",
                 '"~^POST:.*/prompt$" $binary_remote_addr;', "listen 0.0.0.0:8080 ssl default_server;",
                 "proxy_pass http://comfyops_comfyui;", "gzip off;"]:
        assert line in conf, line
    # The redirect server serves no ComfyUI location.
    redirect = conf.split("server {")[1]
    assert "location" not in redirect and "listen 0.0.0.0:443" not in redirect


def test_nginx_org_source_is_deb822_with_signed_by():
    source = render("nginx-org.sources.j2")
    assert "URIs: https://nginx.org/packages/debian\nSuites: trixie\nComponents: nginx\nArchitectures: amd64\n" in source
    assert "Signed-By: /etc/apt/keyrings/nginx-org.asc" in source
    assert 'Pin: origin "nginx.org"' in render("nginx-org.pref.j2")


def test_numbers_from_the_command_line_are_fine():
    # -e nginx_http_port=8080 passes a string
    assert nginx_settings_problems({"nginx_http_port": "8080", "nginx_upstream_keepalive": " 32 "}) == []
