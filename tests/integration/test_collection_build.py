"""`ansible-galaxy collection build` gives a tarball that installs into a clean path and works from there."""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(cmd, cwd, env=None):
    res = subprocess.run(cmd, cwd=cwd, env=env, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{cmd}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def clean_env(tmp, dest):
    """Only the fresh install is visible: not the repo's own collection link, nor ~/.ansible."""
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_HOME=str(tmp / "home"), ANSIBLE_CONFIG="")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("galaxy")
    dest = tmp / "collections"
    env = clean_env(tmp, dest)
    run([BIN / "ansible-galaxy", "collection", "build", "--output-path", str(tmp), str(ROOT)], cwd=tmp, env=env)
    tarball = next(tmp.glob("comfyops-comfyui-*.tar.gz"))
    out = run([BIN / "ansible-galaxy", "collection", "install", "--offline", "-p", str(dest), str(tarball)],
              cwd=tmp, env=env)
    assert "installed successfully" in out, out
    return tarball, dest


def test_tarball_has_the_collection_and_no_local_clutter(installed):
    tarball, dest = installed
    names = tarfile.open(tarball).getnames()
    assert "roles/docker/tasks/main.yml" in names
    assert "meta/runtime.yml" in names
    for clutter in (".venv", ".ansible", ".git", ".pytest_cache", "__pycache__"):
        assert not any(clutter in n.split("/") for n in names), clutter
    assert tarball.stat().st_size < 5 * 1024 * 1024


def test_installed_role_is_usable(installed, tmp_path):
    tarball, dest = installed
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  roles:\n    - comfyops.comfyui.docker\n")
    env = clean_env(tmp_path, dest)
    out = run([BIN / "ansible-playbook", "--list-tasks", str(playbook)], cwd=tmp_path, env=env)
    assert "comfyops.comfyui.docker : Write daemon.json" in out
    # The argument spec travels with the role: bad input is refused from the installed copy too.
    res = subprocess.run([BIN / "ansible-playbook", "-e", "docker_install_source=snap", str(playbook)],
                         cwd=tmp_path, env=env, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "docker_install_source" in out and "snap" in out, out
