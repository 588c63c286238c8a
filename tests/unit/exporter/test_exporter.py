"""The comfyops exporter (roles/comfyui/files/exporter/comfyops_exporter.py) against the ComfyUI emulator.

Each test runs the exporter in this process (its HTTP server on a free loopback port) with a short poll interval,
and ComfyUI emulators as the instances it watches; answers are read over HTTP, as NGINX and Prometheus do.
"""
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "roles" / "comfyui" / "files" / "exporter")]

import comfyops_exporter  # noqa: E402
from emulator_helpers import free_port, http_request, prepare_tree, start_emulator  # noqa: E402

EXPORTER = ROOT / "roles" / "comfyui" / "files" / "exporter" / "comfyops_exporter.py"
LTX = ["LTXVBaseSampler", "LTXVGemmaCLIPModelLoader", "LTXFloatToInt", "Set VAE Decoder Noise"]
POLL = 0.3


def wait_for(predicate, timeout=15, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Running:
    """An exporter in this process: .get(path) -> HTTPResult, .write_config(**changes)."""

    def __init__(self, directory, config):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "draining").mkdir(exist_ok=True)
        self.config = dict({"poll_interval": POLL, "timeout": 2, "models_interval": 0.5, "jobs_interval": POLL}, **config)
        self.write_config()
        self.exporter = comfyops_exporter.Exporter(str(self.dir / "config.json"))
        self.exporter.reload()
        self.server = comfyops_exporter.Server(("127.0.0.1", free_port()), self.exporter)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.watcher = threading.Thread(target=self.exporter.watch, args=(0.1,), daemon=True)
        self.watcher.start()

    def write_config(self, **changes):
        self.config.update(changes)
        tmp = self.dir / "config.json.tmp"
        tmp.write_text(json.dumps(self.config))
        os.replace(tmp, self.dir / "config.json")  # as Ansible's copy does: a new inode

    def get(self, path):
        return http_request(self.url, "GET", path, timeout=10)

    def health(self, name=None):
        body = self.get("/health").json()
        return body["instances"][name] if name else body

    def ready(self, name):
        answer = self.get("/ready/" + name)
        return answer.status, answer.json().get("reasons", [answer.json().get("error")])

    def wait_ready(self, name, status, reasons=None, timeout=15):
        """Waits until /ready/<name> answers status (and, if given, exactly these reasons)."""
        def done():
            answer = self.ready(name)
            return answer[0] == status and (reasons is None or answer[1] == reasons) and answer
        try:
            return wait_for(done, timeout)
        except AssertionError:
            raise AssertionError("%s: expected %d %r, got %r" % (name, status, reasons, self.ready(name))) from None

    def metrics(self):
        answer = self.get("/metrics")
        assert answer.status == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        return {f.name: f for f in text_string_to_metric_families(answer.text)}

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.exporter.stop()


@contextlib.contextmanager
def exporter(tmp_path, instances, **config):
    running = Running(tmp_path / "exporter", dict({"instances": instances}, **config))
    try:
        yield running
    finally:
        running.close()


def inst(name, emu_or_url, gpu=None):
    return {"name": name, "url": emu_or_url if isinstance(emu_or_url, str) else emu_or_url.url, "gpu": gpu}


def sample(families, name, **labels):
    family = next(families[f] for f in (name, re.sub(r"_(total|bucket|count|sum)$", "", name)) if f in families)
    for s in family.samples:
        if s.name == name and all(s.labels.get(k) == str(v) for k, v in labels.items()):
            return s.value
    raise KeyError((name, labels))


def run_graph(emu, color, prefix="exporter"):
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}
    answer = emu.post_json("/prompt", {"prompt": graph})
    assert answer.status == 200, answer.body
    return emu.wait_for_history(answer.json()["prompt_id"])


def slow_graph(color):
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
            "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "slow"}}}


@pytest.fixture
def ltx(tmp_path):
    """A 0.28.0 emulator with the ComfyUI-LTXVideo stand-in (its classes load)."""
    with start_emulator(tmp_path / "ltx", version="0.28.0", custom_nodes=["ComfyUI-LTXVideo"]) as emu:
        yield emu


DEPLOYED = {"image": "comfyops/comfyui:700821e1364e-0123456789ab", "comfyui_version": "0.28.0", "manager": "none",
            "node_packs": [{"name": "ComfyUI-LTXVideo", "version": "aceeae96", "commit": "aceeae9635f6d493f2893ba3c411a1c36031788a"}]}


