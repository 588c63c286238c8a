"""docs/examples: the alert rules and the Grafana dashboard use only metrics the exporter exports, are valid PromQL
(promtool check rules), and the alerts fire on the series they are meant for (promtool test rules)."""
import json
import re
import shutil
import subprocess

import pytest
import yaml

from test_exporter import ROOT, exporter, inst, run_graph, start_emulator, wait_for

ALERTS = ROOT / "docs" / "examples" / "comfyops-alerts.yml"
DASHBOARD = ROOT / "docs" / "examples" / "comfyops-grafana-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
METRIC = re.compile(r"\b(comfy(?:ui|ops)_[a-z_]+)\b")


def alert_exprs():
    return {r["alert"]: r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}


def dashboard_exprs():
    return [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every metric name (histogram series included) of an exporter watching a GPU instance that ran a job."""
    tmp = tmp_path_factory.mktemp("names")
    with start_emulator(tmp / "gpu", version="0.28.0", cpu=False, args=["--cuda-device", "0"]) as gpu:
        with exporter(tmp, [inst("comfyui-gpu0", gpu, gpu=0)], deployed={"node_packs": [{"name": "p", "commit": "c"}]}) as ex:
            ex.wait_ready("comfyui-gpu0", 200)
            run_graph(gpu, 1)
            wait_for(lambda: ex.health("comfyui-gpu0")["jobs"]["completed"] == 1, what="the job to be counted")
            return {line.split("{")[0].split(" ")[0] for line in ex.get("/metrics").text.splitlines()
                    if line and not line.startswith("#")}


def metric_names(expr):
    """Metric names in a PromQL expression (label matchers and by/without lists taken out first)."""
    return set(METRIC.findall(re.sub(r"\{[^}]*\}|\b(by|without)\s*\([^)]*\)", " ", expr)))


def test_alerts_and_dashboard_use_only_exported_metrics(exported):
    used = set().union(*(metric_names(e) for e in list(alert_exprs().values()) + dashboard_exprs()))
    assert used and used <= exported, sorted(used - exported)


@needs_promtool
def test_alert_rules_and_dashboard_queries_are_valid(tmp_path):
    res = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    # the dashboard's queries as recording rules, its variables set to "everything"
    rules = [{"record": "dashboard:query_%d" % i, "expr": e.replace("$host", ".*").replace("$comfyui_instance", ".*")}
             for i, e in enumerate(dashboard_exprs())]
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = subprocess.run([PROMTOOL, "check", "rules", str(tmp_path / "dashboard.yml")], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def alert(at, alertname, **labels):
    """An alert_rule_test entry: the alert fires at `at` with these labels (none given: it does not fire)."""
    return {"eval_time": at, "alertname": alertname, "exp_alerts": [{"exp_labels": labels}] if labels else []}


@needs_promtool
def test_alerts_fire_on_their_series(tmp_path):
    # the conditions only: annotations would have to be expected verbatim (check rules above parses their templates)
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    lab = {"job": "comfyops-exporter", "instance": "gpu-a:9188", "comfyui_instance": "comfyui-gpu0"}
    cuda = dict(lab, device="cuda:0", name="H100")

    def series(metric, values, **labels):
        text = ",".join('%s="%s"' % kv for kv in dict(lab, **labels).items())
        return {"series": "%s{%s}" % (metric, text), "values": values}

    crit, warn = dict(lab, severity="critical"), dict(lab, severity="warning")
    tests = {"rule_files": [str(tmp_path / "rules.yml")], "evaluation_interval": "1m", "tests": [
        {"interval": "1m",
         "input_series": [
             {"series": 'up{job="comfyops-exporter",instance="gpu-a:9188"}', "values": "1 0 0 0 0"},
             series("comfyui_up", "1 0 0 0 0"),
             series("comfyui_expected_classes_missing", "0 4 4 4 4"),
             series("comfyui_gpu_visible", "1 0 0 0 0", gpu="0"),
             series("comfyui_vram_total_bytes", "100+0x20", device="cuda:0", name="H100"),
             series("comfyui_vram_free_bytes", "50 3+0x19", device="cuda:0", name="H100"),
             series("comfyui_restarts_total", "0 1 2 3 4"),
             series("comfyui_check_ok", "1 0+0x20", check="installation")],
         "alert_rule_test": [
             alert("4m", "ComfyUIExporterDown", severity="critical", job="comfyops-exporter", instance="gpu-a:9188"),
             alert("1m", "ComfyUIInstanceDown"),
             alert("4m", "ComfyUIInstanceDown", **crit),
             alert("3m", "ComfyUILTX2ClassesMissing", **crit),
             alert("3m", "ComfyUIGPUGone", gpu="0", **crit),
             alert("5m", "ComfyUIVRAMNearlyFull"),
             alert("15m", "ComfyUIVRAMNearlyFull", severity="warning", **cuda),
             alert("4m", "ComfyUIRestarting", **warn),
             alert("15m", "ComfyUIDeploymentDrift", check="installation", **warn)]},
        {"interval": "5m",
         "input_series": [
             series("comfyui_jobs_finished_total", "0 1 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2", status="completed"),
             series("comfyui_queue_running", "1+0x20"),
             series("comfyui_queue_pending", "3+0x20")],
         "alert_rule_test": [alert("30m", "ComfyUIQueueStuck"), alert("70m", "ComfyUIQueueStuck", **warn)]}]}
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(tests))
    res = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "alerts_test.yml")], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stdout + res.stderr
