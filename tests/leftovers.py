"""pytest plugin: the run fails when a test left a process or a test host container behind (tests/conftest.py loads it).

At start-up it puts a token of its own into os.environ (COMFYOPS_TEST_RUN), so every process a test starts carries it
in /proc/PID/environ, however it was started: an emulator, a fake docker "container" in a session of its own, a
module under ansible-playbook. A test host container made during the run carries it as the label comfyops.test-run
(molecule/resources/tasks/host_containers.yml). Another run (molecule's hosts, another checkout's pytest, a nested
pytest) has another token, so only what this run started is counted. After the last teardown, whatever still carries
the token is listed, killed or removed, and the run fails.
"""
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

ENV = "COMFYOPS_TEST_RUN"
LABEL = "comfyops.test-run"
_FOUND = pytest.StashKey()


def pytest_configure(config):
    os.environ[ENV] = uuid.uuid4().hex
    config.stash[_FOUND] = []


def _processes(token):
    """(pid, command line) of every live process but this one whose environment has the token."""
    marker = ("%s=%s" % (ENV, token)).encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()  # empty for a zombie: it has already died
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        if marker in environ.split(b"\0"):
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace").strip()))
    return found


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)  # reaps it when it is a child of this process
    except (ProcessLookupError, ChildProcessError):
        pass


def _docker(*args):
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        return subprocess.run([docker, *args], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _containers(token):
    """(id, name) of the test host containers made during this run; none without a docker engine."""
    result = _docker("ps", "-a", "--filter", "label=comfyops.rig", "--filter", "label=%s=%s" % (LABEL, token),
                     "--format", "{{.ID}} {{.Names}}")
    if result is None or result.returncode != 0:
        return []
    return [tuple(line.split(" ", 1)) for line in result.stdout.splitlines() if line.strip()]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    token = os.environ.get(ENV)
    if not token:
        return
    found = session.config.stash[_FOUND]
    for pid, cmdline in _processes(token):
        found.append("process %d: %s" % (pid, cmdline))
        _kill(pid)
    for container_id, name in _containers(token):
        found.append("test host container %s (%s)" % (name, container_id))
        _docker("rm", "-f", "-v", container_id)
    if found:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    found = config.stash.get(_FOUND, [])
    if found:
        terminalreporter.section("left behind by the tests (now killed / removed)", red=True)
        for line in found:
            terminalreporter.line(line, red=True)
