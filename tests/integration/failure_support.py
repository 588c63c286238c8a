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


def typed_as_an_operator_would(roles, scenario_vars):
    """["-e", "name=value", ...] for every int and bool variable in the roles' argument specs, with the value the
    scenario runs with (its inventory, else the spec's default) written as text, the way `-e key=value` passes it:
    a run with them must change nothing (values from the command line are strings; the roles convert them)."""
    import yaml
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    args = []
    for role in roles:
        spec = yaml.safe_load((root / "roles" / role / "meta" / "argument_specs.yml").read_text())
        for name, option in spec["argument_specs"]["main"]["options"].items():
            kind = option.get("type")
            if kind not in ("int", "bool"):
                continue
            value = scenario_vars.get(name, option.get("default"))
            if value is None or (isinstance(value, str) and "{{" in value):
                continue  # derived from other settings: nothing an operator would type
            text = ("true" if value else "false") if kind == "bool" and isinstance(value, bool) else str(value)
            args += ["-e", "%s=%s" % (name, text)]
    return args


def scenario_vars(scenario, host=None):
    """The group_vars/all (and host_vars of host) of a molecule scenario's inventory."""
    import yaml
    from pathlib import Path
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "molecule" / scenario / "molecule.yml").read_text())
    inventory = config["provisioner"].get("inventory", {})
    out = dict(inventory.get("group_vars", {}).get("all", {}))
    if host:
        out.update(inventory.get("host_vars", {}).get(host, {}))
    return out