def test_healthy_instance_has_four_good_levels_and_is_ready(tmp_path, ltx):
    with exporter(tmp_path, [inst("comfyui-cpu0", ltx)], expected_classes=LTX, deployed=DEPLOYED) as ex:
        ex.wait_ready("comfyui-cpu0", 200)
        body = ex.health()
        assert ex.get("/health").status == 200 and body["status"] == "ok"
        one = body["instances"]["comfyui-cpu0"]
        assert [one[level]["status"] for level in ("installation", "runtime", "functional", "models")] == ["ok"] * 4
        assert one["installation"]["comfyui_version"] == "0.28.0" and one["installation"]["image"] == DEPLOYED["image"]
        assert one["installation"]["node_packs"][0]["status"] == "unverified"  # no ComfyUI-Manager to ask
        assert one["runtime"]["up"] and one["runtime"]["restarts"] == 0 and one["runtime"]["uptime_seconds"] >= 0
        assert one["functional"]["missing"] == [] and one["functional"]["classes"] > 800
        assert one["queue"] == {"running": 0, "pending": 0} and body["queue"] == {"running": 0, "pending": 0}
        assert ex.get("/ready").status == 200
        assert ex.get("/ready/comfyui-gpu9").status == 404


def test_unanswering_instance_is_reported_and_the_rest_keep_being_served(tmp_path, ltx):
    # one port refuses connections, another accepts them and never answers
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)
    instances = [inst("comfyui-cpu0", ltx), inst("comfyui-cpu1", "http://127.0.0.1:%d" % free_port()),
                 inst("comfyui-cpu2", "http://127.0.0.1:%d" % hang.getsockname()[1])]
    try:
        with exporter(tmp_path, instances, expected_classes=LTX, timeout=1) as ex:
            ex.wait_ready("comfyui-cpu0", 200)
            wait_for(lambda: "timed out" in ex.health("comfyui-cpu2")["runtime"]["error"], what="the hanging instance's error")
            started = time.monotonic()
            answer = ex.get("/health")
            assert time.monotonic() - started < 0.5  # answers come from the last poll, never wait for ComfyUI
            body = answer.json()
            assert answer.status == 503 and body["status"] == "degraded"
            refused, hanging = body["instances"]["comfyui-cpu1"], body["instances"]["comfyui-cpu2"]
            assert refused["status"] == "down" and "Connection refused" in refused["runtime"]["error"]
            assert hanging["status"] == "down" and "timed out" in hanging["runtime"]["error"]
            assert ex.ready("comfyui-cpu1")[0] == 503 and ex.ready("comfyui-cpu1")[1][0].startswith("down: ")
            assert ex.get("/ready").status == 200  # the host still takes work: one instance is ready
            families = ex.metrics()
            assert sample(families, "comfyui_up", comfyui_instance="comfyui-cpu0") == 1
            assert sample(families, "comfyui_up", comfyui_instance="comfyui-cpu1") == 0
            assert sample(families, "comfyui_up", comfyui_instance="comfyui-cpu2") == 0
    finally:
        hang.close()


def test_stopped_instance_turns_503_and_200_again_when_started_counting_the_restart(tmp_path):
    tree = prepare_tree(tmp_path / "emu", custom_nodes=["ComfyUI-LTXVideo"], version="0.28.0")
    port = free_port()
    with start_emulator(tmp_path / "emu", port=port, tree=tree) as emu:
        with exporter(tmp_path, [inst("comfyui-cpu0", emu)], expected_classes=LTX) as ex:
            ex.wait_ready("comfyui-cpu0", 200)
            first_check = ex.health("comfyui-cpu0")["functional"]["checked_at"]
            emu.stop()
            reasons = ex.wait_ready("comfyui-cpu0", 503)[1]
            assert reasons[0].startswith("down: ")
            assert ex.get("/ready").status == 503 and ex.health()["status"] == "down"
            with start_emulator(tmp_path / "emu", port=port, tree=tree):
                ex.wait_ready("comfyui-cpu0", 200)
                one = ex.health("comfyui-cpu0")
                assert one["runtime"]["restarts"] == 1
                assert one["functional"]["checked_at"] >= first_check
                assert sample(ex.metrics(), "comfyui_restarts_total", comfyui_instance="comfyui-cpu0") == 1


