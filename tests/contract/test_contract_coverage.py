"""Every recorded JSON file in reference/comfyui-api (including manager/ and gpu-h100/) is checked by a test.

Tests declare the files they check with @covers(...) (contract_support.covers); files that
cannot apply to the emulator would be listed in NOT_APPLICABLE with the reason.
"""
import importlib
import inspect
from pathlib import Path

from emulator_helpers import REFERENCE_DIR

HERE = Path(__file__).resolve().parent
# {file: reason} for recordings that cannot apply to the emulator; at present every file applies.
NOT_APPLICABLE = {}


def reference_json_files():
    return {p.relative_to(REFERENCE_DIR).as_posix() for p in REFERENCE_DIR.rglob("*") if p.suffix in (".json", ".jsonl")}


def covered_files():
    files = set()
    for path in sorted(HERE.glob("test_contract_*.py")):
        module = importlib.import_module(path.stem)
        for function_name, function in inspect.getmembers(module, inspect.isfunction):
            for mark in getattr(function, "pytestmark", []):
                if mark.name == "covers":
                    files.update(mark.args)
    return files


def test_every_recorded_json_file_is_covered():
    missing = reference_json_files() - covered_files() - set(NOT_APPLICABLE)
    assert not missing, f"reference files no contract test checks: {sorted(missing)}"


def test_covered_names_exist():
    assert {name for name in covered_files() if not (REFERENCE_DIR / name).is_file()} == set()
