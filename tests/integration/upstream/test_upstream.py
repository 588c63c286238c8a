"""Verify the whole stack deployed by comfyops.comfyui.site from the installed collection (molecule scenario default).

One host: two CPU ComfyUI instances behind NGINX (self-signed TLS, basic auth). Checks what a user and an
automation client see through the proxy, a prompt run end to end through it, and the operator playbooks.
"""
import json
import os
import re
import subprocess
from pathlib import Path

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
ROOT = Path(__file__).resolve().parents[3]
AUTH = "operator:upstream scenario secret"
PROXY = "https://127.0.0.1/comfyui/"
INSTANCES = ["comfyui-cpu0", "comfyui-cpu1"]


def curl(host, url):
    """'<status> <content type>' of a GET through the proxy with the scenario's credentials."""
    return host.run("curl -sk -u %s -o /dev/null -w '%%{http_code} %%{content_type}' %s", AUTH, url).stdout


def playbook(name, *args):
    cmd = ["ansible-playbook", "-i", INVENTORY, "comfyops.comfyui." + name, *args]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    return res.returncode, res.stdout + res.stderr


# Every test takes `host`: testinfra parametrizes it per module, and pytest would otherwise run the tests without
# it after the others (after test_remove_playbook_keeps_data, which takes the stack down).
def test_site_ran_from_the_installed_tarball(host):
    installed = Path(os.environ["ANSIBLE_COLLECTIONS_PATH"]) / "ansible_collections/comfyops/comfyui"
    assert (installed / "MANIFEST.json").is_file() and not installed.is_symlink()
    assert (installed / "playbooks/site.yml").is_file() and not (installed / ".venv").exists()


def test_ui_and_api_through_the_proxy(host):
    assert curl(host, PROXY).startswith("200 text/html")
    stats = json.loads(host.check_output("curl -sk -u %s %ssystem_stats", AUTH, PROXY))
    assert stats["system"]["comfyui_version"] == "0.28.0"
    for n in (0, 1):
        assert curl(host, f"{PROXY}cpu{n}/object_info/LTXFloatToInt").startswith("200 application/json")
    # basic auth on (TLS + a non-loopback listener), and plain HTTP redirects to HTTPS
    assert host.check_output("curl -sk -o /dev/null -w '%%{http_code}' %s", PROXY) == "401"
    assert host.check_output("curl -s -o /dev/null -w '%%{http_code}' %s", "http://127.0.0.1/comfyui/") in ("301", "308")


