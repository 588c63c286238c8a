"""Every molecule scenario points its testinfra verifier at a directory with tests: molecule only warns
("Skipping, no tests found") and passes when the directory is wrong, so a renamed folder would verify nothing."""
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent for p in (ROOT / "molecule").glob("*/molecule.yml"))


def test_the_scenarios_ci_runs_include_upstream_and_fleet():
    assert {"upstream", "fleet"} <= {s.name for s in SCENARIOS}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_verifier_directory_has_tests(scenario):
    verifier = yaml.safe_load((scenario / "molecule.yml").read_text())["verifier"]
    assert verifier["name"] == "testinfra"
    tests = (scenario / verifier["directory"]).resolve()
    assert tests.is_dir(), tests
    assert list(tests.glob("test_*.py")), f"{scenario.name}: no test_*.py in {tests}"
