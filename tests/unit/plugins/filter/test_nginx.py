"""The nginx_upstreams filter, and the nginx role's templates rendered with it (no NGINX needed)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from ansible_collections.comfyops.comfyui.plugins.filter.nginx import FilterModule, nginx_upstreams

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


def test_filter_is_registered():
    assert FilterModule().filters()["nginx_upstreams"] is nginx_upstreams


# Rendering: the role's defaults plus a few facts, with Ansible's filters that the templates use.
def render(template, **overrides):
    env = Environment(loader=FileSystemLoader(str(ROLE / "templates")), undefined=StrictUndefined,
                      trim_blocks=True, keep_trailing_newline=True)
    env.filters["urlsplit"] = lambda url, part: __import__("urllib.parse").parse.urlsplit(url).hostname
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values = {k: v for k, v in defaults.items() if not (isinstance(v, str) and "{{" in v)}
    values.update(yaml.safe_load((ROLE / "vars" / "main.yml").read_text()))
    values.update(ansible_managed="managed", ansible_facts={"architecture": "x86_64"}, nginx_basic_auth=False,
                  nginx_org_repo_url="https://nginx.org/packages/debian", nginx_org_repo_suite="trixie",
                  _nginx_base_path="/comfyui", _nginx_main_ports=[80],
                  _nginx_upstreams=nginx_upstreams([{"host": "h", "instances": instances(8188, 8189)}]))
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
