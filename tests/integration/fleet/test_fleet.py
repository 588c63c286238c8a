"""Verify the fleet deployed by playbooks/site.yml: two GPU hosts and a separate proxy on the rig's private network.

What a user of the fleet sees end to end: a prompt through the separate proxy lands on the GPU host its path
names and writes the output file there, and the status playbook shows every host, instance and proxy path.
(test_nginx.py and test_nginx_staging.py check the proxies themselves.)
"""
import json
import subprocess

import pytest
from nginx_support import AUTH, INVENTORY, PROXY_PATHS, TESTS, host

GPU_HOSTS = {"fleet-gpu0": ["comfyui-cpu0", "comfyui-cpu1"], "fleet-gpu1": ["comfyui-cpu0"]}
PROXY = host("fleet-proxy")


def test_site_put_the_stack_where_the_groups_say():
    for name, instances in GPU_HOSTS.items():
        h = host(name)
        assert h.run("docker compose version").rc == 0
        running = h.check_output("docker ps --format '{{.Names}}' --filter name=comfyui-").split()
        assert sorted(running) == instances
        state = json.loads(h.file("/etc/ansible/facts.d/comfyops.fact").content_string)
        assert [i["name"] for i in state["comfyui"]["instances"]] == instances
    # the proxy-only host gets NGINX and nothing of the GPU hosts' stack
    assert PROXY.service("nginx").is_running
    assert not PROXY.exists("docker") and not PROXY.file("/opt/comfyops/comfyui").exists
    assert "nginx" not in json.loads(host("fleet-gpu1").file("/etc/ansible/facts.d/comfyops.fact").content_string)


@pytest.mark.parametrize("gpu_host", sorted(GPU_HOSTS))
def test_prompt_through_the_separate_proxy_writes_the_output_on_its_gpu_host(gpu_host):
    prefix = f"fleet_{gpu_host.replace('-', '_')}"
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 77}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}
    # Run on the proxy host, which trusts the provided certificate: validate_certs stays on.
    args = json.dumps({"url": f"https://fleet-proxy/comfyui/{gpu_host}/cpu0/", "workflow": graph,
                       "dest": f"/root/outputs/{gpu_host}", "url_username": AUTH[0], "url_password": AUTH[1],
                       "job_timeout": 120})
    res = subprocess.run(["ansible", "-i", INVENTORY, "fleet-proxy", "-m", "comfyops.comfyui.comfyui_workflow",
                          "-a", args], check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "progress_via: websocket" in res.stdout, res.stdout
    assert AUTH[1] not in res.stdout
    saved = host(gpu_host).check_output("ls /srv/comfyui/output").split()
    assert any(f.startswith(prefix) and f.endswith(".png") for f in saved), saved
    fetched = PROXY.check_output(f"ls /root/outputs/{gpu_host}").split()
    assert len(fetched) == 1 and PROXY.file(f"/root/outputs/{gpu_host}/{fetched[0]}").size > 0


def test_status_playbook_shows_every_host_instance_and_proxy_path():
    res = subprocess.run(["ansible-playbook", "-i", INVENTORY, str(TESTS.parent / "playbooks" / "status.yml"),
                          "-e", json.dumps({"status_url_username": AUTH[0], "status_url_password": AUTH[1],
                                            "status_validate_certs": False})],
                         check=False, capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    flat = " ".join(out.split())  # the YAML callback folds long lines at spaces
    # each instance with its own URL and the proxy URL that reaches it (fleet-gpu0's own NGINX, fleet-gpu1's via
    # the separate proxy)
    for n, name in enumerate(GPU_HOSTS["fleet-gpu0"]):
        assert f"{name} http://127.0.0.1:{8188 + n} https://fleet-gpu0/comfyui/cpu{n}/ healthy" in flat, out
    assert "comfyui-cpu0 http://127.0.0.1:8188 https://fleet-proxy/comfyui/fleet-gpu1/cpu0/ healthy" in flat, out
    for path in [""] + PROXY_PATHS:
        assert f"https://fleet-proxy/comfyui/{path} healthy" in flat, out
    assert "UNHEALTHY" not in flat and AUTH[1] not in out
