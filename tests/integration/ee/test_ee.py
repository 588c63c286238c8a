"""Verify the molecule scenario ee: what site.yml deployed when ansible-navigator ran it in the execution environment,
and the image itself (what it holds, and that navigator runs from this repository use the image's collections)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import testinfra.utils.ansible_runner
import yaml

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
ROOT = Path(__file__).resolve().parents[3]
IMAGE = os.environ["COMFYOPS_EE_IMAGE"]
IMAGE_COLLECTIONS = "/usr/share/ansible/collections/ansible_collections"
BIN = Path(sys.executable).parent


def pin(package):
    """The version requirements-dev.txt pins for the controller."""
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==")[1].strip()
    raise KeyError(package)


def in_image(*cmd):
    return subprocess.run(["docker", "run", "--rm", IMAGE, *cmd], check=True, capture_output=True, text=True,
                          timeout=120).stdout


# Every test takes `host` (testinfra parametrizes it), so pytest keeps them in file order.
def test_comfyui_answers_directly_and_through_nginx_on_loopback(host):
    direct = json.loads(host.check_output("curl -fsS http://127.0.0.1:8188/system_stats"))
    assert direct["system"]["comfyui_version"] == "0.28.0"
    proxied = json.loads(host.check_output("curl -fsS http://127.0.0.1/comfyui/system_stats"))
    assert proxied["system"]["comfyui_version"] == "0.28.0"
    listeners = [line.split()[3] for line in host.check_output("ss -Htln").splitlines()]
    # ComfyUI and NGINX on loopback only, and nothing left of Debian's default site's *:80
    assert sorted(a for a in listeners if a.endswith((":80", ":8188"))) == ["127.0.0.1:80", "127.0.0.1:8188"]


def test_the_deployment_state_was_recorded(host):
    fact = host.file("/etc/ansible/facts.d/comfyops.fact")
    assert fact.is_file and fact.user == "root" and fact.mode == 0o644
    state = json.loads(fact.content_string)
    assert [i["name"] for i in state["comfyui"]["instances"]] == ["comfyui-cpu0"]
    assert state["nginx"]["url"] == "http://127.0.0.1/comfyui/"


def test_the_image_holds_the_tested_ansible_and_collections(host):
    collections = json.loads(in_image("ansible-galaxy", "collection", "list", "--format", "json"))[IMAGE_COLLECTIONS]
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert collections["comfyops.comfyui"]["version"] == galaxy["version"]
    # the version the controller uses (the `ansible` package), which the other scenarios run with
    listed = json.loads(subprocess.run([BIN / "ansible-galaxy", "collection", "list", "community.docker", "--format",
                                        "json"], cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    assert collections["community.docker"] == next(iter(listed.values()))["community.docker"]
    assert {"community.general", "ansible.posix", "community.crypto",
            "community.library_inventory_filtering_v1"} <= set(collections)
    assert f"ansible [core {pin('ansible-core')}]" in in_image("ansible", "--version")
    assert in_image("ansible-runner", "--version").strip() == pin("ansible-runner")


def test_the_image_has_the_declared_system_packages_and_no_excluded_ones(host):
    packages = in_image("dpkg-query", "-W", "-f", "${Package}\n").split()
    assert "openssh-client" in packages  # bindep.txt of this collection
    # community.crypto's bindep list is excluded (execution-environment.yml)
    assert "cryptsetup" not in packages and "python3-cryptography" not in packages
    assert in_image("sh", "-c", "ls /var/lib/apt/lists | grep -v -x -e lock -e partial || true").strip() == ""


def test_navigator_runs_from_the_repository_use_the_image_collections(host):
    res = subprocess.run(
        [BIN / "ansible-navigator", "exec", "--mode=stdout", f"--eei={IMAGE}", "--pull-policy=never", "--ce=docker",
         "--lf=/dev/null", "--", "ansible-galaxy", "collection", "list", "comfyops.comfyui", "--format", "json"],
        cwd=ROOT, check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    found = json.loads(res.stdout[res.stdout.index("{"):])
    # ansible.cfg puts the checkout's link (.ansible/collections) first; ansible-navigator.yml replaces the path
    assert list(found) == [IMAGE_COLLECTIONS], found