def test_restart_is_followed_within_seconds_with_a_long_poll_interval(tmp_path):
    # The WebSocket closes with the process: the exporter looks again at once, not after the 30 s poll interval,
    # and checks the classes of the new process (the pack no longer imports).
    tree = prepare_tree(tmp_path / "emu", custom_nodes=["ComfyUI-LTXVideo"], version="0.28.0")
    port = free_port()
    with start_emulator(tmp_path / "emu", port=port, tree=tree) as emu:
        with exporter(tmp_path, [inst("comfyui-cpu0", emu)], expected_classes=LTX, poll_interval=30) as ex:
            ex.wait_ready("comfyui-cpu0", 200)
            emu.stop()
            shutil.rmtree(tree / "custom_nodes" / "ComfyUI-LTXVideo")
            with start_emulator(tmp_path / "emu", port=port, tree=tree):
                ex.wait_ready("comfyui-cpu0", 503, ["classes missing: " + ", ".join(LTX)], timeout=10)
                one = ex.health("comfyui-cpu0")
                assert one["runtime"]["restarts"] == 1 and one["functional"]["status"] == "fail"
                assert one["status"] == "degraded"
                assert sample(ex.metrics(), "comfyui_expected_classes_missing", comfyui_instance="comfyui-cpu0") == 4


def test_missing_pack_classes_turn_503_and_200_once_fixed_and_restarted(tmp_path):
    tree = prepare_tree(tmp_path / "emu", version="0.28.0")
    port = free_port()
    with start_emulator(tmp_path / "emu", port=port, tree=tree) as emu:
        with exporter(tmp_path, [inst("comfyui-cpu0", emu)], expected_classes=LTX) as ex:
            ex.wait_ready("comfyui-cpu0", 503, ["classes missing: " + ", ".join(LTX)])
            emu.stop()
            shutil.copytree(ROOT / "tests" / "fixtures" / "node_packs" / "ComfyUI-LTXVideo",
                            tree / "custom_nodes" / "ComfyUI-LTXVideo")
            with start_emulator(tmp_path / "emu", port=port, tree=tree):
                ex.wait_ready("comfyui-cpu0", 200)


def test_draining_file_turns_the_instance_503_and_back(tmp_path, ltx):
    with exporter(tmp_path, [inst("comfyui-cpu0", ltx)], expected_classes=LTX) as ex:
        ex.wait_ready("comfyui-cpu0", 200)
        (ex.dir / "draining" / "comfyui-cpu0").touch()
        assert ex.ready("comfyui-cpu0") == (503, ["draining"])
        assert ex.get("/ready").status == 503  # no other instance takes work
        assert sample(ex.metrics(), "comfyui_draining", comfyui_instance="comfyui-cpu0") == 1
        assert ex.health("comfyui-cpu0")["status"] == "ok"  # healthy, just not taking new work
        (ex.dir / "draining" / "comfyui-cpu0").unlink()
        assert ex.ready("comfyui-cpu0") == (200, [])


def test_queue_at_the_limit_is_not_ready(tmp_path):
    with start_emulator(tmp_path / "emu", version="0.28.0", env={"COMFYUI_EMULATOR_IMAGEBLUR_SECONDS": "2.0"}) as emu:
        with exporter(tmp_path, [inst("comfyui-cpu0", emu)], ready_max_queue=2) as ex:
            ex.wait_ready("comfyui-cpu0", 200)
            for color in (1, 2):
                assert emu.post_json("/prompt", {"prompt": slow_graph(color)}).status == 200
            ex.wait_ready("comfyui-cpu0", 503, ["queue full: 1 running + 1 pending >= comfyui_ready_max_queue 2"])
            assert ex.health("comfyui-cpu0")["queue"] == {"running": 1, "pending": 1}
            families = ex.metrics()
            assert sample(families, "comfyui_queue_running", comfyui_instance="comfyui-cpu0") == 1
            assert sample(families, "comfyui_queue_pending", comfyui_instance="comfyui-cpu0") == 1
            ex.write_config(ready_max_queue=0)  # 0: no queue limit, read from the changed file
            ex.wait_ready("comfyui-cpu0", 200, timeout=3)
            emu.post_json("/queue", {"clear": True})
            emu.post_json("/interrupt", {})


