"""The nginx site's exporter block: <base>/health, /ready, /metrics and <base>/<instance>/ready, only for
nginx_metrics_allow; from a separate proxy per host, and <base>/ready asking the next host while one answers 503."""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "filter"))
from test_nginx import instances, nginx_upstreams, render  # noqa: E402

LOCAL = [{"host": "h", "server": "127.0.0.1:9188", "prefix": "/comfyui", "upstream": "comfyops_exporter"}]
REMOTE = [{"host": "gpu-a", "server": "10.0.0.5:9188", "prefix": "/comfyui/gpu-a", "upstream": "comfyops_exporter_gpu_a"},
          {"host": "gpu-b", "server": "10.0.0.6:9188", "prefix": "/comfyui/gpu-b", "upstream": "comfyops_exporter_gpu_b"}]


def locations(conf):
    """{path: body} of every exact-match location."""
    return {m.group(1): m.group(2) for m in re.finditer(r"location = (\S+) \{\n(.*?)\n    \}", conf, re.S)}


def directives(body):
    return [line.strip() for line in body.splitlines() if line.strip()]


GUARD = ["allow 127.0.0.1;", "allow ::1;", "deny all;", "auth_basic off;", "proxy_connect_timeout 5s;",
         "proxy_read_timeout 10s;"]


def test_local_mode_serves_the_exporter_under_the_base_path():
    conf = render("comfyops-comfyui.conf.j2", _nginx_local=True, _nginx_exporters=LOCAL)
    assert "upstream comfyops_exporter {\n    server 127.0.0.1:9188 max_fails=0;\n    keepalive 4;\n}" in conf
    found = locations(conf)
    for name in ("health", "ready", "metrics"):
        assert directives(found["/comfyui/" + name]) == GUARD + ["proxy_pass http://comfyops_exporter/%s;" % name]
    for gpu in ("gpu0", "gpu1"):
        assert directives(found["/comfyui/%s/ready" % gpu]) == GUARD + [
            "proxy_pass http://comfyops_exporter/ready/comfyui-%s;" % gpu]
    assert "comfyops_exporters" not in conf  # one host: no aggregate
    assert conf.count("{") == conf.count("}")
    # inside the server block, after the instances' own locations
    assert conf.index("location /comfyui/gpu1/ {") < conf.index("location = /comfyui/health {") < conf.rindex("}")


def test_allow_list_and_basic_auth_follow_the_variables():
    conf = render("comfyops-comfyui.conf.j2", _nginx_local=True, _nginx_exporters=LOCAL, nginx_metrics_allow=[],
                  nginx_metrics_basic_auth=True)
    assert directives(locations(conf)["/comfyui/metrics"]) == [
        "proxy_connect_timeout 5s;", "proxy_read_timeout 10s;", "proxy_pass http://comfyops_exporter/metrics;"]
    conf = render("comfyops-comfyui.conf.j2", _nginx_local=True, _nginx_exporters=LOCAL,
                  nginx_metrics_allow=["10.1.0.0/16"])
    assert directives(locations(conf)["/comfyui/ready"])[:3] == ["allow 10.1.0.0/16;", "deny all;", "auth_basic off;"]


def test_separate_proxy_serves_each_host_and_any_ready_host_at_the_base():
    upstreams = nginx_upstreams([{"host": "gpu-a", "address": "10.0.0.5", "instances": instances(8188, 8189)},
                                 {"host": "gpu-b", "address": "10.0.0.6", "instances": instances(8188)}], local=False)
    conf = render("comfyops-comfyui.conf.j2", _nginx_local=False, _nginx_exporters=REMOTE, _nginx_upstreams=upstreams)
    found = locations(conf)
    assert directives(found["/comfyui/gpu-b/metrics"])[-1] == "proxy_pass http://comfyops_exporter_gpu_b/metrics;"
    assert directives(found["/comfyui/gpu-a/gpu1/ready"])[-1] == "proxy_pass http://comfyops_exporter_gpu_a/ready/comfyui-gpu1;"
    assert directives(found["/comfyui/gpu-b/gpu0/ready"])[-1] == "proxy_pass http://comfyops_exporter_gpu_b/ready/comfyui-gpu0;"
    assert "/comfyui/gpu-b/gpu1/ready" not in found
    assert directives(found["/comfyui/ready"])[-2:] == [
        "proxy_next_upstream error timeout http_503;", "proxy_pass http://comfyops_exporters/ready;"]
    aggregate = re.search(r"upstream comfyops_exporters \{\n(.*?)\n\}", conf, re.S).group(1)
    assert [line.split("#")[0].strip() for line in aggregate.splitlines()] == [
        "server 10.0.0.5:9188 max_fails=0;", "server 10.0.0.6:9188 max_fails=0;"]
    assert "/comfyui/health" not in found and "/comfyui/metrics" not in found  # per host only
    assert conf.count("{") == conf.count("}")


def test_no_exporter_no_block():
    conf = render("comfyops-comfyui.conf.j2", _nginx_exporters=[])
    assert "upstream comfyops_exporter" not in conf and "comfyops_exporters" not in conf
    assert not [p for p in locations(conf) if p.endswith(("/health", "/ready", "/metrics"))]
