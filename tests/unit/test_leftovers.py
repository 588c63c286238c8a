"""tests/leftovers.py: a run fails when its tests leave a process or a test host container; other runs' are not its."""
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
IMAGE = "comfyops-rig/debian:trixie"


def inner_pytest(tmp_path, source):
    """rc and output of a pytest run of one test file with only the leftovers plugin (as tests/conftest.py loads it)."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "leftovers", "-p", "no:cacheprovider", "-q",
                           "test_inner.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    return proc.returncode, proc.stdout + proc.stderr


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def own_sleep():
    """A process of this (outer) run: the inner run must leave it alone."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait()


def test_a_run_that_cleans_up_passes_and_leaves_other_runs_alone(tmp_path, own_sleep):
    rc, out = inner_pytest(tmp_path, """
        import subprocess

        def test_waits():
            process = subprocess.Popen(["sleep", "0.1"])
            assert process.wait(10) == 0
    """)
    assert rc == 0, out
    assert "left behind" not in out
    assert own_sleep.poll() is None


def test_a_left_process_fails_the_run_and_is_killed(tmp_path, own_sleep):
    pid_file = tmp_path / "pids"
    rc, out = inner_pytest(tmp_path, """
        import subprocess

        def test_leaks():
            child = subprocess.Popen(["sleep", "301"])  # never waited for
            detached = subprocess.Popen(["sleep", "302"], start_new_session=True)  # like a fake docker container
            open("pids", "w").write("%d %d" % (child.pid, detached.pid))
    """)
    child, detached = (int(p) for p in pid_file.read_text().split())
    assert rc == pytest.ExitCode.TESTS_FAILED, out
    assert "1 passed" in out
    assert "left behind by the tests" in out
    assert "process %d: sleep 301" % child in out and "process %d: sleep 302" % detached in out
    assert not alive(child) and not alive(detached)
    assert own_sleep.poll() is None and "sleep 300" not in out


def docker_ready():
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False)
    network = subprocess.run(["docker", "network", "inspect", "comfyops-rig"], capture_output=True, check=False)
    return result.returncode == 0 and network.returncode == 0


def container_exists(name):
    return subprocess.run(["docker", "container", "inspect", name], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not docker_ready(), reason="needs docker and the rig (%s, network comfyops-rig)" % IMAGE)
def test_a_left_host_container_fails_the_run_and_is_removed(tmp_path):
    suffix = uuid.uuid4().hex[:8]
    mine, other = "pytest-leftovers-" + suffix, "pytest-leftovers-other-" + suffix
    playbook = tmp_path / "host.yml"
    playbook.write_text(textwrap.dedent("""
        - hosts: localhost
          gather_facts: false
          tasks:
            - ansible.builtin.include_tasks: %s
              vars:
                rig_hosts: [{name: %s, image: %s}]
    """ % (ROOT / "molecule" / "resources" / "tasks" / "host_containers.yml", mine, IMAGE)))
    # a host of another run (this outer one): labelled the same way, but with another token
    subprocess.run(["docker", "create", "--name", other, "--label", "comfyops.rig=pytest",
                    "--label", "comfyops.test-run=" + os.environ["COMFYOPS_TEST_RUN"], IMAGE, "true"],
                   check=True, capture_output=True)
    try:
        rc, out = inner_pytest(tmp_path, """
            import subprocess, sys
            from pathlib import Path

            def test_makes_a_host():
                # the one place that makes test hosts, as molecule's create does
                subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
                                "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable, "host.yml"],
                               check=True, capture_output=True)
        """)
        assert rc == pytest.ExitCode.TESTS_FAILED, out
        assert "1 passed" in out
        assert "test host container %s (" % mine in out
        assert not container_exists(mine)
        assert container_exists(other) and other not in out
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", mine, other], capture_output=True, check=False)
