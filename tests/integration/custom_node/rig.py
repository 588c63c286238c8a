"""The comfyui_custom_node test rig: pack repositories, one emulator "container" behind the fake docker CLI.

The emulator runs as ComfyUI 0.28.0 (the ComfyUI-LTXVideo stand-in imports only there). Repositories:
ComfyUI-LTXVideo (commit 0: the fixture; commit 1: kornia pinned in requirements.txt), ansible_probe_nodes
(commit 1 only adds a file) and broken_pack. reset() empties custom_nodes again between tests, so one emulator
serves a whole test module.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from emulator_helpers import free_port, http_request, prepare_tree
from fake_docker import FakeDocker
from repos import PackRepo, RecordingGit, git

TESTS = Path(__file__).resolve().parents[2]
LTX_CLASSES = [n for n in (TESTS / "fixtures/reference/comfyui-api/ltxvideo_classes.txt").read_text().splitlines()
               if n.strip()]
GPU0 = "comfyui-gpu0"
IMAGE_A = "sha256:" + "a" * 64
IMPORT_ERROR = "No module named 'nonexistent_dependency_for_ansible_test'"


def remove_path(path):
    subprocess.run(["rm", "-rf", "--", str(path)], check=True)


class Rig:
    def __init__(self, tmp):
        tmp = Path(tmp)
        self.tmp = tmp
        self.ltx = PackRepo(tmp / "repos" / "ComfyUI-LTXVideo", "ComfyUI-LTXVideo")
        self.ltx.commit("pin kornia", {"requirements.txt": (self.ltx.path / "requirements.txt").read_text()
                                       + "kornia<=0.8.2\n"})
        self.probe = PackRepo(tmp / "repos" / "ansible_probe_nodes", "ansible_probe_nodes")
        self.probe.commit("docs", {"NOTES.md": "second commit\n"})
        self.broken = PackRepo(tmp / "repos" / "broken_pack", "broken_pack")
        self.root = prepare_tree(tmp / "emu", version="0.28.0")
        self.custom_nodes = self.root / "custom_nodes"
        self.state_dir = self.root / ".comfyops-nodes"
        self.shipped = set(os.listdir(self.custom_nodes))
        self.docker = FakeDocker(tmp / "docker", self.root)
        self.docker.add(GPU0, free_port())
        self.docker.start(GPU0)
        self.git = RecordingGit(tmp / "bin")

    def reset(self):
        for name in set(os.listdir(self.custom_nodes)) - self.shipped:
            remove_path(self.custom_nodes / name)
        remove_path(self.state_dir)
        self.docker.fail_pip(None)
        self.docker.set_image(IMAGE_A)
        for log in (self.docker.calls_log, self.docker.exec_log):
            log.unlink(missing_ok=True)
        self.git.clear()

    def args(self, packs, **kw):
        """Module arguments for packs against this rig."""
        return dict(dict(packs=packs, custom_nodes_dir=str(self.custom_nodes), containers=[GPU0],
                         urls=[self.docker.url(GPU0)], wait_timeout=20, delay=0.05, docker_bin=str(self.docker.bin),
                         git_bin=str(self.git.bin)), **kw)

    def offline_args(self, packs, **kw):
        """Arguments without containers or URLs: packs are placed, nothing restarts (for tests about refs)."""
        return self.args(packs, containers=[], urls=[], **kw)

    def ltx_pack(self, commit=0, **kw):
        return dict(dict(name="ComfyUI-LTXVideo", repo=self.ltx.url, version=self.ltx.commits[commit],
                         constraints=["kornia<=0.8.2"], expected_classes=LTX_CLASSES), **kw)

    def probe_pack(self, version="main", **kw):
        return dict(dict(name="ansible_probe_nodes", repo=self.probe.url, version=version,
                         expected_classes=["AnsibleProbeNode"]), **kw)

    def broken_pack(self):
        return dict(name="broken_pack", repo=self.broken.url, expected_classes=["BrokenPackNode"])

    def head(self, name):
        path = self.custom_nodes / name
        return git(path, "rev-parse", "HEAD") if (path / ".git").exists() else None

    def classes(self):
        return json.loads(http_request(self.docker.url(GPU0), "GET", "/object_info").body)

    def state(self):
        return json.loads((self.state_dir / "state.json").read_text())["packs"]


def run(argv):
    """The run() the module's helpers take, for calling them outside a module."""
    proc = subprocess.run(argv, check=False, capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def shared_rig(tmp_path_factory):
    """One emulator per test module (starting it is the slow part)."""
    shared = Rig(tmp_path_factory.mktemp("custom-node"))
    yield shared
    shared.docker.stop_all()


@pytest.fixture
def rig(shared_rig):
    """The shared rig, reset to a clean custom_nodes dir and a running emulator."""
    shared_rig.reset()
    return shared_rig
