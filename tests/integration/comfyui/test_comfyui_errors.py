"""Bad input and unusable hosts fail in preflight with a message naming the variable, and change nothing.

Runs the scenario's converge playbook through ansible-playbook against the converged molecule host.
"""
import os
import sys
from pathlib import Path

import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from failure_support import assert_fails_cleanly as _assert_fails_cleanly  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
CONVERGE = Path(__file__).resolve().parents[3] / "molecule" / "comfyui" / "converge.yml"
WATCHED = ["/opt/comfyops/comfyui/compose.yml", "/opt/comfyops/comfyui/runtime.env", "/etc/ansible/facts.d/comfyops.fact"]


def fingerprint(host):
    started = host.check_output("docker inspect -f '{{.State.StartedAt}}' comfyui-cpu0 comfyui-cpu1")
    return started, {p: host.check_output(f"sha256sum {p}") for p in WATCHED}


def assert_fails_cleanly(host, extra_vars, *expected):
    _assert_fails_cleanly(CONVERGE, host, fingerprint, extra_vars, expected)


def test_unknown_device(host):
    assert_fails_cleanly(host, {"comfyui_device": "tpu"}, "comfyui_device", "tpu", "gpu, cpu")


def test_gpu_mode_without_a_driver(host):
    assert_fails_cleanly(host, {"comfyui_device": "gpu"}, "comfyui_device=gpu but no usable GPU", "comfyui_device=cpu")


def test_pull_without_an_image(host):
    assert_fails_cleanly(host, {"comfyui_image_source": "pull"}, "comfyui_pull_image")


def test_data_root_too_small(host):
    assert_fails_cleanly(host, {"comfyui_min_free_gb": 1000000}, "comfyui_min_free_gb=1000000", "/srv/comfyui")


def test_port_used_by_another_service(host):
    # Instance 1 of a deployment moved to 8300 would need 8301, where something else listens.
    server = host.run("nohup python3 -m http.server 8301 --bind 127.0.0.1 >/dev/null 2>&1 & echo $!")
    pid = server.stdout.strip()
    try:
        host.run_expect([0], "for i in $(seq 50); do ss -Htln | grep -q ':8301 ' && exit 0; sleep 0.1; done; exit 1")
        assert_fails_cleanly(host, {"comfyui_port": 8300}, "8301", "comfyui_port")
    finally:
        host.run(f"kill {pid}")
