"""Bad input and unsafe choices fail early with a message naming the cause, and leave the host as it was.

Runs the role through ansible-playbook against the converged molecule hosts, after the checks in
test_nvidia_container_toolkit.py. The packages and nvidia-smi are the rig's STAND-INS (see that file).
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
PACKAGES = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
            "libnvidia-container1"]
SOURCE = "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"
KEY = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
PREFS = "/etc/apt/preferences.d/nvidia-container-toolkit"
WATCHED = ["/etc/docker/daemon.json", SOURCE, KEY, PREFS, "/etc/cdi/nvidia.yaml"]
# The "nothing installed" cases start from a host without the toolkit; one host is enough (and saves time).
FRESH_HOST = "nvidia-debian13"


def run_role(host, extra_vars):
    return run_playbook(PLAYBOOK, host, extra_vars)


def state(host):
    files = {p: host.run(f"sha256sum {p} 2>/dev/null").stdout for p in WATCHED}
    packages = host.run("dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\\n' "
                        + " ".join(PACKAGES) + " 2>/dev/null").stdout
    return files, packages, host.run("apt-mark showhold").stdout


def assert_fails_cleanly(host, extra_vars, *expected):
    out = _assert_fails_cleanly(PLAYBOOK, host, state, extra_vars, expected)
    assert host.service("docker").is_running
    return out


def test_no_driver_fails_with_the_reason(host):
    assert_fails_cleanly(host, {"nvidia_container_toolkit_nvidia_smi_path": "/nonexistent/nvidia-smi"},
                         "no usable NVIDIA GPU", "/nonexistent/nvidia-smi", "nvidia_container_toolkit_require_gpu=false")


def test_no_driver_skips_when_not_required(host):
    before = state(host)
    res = run_role(host, {"nvidia_container_toolkit_nvidia_smi_path": "/nonexistent/nvidia-smi",
                          "nvidia_container_toolkit_require_gpu": False})
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "nvidia_container_toolkit role skipped" in out and "/nonexistent/nvidia-smi" in out
    assert "changed=0" in out
    assert state(host) == before


def test_driver_too_old(host):
    assert_fails_cleanly(host, {"nvidia_container_toolkit_driver_min_version": "999.1"},
                         "NVIDIA driver 580.159.04 is older than", "999.1")


def test_argument_spec_rejects_bad_types(host):
    assert_fails_cleanly(host, {"nvidia_container_toolkit_require_gpu": "perhaps"},
                         "nvidia_container_toolkit_require_gpu")


def test_malformed_fingerprint(host):
    assert_fails_cleanly(host, {"nvidia_container_toolkit_repo_key_fingerprint": "not-hex"},
                         "nvidia_container_toolkit_repo_key_fingerprint", "40 or 64 hex digits")


def test_version_below_floor_on_converged_host(host):
    assert_fails_cleanly(host, {"nvidia_container_toolkit_version": "1.17.4-1"},
                         "below the security floor 1.17.8", "CVE-2025-23266")
    assert host.package("nvidia-container-toolkit").version == "1.18.1-1"


def test_unreadable_repo_puts_back_the_source_key_and_pin(host):
    if host.backend.get_hostname() != "nvidia-debian12":
        pytest.skip("one host is enough for the rollback (comfyops.comfyui._common's, the same for every role)")
    # The earlier key: the rig's key with an armour header (same fingerprint, other bytes), so the run replaces it
    # with the key it fetched and must put this one back, with the earlier source and pin.
    host.run_expect([0], f"cp {KEY} /root/nvidia.asc.keep && sed -i '1a Comment: an earlier copy' {KEY}")
    try:
        url = "http://comfyops-rig-repo/nope"
        out = assert_fails_cleanly(host, {"nvidia_container_toolkit_repo_url": url,
                                          "nvidia_container_toolkit_version": "1.18.0-1"},
                                   "NVIDIA's apt repository is not usable", f"nvidia_container_toolkit_repo_url='{url}'",
                                   "Nothing was installed", "were put back as they were")
        # the run did replace them (the pin names another version), so the unchanged checksums prove the rollback
        for path in (KEY, SOURCE, PREFS):
            assert f"changed: [{host.backend.get_hostname()}] => (item={path})" in out, out
        assert "Comment: an earlier copy" in host.file(KEY).content_string
        assert "Pin: version 1.18.1-1" in host.file(PREFS).content_string
        # later apt runs work: the restored source and key read the repository without a warning (into lists of
        # their own, so the host's stay as they are; fetched as root, as _apt cannot enter /root)
        res = host.run("mkdir -p /root/only-nvidia/lists/partial && cp %s /root/only-nvidia/ && apt-get update"
                       " -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/root/only-nvidia"
                       " -o Dir::State::Lists=/root/only-nvidia/lists -o APT::Sandbox::User=root" % SOURCE)
        assert res.rc == 0 and "W:" not in res.stdout + res.stderr and "E:" not in res.stdout + res.stderr, res.stderr
    finally:
        host.run_expect([0], f"mv /root/nvidia.asc.keep {KEY} && rm -rf /root/only-nvidia")


# Before the fresh-host cases: on that host they leave the toolkit removed until the end of the module.
def test_numbers_and_booleans_typed_on_the_command_line_change_nothing(host):
    # -e docker_hold_packages=true passes the string "true": the roles convert it where they use it
    typed = typed_as_an_operator_would(["docker", "nvidia_container_toolkit"], scenario_vars("nvidia_container_toolkit", host.backend.get_hostname()))
    assert typed
    res = run_playbook(PLAYBOOK, host, {"nct_test_with_docker": True}, options=typed)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and " changed=0 " in out, out


@pytest.fixture(scope="module")
def fresh(host):
    """The host without the toolkit, its source, key, pin and package lists; restored by a full run afterwards."""
    if host.backend.get_hostname() != FRESH_HOST:
        pytest.skip(f"the fresh-host cases run on {FRESH_HOST}")
    host.run_expect([0], "apt-mark unhold " + " ".join(PACKAGES)
                    + " && DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq " + " ".join(PACKAGES)
                    + f" && rm -f {SOURCE} {KEY} {PREFS} /var/lib/apt/lists/comfyops-rig-repo_nvidia_*")
    yield host
    res = run_role(host, {"nct_test_with_docker": True})
    assert res.returncode == 0, res.stdout + res.stderr
    assert host.package("nvidia-container-toolkit").version == "1.18.1-1"


def assert_nothing_installed(host):
    for pkg in PACKAGES:
        assert not host.package(pkg).is_installed, pkg
    for path in (SOURCE, KEY, PREFS):
        assert not host.file(path).exists, path


def test_fresh_host_refuses_version_below_floor(fresh):
    assert_fails_cleanly(fresh, {"nvidia_container_toolkit_version": "1.17.4-1"},
                         "below the security floor 1.17.8")
    assert_nothing_installed(fresh)


def test_fresh_host_wrong_key_fingerprint_installs_nothing(fresh):
    wrong = "0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567"
    assert_fails_cleanly(fresh, {"nvidia_container_toolkit_repo_key_fingerprint": wrong},
                         "not the expected nvidia_container_toolkit_repo_key_fingerprint",
                         "0123456789ABCDEF0123456789ABCDEF01234567", "Nothing was installed")
    assert_nothing_installed(fresh)


def test_fresh_host_check_mode_changes_nothing(fresh):
    before = state(fresh)
    res = run_playbook(PLAYBOOK, fresh, {"nct_test_with_docker": True}, options=["--check"])
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "the toolkit is not installed yet" in out
    assert state(fresh) == before
    assert_nothing_installed(fresh)