def test_required_models_are_checked_and_rechecked(tmp_path, ltx):
    with exporter(tmp_path, [inst("comfyui-cpu0", ltx)], required_models={"checkpoints": ["ltx.safetensors"]}) as ex:
        ex.wait_ready("comfyui-cpu0", 503, ["models missing: checkpoints/ltx.safetensors"])
        assert ex.health("comfyui-cpu0")["models"]["status"] == "fail"
        (ltx.root / "models" / "checkpoints" / "ltx.safetensors").write_bytes(b"\0" * 8)
        ex.wait_ready("comfyui-cpu0", 200)
        assert ex.health("comfyui-cpu0")["models"] == dict(ex.health("comfyui-cpu0")["models"], status="ok", missing=[])


def test_config_changes_are_followed_and_a_bad_file_keeps_the_last_good_one(tmp_path, ltx):
    with exporter(tmp_path, [inst("comfyui-cpu0", ltx)], expected_classes=LTX) as ex:
        ex.wait_ready("comfyui-cpu0", 200)
        ex.write_config(expected_classes=LTX + ["NoSuchClass"])  # judged against the classes already fetched
        ex.wait_ready("comfyui-cpu0", 503, ["classes missing: NoSuchClass"], timeout=3)
        (ex.dir / "config.json").write_text("{not json")
        wait_for(lambda: ex.health()["exporter"]["config_error"], timeout=3, what="the config error")
        assert ex.ready("comfyui-cpu0")[0] == 503  # still the last good configuration
        assert sample(ex.metrics(), "comfyops_exporter_config_ok") == 0
        ex.write_config(expected_classes=LTX, instances=[inst("comfyui-cpu0", ltx), inst("comfyui-cpu1", ltx)])
        ex.wait_ready("comfyui-cpu1", 200)
        assert ex.health()["exporter"]["config_error"] is None and ex.ready("comfyui-cpu0")[0] == 200
        ex.write_config(instances=[inst("comfyui-cpu1", ltx)])
        wait_for(lambda: ex.get("/ready/comfyui-cpu0").status == 404, timeout=3, what="the removed instance to go")


def test_finished_jobs_are_counted_once_with_their_durations(tmp_path, ltx):
    run_graph(ltx, 1)  # finished before the exporter looked: not counted
    with exporter(tmp_path, [inst("comfyui-cpu0", ltx)]) as ex:
        ex.wait_ready("comfyui-cpu0", 200)
        for color in (2, 3):
            run_graph(ltx, color)
        run_graph(ltx, 4, "../escape_attempt")  # fails at run time
        expected = {"completed": 2, "failed": 1, "cancelled": 0}
        wait_for(lambda: ex.health("comfyui-cpu0")["jobs"] == expected, what="the jobs to be counted")
        time.sleep(3 * POLL)  # further polls count nothing twice
        assert ex.health("comfyui-cpu0")["jobs"] == expected
        families = ex.metrics()
        for status, count in expected.items():
            assert sample(families, "comfyui_jobs_finished_total", comfyui_instance="comfyui-cpu0", status=status) == count
        assert sample(families, "comfyui_job_duration_seconds_count", comfyui_instance="comfyui-cpu0") == 2
        assert sample(families, "comfyui_job_duration_seconds_bucket", comfyui_instance="comfyui-cpu0", le="+Inf") == 2
        assert 0 <= sample(families, "comfyui_job_duration_seconds_sum", comfyui_instance="comfyui-cpu0") < 2


