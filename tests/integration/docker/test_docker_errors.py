"""Bad input fails early with a message naming the variable, and leaves the host as it was.

Runs the role through ansible-playbook against the converged molecule hosts, after verify's
other checks; every case here must leave no trace on the host (asserted by checksums).
"""
import os
import sys
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from failure_support import assert_fails_cleanly as _assert_fails_cleanly  # noqa: E402
from failure_support import run_playbook, scenario_vars, typed_as_an_operator_would  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
PLAYBOOK = Path(__file__).parent / "playbooks" / "role.yml"
KEY = "/etc/apt/keyrings/docker.asc"
WATCHED = ["/etc/docker/daemon.json", "/etc/apt/sources.list.d/docker.sources", KEY]


def run_role(host, extra_vars):
    return run_playbook(PLAYBOOK, host, extra_vars)


def fingerprint(host):
    return {p: host.run(f"sha256sum {p} 2>/dev/null").stdout for p in WATCHED}


def assert_fails_cleanly(host, extra_vars, *expected):
    out = _assert_fails_cleanly(PLAYBOOK, host, fingerprint, extra_vars, expected)
    assert host.service("docker").is_running
    return out


def test_unknown_install_source(host):
    assert_fails_cleanly(host, {"docker_install_source": "snap"},
                         "docker_install_source", "snap", "docker_repo, distro")


def test_log_options_must_be_strings(host):
    assert_fails_cleanly(host, {"docker_log_options": {"max-size": "10m", "max-file": 3}},
                         "docker_log_options", "max-file", "only string values")


def test_daemon_options_must_be_a_mapping(host):
    assert_fails_cleanly(host, {"docker_daemon_options": ["live-restore"]}, "docker_daemon_options")


def test_unsupported_os(host):
    assert_fails_cleanly(host, {"_docker_supported": {"Ubuntu": ["24.04"]}},
                         "unsupported operating system Debian")


def test_missing_docker_user(host):
    assert_fails_cleanly(host, {"docker_users": ["nosuchuser"]}, "docker_users", "nosuchuser")


def test_unreachable_repo_restores_the_source(host):
    if host.ansible.get_variables().get("docker_install_source") != "docker_repo":
        pytest.skip("Docker's repo is exercised on the Debian 12 host")
    # The earlier key: the rig's key with an armour header, so its bytes differ from the one the run fetches and
    # installs (apt reads both); comfyops.comfyui._common must put the earlier one back with the earlier source.
    host.run_expect([0], f"cp {KEY} /root/docker.asc.keep && sed -i '1a Comment: an earlier copy' {KEY}")
    try:
        url = "http://comfyops-rig-repo/no-such-repo"
        out = assert_fails_cleanly(host, {"docker_repo_url": url, "docker_repo_key_url": "http://comfyops-rig-repo/docker/gpg"},
                                   "Docker's apt repository is not usable", url, f"docker_repo_url='{url}'",
                                   "were put back as they were")
        # the run did replace the key (and the source), so the checksums above prove they were put back
        for path in (KEY, "/etc/apt/sources.list.d/docker.sources"):
            assert f"changed: [{host.backend.get_hostname()}] => (item={path})" in out, out
        assert "Comment: an earlier copy" in host.file(KEY).content_string
        host.run_expect([0], "apt-get update -qq")
    finally:
        host.run_expect([0], f"mv /root/docker.asc.keep {KEY}")


def test_invalid_daemon_option_is_not_written(host):
    if "--validate" not in host.run("dockerd --help").stdout:
        pytest.skip("this dockerd cannot validate options (Debian 12's 20.10): only JSON is checked there")
    assert_fails_cleanly(host, {"docker_daemon_options": {"no-such-daemon-option": True}},
                         "no-such-daemon-option")
    assert "no-such-daemon-option" not in host.file("/etc/docker/daemon.json").content_string


def test_daemon_json_that_is_not_json_is_refused(host):
    original = host.file("/etc/docker/daemon.json").content_string
    host.run_expect([0], "cp /etc/docker/daemon.json /root/daemon.json.keep && printf '{broken' > /etc/docker/daemon.json")
    try:
        assert_fails_cleanly(host, {}, "is not a JSON object", "left it untouched")
        assert host.file("/etc/docker/daemon.json").content_string == "{broken"
    finally:
        host.run_expect([0], "cp /root/daemon.json.keep /etc/docker/daemon.json")
    assert host.file("/etc/docker/daemon.json").content_string == original


def test_numbers_and_booleans_typed_on_the_command_line_change_nothing(host):
    # -e docker_hold_packages=true passes the string "true": the roles convert it where they use it
    typed = typed_as_an_operator_would(["docker"], scenario_vars("docker", host.backend.get_hostname()))
    assert typed
    res = run_playbook(PLAYBOOK, host, {}, options=typed)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and " changed=0 " in out, out