def test_a_prompt_runs_through_the_proxy(host):
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 4242}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "upstream_scenario"}}}
    args = json.dumps({"url": PROXY, "workflow": graph, "dest": "/root/outputs", "url_username": "operator",
                       "url_password": "upstream scenario secret", "validate_certs": False, "job_timeout": 120})
    res = subprocess.run(["ansible", "-i", INVENTORY, "upstream-debian13", "-m", "comfyops.comfyui.comfyui_workflow",
                          "-a", args], check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "progress_via: websocket" in res.stdout, res.stdout  # /ws upgraded through NGINX
    assert "upstream scenario secret" not in res.stdout
    outputs = host.check_output("ls /srv/comfyui/output").split()
    assert any(name.startswith("upstream_scenario") and name.endswith(".png") for name in outputs), outputs
    assert host.check_output("ls /root/outputs").endswith(".png")


def test_ten_concurrent_runs_through_the_proxy_lose_nothing(host):
    res = subprocess.run(["ansible-playbook", "-i", INVENTORY, str(Path(__file__).parent / "concurrent.yml")],
                         check=False, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    statuses, paths = (json.loads(line) for line in host.file("/root/concurrent/results.txt").content_string.splitlines())
    assert statuses == ["success"] * 10
    for n, files in enumerate(paths):
        assert len(files) == 1 and files[0].startswith(f"/root/concurrent/{n}/concurrent_{n}_"), files
        assert host.file(files[0]).size > 0
    saved = host.check_output("ls /srv/comfyui/output").split()
    assert sorted(int(f.split("_")[1]) for f in saved if f.startswith("concurrent_")) == list(range(10))


def test_state_records_the_endpoints(host):
    state = json.loads(host.file("/etc/ansible/facts.d/comfyops.fact").content_string)
    assert [i["name"] for i in state["comfyui"]["instances"]] == INSTANCES
    assert state["nginx"]["url"] == "https://upstream-debian13/comfyui/"
    assert [i["url"] for i in state["nginx"]["instances"]] == [
        "https://upstream-debian13/comfyui/cpu0/", "https://upstream-debian13/comfyui/cpu1/"]
    assert host.file("/etc/ansible/facts.d/comfyops.fact").mode == 0o644
    assert "upstream scenario secret" not in host.file("/etc/ansible/facts.d/comfyops.fact").content_string


def test_status_playbook_shows_a_table(host):
    rc, out = playbook("status", "-e", "status_url_username=operator",
                       "-e", "status_url_password='upstream scenario secret'", "-e", "status_validate_certs=false")
    assert rc == 0, out
    flat = " ".join(out.split())  # the YAML callback folds long lines at spaces
    for n, name in enumerate(INSTANCES):
        assert f"{name} http://127.0.0.1:{8188 + n} https://upstream-debian13/comfyui/cpu{n}/ healthy" in flat, out
    assert "node pack ComfyUI-LTXVideo" in flat
    assert "https://upstream-debian13/comfyui/ healthy" in flat and "UNHEALTHY" not in flat, out


def started(host, name):
    return host.check_output("docker inspect -f '{{.State.StartedAt}}' %s", name)


def test_site_verify_tag_checks_the_running_stack_without_converging(host):
    before = {n: started(host, n) for n in INSTANCES}
    rc, out = playbook("site", "--tags", "verify")
    assert rc == 0, out
    assert "TASK [Check every instance directly]" in out and "TASK [Check the proxy paths]" in out, out
    # of the roles only Ansible's argument validation runs (it is tagged `always`), and nothing changes
    role_tasks = re.findall(r"TASK \[(comfyops\.comfyui\.\w+ : [^\]]+)\]", out)
    assert role_tasks and all(" : Validating arguments against arg spec " in t for t in role_tasks), role_tasks
    assert re.search(r"upstream-debian13 +: ok=\d+ +changed=0 ", out), out
    assert {n: started(host, n) for n in INSTANCES} == before
    # an instance that is down fails the check, by name
    host.check_output("docker stop -t 5 comfyui-cpu1")
    try:
        rc, out = playbook("site", "--tags", "verify", "-e", "comfyops_verify_timeout=3")
        assert rc != 0 and "comfyui-cpu1" in out, out
    finally:
        host.check_output("docker start comfyui-cpu1")
    rc, out = playbook("site", "--tags", "verify")
    assert rc == 0, out


def test_restart_playbook_restarts_only_the_named_instance(host):
    before = {n: started(host, n) for n in INSTANCES}
    rc, out = playbook("restart", "-e", json.dumps({"comfyui_restart_instances": ["comfyui-cpu1"]}))
    assert rc == 0, out
    assert started(host, "comfyui-cpu0") == before["comfyui-cpu0"]
    assert started(host, "comfyui-cpu1") != before["comfyui-cpu1"]
    rc, out = playbook("restart", "-e", json.dumps({"comfyui_restart_instances": ["comfyui-gpu7"]}))
    assert rc != 0 and "unknown instance(s) comfyui-gpu7" in out


def test_remove_playbook_keeps_data(host):
    # last: it takes the stack down
    rc, out = playbook("remove")
    assert rc == 0, out
    assert host.check_output("docker ps -aq --filter name=comfyui-") == ""
    assert not host.file("/opt/comfyops/comfyui").exists
    assert host.file("/srv/comfyui/models").is_directory and host.file("/srv/comfyui/.comfyops/packs/ComfyUI-LTXVideo").is_directory
    state = json.loads(host.file("/etc/ansible/facts.d/comfyops.fact").content_string)
    assert "comfyui" not in state and "nginx" in state