def test_metrics_families_types_and_gpu_values(tmp_path):
    with start_emulator(tmp_path / "gpu", version="0.28.0", cpu=False, args=["--cuda-device", "0"],
                        env={"COMFYUI_EMULATOR_VRAM_MB": "81079"}) as gpu, \
            start_emulator(tmp_path / "cpu", version="0.28.0") as cpu:
        instances = [inst("comfyui-gpu0", gpu, gpu=0), inst("comfyui-gpu1", cpu, gpu=1)]  # gpu1 lost its GPU
        with exporter(tmp_path, instances, deployed=DEPLOYED) as ex:
            ex.wait_ready("comfyui-gpu0", 200)
            ex.wait_ready("comfyui-gpu1", 200)
            families = ex.metrics()
            kinds = {name: f.type for name, f in families.items()}
            for name in ("comfyui_up", "comfyui_ready", "comfyui_queue_running", "comfyui_queue_pending",
                         "comfyui_vram_total_bytes", "comfyui_vram_free_bytes", "comfyui_ram_total_bytes",
                         "comfyui_ram_free_bytes", "comfyui_last_success_timestamp_seconds", "comfyui_gpu_visible"):
                assert kinds[name] == "gauge", name
            assert kinds["comfyui_jobs_finished"] == kinds["comfyui_restarts"] == "counter"
            assert kinds["comfyui_job_duration_seconds"] == "histogram"
            assert kinds["comfyui_info"] == kinds["comfyui_node_pack_info"] == "gauge"
            assert sample(families, "comfyui_vram_total_bytes", comfyui_instance="comfyui-gpu0", device="cuda:0") == 81079 * 2 ** 20
            assert sample(families, "comfyui_gpu_visible", comfyui_instance="comfyui-gpu0", gpu=0) == 1
            assert sample(families, "comfyui_gpu_visible", comfyui_instance="comfyui-gpu1", gpu=1) == 0
            assert sample(families, "comfyui_info", comfyui_instance="comfyui-gpu0", version="0.28.0", gpu=0) == 1
            assert sample(families, "comfyui_node_pack_info", pack="ComfyUI-LTXVideo",
                          commit=DEPLOYED["node_packs"][0]["commit"]) == 1
            assert 0 <= time.time() - sample(families, "comfyui_last_success_timestamp_seconds",
                                             comfyui_instance="comfyui-gpu0") < 5
            assert ex.health("comfyui-gpu1")["runtime"]["problems"] == ["no GPU visible to ComfyUI"]
            promtool = shutil.which("promtool")
            if promtool is None:
                pytest.skip("promtool not installed (Debian package prometheus): the parser check above passed")
            res = subprocess.run([promtool, "check", "metrics"], input=ex.get("/metrics").text, text=True,
                                 capture_output=True, timeout=60, check=False)
            assert res.returncode == 0, res.stdout + res.stderr


