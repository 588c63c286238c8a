"""inventories/example stays usable: it parses, and every variable it sets or shows is one the collection knows.

Keys of group_vars/*.yml and of the hosts in hosts.yml must be options in some roles/*/meta/argument_specs.yml,
variables a playbook declares (play `vars:` / `vars_prompt:`), or Ansible connection variables. Commented-out
examples (`# comfyui_port: 8188`) are checked the same way, and literal values are checked against the spec's
type and choices, so a renamed or retyped variable breaks this test instead of silently rotting the example.
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventories" / "example"
GROUP_VARS = sorted((EXAMPLE / "group_vars").glob("*.yml"))

# Ansible's own connection/privilege variables an inventory may set.
CONNECTION_VARS = {
    "ansible_host", "ansible_port", "ansible_user", "ansible_connection", "ansible_become", "ansible_become_user",
    "ansible_become_method", "ansible_become_password", "ansible_password", "ansible_ssh_private_key_file",
    "ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_python_interpreter",
}
SECRET_KEY = re.compile(r"(password|passwd|secret|token)", re.IGNORECASE)
VAULT_REF = re.compile(r"^\{\{\s*vault_[A-Za-z0-9_]+\s*\}\}$")


def role_options():
    options = {}
    for spec_path in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        spec = yaml.safe_load(spec_path.read_text())
        for name, option in spec["argument_specs"].get("main", {}).get("options", {}).items():
            options[name] = option
    return options


def playbook_vars():
    names = set()
    for playbook in sorted(ROOT.glob("playbooks/*.yml")):
        for play in yaml.safe_load(playbook.read_text()) or []:
            if not isinstance(play, dict):
                continue
            vars_ = play.get("vars") or {}
            if isinstance(vars_, dict):
                names.update(vars_)
            names.update(p["name"] for p in play.get("vars_prompt") or [] if isinstance(p, dict) and "name" in p)
    return names


def role_defaults():
    """Variables in roles/*/defaults/main.yml (tests/unit/test_role_docs.py keeps them equal to the specs; this
    also covers a role whose argument spec is still being written)."""
    names = set()
    for path in sorted(ROOT.glob("roles/*/defaults/main.yml")):
        names.update(yaml.safe_load(path.read_text()) or {})
    return names


OPTIONS = role_options()
KNOWN = set(OPTIONS) | role_defaults() | playbook_vars() | CONNECTION_VARS
ROLE_PREFIXES = tuple(sorted({p.parents[1].name + "_" for p in ROOT.glob("roles/*/defaults/main.yml")}))


def hosts_tree():
    return yaml.safe_load((EXAMPLE / "hosts.yml").read_text())


def walk_groups(group, name="all"):
    """(group name, group dict) for every group of a YAML inventory tree."""
    yield name, group or {}
    for child_name, child in ((group or {}).get("children") or {}).items():
        yield from walk_groups(child, child_name)


def host_vars():
    for _name, group in walk_groups(hosts_tree()["all"]):
        for host, vars_ in (group.get("hosts") or {}).items():
            yield host, vars_ or {}


def settings():
    """(where, key, value) for every variable the example sets."""
    for path in GROUP_VARS:
        for key, value in (yaml.safe_load(path.read_text()) or {}).items():
            yield path.name, key, value
    for host, vars_ in host_vars():
        for key, value in vars_.items():
            yield f"hosts.yml:{host}", key, value


def commented_examples():
    """(where, key, value) for commented-out top-level examples such as `# comfyui_port: 8188`, including
    block examples whose value follows on indented comment lines (`#   - name: ...`)."""
    pattern = re.compile(r"^#\s?(" + "|".join(map(re.escape, ROLE_PREFIXES)) + r")([a-z0-9_]*):(.*)$")
    for path in GROUP_VARS + [EXAMPLE / "hosts.yml"]:
        lines = path.read_text().splitlines()
        for lineno, line in enumerate(lines, 1):
            match = pattern.match(line)
            if not match:
                continue
            key, text = match.group(1) + match.group(2), re.sub(r"\s+#.*$", "", match.group(3)).strip()
            if not text:  # a block: the value is on the following "#   ..." lines
                block = []
                for follow in lines[lineno:]:
                    if not re.match(r"^#\s{2,}\S", follow):
                        break
                    block.append(follow[1:])
                text = "\n" + "\n".join(block)
            yield f"{path.name}:{lineno}", key, yaml.safe_load(f"v: {text}")["v"]


