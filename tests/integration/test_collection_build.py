"""`ansible-galaxy collection build` gives a tarball that installs into a clean path and works from there, holds what
users run and nothing of the tests or the rig (galaxy.yml build_ignore), declares what an execution environment needs,
and the collection installs from a git repository too (command line and requirements file), without Galaxy."""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VERSION = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
# what a user runs from the installed collection, and the execution environment's requirements
SHIPPED = ["roles/docker/tasks/main.yml", "roles/_common/tasks/apt_repo.yml", "roles/comfyui/templates/Dockerfile.j2",
           "plugins/modules/comfyui_health.py",
           "plugins/module_utils/comfyui_api.py", "plugins/filter/nginx.py", "playbooks/site.yml",
           "playbooks/files/workflows/tiny_image.json", "meta/runtime.yml", "meta/execution-environment.yml",
           "requirements.txt", "bindep.txt", "requirements.yml", "inventories/example/hosts.yml",
           "docs/quickstart.md", "README.md", "CHANGELOG.md"]
# run only from a checkout: tests, scenarios, the rig, the repository's tooling and settings
NOT_SHIPPED = ["tests", "molecule", "scripts", "bench", "ee", "execution-environment.yml", "ansible-navigator.yml",
               "inventories/local", "ansible.cfg", ".ansible-lint", ".ansible-lint-ignore", ".config", "requirements-dev.txt", "pytest.ini"]
# a dead Galaxy: any attempt to reach it fails the install
NO_GALAXY = {"ANSIBLE_GALAXY_SERVER": "http://127.0.0.1:9/"}


def run(cmd, cwd, env=None):
    res = subprocess.run(cmd, cwd=cwd, env=env, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{cmd}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def clean_env(tmp, dest):
    """Only the fresh install is visible: not the repo's own collection link, nor ~/.ansible."""
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_HOME=str(tmp / "home"), ANSIBLE_CONFIG="",
                **NO_GALAXY)


def shipped_files(root):
    """Relative paths of the files under an installed collection (or an unpacked tarball), sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


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
    assert not sorted(set(SHIPPED) - set(names))
    for clutter in (".venv", ".ansible", ".git", ".pytest_cache", "__pycache__"):
        assert not any(clutter in n.split("/") for n in names), clutter
    for path in NOT_SHIPPED:
        assert not any(n == path or n.startswith(path + "/") for n in names), path
    # about 220 KiB today; the emulator fixtures alone would add 1.4 MiB, all of tests/ and molecule/ 2 MiB
    assert tarball.stat().st_size < 384 * 1024, tarball.stat().st_size


def test_installed_collection_declares_what_an_execution_environment_needs(installed):
    """ansible-builder introspect (what an EE build runs) finds the collection's bindep.txt and requirements.txt."""
    tarball, dest = installed
    res = subprocess.run([BIN / "ansible-builder", "introspect", str(dest)], check=False, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    found = yaml.safe_load(res.stdout[res.stdout.index("---"):])
    assert found["system"] == ["openssh-client [platform:dpkg]  # from collection comfyops.comfyui",
                               "openssh-clients [platform:rpm]  # from collection comfyops.comfyui"]
    # Nothing beyond ansible-core on the controller (requirements.txt says why): a requirement added there shows here.
    assert found["python"] == []


def test_installed_role_is_usable(installed, tmp_path):
    tarball, dest = installed
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  roles:\n    - comfyops.comfyui.docker\n")
    env = clean_env(tmp_path, dest)
    out = run([BIN / "ansible-playbook", "--list-tasks", str(playbook)], cwd=tmp_path, env=env)
    # (the daemon.json write is an include of comfyops.comfyui._common, listed by its name without a role prefix)
    assert "comfyops.comfyui.docker : Install the Docker packages" in out and "Write daemon.json" in out
    assert "comfyops.comfyui._common : Refuse direct use" in out
    # The argument spec travels with the role: bad input is refused from the installed copy too.
    res = subprocess.run([BIN / "ansible-playbook", "-e", "docker_install_source=snap", str(playbook)],
                         cwd=tmp_path, env=env, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "docker_install_source" in out and "snap" in out, out


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory):
    """A git repository of this working tree (tracked and new files, as a commit would hold them) on branch main, and
    a branch `next` whose one commit moves galaxy.yml to another version."""
    repo = tmp_path_factory.mktemp("git") / "comfyui"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]
    run(git + ["init", "-q"], cwd=repo)
    run(git + ["add", "-A"], cwd=repo)
    run(git + ["commit", "-q", "-m", "working tree"], cwd=repo)
    run(git + ["checkout", "-q", "-b", "next"], cwd=repo)
    galaxy = repo / "galaxy.yml"
    galaxy.write_text(galaxy.read_text().replace(f"version: {VERSION}", "version: 99.0.0"))
    run(git + ["commit", "-q", "-am", "next version"], cwd=repo)
    run(git + ["checkout", "-q", "main"], cwd=repo)
    return repo


def installed_version(dest):
    manifest = dest / "ansible_collections/comfyops/comfyui/MANIFEST.json"
    return json.loads(manifest.read_text())["collection_info"]["version"]


def test_install_from_git_url(git_repo, installed, tmp_path):
    tarball, tarball_dest = installed
    dest = tmp_path / "collections"
    out = run([BIN / "ansible-galaxy", "collection", "install", "-p", str(dest), f"git+file://{git_repo}"],
              cwd=tmp_path, env=clean_env(tmp_path, dest))
    assert "comfyops.comfyui:" in out and "installed successfully" in out, out
    assert installed_version(dest) == VERSION
    # the same files as the tarball: build_ignore applies to git installs too
    collection = "ansible_collections/comfyops/comfyui"
    assert shipped_files(dest / collection) == shipped_files(tarball_dest / collection)


def test_install_from_git_in_a_requirements_file(git_repo, tmp_path):
    dest = tmp_path / "collections"
    requirements = tmp_path / "requirements.yml"
    requirements.write_text(yaml.safe_dump(
        {"collections": [{"name": f"git+file://{git_repo}", "type": "git", "version": "next"}]}))
    out = run([BIN / "ansible-galaxy", "collection", "install", "-p", str(dest), "-r", str(requirements)],
              cwd=tmp_path, env=clean_env(tmp_path, dest))
    assert "installed successfully" in out, out
    assert installed_version(dest) == "99.0.0"  # the branch named in `version`, not the default branch
    assert (dest / "ansible_collections/comfyops/comfyui/roles/comfyui/tasks/main.yml").is_file()
