"""module_utils/rollout: the deployment transaction against a fake docker CLI whose "containers" are fake ComfyUI
HTTP servers, so every decision (canary, drain, one at a time, rollback, journal) is checked end to end in-process.
The real thing runs in the upstream molecule scenario."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.comfyops.comfyui.plugins.module_utils.locks import FileLock, LockTimeout
from ansible_collections.comfyops.comfyui.plugins.module_utils import rollout as rollout_utils
from ansible_collections.comfyops.comfyui.plugins.module_utils.rollout import Rollout, RolloutError, run_to_the_end

LTX = ["LTXVBaseSampler", "LTXFloatToInt"]
IMPORT_ERROR = ("Cannot import /opt/comfyui/custom_nodes/ComfyUI-LTXVideo module for custom nodes: cannot import "
                "name 'interleaved_freqs_cis' from 'comfy.ldm.lightricks.model'")


def compose_text(image, packs=("aaa",), names=("comfyui-cpu0", "comfyui-cpu1"), ports=None, label="x", extra=None):
    services = {}
    for n, name in enumerate(names + ("comfyui-canary",)):
        svc = {"image": image, "container_name": name, "labels": {"comfyops.config-sha256": label},
               "volumes": ["/srv/m:/opt/comfyui/models"] + [
                   "/srv/.comfyops/packs/ComfyUI-LTXVideo/%s:/opt/comfyui/custom_nodes/ComfyUI-LTXVideo:ro" % c
                   for c in packs]}
        if name == "comfyui-canary":
            svc["profiles"] = ["canary"]
        services[name] = svc
    services.update(extra or {})
    return yaml.safe_dump({"name": "comfyui", "services": services})


class FakeDocker:
    """docker + docker compose over in-memory containers; a container 'runs' a FakeComfyUI whose classes depend on
    its image (an image whose name contains 'broken' loses the LTX classes, as ComfyUI 0.29 does)."""

    def __init__(self, servers, canary_server):
        self.servers = servers          # container name -> FakeComfyUI (fixed port)
        self.canary_server = canary_server
        self.containers = {}
        self.images = {}
        self.calls = []
        self.fail_up = set()
        self.crash = set()  # containers that exit right after start (an import-time crash)

    def add_image(self, ref):
        self.images[ref] = "sha256:" + str(abs(hash(ref)))

    def _serve(self, name, image_ref):
        server = self.canary_server if name == "comfyui-canary" else self.servers[name]
        info = json.loads(server.routes["/object_info"].body)
        broken = "broken" in image_ref
        for cls in LTX:
            if broken:
                info.pop(cls, None)
            else:
                info[cls] = {"name": cls, "python_module": "custom_nodes.ComfyUI-LTXVideo"}
        server.set("/object_info", info)

    @staticmethod
    def _normalize(service):
        out = dict(service)
        vols = []
        for v in service.get("volumes") or []:
            src, dst, *mode = v.split(":")
            vols.append({"type": "bind", "source": src, "target": dst, "read_only": mode == ["ro"]})
        out["volumes"] = vols
        return out

    def _compose(self, argv):
        args = argv[2:]
        opts = {}
        while args and args[0].startswith("-"):
            opts[args[0]] = args[1]
            args = args[2:]
        cmd, rest = args[0], args[1:]
        with open(opts["-f"], encoding="utf-8") as f:
            services = yaml.safe_load(f)["services"]
        if cmd == "config":
            return 0, json.dumps({"services": {k: self._normalize(v) for k, v in services.items()}}), ""
        names = [a for a in rest if not a.startswith("-") and a not in ("never",)]
        if cmd == "up":
            for name in names:
                if name in self.fail_up:
                    return 1, "", "Error response from daemon: boom"
                svc = services[name]
                self.containers[name] = {"Image": self.images[svc["image"]], "State": {"Running": True},
                                         "Config": {"Image": svc["image"]}, "service": self._normalize(svc),
                                         "started": time.time()}
                self._serve(name, svc["image"])
                if name in self.crash:
                    self.containers[name]["State"] = {"Running": False, "ExitCode": 1}
                    (self.canary_server if name == "comfyui-canary" else self.servers[name]).set(
                        "/object_info", b"", status=502)
            return 0, "", ""
        if cmd == "rm":
            for name in names:
                self.containers.pop(name, None)
            return 0, "", ""
        if cmd == "port":
            return 0, "0.0.0.0:%d\n" % self.canary_server.port, ""
        raise AssertionError(argv)

    def __call__(self, argv):
        self.calls.append(list(argv))
        if argv[1] == "compose":
            return self._compose(argv)
        if argv[1] == "inspect":
            c = self.containers.get(argv[-1])
            return (0, json.dumps([c]), "") if c else (1, "", "No such container")
        if argv[1:3] == ["image", "inspect"]:
            ref = argv[-1]
            return (0, self.images[ref] + "\n", "") if ref in self.images else (1, "", "No such image")
        if argv[1] == "logs":
            c = argv[-1]
            image = self.containers.get(c, {}).get("Config", {}).get("Image", "")
            if c in self.crash:
                return 0, "", "PermissionError: [Errno 13] Permission denied: '/opt/comfyui/user/__manager/snapshots'\n"
            return 0, "", (IMPORT_ERROR + "\n") if "broken" in image else "Starting server\n"
        if argv[1] == "restart":
            self.containers[argv[-1]]["started"] = time.time()
            return 0, "", ""
        if argv[1:3] == ["image", "ls"]:
            return 0, "".join("%s %s\n" % (r, i[7:19]) for r, i in reversed(list(self.images.items()))
                              if r.startswith(argv[-1] + ":")), ""
        if argv[1:3] == ["image", "rm"]:
            self.images.pop(argv[-1], None)
            return 0, "", ""
        raise AssertionError(argv)

    def recreated(self):
        """Service names in the order compose up touched them (canary excluded)."""
        out = []
        for argv in self.calls:
            if argv[1] == "compose" and "up" in argv:
                out += [a for a in argv[argv.index("never") + 1:] if a != "comfyui-canary"]
        return out


@pytest.fixture
def rig(tmp_path, comfy_factory):
    servers = {n: comfy_factory().start() for n in ("comfyui-cpu0", "comfyui-cpu1")}
    canary = comfy_factory().start()
    docker = FakeDocker(servers, canary)
    project = tmp_path / "project"
    project.mkdir()

    def params(candidate, **over):
        p = dict(project_dir=str(project), project_name="comfyui", compose_file=str(project / "compose.yml"),
                 candidate_content=candidate, state_dir=str(tmp_path / "state"),
                 instances=[{"name": n, "url": s.url} for n, s in servers.items()],
                 packs=[{"name": "ComfyUI-LTXVideo", "expected_classes": LTX}], canary=True, container_port=8188,
                 drain="wait", drain_timeout=30, drain_dir=str(tmp_path / "state" / "exporter" / "draining"),
                 restart=None, verify=False, image_repository="comfyops/comfyui", keep_images=2, wait_timeout=3,
                 delay=0.05, stop_timeout=5, lock_timeout=2, docker_bin="docker", headers={}, validate_certs=True,
                 timeout=2, use_proxy=False)
        p.update(over)
        return p

    def deploy(candidate, **over):
        # the role builds the candidate's image first
        image = yaml.safe_load(candidate)["services"]["comfyui-cpu0"]["image"]
        if image not in docker.images:
            docker.add_image(image)
        return Rollout(params(candidate, **over), docker).run()

    rig = type("Rig", (), {})()
    rig.docker, rig.servers, rig.canary, rig.params, rig.deploy = docker, servers, canary, params, deploy
    rig.project, rig.state = project, tmp_path / "state"
    return rig


def test_first_deploy_starts_every_instance_at_once_without_a_canary(rig):
    result = rig.deploy(compose_text("comfyops/comfyui:v28"))
    assert result["changed"] and result["canary"] is None and result["verified"]
    assert [i["action"] for i in result["instances"]] == ["started", "started"]
    assert (rig.project / "compose.yml").read_text() == compose_text("comfyops/comfyui:v28")
    assert result["live"]["image"] == "comfyops/comfyui:v28"
    assert result["live"]["packs"] == [{"name": "ComfyUI-LTXVideo", "commit": "aaa",
                                        "path": "/srv/.comfyops/packs/ComfyUI-LTXVideo/aaa"}]
    assert not (rig.state / "rollout-journal.json").exists()


def test_the_same_set_again_touches_nothing(rig):
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    calls = len(rig.docker.calls)
    result = rig.deploy(compose_text("comfyops/comfyui:v28"))
    assert not result["changed"] and [i["action"] for i in result["instances"]] == ["unchanged", "unchanged"]
    new_calls = rig.docker.calls[calls:]
    assert not [c for c in new_calls if "up" in c or c[1] in ("restart", "rm")], new_calls
    # nothing asked over HTTP either: a no-op run costs docker inspects only
    assert all(s.count("/object_info") == 1 for s in rig.servers.values())


def test_a_broken_set_fails_on_the_canary_and_nothing_live_changes(rig):
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    started = {n: c["started"] for n, c in rig.docker.containers.items()}
    with pytest.raises(RolloutError) as e:
        rig.deploy(compose_text("comfyops/comfyui:broken-v29", packs=("bbb",)))
    msg = str(e.value)
    assert "failed on the canary, so nothing live changed" in msg
    assert "LTXVBaseSampler" in msg and "interleaved_freqs_cis" in msg
    assert {n: c["started"] for n, c in rig.docker.containers.items() if n != "comfyui-canary"} == started
    assert "comfyui-canary" not in rig.docker.containers  # removed again
    assert (rig.project / "compose.yml").read_text() == compose_text("comfyops/comfyui:v28")
    live = e.value.result["live"]
    assert live["image"] == "comfyops/comfyui:v28" and live["packs"][0]["commit"] == "aaa"
    assert e.value.result["canary"]["verified"] is False


def test_a_canary_that_crashes_at_start_fails_at_once_with_its_last_log_lines(rig):
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    rig.docker.crash = {"comfyui-canary"}
    start = time.monotonic()
    with pytest.raises(RolloutError) as e:
        rig.deploy(compose_text("comfyops/comfyui:v28b", packs=("ccc",)), wait_timeout=60)
    assert time.monotonic() - start < 10  # not the whole 60 s wait
    assert "the container comfyui-canary exited (code 1)" in str(e.value)
    assert "Permission denied: '/opt/comfyui/user/__manager/snapshots'" in str(e.value)
    assert "nothing live changed" in str(e.value)


def test_a_good_set_switches_one_instance_at_a_time_after_the_canary(rig):
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    result = rig.deploy(compose_text("comfyops/comfyui:v28b", packs=("ccc",)))
    assert result["canary"]["ran"] and result["canary"]["verified"]
    assert [i["action"] for i in result["instances"]] == ["recreated", "recreated"]
    assert all(i["verified"] for i in result["instances"])
    ups = [c for c in rig.docker.calls if c[1] == "compose" and "up" in c]
    # first deploy (both at once), then the canary, then one instance per call
    assert [c[c.index("never") + 1:] for c in ups] == [
        ["comfyui-cpu0", "comfyui-cpu1"], ["comfyui-canary"], ["comfyui-cpu0"], ["comfyui-cpu1"]]
    assert (rig.state / "compose.previous.yml").read_text() == compose_text("comfyops/comfyui:v28")
    assert result["live"]["packs"][0]["commit"] == "ccc"


def test_a_failure_after_the_switch_puts_the_previous_set_back(rig):
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    # a change the canary cannot see (no image or pack change: no canary) that breaks the first instance
    with pytest.raises(RolloutError) as e:
        rig.deploy(compose_text("comfyops/comfyui:broken-v29", label="y"), canary=False)
    msg = str(e.value)
    assert "failed after the switch" in msg and "comfyui-cpu0 went back to the previous set" in msg
    assert "every instance verified again" in msg
    actions = [i["action"] for i in e.value.result["instances"]]
    assert actions == ["rolled_back", "unchanged"]  # cpu1 was never touched
    assert rig.docker.recreated() == ["comfyui-cpu0", "comfyui-cpu1", "comfyui-cpu0", "comfyui-cpu0"]
    assert rig.docker.containers["comfyui-cpu0"]["Config"]["Image"] == "comfyops/comfyui:v28"
    assert e.value.result["rolled_back"] and not (rig.state / "rollout-journal.json").exists()


def test_an_interrupted_switch_is_repaired_by_the_next_run(rig):
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    # a run killed after switching cpu0: its journal is left, cpu0 runs the candidate
    rig.docker.fail_up = {"comfyui-cpu1"}
    with pytest.raises(RolloutError):
        rig.deploy(compose_text("comfyops/comfyui:v28b", packs=("ccc",)), canary=False)
    journal = json.loads((rig.state / "rollout-journal.json").read_text())
    assert journal["switched"] == ["comfyui-cpu0", "comfyui-cpu1"]
    rig.docker.fail_up = set()
    result = rig.deploy(compose_text("comfyops/comfyui:v28"))
    assert result["repaired"] and "interrupted" in result["repaired"][0]
    assert rig.docker.containers["comfyui-cpu0"]["Config"]["Image"] == "comfyops/comfyui:v28"
    assert all(i["verified"] for i in result["instances"])
    assert not (rig.state / "rollout-journal.json").exists()


def test_an_instance_the_new_set_drops_is_removed_after_the_others_verified(rig):
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    params_one = dict(instances=[{"name": "comfyui-cpu0", "url": rig.servers["comfyui-cpu0"].url}])
    result = rig.deploy(compose_text("comfyops/comfyui:v28", names=("comfyui-cpu0",)), **params_one)
    assert result["removed"] == ["comfyui-cpu1"] and "comfyui-cpu1" not in rig.docker.containers
    assert result["instances"][0]["action"] == "unchanged"  # the one left was not touched
    assert (rig.project / "compose.yml").read_text() == compose_text("comfyops/comfyui:v28", names=("comfyui-cpu0",))


def test_drain_waits_for_running_and_pending_jobs(rig):
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    busy = {"queue_running": [[1, "job-a", {}, {}, []]], "queue_pending": [[2, "job-b", {}, {}, []]]}
    cpu0 = rig.servers["comfyui-cpu0"]
    cpu0.set("/queue", busy)

    def finish():
        time.sleep(0.6)
        cpu0.set("/queue", {"queue_running": [], "queue_pending": []})
    threading.Thread(target=finish, daemon=True).start()
    seen = []
    original = Rollout._mark_draining

    def spy(self, name, on):
        seen.append((name, on, (rig.state / "exporter" / "draining" / name).exists()))
        original(self, name, on)
    Rollout._mark_draining = spy
    try:
        result = rig.deploy(compose_text("comfyops/comfyui:v28", label="z"))
    finally:
        Rollout._mark_draining = original
    first = result["instances"][0]
    assert first["drained_s"] >= 0.5 and first["cut_jobs"] == []
    assert ("comfyui-cpu0", True, False) in seen and ("comfyui-cpu0", False, True) in seen
    assert not (rig.state / "exporter" / "draining" / "comfyui-cpu0").exists()


def test_drain_interrupt_cuts_the_jobs_and_says_which(rig):
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    rig.servers["comfyui-cpu1"].set("/queue", {"queue_running": [[1, "job-x", {}, {}, []]], "queue_pending": []})
    rig.servers["comfyui-cpu1"].set("/interrupt", b"")
    result = rig.deploy(compose_text("comfyops/comfyui:v28", label="z"), drain="interrupt")
    assert result["instances"][1]["cut_jobs"] == ["job-x"]
    assert rig.servers["comfyui-cpu1"].count("/interrupt") == 1


def test_restart_drains_and_verifies_only_the_named_instance(rig):
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    before = {n: c["started"] for n, c in rig.docker.containers.items()}
    result = Rollout(rig.params(None, restart=["comfyui-cpu1"]), rig.docker).run()
    assert [i["action"] for i in result["instances"]] == ["unchanged", "restarted"]
    assert rig.docker.containers["comfyui-cpu0"]["started"] == before["comfyui-cpu0"]
    assert rig.docker.containers["comfyui-cpu1"]["started"] != before["comfyui-cpu1"]
    assert result["instances"][1]["verified"]


def test_check_mode_reports_and_changes_nothing(rig):
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    calls = len(rig.docker.calls)
    rig.docker.add_image("comfyops/comfyui:v28b")
    result = Rollout(rig.params(compose_text("comfyops/comfyui:v28b", packs=("ccc",))), rig.docker,
                     check_mode=True).run()
    assert result["changed"] and [i["action"] for i in result["instances"]] == ["recreated", "recreated"]
    assert result["canary"]["ran"] is False
    assert not [c for c in rig.docker.calls[calls:] if "up" in c or c[1] in ("restart", "rm")]
    assert not (rig.state / "compose.candidate.yml").read_text().count("v28b")


def test_old_images_are_pruned_beyond_the_live_and_previous_set(rig):
    rig.deploy(compose_text("comfyops/comfyui:old"))
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    result = rig.deploy(compose_text("comfyops/comfyui:v28b"))
    assert "comfyops/comfyui:old" in result["images_pruned"]
    assert "comfyops/comfyui:v28" in rig.docker.images and "comfyops/comfyui:v28b" in rig.docker.images


def test_a_second_run_waits_for_the_lock_then_says_who_holds_it(rig):
    rig.state.mkdir(parents=True)
    with FileLock(str(rig.state / "lock"), "an operator's upgrade.yml"):
        with pytest.raises(LockTimeout) as e:
            Rollout(rig.params(compose_text("comfyops/comfyui:v28"), lock_timeout=0.3), rig.docker).run()
    assert "held by an operator's upgrade.yml (pid" in str(e.value)
    assert not rig.docker.containers


def test_a_run_that_waits_in_vain_for_the_lock_still_says_what_is_live(rig, run_module, monkeypatch):
    from ansible_collections.comfyops.comfyui.plugins.modules import comfyui_rollout
    rig.deploy(compose_text("comfyops/comfyui:v28"))
    monkeypatch.setattr(rollout_utils, "run_to_the_end", lambda argv, keep_fds=(): rig.docker(argv))
    params = rig.params(compose_text("comfyops/comfyui:v28b"), lock_timeout=0.2)
    with FileLock(str(rig.state / "lock"), "another run"):
        failed, result = run_module(comfyui_rollout.main, params)
    assert failed and "held by another run" in result["msg"]
    assert result["live"]["image"] == "comfyops/comfyui:v28" and result["live"]["packs"][0]["commit"] == "aaa"


@pytest.mark.parametrize("over, text", [
    (dict(instances=[]), "instances must not be empty"),
    (dict(instances=[{"name": "a", "url": "http://127.0.0.1:1"}] * 2), "must not repeat a name"),
    (dict(instances=[{"name": "a", "url": "http://127.0.0.1:1", "colour": "x"}]), "unknown key(s) colour"),
    (dict(instances=[{"name": "a"}]), "needs a name and a url"),
    (dict(packs=[{"name": "p", "expected_classes": "X"}]), "needs a name and a list of expected_classes"),
    (dict(candidate_content=None), "candidate_content is required unless restart is given"),
    (dict(candidate_content=None, restart=["comfyui-gpu9"]), "restart names unknown instance(s) comfyui-gpu9"),
    (dict(drain_timeout=-1), "drain_timeout must be >= 0"),
    (dict(container_port=0), "container_port must be 1-65535"),
])
def test_bad_input_fails_before_anything_runs(rig, run_module, over, text):
    from ansible_collections.comfyops.comfyui.plugins.modules import comfyui_rollout
    failed, result = run_module(comfyui_rollout.main, dict(rig.params(compose_text("comfyops/comfyui:v28")), **over))
    assert failed and text in result["msg"], result["msg"]
    assert rig.docker.calls == []


def test_the_module_reports_a_switch(rig, run_module, monkeypatch):
    from ansible_collections.comfyops.comfyui.plugins.modules import comfyui_rollout
    rig.docker.add_image("comfyops/comfyui:v28")
    held = []  # per docker command: whether it would inherit the host lock

    def run(argv, keep_fds=()):
        held.append((argv[1], bool(keep_fds) and all(_holds_the_lock(fd, rig.state / "lock") for fd in keep_fds)))
        return rig.docker(argv)
    monkeypatch.setattr(rollout_utils, "run_to_the_end", run)
    failed, result = run_module(comfyui_rollout.main, rig.params(compose_text("comfyops/comfyui:v28")))
    assert not failed and result["changed"] and result["verified"] and result["live"]["image"] == "comfyops/comfyui:v28"
    # every docker command got the host lock passed on (the module ran them all while holding it)
    assert len(held) > 3 and all(h for _c, h in held), held
    rig.docker.add_image("comfyops/comfyui:broken-v29")
    broken = compose_text("comfyops/comfyui:broken-v29", packs=("b",))
    failed, result = run_module(comfyui_rollout.main, rig.params(broken))
    assert failed and "failed on the canary" in result["msg"] and result["live"]["image"] == "comfyops/comfyui:v28"


# -- run_to_the_end: the runner the module uses for its docker commands

def _holds_the_lock(fd, path):
    """Whether fd is the open lock file at path (the one whose flock the module holds)."""
    return os.path.samefile("/proc/self/fd/%d" % fd, path)


def test_run_to_the_end_gives_rc_and_both_outputs():
    assert run_to_the_end(["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n", "err\n")
    rc, out, err = run_to_the_end(["/nonexistent/docker", "ps"])
    assert (rc, out) == (127, "") and err.startswith("cannot run /nonexistent/docker:")


KILLED_RUN = """
import sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.comfyops.comfyui.plugins.module_utils.locks import FileLock
from ansible_collections.comfyops.comfyui.plugins.module_utils.rollout import run_to_the_end
lock = FileLock(sys.argv[2], "the killed run").acquire()
run_to_the_end(["sh", "-c", sys.argv[3]], [lock.fd])
"""


def test_a_command_outlives_its_killed_module_holding_the_lock_and_finishes(tmp_path):
    # a command that writes after its module died: on a pipe (run_command) it would die of SIGPIPE right there,
    # as docker compose does halfway through a recreate
    script = ("echo $$ > started; while [ ! -e go ]; do sleep 0.05; done; "
              "echo output after the kill; echo the rest of the step; touch finished")
    lock = tmp_path / "lock"
    collections = Path(rollout_utils.__file__).parents[5]  # .../ansible_collections/comfyops/comfyui/plugins/module_utils
    parent = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(collections), str(lock), script],
                              cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists() or not (tmp_path / "started").read_text().strip():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.05)
        child = int((tmp_path / "started").read_text())
        parent.kill()
        parent.wait()
        with pytest.raises(LockTimeout, match="held by the killed run"):
            FileLock(str(lock), "the next run", timeout=0).acquire()  # the command still holds the host
        (tmp_path / "go").touch()
        FileLock(str(lock), "the next run", timeout=20).acquire().release()  # free once the command is done
        assert (tmp_path / "finished").exists()
        deadline = time.monotonic() + 10
        while Path("/proc/%d" % child).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        (tmp_path / "go").touch()
        parent.kill()
        parent.wait()
