"""The execution environment's definition and its build inputs (scripts/build_ee.py), without a container engine:
the pins match the controller's, the collection tarballs it makes install offline with the controller's versions and
are reproducible, a changed file is refused, and ansible-builder accepts the definition. The image build and a
site.yml run in it are the molecule scenario ee."""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEFINITION = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
spec = importlib.util.spec_from_file_location("build_ee", ROOT / "scripts" / "build_ee.py")
build_ee = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_ee)


def dev_pins():
    lines = (ROOT / "requirements-dev.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))


def test_the_image_pins_what_the_controller_runs():
    pins = dev_pins()
    deps = DEFINITION["dependencies"]
    for key, package in (("ansible_core", "ansible-core"), ("ansible_runner", "ansible-runner")):
        assert deps[key]["package_pip"] == f"{package}=={pins[package]}"
    for requirement in deps["python"]:
        name, version = requirement.split("==")
        assert pins[name] == version, requirement


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("ee")
    return out, build_ee.prepare(out)


def test_prepared_collections_install_offline_with_the_controller_versions(prepared, tmp_path):
    out, tarballs = prepared
    dest = tmp_path / "collections"
    env = {"PATH": str(BIN), "HOME": str(tmp_path), "ANSIBLE_HOME": str(tmp_path / "home"),
           "ANSIBLE_CONFIG": "", "ANSIBLE_GALAXY_SERVER": "http://127.0.0.1:9/"}
    # as the image build runs it: from the directory that holds requirements.yml and collections/
    res = subprocess.run([BIN / "ansible-galaxy", "collection", "install", "-r", "requirements.yml", "-p", str(dest)],
                         cwd=out, env=env, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    got = {f"{m.parts[-3]}.{m.parts[-2]}": json.loads(m.read_text())["collection_info"]["version"]
           for m in dest.glob("ansible_collections/*/*/MANIFEST.json")}
    controller = {name: version for name, (path, version) in build_ee.installed_collections().items()}
    wanted = [c["name"] for c in yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]]
    assert set(wanted) <= set(got)
    assert "community.library_inventory_filtering_v1" in got  # community.docker's own dependency
    for name, version in got.items():
        if name != "comfyops.comfyui":
            assert version == controller[name], name
    assert got["comfyops.comfyui"] == yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    assert len(tarballs) == len(got)


def test_prepared_tarballs_are_reproducible(prepared, tmp_path):
    out, tarballs = prepared
    again = build_ee.prepare(tmp_path)
    assert [t.name for t in again] == [t.name for t in tarballs]
    for first, second in zip(tarballs, again):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_repack_refuses_a_file_that_differs_from_its_release(tmp_path):
    path, version = build_ee.installed_collections()["community.library_inventory_filtering_v1"]
    copy = tmp_path / "community" / "library_inventory_filtering_v1"
    shutil.copytree(path, copy, ignore=shutil.ignore_patterns("__pycache__"))
    files = json.loads((copy / "FILES.json").read_text())["files"]
    victim = next(copy / f["name"] for f in files if f["ftype"] == "file" and (copy / f["name"]).is_file())
    victim.write_text(victim.read_text() + "\n# changed\n")
    with pytest.raises(SystemExit, match="differs from its release checksum"):
        build_ee.repack(copy, tmp_path)


def test_ansible_builder_accepts_the_definition(prepared, tmp_path):
    out, tarballs = prepared
    # the definition's paths are relative to it: a copy beside the prepared build/ee/ and ee/
    shutil.copy(ROOT / "execution-environment.yml", tmp_path)
    shutil.copytree(ROOT / "ee", tmp_path / "ee")
    shutil.copytree(out, tmp_path / "build" / "ee")
    res = subprocess.run([BIN / "ansible-builder", "create", "-f", "execution-environment.yml", "-c", "context",
                          "--output-filename", "Dockerfile"], cwd=tmp_path, check=False, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    dockerfile = (tmp_path / "context" / "Dockerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="docker.io/library/debian:trixie-slim"' in dockerfile
    assert 'ARG PKGMGR="/usr/local/sbin/pkgmgr-apt"' in dockerfile
    build = tmp_path / "context" / "_build"
    assert sorted(p.name for p in (build / "collections").iterdir()) == sorted(t.name for t in tarballs)
    assert (build / "exclude-collections.txt").read_text().split() == ["community.crypto"]