def test_pack_commits_are_verified_through_comfyui_manager(tmp_path):
    tree = prepare_tree(tmp_path / "emu", custom_nodes=["ComfyUI-LTXVideo"], version="0.28.0")
    pack = tree / "custom_nodes" / "ComfyUI-LTXVideo"
    git = ["git", "-C", str(pack), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", str(pack)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "pack"], check=True)
    commit = subprocess.check_output(git + ["rev-parse", "HEAD"], text=True).strip()
    deployed = dict(DEPLOYED, manager="v4", node_packs=[{"name": "ComfyUI-LTXVideo", "commit": commit}])
    with start_emulator(tmp_path / "emu", tree=tree, args=["--enable-manager"]) as emu:
        with exporter(tmp_path, [inst("comfyui-cpu0", emu)], expected_classes=LTX, deployed=deployed) as ex:
            ex.wait_ready("comfyui-cpu0", 200)
            installation = ex.health("comfyui-cpu0")["installation"]
            assert installation["status"] == "ok"
            assert installation["node_packs"] == [{"name": "ComfyUI-LTXVideo", "commit": commit, "live_commit": commit,
                                                   "status": "ok"}]
            ex.write_config(deployed=dict(deployed, node_packs=[{"name": "ComfyUI-LTXVideo", "commit": "0" * 40}],
                                          comfyui_version="0.29.0"))
            wait_for(lambda: ex.health("comfyui-cpu0")["installation"]["status"] == "fail", timeout=3, what="drift")
            assert ex.health("comfyui-cpu0")["installation"]["problems"] == [
                "ComfyUI 0.28.0 is running, 0.29.0 was deployed",
                "node pack ComfyUI-LTXVideo is at %s, %s was deployed" % (commit, "0" * 40)]
            assert ex.health("comfyui-cpu0")["status"] == "degraded" and ex.ready("comfyui-cpu0")[0] == 200


def test_no_secret_of_comfyui_reaches_any_answer(tmp_path):
    secret = "https://robot:s3cr3t-token@api.example.org"
    with start_emulator(tmp_path / "emu", version="0.28.0", args=["--comfy-api-base", secret]) as emu:
        assert secret in json.dumps(emu.get_json("/system_stats"))  # ComfyUI itself shows its argv
        with exporter(tmp_path, [inst("comfyui-cpu0", emu)], deployed=DEPLOYED) as ex:
            ex.wait_ready("comfyui-cpu0", 200)
            for path in ("/health", "/ready", "/ready/comfyui-cpu0", "/metrics", "/"):
                assert "s3cr3t" not in ex.get(path).text, path


class Hostile:
    """A fake ComfyUI whose answers are odd: label characters to escape, wrong types, a huge answer."""

    def __init__(self):
        import http.server
        requests = self.requests = collections.Counter()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                requests[self.path.split("?")[0] + ("?finished" if "status=completed" in self.path else "")] += 1
                if self.path == "/system_stats":
                    body = {"system": {"comfyui_version": 'x"\\\n}', "ram_total": "lots", "ram_free": None},
                            "devices": [{"name": 'GPU "0"\n# TYPE evil gauge', "type": "cuda", "index": 0,
                                         "vram_total": 10.5, "vram_free": float("nan")}, "junk"]}
                elif self.path.startswith("/api/jobs?status=in_progress"):
                    body = {"jobs": [{"status": "pending"}, 7, {"status": "in_progress"}]}
                elif self.path.startswith("/api/jobs"):
                    body = {"jobs": [{"id": "a", "status": "completed", "execution_start_time": "x"}, {"id": 5}]}
                elif self.path == "/object_info":
                    body = {"A": {}}
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = json.dumps(body, allow_nan=True).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_odd_answers_are_survived_and_escaped(tmp_path):
    hostile = Hostile()
    try:
        with exporter(tmp_path, [inst("comfyui-gpu0", hostile.url, gpu=0)]) as ex:
            wait_for(lambda: ex.health("comfyui-gpu0")["runtime"]["up"], what="the fake instance to be up")
            text = ex.get("/metrics").text
            assert "\n# TYPE evil" not in text
            families = ex.metrics()  # parses
            assert sample(families, "comfyui_vram_total_bytes", comfyui_instance="comfyui-gpu0") == 10.5
            assert [s.labels["name"] for s in families["comfyui_vram_total_bytes"].samples] == ['GPU "0"\n# TYPE evil gauge']
            assert "comfyui_vram_free_bytes" not in families and "comfyui_ram_total_bytes" not in families
            one = ex.health("comfyui-gpu0")
            assert one["queue"] == {"running": 1, "pending": 1}
            assert one["installation"]["comfyui_version"] == 'x"\\\n}'
    finally:
        hostile.server.shutdown()


def test_the_command_serves_and_stops_on_sigterm(tmp_path, ltx):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"instances": [inst("comfyui-cpu0", ltx)], "poll_interval": POLL}))
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(EXPORTER), "--config", str(config), "--listen", "127.0.0.1",
                             "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        url = "http://127.0.0.1:%d" % port

        def ready():
            try:
                return http_request(url, "GET", "/ready/comfyui-cpu0", timeout=2).status == 200
            except OSError:
                return False
        wait_for(ready, what="the exporter command to serve")
        assert http_request(url, "GET", "/health", timeout=2).headers["server"] == "comfyops-exporter"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert "listening on 127.0.0.1:%d" % port in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_configuration_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "config.json"
    for config, message in (([], "not a JSON object"), ({"instances": [{"name": "../x", "url": "http://a:1"}]}, "usable name"),
                            ({"instances": [{"name": "a", "url": "https://a:1"}]}, "url must be http"),
                            ({"poll_interval": -1}, "poll_interval must be")):
        path.write_text(json.dumps(config))
        with pytest.raises(ValueError, match=message):
            comfyops_exporter.load_config(str(path))
    assert comfyops_exporter.normalize_required_models(
        [{"folder": "loras", "name": "a/b.safetensors"}, "checkpoints/c.safetensors", "checkpoints/c.safetensors"]) == \
        ["loras/a/b.safetensors", "checkpoints/c.safetensors"]


def test_finished_jobs_are_asked_for_at_most_every_jobs_interval(tmp_path):
    # That request costs ComfyUI time in proportion to its whole history. The fake has no WebSocket, so the
    # exporter cannot know when jobs finished and would otherwise ask at every poll.
    hostile = Hostile()
    try:
        with exporter(tmp_path, [inst("comfyui-gpu0", hostile.url, gpu=0)], poll_interval=0.1, jobs_interval=60) as ex:
            wait_for(lambda: hostile.requests["/system_stats"] >= 10, what="ten polls")
            assert hostile.requests["/api/jobs?finished"] == 1
            assert hostile.requests["/object_info"] == 1  # once for the process, not every poll
            assert ex.health("comfyui-gpu0")["runtime"]["up"]
    finally:
        hostile.server.shutdown()
