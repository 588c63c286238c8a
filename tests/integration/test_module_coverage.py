"""A module run by ansible-playbook (AnsiballZ, from a zip, in a process of its own) is measured and mapped back to
plugins/ (tests/coverage_support.py, tests/coverage-modules.rc, .coveragerc [paths])."""
import json
import os
import subprocess
import sys
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parents[2]


def test_a_module_under_ansible_playbook_is_measured_as_its_source_file(tmp_path):
    playbook = tmp_path / "gpus.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                        "    - comfyops.comfyui.nvidia_gpu_info:\n        nvidia_smi_path: /nonexistent/nvidia-smi\n")
    output = tmp_path / ".coverage.ansiballz"
    env = dict(os.environ, _ANSIBLE_ANSIBALLZ_COVERAGE_CONFIG=json.dumps(
        {"config": str(ROOT / "tests" / "coverage-modules.rc"), "output": str(output)}))
    res = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                          "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    (data_file,) = tmp_path.glob(".coverage.ansiballz=python-*=coverage.*")  # one module process, one file

    combined = coverage.Coverage(data_file=str(tmp_path / ".coverage"), config_file=str(ROOT / ".coveragerc"))
    combined.combine([str(data_file)])
    measured = {os.path.relpath(f, ROOT): f for f in combined.get_data().measured_files()}
    assert "plugins/modules/nvidia_gpu_info.py" in measured, sorted(measured)
    lines = combined.get_data().lines(measured["plugins/modules/nvidia_gpu_info.py"])
    source = (ROOT / "plugins" / "modules" / "nvidia_gpu_info.py").read_text().splitlines()
    # the not-executable branch of gather() ran, and only this collection's files were recorded
    assert any("not found or not executable at" in source[n - 1] for n in lines)
    assert all(name.startswith("plugins/") for name in measured), sorted(measured)
