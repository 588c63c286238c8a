"""Shared by the scenarios' error tests: a playbook run with bad input must fail with a clear message and leave
the host as it was. The tests add this folder to sys.path (molecule's testinfra run only puts their own on it)."""
import json
import os
import subprocess


def run_playbook(playbook, host, extra_vars=None, options=(), timeout=600):
    """ansible-playbook against the scenario's inventory, limited to `host` (a testinfra host), with extra
    command-line `options` (e.g. ["--check"]); returns the result."""
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
           *options, "-e", json.dumps(extra_vars or {}), str(playbook)]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)


def assert_fails_cleanly(playbook, host, snapshot, extra_vars, expected):
    """The run fails, says every text in `expected`, prints no traceback, and snapshot(host) is unchanged.
    Returns the output."""
    before = snapshot(host)
    res = run_playbook(playbook, host, extra_vars)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    for text in expected:
        assert text in out, out
    assert "Traceback" not in out
    assert snapshot(host) == before
    return out
