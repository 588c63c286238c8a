"""docs/variables.md stays in sync with the roles' argument specs, and the specs with the defaults."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parents[1].name for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


def test_variables_doc_is_current():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_role_docs.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_specified(role):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    for name in options:
        assert name.startswith(role + "_"), name
        assert options[name].get("description"), name
