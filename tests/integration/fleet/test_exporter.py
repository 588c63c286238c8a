"""Verify the exporter the comfyui role runs on every GPU host, directly and through both NGINX layouts.

fleet-gpu0: two instances and its own NGINX (local mode: /comfyui/health, /comfyui/ready, /comfyui/metrics,
/comfyui/cpu<N>/ready; the default nginx_metrics_allow, loopback only). fleet-gpu1: one instance, no NGINX.
fleet-proxy: in front of both (/comfyui/<host>/health ..., /comfyui/ready = any host ready), nginx_metrics_allow
opened to the rig's private network. A real Prometheus (Debian's package, started by the test on loopback of
fleet-gpu0) scrapes both exporters and answers a PromQL query for the queue metric.
"""
import json
import time

import pytest
import requests
import urllib3
from nginx_support import AUTH, CONVERGE, TESTS, address, host
from failure_support import run_playbook  # after nginx_support: it sets sys.path

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

GPU0, GPU1, PROXY = host("fleet-gpu0"), host("fleet-gpu1"), host("fleet-proxy")
G, P = address("fleet-gpu0"), address("fleet-proxy")
STATE = "/var/lib/comfyops/comfyui/exporter"
ALERTS = TESTS.parent / "docs" / "examples" / "comfyops-alerts.yml"


def get(url, **kwargs):
    return requests.get(url, verify=False, timeout=10, **kwargs)


def local(h, path, scheme="http"):
    """(status, body) of a request from the host itself (fleet-gpu0's NGINX allows only loopback)."""
    out = h.check_output("curl -sk -o /tmp/exporter-answer -w '%%{http_code}' %s://127.0.0.1%s; echo; cat /tmp/exporter-answer",
                         scheme, path)
    status, body = out.split("\n", 1)
    return int(status), body


def wait_status(url, status, timeout=90):
    """The answer of url once it has the status."""
    def answered():
        answer = get(url)
        return (answer,) if answer.status_code == status else None  # a Response is false when not 2xx
    return wait_for(answered, timeout, "%s to answer %d" % (url, status))[0]


