"""Verify the docker role on the molecule hosts (testinfra, run by `molecule verify`)."""
import json
import os
import re
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
ROOT = Path(__file__).resolve().parents[3]


def hostvars(host):
    return host.ansible.get_variables()


def daemon_json(host):
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


def test_service_enabled_and_active(host):
    svc = host.service("docker")
    assert svc.is_enabled
    assert svc.is_running


def test_runs_a_locally_loaded_image(host):
    host.run_expect([0], "docker load -i /opt/comfyops-rig/images/busybox.tar")
    out = host.check_output("docker run --rm comfyops-rig/busybox:latest echo hello-from-nested-docker")
    assert out.strip() == "hello-from-nested-docker"


def test_compose_v2_at_least_2_18(host):
    out = host.check_output("docker compose version --short")
    major, minor = (int(x) for x in re.match(r"v?(\d+)\.(\d+)", out.strip()).groups())
    assert (major, minor) >= (2, 18), out


def test_daemon_json_keeps_foreign_keys(host):
    cfg = daemon_json(host)
    # Placed by prepare.yml, as nvidia-ctk and an operator would.
    assert cfg["runtimes"]["nvidia"] == {"args": [], "path": "nvidia-container-runtime"}
    assert cfg["registry-mirrors"] == ["http://mirror.invalid:5000"]


def test_daemon_json_is_stable_sorted_four_space_json(host):
    text = host.file("/etc/docker/daemon.json").content_string
    cfg = json.loads(text)
    assert text == json.dumps(cfg, indent=4, sort_keys=True) + "\n"
    assert host.file("/etc/docker/daemon.json").mode == 0o644


def test_log_options_applied(host):
    cfg = daemon_json(host)
    expected = hostvars(host).get("docker_log_options", {"max-size": "50m", "max-file": "5"})
    assert cfg["log-driver"] == "json-file"
    assert cfg["log-opts"] == expected
    # The running daemon uses them, not just the file.
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == "json-file"
    host.run_expect([0], "docker run -d --name logcheck comfyops-rig/busybox:latest sleep 60")
    try:
        cfg_run = json.loads(host.check_output("docker inspect -f '{{json .HostConfig.LogConfig}}' logcheck"))
        assert cfg_run["Config"] == expected
    finally:
        host.run("docker rm -f logcheck")


def test_repo_source_is_deb822_with_signed_by(host):
    if hostvars(host).get("docker_install_source") != "docker_repo":
        assert not host.file("/etc/apt/sources.list.d/docker.sources").exists
        return
    src = host.file("/etc/apt/sources.list.d/docker.sources").content_string
    assert "Types: deb" in src
    assert "Signed-By: /etc/apt/keyrings/docker.asc" in src
    assert "Suites: bookworm" in src
    assert "BEGIN PGP PUBLIC KEY BLOCK" in host.file("/etc/apt/keyrings/docker.asc").content_string
    # apt trusts the repo through that keyring alone: the lists came in signed.
    policy = host.check_output("apt-cache policy docker-ce")
    assert "comfyops-rig-repo" in policy


def test_version_pin_and_hold(host):
    if hostvars(host).get("docker_install_source") != "docker_repo":
        pytest.skip("pinning is exercised on the docker_repo host")
    version = host.check_output("dpkg-query -W -f '${Version}' docker-ce")
    assert version.startswith("5:26.1."), version  # 27.0.0 is offered by the repo too
    candidate = host.check_output("apt-cache policy docker-ce")
    assert "5:27.0.0" in candidate
    held = host.check_output("apt-mark showhold").split()
    assert {"docker-ce", "docker-ce-cli", "docker-compose-plugin"} <= set(held)
    assert "Pin: version 5:26.1.*" in host.file("/etc/apt/preferences.d/docker").content_string


def test_docker_users_in_group(host):
    users = hostvars(host).get("docker_users", [])
    for user in users:
        assert "docker" in host.user(user).groups


def test_live_restore_option(host):
    expected = bool(hostvars(host).get("docker_live_restore", False))
    assert daemon_json(host)["live-restore"] is expected
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is expected


def test_extra_daemon_options_merged(host):
    opts = hostvars(host).get("docker_daemon_options", {})
    cfg = daemon_json(host)
    for key, value in opts.items():
        assert cfg[key] == value