def test_groups_the_playbooks_use():
    groups = {name for name, _group in walk_groups(hosts_tree()["all"])}
    assert {"gpu_hosts", "comfyui_proxies"} <= groups
    gpu_hosts = dict(walk_groups(hosts_tree()["all"]))["gpu_hosts"]["hosts"]
    assert len(gpu_hosts) == 2
    for path in GROUP_VARS:
        assert path.stem in groups, f"group_vars/{path.name} names no group of hosts.yml"


def test_documentation_addresses_only():
    for host, vars_ in host_vars():
        assert host.endswith("example.com"), host
        assert str(vars_.get("ansible_host", "192.0.2.1")).startswith(("192.0.2.", "198.51.100.", "203.0.113.")), host


@pytest.mark.parametrize("where,key,value", list(settings()), ids=lambda v: v if isinstance(v, str) else None)
def test_every_variable_is_known(where, key, value):
    assert key in KNOWN, (f"{where}: {key} is neither a role variable (roles/*/meta/argument_specs.yml), "
                          "a playbook variable nor an Ansible connection variable")


def test_commented_examples_are_known():
    unknown = [f"{where}: {key}" for where, key, _value in commented_examples() if key not in KNOWN]
    assert not unknown, "commented examples name unknown variables: " + ", ".join(unknown)
    assert len(list(commented_examples())) >= 10


def _type_ok(value, option):
    kind = option.get("type", "str")
    if isinstance(value, str) and "{{" in value:
        return True  # templated: checked by the role's own argument validation at run time
    if kind in ("str", "path"):
        ok = isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "list":
        ok = isinstance(value, list)
        if ok and option.get("elements") and option["elements"] != "raw":
            ok = all(_type_ok(v, {"type": option["elements"]}) for v in value)
    elif kind == "dict":
        ok = isinstance(value, dict)
    else:
        ok = True
    if ok and option.get("choices"):
        ok = value in option["choices"]
    return ok


@pytest.mark.parametrize("where,key,value", [s for s in settings() if s[1] in OPTIONS],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_values_match_the_argument_specs(where, key, value):
    assert _type_ok(value, OPTIONS[key]), f"{where}: {key}={value!r} does not match {OPTIONS[key]}"


def test_commented_examples_match_the_argument_specs():
    bad = [f"{where}: {key}={value!r}" for where, key, value in commented_examples()
           if key in OPTIONS and not _type_ok(value, OPTIONS[key])]
    assert not bad, bad


def _secrets(value, path):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _secrets(v, f"{path}.{k}")
            if SECRET_KEY.search(str(k)) and not (isinstance(v, str) and VAULT_REF.match(v.strip())):
                yield f"{path}.{k}"
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _secrets(v, f"{path}[{i}]")


def test_no_secret_in_clear_text():
    bad = []
    for where, key, value in settings():
        if SECRET_KEY.search(key) and not (isinstance(value, str) and VAULT_REF.match(value.strip())):
            bad.append(f"{where}: {key}")
        bad.extend(f"{where}: {p}" for p in _secrets(value, key))
    for where, key, value in commented_examples():
        if SECRET_KEY.search(key) and not (isinstance(value, str) and VAULT_REF.match(value.strip())):
            bad.append(f"{where}: {key}")
        bad.extend(f"{where}: {p}" for p in _secrets(value, key))
    assert not bad, "secrets must be '{{ vault_... }}' references: " + ", ".join(bad)


def test_ansible_inventory_parses_it():
    binary = shutil.which("ansible-inventory", path=str(Path(sys.executable).parent)) or shutil.which("ansible-inventory")
    if not binary:
        pytest.skip("ansible-inventory not installed")
    result = subprocess.run([binary, "-i", str(EXAMPLE), "--list"], capture_output=True, text=True, cwd=ROOT,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    inventory = json.loads(result.stdout)
    assert sorted(inventory["gpu_hosts"]["hosts"]) == ["gpu01.example.com", "gpu02.example.com"]
    assert inventory["comfyui_proxies"]["hosts"] == ["proxy01.example.com"]
    hostvars = inventory["_meta"]["hostvars"]
    assert hostvars["gpu01.example.com"]["comfyui_bind_address"] == "{{ ansible_host }}"
    assert hostvars["gpu02.example.com"]["comfyui_gpus"] == [0, 1]
    assert "comfyui_bind_address" not in hostvars["proxy01.example.com"]