def wait_for(predicate, timeout=90, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError("timed out waiting for " + what)


@pytest.mark.parametrize("name, instances", [("fleet-gpu0", ["comfyui-cpu0", "comfyui-cpu1"]), ("fleet-gpu1", ["comfyui-cpu0"])])
def test_exporter_runs_unprivileged_and_sees_only_its_state_dir(name, instances):
    h = host(name)
    info = json.loads(h.check_output("docker inspect comfyops-exporter"))[0]
    assert info["State"]["Running"] and info["State"]["Health"]["Status"] == "healthy"
    assert info["Config"]["User"] == "65534:65534"
    assert info["HostConfig"]["ReadonlyRootfs"] and info["HostConfig"]["CapDrop"] == ["ALL"]
    assert info["HostConfig"]["SecurityOpt"] == ["no-new-privileges:true"]
    assert info["Config"]["Labels"]["com.docker.compose.project"] == "comfyui-exporter"  # not the instances' project
    # no Docker socket, no data root: only its own configuration, read-only
    assert [(m["Source"], m["Destination"], m["RW"]) for m in info["Mounts"]] == [(STATE, "/etc/comfyops-exporter", False)]
    assert set(info["NetworkSettings"]["Networks"]) == {"comfyui-exporter_default", "comfyui"}
    config = h.file(STATE + "/config.json")
    assert (config.user, config.group, config.mode) == ("root", "root", 0o644)
    assert h.file(STATE + "/draining").is_directory and h.file(STATE + "/draining").user == "root"
    body = json.loads(config.content_string)
    assert [(i["name"], i["url"]) for i in body["instances"]] == [(n, "http://%s:8188" % n) for n in instances]
    assert body["deployed"]["comfyui_version"] == "0.28.0" and body["deployed"]["image"].startswith("comfyops/comfyui:")
    state = json.loads(h.file("/etc/ansible/facts.d/comfyops.fact").content_string)["comfyui"]
    assert state["exporter"] == {"port": 9188, "url": "http://127.0.0.1:9188", "internal_url": "http://comfyops-exporter:9188"}
    # other containers on the comfyui network (n8n, workers) ask it by name
    out = h.check_output("docker run --rm --network comfyui comfyops-rig/python:trixie python3 -c %s",
                         "import json, urllib.request; "
                         "print(json.load(urllib.request.urlopen('http://comfyops-exporter:9188/ready'))['ready'])")
    assert out == "True"


def test_health_ready_and_metrics_through_the_local_nginx():
    status, body = local(GPU0, "/comfyui/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok", body
    assert list(health["instances"]) == ["comfyui-cpu0", "comfyui-cpu1"]
    for one in health["instances"].values():
        assert [one[level]["status"] for level in ("installation", "runtime", "functional", "models")] == ["ok"] * 4
        assert one["installation"]["comfyui_version"] == "0.28.0" and one["runtime"]["up"]
    for path in ("/comfyui/ready", "/comfyui/cpu0/ready", "/comfyui/cpu1/ready"):
        assert local(GPU0, path)[0] == 200, path
        assert local(GPU0, path, "https")[0] == 200, path  # the self-signed TLS listener has them too
    assert json.loads(local(GPU0, "/comfyui/cpu1/ready")[1]) == {"instance": "comfyui-cpu1", "ready": True, "reasons": []}
    status, text = local(GPU0, "/comfyui/metrics")
    assert status == 200 and 'comfyui_up{comfyui_instance="comfyui-cpu1"} 1' in text
    # nginx_metrics_allow keeps its loopback default here: the controller is refused, ComfyUI itself is not
    assert get(f"http://{G}/comfyui/metrics").status_code == 403
    assert get(f"http://{G}/comfyui/cpu0/ready").status_code == 403
    assert get(f"http://{G}/comfyui/system_stats").status_code == 200


def test_health_ready_and_metrics_through_the_separate_proxy():
    for gpu_host, instances in (("fleet-gpu0", ["comfyui-cpu0", "comfyui-cpu1"]), ("fleet-gpu1", ["comfyui-cpu0"])):
        r = get(f"https://{P}/comfyui/{gpu_host}/health")  # no basic auth on these paths (nginx_metrics_basic_auth)
        assert r.status_code == 200 and list(r.json()["instances"]) == instances, r.text
        assert get(f"https://{P}/comfyui/{gpu_host}/ready").status_code == 200
        r = get(f"https://{P}/comfyui/{gpu_host}/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "comfyui_queue_pending{" in r.text
    r = get(f"https://{P}/comfyui/fleet-gpu0/cpu1/ready")
    assert r.status_code == 200 and r.json()["instance"] == "comfyui-cpu1"
    assert get(f"https://{P}/comfyui/ready").status_code == 200
    # basic auth still guards ComfyUI itself
    assert get(f"https://{P}/comfyui/fleet-gpu1/cpu0/system_stats").status_code == 401
    assert get(f"https://{P}/comfyui/fleet-gpu1/cpu0/system_stats", auth=AUTH).status_code == 200


def test_ready_turns_503_when_an_instance_is_stopped_and_200_when_started():
    before = get(f"https://{P}/comfyui/fleet-gpu1/health").json()["instances"]["comfyui-cpu0"]["runtime"]["restarts"]
    GPU1.check_output("docker stop -t 10 comfyui-cpu0")
    try:
        r = wait_status(f"https://{P}/comfyui/fleet-gpu1/cpu0/ready", 503)
        assert r.json()["reasons"][0].startswith("down: "), r.text
        assert get(f"https://{P}/comfyui/fleet-gpu1/ready").status_code == 503  # that host has no instance left
        assert get(f"https://{P}/comfyui/ready").status_code == 200  # fleet-gpu0 still takes work
        health = get(f"https://{P}/comfyui/fleet-gpu1/health")
        assert health.status_code == 503 and health.json()["status"] == "down"
        assert 'comfyui_up{comfyui_instance="comfyui-cpu0"} 0' in get(f"https://{P}/comfyui/fleet-gpu1/metrics").text
    finally:
        GPU1.check_output("docker start comfyui-cpu0")
    wait_status(f"https://{P}/comfyui/fleet-gpu1/cpu0/ready", 200, timeout=180)
    runtime = get(f"https://{P}/comfyui/fleet-gpu1/health").json()["instances"]["comfyui-cpu0"]["runtime"]
    assert runtime["restarts"] == before + 1 and runtime["uptime_seconds"] < 180


def test_draining_mark_takes_the_instance_out_and_back():
    mark = f"{STATE}/draining/comfyui-cpu1"
    GPU0.check_output("touch %s", mark)
    try:
        status, body = local(GPU0, "/comfyui/cpu1/ready")
        assert (status, json.loads(body)["reasons"]) == (503, ["draining"])
        assert local(GPU0, "/comfyui/ready")[0] == 200  # cpu0 still takes work
        assert get(f"https://{P}/comfyui/fleet-gpu0/cpu1/ready").status_code == 503
    finally:
        GPU0.check_output("rm -f %s", mark)
    assert local(GPU0, "/comfyui/cpu1/ready")[0] == 200


PROMETHEUS_CONFIG = """\
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [/tmp/prom/comfyops-alerts.yml]
scrape_configs:
  - job_name: comfyops-exporter
    metrics_path: /comfyui/metrics
    static_configs: [{targets: ["127.0.0.1:80"]}]
  - job_name: comfyops-exporter-direct
    static_configs: [{targets: ["fleet-gpu1:9188"]}]
"""


def test_prometheus_scrapes_the_exporters_and_answers_promql():
    # Debian's package from the mirror; policy-rc.d keeps its service from starting: the test runs the binary.
    GPU0.check_output(
        "created=; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; "
        "chmod 755 /usr/sbin/policy-rc.d; created=1; }; "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/tmp/prom-apt.log 2>&1; "
        "rc=$?; [ -z \"$created\" ] || rm -f /usr/sbin/policy-rc.d; [ $rc = 0 ] || tail -20 /tmp/prom-apt.log; exit $rc")
    assert not GPU0.service("prometheus").is_running
    GPU0.check_output("rm -rf /tmp/prom && mkdir -p /tmp/prom")
    GPU0.check_output("cat > /tmp/prom/prometheus.yml <<'EOF'\n%sEOF" % PROMETHEUS_CONFIG)
    GPU0.check_output("cat > /tmp/prom/comfyops-alerts.yml <<'EOF'\n%sEOF" % ALERTS.read_text())
    # the alert rules and a scraped sample pass promtool
    GPU0.check_output("promtool check rules /tmp/prom/comfyops-alerts.yml")
    GPU0.check_output("curl -sf http://127.0.0.1/comfyui/metrics | promtool check metrics")
    pid = GPU0.check_output(
        "cd /tmp/prom && setsid nohup prometheus --config.file=/tmp/prom/prometheus.yml --storage.tsdb.path=/tmp/prom/data "
        "--web.listen-address=127.0.0.1:9090 >/tmp/prom/log 2>&1 & echo $!")
    try:
        def query(promql):
            out = GPU0.run("curl -sf --data-urlencode %s http://127.0.0.1:9090/api/v1/query", "query=" + promql)
            return json.loads(out.stdout)["data"]["result"] if out.rc == 0 else None

        def three():
            result = query("comfyui_queue_pending")
            return result if result and len(result) == 3 else None
        series = wait_for(three, timeout=120, what="Prometheus to have the queue metric of all three instances")
        assert sorted((s["metric"]["job"], s["metric"]["comfyui_instance"], s["value"][1]) for s in series) == [
            ("comfyops-exporter", "comfyui-cpu0", "0"), ("comfyops-exporter", "comfyui-cpu1", "0"),
            ("comfyops-exporter-direct", "comfyui-cpu0", "0")]
        assert [s["value"][1] for s in query("sum(comfyui_up)")] == ["3"]

        def rules():
            groups = json.loads(GPU0.check_output("curl -sf http://127.0.0.1:9090/api/v1/rules"))["data"]["groups"]
            return groups if all(r["health"] == "ok" for g in groups for r in g["rules"]) else None
        groups = wait_for(rules, timeout=30, what="the alert rules to be evaluated")
        assert [g["name"] for g in groups] == ["comfyops-comfyui"] and len(groups[0]["rules"]) == 9
    finally:
        GPU0.run("kill %s", pid)


def test_unusable_exporter_settings_fail_before_anything_changes():
    watched = [f"{STATE}/config.json", "/etc/ansible/facts.d/comfyops.fact"]

    def snapshot():
        return (GPU1.check_output("docker inspect -f '{{.State.StartedAt}}' comfyops-exporter comfyui-cpu0"),
                GPU1.check_output("sha256sum " + " ".join(watched)))

    server = GPU1.check_output("nohup python3 -m http.server 9300 --bind 127.0.0.1 >/dev/null 2>&1 & echo $!")
    try:
        GPU1.run_expect([0], "for i in $(seq 50); do ss -Htln | grep -q ':9300 ' && exit 0; sleep 0.1; done; exit 1")
        before = snapshot()
        # --tags comfyui: only that role (the failure is in its preflight, before anything changes)
        for extra, expected in (({"comfyui_exporter_port": 8188, "comfyui_exporter_poll_interval": 0},
                                 ["comfyui_exporter_poll_interval from 1 to 300 s (is 0)", "comfyui_exporter_port (8188)",
                                  "none of the instance ports (8188)"]),
                                ({"comfyui_exporter_port": 9300}, ["(9300)", "it is used by another service"])):
            # the rig's index address is looked up by a play --tags skips; nothing gets that far
            # build_each: the scenario builds once on fleet-gpu0, which a run limited to this host does not have
            res = run_playbook(CONVERGE, GPU1, dict(extra, comfyops_rig_repo_ip="127.0.0.1",
                                                    comfyui_image_distribution="build_each"), options=["--tags", "comfyui"])
            out = " ".join((res.stdout + res.stderr).split())
            assert res.returncode != 0 and "Traceback" not in out, out
            for text in expected:
                assert text in out, (text, out)
        assert snapshot() == before
    finally:
        GPU1.run("kill %s", server)
