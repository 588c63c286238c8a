"""The real upstream set as site.yml deployed it (molecule scenario upstream): ComfyUI v0.28.0, ComfyUI-LTXVideo
upstream-aceeae96 with its requirements, Manager v4 offline, two CPU instances behind NGINX (TLS + basic auth).

Figures for the closing note (ComfyUI start time, image size) go to tests/output/upstream-figures.json.
"""
import json
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
ROOT = Path(__file__).resolve().parents[3]
HOST = "upstream-debian13"
AUTH = "operator:upstream scenario secret"
PROXY = "https://127.0.0.1/comfyui/"
INSTANCES = {"comfyui-cpu0": 8188, "comfyui-cpu1": 8189}
FIGURES = ROOT / "tests" / "output" / "upstream-figures.json"


def get_json(host, url):
    return json.loads(host.check_output("curl -sf %s", url))


def figure(name, value):
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[name] = value
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def playbook(name, *args, timeout=900):
    cmd = ["ansible-playbook", "-i", INVENTORY, "comfyops.comfyui." + name, *args]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    return res.returncode, res.stdout + res.stderr


def test_every_instance_lists_the_ltxvideo_classes_and_the_manager_answers(host):
    for name, port in INSTANCES.items():
        info = get_json(host, "http://127.0.0.1:%d/object_info" % port)
        ltx = [c for c, v in info.items() if v.get("python_module") == "custom_nodes.ComfyUI-LTXVideo"]
        assert len(ltx) >= 78, (name, len(ltx))
        for cls in ("LTXVBaseSampler", "LTXVGemmaCLIPModelLoader", "LTXFloatToInt", "Set VAE Decoder Noise", "ComfyOpsSleep"):
            assert cls in info, (name, cls)
        assert get_json(host, "http://127.0.0.1:%d/system_stats" % port)["system"]["comfyui_version"] == "0.28.0"
        version = host.check_output("curl -sf http://127.0.0.1:%s/v2/manager/version", str(port))
        assert version.startswith("V4."), version
    figure("classes_per_instance", len(info))
    figure("ltxvideo_classes", len(ltx))


def test_the_containers_run_unprivileged_with_the_packs_read_only(host):
    for name in INSTANCES:
        assert host.check_output("docker exec %s id -u", name) == "10001"
        data = json.loads(host.check_output("docker inspect %s", name))[0]
        assert data["HostConfig"]["CapDrop"] == ["ALL"] and "no-new-privileges:true" in data["HostConfig"]["SecurityOpt"]
        packs = [m for m in data["Mounts"] if "/custom_nodes/" in m["Destination"]]
        assert {m["Destination"].rsplit("/", 1)[1] for m in packs} == {"ComfyUI-LTXVideo", "comfyops_sleep_node"}
        assert all(not m["RW"] and m["Source"].startswith("/srv/comfyui/.comfyops/packs/") for m in packs)
        # nothing a container writes reaches the pack checkouts host root runs git in
        res = host.run("docker exec %s touch /opt/comfyui/custom_nodes/ComfyUI-LTXVideo/planted", name)
        assert res.rc != 0 and "Read-only file system" in res.stderr


def test_the_tiny_workflow_runs_on_each_instance_through_the_proxy_with_websocket_progress(host):
    for n, name in enumerate(INSTANCES):
        image = {"width": 32, "height": 32, "batch_size": 1, "color": 777 + n}
        graph = {"1": {"class_type": "EmptyImage", "inputs": image},
                 "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "real_%s" % name}}}
        args = json.dumps({"url": "%scpu%d/" % (PROXY, n), "workflow": graph, "dest": "/root/real/%s" % name,
                           "url_username": "operator", "url_password": "upstream scenario secret",
                           "validate_certs": False, "job_timeout": 120})
        res = subprocess.run(["ansible", "-i", INVENTORY, HOST, "-m", "comfyops.comfyui.comfyui_workflow", "-a", args],
                             check=False, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "progress_via: websocket" in res.stdout, res.stdout
        assert host.check_output("ls /root/real/%s", name).endswith(".png")


def test_smoke_playbook_passes_and_goes_through_the_proxy(host):
    host.check_output("truncate -s 0 /var/log/nginx/access.log")
    rc, out = playbook("smoke", "-e", "smoke_url_username=operator", "-e", "smoke_url_password='upstream scenario secret'",
                       "-e", "smoke_validate_certs=false")
    assert rc == 0, out
    log = host.file("/var/log/nginx/access.log").content_string
    for n in range(len(INSTANCES)):
        assert re.search(r'"POST /comfyui/cpu%d/prompt HTTP/1.1" 200' % n, log), log
    assert "upstream scenario secret" not in out


def test_the_ltx2_workflow_validates_against_the_real_server(host):
    workflow = json.loads((ROOT / "playbooks/files/workflows/ltx2_t2v.json").read_text())
    body = json.dumps({"prompt": workflow}).replace("'", "'\\''")
    res = host.run("curl -s -o /root/ltx2_answer.json -w '%%{http_code}' -H 'Content-Type: application/json' "
                   "-d '%s' http://127.0.0.1:8188/prompt" % body)
    assert res.stdout == "400", res.stdout
    answer = json.loads(host.file("/root/ltx2_answer.json").content_string)
    errors = [e for node in answer["node_errors"].values() for e in node["errors"]]
    assert errors, answer
    # only the model files that are not there: every class and input name exists in the real server
    assert {e["type"] for e in errors} == {"value_not_in_list"}, errors
    assert all(".safetensors" in json.dumps(e) for e in errors), errors


def test_the_idempotence_run_restarted_nothing(host):
    recorded = dict(line.split() for line in host.file("/root/started_at.txt").content_string.splitlines())
    for name in INSTANCES:
        assert host.check_output("docker inspect -f '{{.State.StartedAt}}' %s", name) == recorded["/" + name]


def test_manager_offline_leaves_no_fetch_errors_in_the_logs(host):
    for name in INSTANCES:
        logs = host.run("docker logs %s", name)
        text = logs.stdout + logs.stderr
        assert "[ComfyUI-Manager] network_mode: offline" in text
        for sign in ("Cannot connect", "ClientConnectorDNSError", "Name or service not known", "FETCH DATA from: https"):
            assert sign not in text, (name, sign)
    assert "network_mode = offline" in host.file("/opt/comfyops/comfyui/manager-config.ini").content_string


def test_start_time_and_image_size_are_recorded(host):
    # ComfyUI's own start: container start to "To see the GUI go to" in its log
    for name in INSTANCES:
        started = host.check_output("docker inspect -f '{{.State.StartedAt}}' %s", name)
        logs = host.run("docker logs -t %s", name)
        line = [l for l in (logs.stdout + logs.stderr).splitlines() if "To see the GUI go to" in l][-1]
        t0 = datetime.fromisoformat(started[:26].rstrip("Z") if "." in started else started.rstrip("Z"))
        t1 = datetime.fromisoformat(line.split()[0][:26])
        seconds = (t1 - t0).total_seconds()
        assert 0 < seconds < 300, seconds
        figure("comfyui_start_s_%s" % name, round(seconds, 1))
    image = json.loads(host.file("/etc/ansible/facts.d/comfyops.fact").content_string)["comfyui"]["image"]
    size = int(host.check_output("docker image inspect -f '{{.Size}}' %s", image))
    assert size > 10**9
    figure("image_size_gb", round(size / 1e9, 2))
