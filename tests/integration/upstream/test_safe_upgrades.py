"""Upgrades and restarts against the real upstream (molecule scenario upstream): a real breaking upgrade never
reaches the live instances, a good change switches one instance at a time while the other serves, running jobs are
drained (or cut, and reported), a killed run is repaired by the next one, and a second run waits for the lock.

Runs after test_real_upstream.py and before test_upstream.py (whose last test removes the stack).
"""
import json
import os
import re
import ssl
import subprocess
import threading
import time
import urllib.request
from base64 import b64encode

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
HOST = "upstream-debian13"
INSTANCES = {"comfyui-cpu0": 8188, "comfyui-cpu1": 8189}
RECORD = "/etc/ansible/facts.d/comfyops.fact"
JOURNAL = "/var/lib/comfyops/comfyui/rollout-journal.json"
# status.yml probes the proxy paths too, which want the scenario's basic auth
STATUS_AUTH = ["-e", "status_url_username=operator", "-e", "status_url_password='upstream scenario secret'",
               "-e", "status_validate_certs=false"]
SLEEP_PACK = {"name": "comfyops_sleep_node", "repo": "file:///srv/git/comfyops_sleep_node",
              "expected_classes": ["ComfyOpsSleep"]}


def playbook(name, *args, timeout=1200):
    cmd = ["ansible-playbook", "-i", INVENTORY, "comfyops.comfyui." + name, *args]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    return res.returncode, res.stdout + res.stderr


def flat(out):
    """The output as one line: the YAML callback folds long lines and doubles single quotes."""
    return " ".join(out.split()).replace("''", "'")


def sleep_pack(version):
    return json.dumps({"comfyui_custom_nodes": [dict(SLEEP_PACK, version=version)]})


def started(host):
    return {n: host.check_output("docker inspect -f '{{.State.StartedAt}}' %s", n) for n in INSTANCES}


def record(host):
    return json.loads(host.file(RECORD).content_string)["comfyui"]


def ltx_classes(host, port):
    info = json.loads(host.check_output("curl -sf http://127.0.0.1:%s/object_info", str(port)))
    return sum(1 for v in info.values() if v.get("python_module") == "custom_nodes.ComfyUI-LTXVideo")


def live_pack_commit(host, name, pack):
    data = json.loads(host.check_output("docker inspect %s", name))[0]
    return [m["Source"].rsplit("/", 1)[1] for m in data["Mounts"] if m["Destination"].endswith("/" + pack)][0]


def tag_commit(host, tag):
    return host.check_output("git -C /srv/git/comfyops_sleep_node rev-parse %s^{commit}", tag)


