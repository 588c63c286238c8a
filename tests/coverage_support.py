"""pytest plugin (tests/conftest.py loads it): coverage of plugins/ across processes, and its floor.

pytest-cov (`--cov`, from pytest.ini; settings in .coveragerc) measures the tests that call the plugins in-process.
The integration tests run modules through ansible-playbook, where AnsiballZ executes them from a zip in a process of
their own: ansible-core starts coverage there when _ANSIBLE_ANSIBALLZ_COVERAGE_CONFIG names a config and an output
prefix, so this plugin sets it to write next to pytest-cov's data file, which pytest-cov combines at the end.

The floor (FLOOR, line and branch coverage together, as coverage.py counts them) applies to a run of the whole suite
(`python -m pytest -q tests`, nothing deselected); a run of some tests reports its figure without a floor.
"""
import json
import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
FLOOR = 91.0  # measured 91.7 % (2026-12-01, 551 tests); raise it as coverage grows
_DESELECTED = pytest.StashKey()


def _cov_plugin(config):
    plugin = config.pluginmanager.getplugin("_cov")
    if plugin is None or getattr(plugin, "_disabled", True) or plugin.cov_controller is None:
        return None
    return plugin


def pytest_configure(config):
    config.stash[_DESELECTED] = 0
    plugin = _cov_plugin(config)
    # molecule verify runs testinfra against test hosts, whose Python has no coverage module
    if plugin is None or os.environ.get("MOLECULE_INVENTORY_FILE"):
        return
    data_file = os.path.abspath(plugin.cov_controller.cov.config.data_file)
    os.environ["_ANSIBLE_ANSIBALLZ_COVERAGE_CONFIG"] = json.dumps(
        {"config": str(TESTS / "coverage-modules.rc"), "output": data_file + ".ansiballz"})


def pytest_deselected(items):
    config = items[0].config if items else None
    if config is not None:
        config.stash[_DESELECTED] += len(items)


def pytest_collection_finish(session):
    plugin = _cov_plugin(session.config)
    if plugin is None or plugin.options.cov_fail_under:  # --cov-fail-under given (or fail_under): that one counts
        return
    whole_suite = [Path(arg).resolve() for arg in session.config.args] == [TESTS]
    if whole_suite and not session.config.stash[_DESELECTED]:
        plugin.options.cov_fail_under = FLOOR
