"""Verify the comfyui role on the molecule host (testinfra, run by `molecule verify`).

The later tests change the deployment (pack upgrade, broken pack, removal) through ansible-playbook
runs of the scenario's converge playbook, in file order, and each ends with the host converged again.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from failure_support import scenario_vars, typed_as_an_operator_would  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
CONVERGE = Path(__file__).resolve().parents[3] / "molecule" / "comfyui" / "converge.yml"
INSTANCES = {"comfyui-cpu0": 8188, "comfyui-cpu1": 8189}
LTX_CLASSES = ["LTXVBaseSampler", "LTXVGemmaCLIPModelLoader", "LTXFloatToInt", "Set VAE Decoder Noise"]
DATA = "/srv/comfyui"


def get_json(host, port, path):
    return json.loads(host.check_output(f"curl -fsS http://127.0.0.1:{port}{path}"))


def converge(host, extra_vars=None, verbose=False, options=()):
    cmd = ["ansible-playbook", "-i", INVENTORY, "--limit", host.backend.get_hostname(), str(CONVERGE), *options]
    if verbose:
        cmd.append("-v")
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    return res.returncode, res.stdout + res.stderr


def ltx_commits(host):
    return json.loads(host.file("/srv/git/commits.json").content_string)["ltxvideo"]


def started_at(host, name):
    return host.check_output(f"docker inspect -f '{{{{.State.StartedAt}}}}' {name}")


@pytest.mark.parametrize("name", INSTANCES)
def test_container_healthy(host, name):
    assert host.check_output(f"docker inspect -f '{{{{.State.Health.Status}}}}' {name}") == "healthy"


def test_ports_bound_to_loopback_only(host):
    listening = host.check_output("ss -Htln").splitlines()
    for port in INSTANCES.values():
        bound = [line.split()[3] for line in listening if line.split()[3].endswith(f":{port}")]
        assert bound == [f"127.0.0.1:{port}"], bound


def test_data_dirs_and_mounts(host):
    for sub in ["models/checkpoints", "input", "output"]:
        d = host.file(f"{DATA}/{sub}")
        assert d.is_directory and d.uid == 10001, sub  # what the containers write is theirs
    assert host.file(f"{DATA}/.comfyops/packs").user == "root"  # the pack store is never theirs
    for name in INSTANCES:
        mounts = json.loads(host.check_output(f"docker inspect -f '{{{{json .Mounts}}}}' {name}"))
        by_dest = {m["Destination"]: m for m in mounts}
        assert by_dest["/opt/comfyui/models"]["Source"] == f"{DATA}/models"
        assert by_dest["/opt/comfyui/user"]["Source"] == f"{DATA}/instances/{name}/user"  # per-instance user dir + DB
        ltx = by_dest["/opt/comfyui/custom_nodes/ComfyUI-LTXVideo"]
        assert ltx["Source"] == f"{DATA}/.comfyops/packs/ComfyUI-LTXVideo/{ltx_commits(host)[0]}" and not ltx["RW"]
        assert "/opt/comfyui/custom_nodes" not in by_dest  # no shared writable custom_nodes


def test_per_instance_database(host):
    for name in INSTANCES:
        argv = get_json(host, INSTANCES[name], "/system_stats")["system"]["argv"]
        assert "sqlite:////opt/comfyui/user/comfyui.db" in argv
        assert "--cpu" in argv and "--enable-manager" in argv


@pytest.mark.parametrize("name", INSTANCES)
def test_ltxvideo_and_probe_classes_loaded(host, name):
    info = get_json(host, INSTANCES[name], "/object_info")
    for cls in LTX_CLASSES + ["AnsibleProbeNode"]:
        assert cls in info, cls
    assert info["LTXFloatToInt"]["python_module"] == "custom_nodes.ComfyUI-LTXVideo"


def test_manager_v4_enabled(host):
    # Manager v4 adds routes, not node classes: its version endpoint answers when --enable-manager works.
    host.run_expect([0], "curl -fsS http://127.0.0.1:8188/api/v2/manager/version")


def test_comfyui_version_is_the_pinned_release(host):
    assert get_json(host, 8188, "/system_stats")["system"]["comfyui_version"] == "0.28.0"


def test_fact_file(host):
    f = host.file("/etc/ansible/facts.d/comfyops.fact")
    assert f.mode == 0o644
    state = json.loads(f.content_string)["comfyui"]
    assert [i["name"] for i in state["instances"]] == list(INSTANCES)
    assert [i["url"] for i in state["instances"]] == [f"http://127.0.0.1:{p}" for p in INSTANCES.values()]
    assert state["internal_url"] == "http://comfyui:8188"
    assert state["comfyui_version"] == "0.28.0"
    assert state["image"].startswith("comfyops/comfyui:")
    packs = {p["name"]: p for p in state["node_packs"]}
    assert packs["ComfyUI-LTXVideo"]["commit"] == ltx_commits(host)[0]
    assert state["verified"] is True and state["last_error"] is None
    assert "ansible_probe_nodes" in packs
    assert "changed_at" in state


def test_internal_network_alias(host):
    for target in ["comfyui", "comfyui-cpu0", "comfyui-cpu1"]:
        out = host.check_output(
            "docker run --rm --network comfyui comfyops-rig/python:trixie python3 -c "
            f"\"import urllib.request; print(urllib.request.urlopen('http://{target}:8188/system_stats').status)\"")
        assert out.strip() == "200", target


def test_idempotence_restarted_nothing(host):
    recorded = dict(line.split() for line in host.file("/root/started_at.txt").content_string.splitlines())
    for name in INSTANCES:
        assert recorded["/" + name] == started_at(host, name), name


def test_numbers_and_booleans_typed_on_the_command_line_change_nothing(host):
    # -e comfyui_cpu_instances=2 passes the string "2", -e comfyui_canary=true the string "true"
    typed = typed_as_an_operator_would(["docker", "comfyui"], scenario_vars("comfyui"))
    assert "comfyui_cpu_instances=2" in typed and "comfyui_canary=true" in typed
    rc, out = converge(host, options=typed)
    assert rc == 0 and re.search(r"changed=0 ", out), out


def test_node_requirements_survive_recreation(host):
    # the packs' requirements are part of the image, so a recreated container has them
    check = "docker exec comfyui-cpu0 python3 -c 'import comfyops_probe_dep; print(comfyops_probe_dep.VERSION)'"
    assert host.check_output(check) == "1.0.0"
    host.run_expect([0], "cd /opt/comfyops/comfyui && docker compose down && docker compose up -d --wait")
    assert host.check_output(check) == "1.0.0"


def pack_commit(host, name, pack="ComfyUI-LTXVideo"):
    mounts = json.loads(host.check_output(f"docker inspect -f '{{{{json .Mounts}}}}' {name}"))
    return [m["Source"].rsplit("/", 1)[1] for m in mounts if m["Destination"].endswith("/" + pack)][0]


def starts_since(host, name, since):
    out = host.check_output(
        f"docker events --since {since} --until $(date +%s) --filter container={name} --filter event=start "
        "--format '{{.Action}}'")
    return len(out.split())


def test_pack_upgrade_switches_each_instance_once_after_a_canary(host):
    since = host.check_output("date +%s")
    rc, out = converge(host, {"comfyui_ltxvideo_version": ltx_commits(host)[1]})
    assert rc == 0, out
    assert starts_since(host, "comfyui-canary", since) == 1  # the canary proved the new commit first
    for name in INSTANCES:
        # a new container from the candidate: started once (the old one is gone)
        assert starts_since(host, name, since) == 1, name
        assert pack_commit(host, name) == ltx_commits(host)[1]
    assert "LTXFloatToInt" in get_json(host, 8188, "/object_info")
    # Back to the first commit, so the scenario ends as converged.
    rc, out = converge(host)
    assert rc == 0, out


def test_a_broken_pack_fails_on_the_canary_and_nothing_live_changes(host):
    # Its requirement does not exist; skipping pip makes the import failure itself the error.
    broken = {"name": "broken_pack", "repo": "file:///srv/git/broken_pack", "version": "main",
              "requirements": False, "expected_classes": ["BrokenPackNode"]}
    probe = {"name": "ansible_probe_nodes", "repo": "file:///srv/git/ansible_probe_nodes", "version": "main",
             "expected_classes": ["AnsibleProbeNode"]}
    before = {name: started_at(host, name) for name in INSTANCES}
    rc, out = converge(host, {"comfyui_custom_nodes": [probe, broken]})
    assert rc != 0
    # The failure names the pack and ComfyUI's import error, and says nothing live changed.
    flat = " ".join(out.split())
    for text in ("broken_pack", "nonexistent_dependency_for_ansible_test", "nothing live changed"):
        assert text in flat, out
    assert {name: started_at(host, name) for name in INSTANCES} == before
    for name, port in INSTANCES.items():
        info = get_json(host, port, "/object_info")
        assert "LTXFloatToInt" in info and "AnsibleProbeNode" in info and "BrokenPackNode" not in info
    state = json.loads(host.file("/etc/ansible/facts.d/comfyops.fact").content_string)["comfyui"]
    assert "broken_pack" not in {p["name"] for p in state["node_packs"]} and "broken_pack" in state["last_error"]
    rc, out = converge(host)
    assert rc == 0, out


def test_absent_pack_is_removed(host):
    probe = {"name": "ansible_probe_nodes", "repo": "file:///srv/git/ansible_probe_nodes", "state": "absent"}
    rc, out = converge(host, {"comfyui_custom_nodes": [probe]})
    assert rc == 0, out
    mounts = host.check_output("docker inspect -f '{{json .Mounts}}' comfyui-cpu0")
    assert "ansible_probe_nodes" not in mounts
    assert "AnsibleProbeNode" not in get_json(host, 8188, "/object_info")


MODEL_SERVER = Path(__file__).resolve().parents[2] / "model_http_server.py"


def test_model_download_interrupted_then_resumed_by_the_role(host):
    # A 3 MB "model" served from the host itself; the server cuts the first GET after 1 MB.
    host.check_output("mkdir -p /root/models-src && head -c 3000000 /dev/urandom > /root/models-src/tiny.safetensors")
    sha = host.check_output("sha256sum /root/models-src/tiny.safetensors").split()[0]
    host.check_output(f"cat > /root/model_http_server.py <<'PY'\n{MODEL_SERVER.read_text()}\nPY")
    host.check_output("setsid nohup python3 /root/model_http_server.py --port 8765 --drop-first-at 1000000 "
                      "/root/models-src/tiny.safetensors >/root/model_server.log 2>&1 < /dev/null &")
    # (any answer will do; a request for the file itself would take the one cut)
    host.check_output("for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:8765/ && exit 0; "
                      "sleep 0.2; done; exit 1")
    model = {"url": "http://127.0.0.1:8765/tiny.safetensors", "folder": "checkpoints", "sha256": sha}
    # An interrupted run (no retries): the bytes received stay in the partial file, the model is not in place.
    args = json.dumps(dict(model, models_dir=f"{DATA}/models", retries=0))
    res = subprocess.run(["ansible", "-i", INVENTORY, host.backend.get_hostname(), "-m",
                          "comfyops.comfyui.comfyui_model", "-a", args],
                         check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0, res.stdout
    # (in the host-only state dir next to models/, which the containers do not mount)
    assert host.file(f"{DATA}/.comfyops/models/partials/checkpoints/tiny.safetensors.partial").size == 1000000
    assert not host.file(f"{DATA}/models/checkpoints/tiny.safetensors").exists
    # The role's next run resumes from there, verifies, and the file shows up in every instance's /models.
    rc, out = converge(host, {"comfyui_models": [model],
                              "comfyui_required_models": ["checkpoints/tiny.safetensors"]}, verbose=True)
    assert rc == 0, out
    assert "resumed_from: 1000000" in out, out
    assert host.check_output(f"sha256sum {DATA}/models/checkpoints/tiny.safetensors").split()[0] == sha
    assert not host.file(f"{DATA}/.comfyops/models/partials/checkpoints/tiny.safetensors.partial").exists
    for port in INSTANCES.values():
        assert "tiny.safetensors" in get_json(host, port, "/models/checkpoints")
    # A no-op afterwards with the same settings (the record holds comfyui_required_models): nothing changed, nothing
    # fetched.
    rc, out = converge(host, {"comfyui_models": [model], "comfyui_required_models": ["checkpoints/tiny.safetensors"]})
    assert rc == 0 and "changed=0" in out, out
    host.run("pkill -f model_http_server.py")


def test_pull_a_prebuilt_image_by_digest(host):
    # A registry on the host (Debian's docker-registry) stands in for Docker Hub / a private registry.
    # Debian's package turns on htpasswd auth; the test registry runs without.
    host.check_output("DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-registry >/dev/null && "
                      "sed -i '/^auth:/,/^[a-z]/{/^auth:/d;/^  /d}' /etc/docker/registry/config.yml && "
                      "systemctl restart docker-registry && "
                      "for i in $(seq 100); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && exit 0; sleep 0.2; done; "
                      "cat /etc/docker/registry/config.yml; journalctl -u docker-registry --no-pager | tail; exit 1")
    built = host.check_output("docker inspect -f '{{.Config.Image}}' comfyui-cpu0")
    host.check_output(f"docker tag {built} 127.0.0.1:5000/comfyui-prebuilt:1 && docker push -q 127.0.0.1:5000/comfyui-prebuilt:1")
    ref = host.check_output("docker inspect -f '{{index .RepoDigests 0}}' 127.0.0.1:5000/comfyui-prebuilt:1")
    assert ref.startswith("127.0.0.1:5000/comfyui-prebuilt@sha256:"), ref
    # Only the registry has it under that name now: the role has to pull it.
    host.check_output("docker rmi 127.0.0.1:5000/comfyui-prebuilt:1")
    pull = {"comfyui_image_source": "pull", "comfyui_pull_image": ref}
    rc, out = converge(host, pull)
    assert rc == 0, out
    assert re.search(r"Pull the image\] \**\nchanged: ", out), out
    # the packs' requirements go into a thin image on top of the pulled one
    state = json.loads(host.file("/etc/ansible/facts.d/comfyops.fact").content_string)["comfyui"]
    assert state["image"].startswith("comfyops/comfyui:pulled-") and state["comfyui_version"] == "0.28.0"
    pulled = json.loads(host.check_output(f"docker image inspect {ref}"))[0]["RootFS"]["Layers"]
    thin = json.loads(host.check_output(f"docker image inspect {state['image']}"))[0]["RootFS"]["Layers"]
    assert thin[:len(pulled)] == pulled and len(thin) > len(pulled)
    for name, port in INSTANCES.items():
        assert host.check_output(f"docker inspect -f '{{{{.Config.Image}}}}' {name}") == state["image"]
        assert "LTXFloatToInt" in get_json(host, port, "/object_info")
    rc, out = converge(host, pull)
    assert rc == 0 and "changed=0" in out, out
    # Back to the built image for whatever runs next.
    rc, out = converge(host)
    assert rc == 0, out
    assert host.check_output("docker inspect -f '{{.Config.Image}}' comfyui-cpu0") == built
