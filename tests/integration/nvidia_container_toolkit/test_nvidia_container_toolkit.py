"""Verify the nvidia_container_toolkit role on the molecule hosts (testinfra, run by `molecule verify`).

NVIDIA's packages, nvidia-ctk and nvidia-smi here are STAND-INS (tests/fixtures/nvidia_standins/, served by the
rig's signed flat repo): they have the real names, versions, relations and CLI behaviour, but there is no driver
and no GPU, so the GPU container smoke test is (correctly) skipped by the role.
"""
import json
import os

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
PACKAGES = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
            "libnvidia-container1"]
VERSION = "1.18.1-1"
UUID = "GPU-1937a99c-fe79-7f8c-de9a-fa4cf6eae3d2"  # of the nvidia-smi capture the stand-in replays


def hostvars(host):
    return host.ansible.get_variables()


def daemon_json(host):
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


def since_prepare(host, args):
    """Journal lines after the cursor prepare recorded (so: check mode, converge and idempotence)."""
    cursor = host.file("/var/lib/comfyops-test/cursor").content_string.strip()
    assert cursor
    return host.check_output(f"journalctl --after-cursor='{cursor}' {args} -o cat").splitlines()


def test_repo_source_is_deb822_flat_with_signed_by(host):
    src = host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources").content_string
    assert "Types: deb" in src
    assert "URIs: http://comfyops-rig-repo/nvidia/stable/deb/$(ARCH)" in src
    assert "Suites: /" in src
    assert "Components" not in src
    assert "Signed-By: /etc/apt/keyrings/nvidia-container-toolkit.asc" in src
    key = host.file("/etc/apt/keyrings/nvidia-container-toolkit.asc")
    assert "BEGIN PGP PUBLIC KEY BLOCK" in key.content_string
    assert key.mode == 0o644
    assert not host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.list").exists
    # apt trusts the repo through that keyring alone: the lists came in signed.
    assert "comfyops-rig-repo/nvidia" in host.check_output("apt-cache policy nvidia-container-toolkit")


def test_four_packages_at_the_pinned_version(host):
    for pkg in PACKAGES:
        assert host.package(pkg).is_installed, pkg
        assert host.package(pkg).version == VERSION, pkg
    policy = host.check_output("apt-cache policy nvidia-container-toolkit")
    assert "1.17.8-1" in policy and "1.17.4-1" in policy  # other versions are offered
    pin = host.file("/etc/apt/preferences.d/nvidia-container-toolkit").content_string
    assert f"Pin: version {VERSION}" in pin
    assert "Package: " + " ".join(PACKAGES) in pin
    assert "version 1.18.1" in host.check_output("nvidia-ctk --version")


def test_toolkit_and_driver_packages_held(host):
    held = set(host.check_output("apt-mark showhold").split())
    assert set(PACKAGES) <= held
    assert "nvidia-driver-standin" in held  # the driver stand-in prepare installed


def test_daemon_json_merged(host):
    cfg = daemon_json(host)
    hv = hostvars(host)
    # nvidia-ctk's runtime entry
    assert cfg["runtimes"]["nvidia"] == {"args": [], "path": "nvidia-container-runtime"}
    # the docker role's keys, including the one converge added
    assert cfg["log-driver"] == "json-file"
    assert cfg["log-opts"] == {"max-size": "50m", "max-file": "5"}
    assert cfg["max-concurrent-downloads"] == 4
    assert "live-restore" in cfg
    if hv.get("nvidia_container_toolkit_docker_set_as_default"):
        assert cfg["default-runtime"] == "nvidia"
    else:
        assert "default-runtime" not in cfg
    if hv.get("nvidia_container_toolkit_docker_cdi_enabled", True):
        assert cfg["features"] == {"cdi": True}
    else:
        assert "features" not in cfg


def test_daemon_json_is_what_nvidia_ctk_and_the_docker_role_both_write(host):
    text = host.file("/etc/docker/daemon.json").content_string
    assert text == json.dumps(json.loads(text), indent=4, sort_keys=True) + "\n"
    # nvidia-ctk would change nothing now
    hv = hostvars(host)
    flags = (" --set-as-default" if hv.get("nvidia_container_toolkit_docker_set_as_default") else "") + (
        " --cdi.enabled" if hv.get("nvidia_container_toolkit_docker_cdi_enabled", True) else "")
    dry = host.check_output("nvidia-ctk runtime configure --runtime=docker --dry-run" + flags)
    assert json.loads(dry) == json.loads(text)


def test_docker_runs_the_nvidia_runtime(host):
    runtimes = json.loads(host.check_output("docker info --format '{{json .Runtimes}}'"))
    assert "nvidia" in runtimes
    host.run_expect([0], "docker image inspect comfyops-rig/busybox:latest >/dev/null 2>&1"
                         " || docker load -i /opt/comfyops-rig/images/busybox.tar")
    # the stand-in runtime passes through to runc, as the real one does for containers without GPUs
    out = host.check_output("docker run --rm --runtime=nvidia comfyops-rig/busybox:latest echo via-nvidia-runtime")
    assert out.strip() == "via-nvidia-runtime"
    if hostvars(host).get("nvidia_container_toolkit_docker_set_as_default"):
        assert json.loads(host.check_output("docker info --format '{{json .DefaultRuntime}}'")) == "nvidia"


def test_cdi_spec(host):
    spec = host.file("/etc/cdi/nvidia.yaml")
    assert spec.mode == 0o644
    assert "kind: nvidia.com/gpu" in spec.content_string
    devices = host.check_output("nvidia-ctk cdi list --spec-dir=/etc/cdi 2>/dev/null").split()
    assert {"nvidia.com/gpu=0", "nvidia.com/gpu=all", f"nvidia.com/gpu={UUID}"} <= set(devices)


def test_exactly_one_docker_restart(host):
    # prepare recorded the cursor after its own restart; check mode must not restart, converge once
    # (the docker role and this role both notified), idempotence never.
    # Counted from dockerd's own log (one shutdown, one start), which reads the same on every systemd.
    lines = since_prepare(host, "-u docker.service")
    assert len([line for line in lines if 'msg="Daemon shutdown complete"' in line]) == 1, lines
    assert len([line for line in lines if 'msg="API listen on ' in line]) == 1, lines


def test_no_systemd_daemon_reload(host):
    lines = since_prepare(host, "_PID=1")
    assert [line for line in lines if line.startswith("Reload")] == [], lines