def queue_sleep_job(host, port, prefix, seconds=20):
    image = {"width": 16, "height": 16, "batch_size": 1, "color": int(time.time()) % 100000}
    graph = {"1": {"class_type": "EmptyImage", "inputs": image},
             "2": {"class_type": "ComfyOpsSleep", "inputs": {"images": ["1", 0], "seconds": seconds}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}}
    answer = json.loads(host.check_output(
        "curl -sf -H 'Content-Type: application/json' -d %s http://127.0.0.1:%s/prompt",
        json.dumps({"prompt": graph}), str(port)))
    prompt_id = answer["prompt_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        queue = json.loads(host.check_output("curl -sf http://127.0.0.1:%s/queue", str(port)))
        if any(item[1] == prompt_id for item in queue["queue_running"]):
            return prompt_id
        time.sleep(0.5)
    raise AssertionError("the sleep job never started running")


def outputs(host, prefix):
    return [f for f in host.check_output("ls /srv/comfyui/output").split() if f.startswith(prefix)]


def test_an_upgrade_to_v0_29_fails_on_the_canary_and_v0_28_keeps_serving(host):
    before = started(host)
    rc, out = playbook("upgrade", "-e", "comfyui_source_ref=v0.29.0")
    assert rc != 0, out
    text = flat(out)
    assert "the new set failed on the canary, so nothing live changed" in text, out
    assert "cannot import name 'interleaved_freqs_cis' from 'comfy.ldm.lightricks.model'" in text, out
    # what is live: the previous set, untouched
    assert started(host) == before
    for port in INSTANCES.values():
        assert json.loads(host.check_output("curl -sf http://127.0.0.1:%s/system_stats", str(port)))["system"][
            "comfyui_version"] == "0.28.0"
        assert ltx_classes(host, port) >= 78
    state = record(host)
    assert state["comfyui_version"] == "0.28.0" and state["verified"] is True
    assert "interleaved_freqs_cis" in state["last_error"]
    assert "comfyops-rig/comfyui" not in state["image"] and state["image"] == json.loads(host.check_output(
        "docker inspect comfyui-cpu0"))[0]["Config"]["Image"]
    rc, out = playbook("status", *STATUS_AUTH)
    text = flat(out)
    assert rc == 0 and "ComfyUI 0.28.0" in text and "UNHEALTHY" not in text and "DRIFT" not in text, out
    assert "comfyui-cpu0 http://127.0.0.1:8188" in text and "healthy" in text
    assert "last run failed" in text and "interleaved_freqs_cis" in text
    # the canary's image is kept for the next attempt; nothing else of the failed set is running
    assert host.check_output("docker ps -aq --filter name=comfyui-canary") == ""


def test_a_good_change_switches_one_instance_at_a_time_while_the_other_serves(host):
    before = started(host)
    # its address on the rig network, where this machine reaches it
    address = subprocess.check_output(["docker", "inspect", "-f", "{{(index .NetworkSettings.Networks \"comfyops-rig\").IPAddress}}",
                                       HOST], text=True).strip()
    stop, polls = threading.Event(), []
    context = ssl._create_unverified_context()  # the scenario's self-signed certificate
    auth = "Basic " + b64encode(b"operator:upstream scenario secret").decode()

    def serves(n):
        url = "https://%s/comfyui/cpu%d/object_info/LTXVBaseSampler" % (address, n)
        try:
            req = urllib.request.Request(url, headers={"Authorization": auth})
            with urllib.request.urlopen(req, timeout=2, context=context) as resp:
                return "LTXVBaseSampler" in json.loads(resp.read())
        except Exception:  # noqa: BLE001 - down, 502, half-started: not serving
            return False

    def poll():
        while not stop.is_set():
            polls.append((time.monotonic(), serves(0), serves(1)))
            time.sleep(0.5)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        rc, out = playbook("upgrade", "-e", sleep_pack("v2"))
    finally:
        stop.set()
        poller.join()
    assert rc == 0, out
    after = started(host)
    assert all(after[n] != before[n] for n in INSTANCES)  # both switched...
    v2 = tag_commit(host, "v2")
    assert all(live_pack_commit(host, n, "comfyops_sleep_node") == v2 for n in INSTANCES)
    # ...one at a time: at every poll at least one instance served the LTX classes
    gaps = [t for t, a, b in polls if not (a or b)]
    assert polls and not gaps, "no instance served at %d of %d polls" % (len(gaps), len(polls))
    assert any(not a for _t, a, _b in polls) and any(not b for _t, _a, b in polls)  # each did go down
    state = record(host)
    assert [p["commit"] for p in state["node_packs"] if p["name"] == "comfyops_sleep_node"] == [v2]
    assert state["verified"] is True and state["last_error"] is None
    rc, out = playbook("status", *STATUS_AUTH)
    text = flat(out)
    assert rc == 0 and "node pack comfyops_sleep_node %s" % v2[:12] in text and "DRIFT" not in text, out


def test_restart_with_drain_wait_lets_the_running_job_finish(host):
    prompt_id = queue_sleep_job(host, 8188, "drain_wait")
    rc, out = playbook("restart", "-e", "comfyui_restart_instances=comfyui-cpu0", "-e", "comfyui_drain=wait")
    assert rc == 0, out
    assert len(outputs(host, "drain_wait")) == 1  # the job finished before the instance went down
    report = re.search(r"drained_s: ([0-9.]+)", out)
    assert report and float(report.group(1)) > 3, out
    assert re.search(r"cut_jobs: \[\]", out), out
    assert prompt_id


def test_restart_with_drain_interrupt_cuts_the_job_and_says_so(host):
    prompt_id = queue_sleep_job(host, 8189, "drain_cut")
    rc, out = playbook("restart", "-e", "comfyui_restart_instances=comfyui-cpu1", "-e", "comfyui_drain=interrupt")
    assert rc == 0, out
    assert prompt_id in out, out  # reported as cut
    time.sleep(2)
    assert outputs(host, "drain_cut") == []


def test_a_run_killed_in_the_middle_of_a_switch_is_repaired_by_the_next(host):
    args = ["ansible-playbook", "-i", INVENTORY, "comfyops.comfyui.upgrade", "-e", sleep_pack("v1")]
    run = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            res = host.run("cat %s", JOURNAL)
            if res.rc == 0 and "comfyui-cpu0" in res.stdout:
                break
            assert run.poll() is None, "the upgrade ended before it switched anything"
            time.sleep(0.5)
        else:
            raise AssertionError("no journal entry for comfyui-cpu0")
        # the module's process is the holder of the host lock (it writes its pid there)
        holder = json.loads(host.file("/var/lib/comfyops/comfyui/lock").content_string)["pid"]
        host.check_output("kill -9 %s", str(holder))
    finally:
        run.kill()
        run.wait()
    assert host.file(JOURNAL).exists  # the killed run left its journal
    # the docker command it was in finished its step, holding the host lock until then (cut short, compose would
    # leave the new container created and never started)
    host.check_output("flock --wait 300 /var/lib/comfyops/comfyui/lock true")
    assert host.check_output("docker inspect -f '{{.State.Status}}' comfyui-cpu0") == "running"
    rc, out = playbook("upgrade", "-e", sleep_pack("v1"))
    assert rc == 0, out
    text = flat(out)
    assert "an earlier run was interrupted while switching comfyui-cpu0" in text, out
    assert not host.file(JOURNAL).exists
    v1 = tag_commit(host, "v1")
    assert all(live_pack_commit(host, n, "comfyops_sleep_node") == v1 for n in INSTANCES)
    assert all(ltx_classes(host, p) >= 78 for p in INSTANCES.values())
    assert record(host)["verified"] is True


def test_a_second_run_waits_for_the_lock_then_says_who_holds_it(host):
    holder = ("import fcntl, json, os, socket, time; f = open('/var/lib/comfyops/comfyui/lock', 'w'); "
              "fcntl.flock(f, fcntl.LOCK_EX); f.write(json.dumps(dict(what='the lock test', pid=os.getpid(), "
              "host=socket.gethostname(), since=time.time()))); f.flush(); time.sleep(120)")
    host.run("nohup python3 -c \"%s\" >/dev/null 2>&1 &" % holder)
    try:
        time.sleep(1)
        before = started(host)
        rc, out = playbook("upgrade", "-e", sleep_pack("v2"), "-e", "comfyui_lock_timeout=5")
        assert rc != 0, out
        text = flat(out)
        assert "could not take the lock /var/lib/comfyops/comfyui/lock within 5s: it is held by the lock test" in text, out
        assert started(host) == before
    finally:
        host.run("pkill -f 'the lock test'")
