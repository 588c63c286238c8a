"""Shared pieces of the contract tests: reference files, JSON shape comparison, WS transcripts."""
import json

import pytest

from emulator_helpers import REFERENCE_DIR

GPU_DIR = REFERENCE_DIR / "gpu-h100"
JSON_CT = "application/json; charset=utf-8"

# Marks the reference files a test checks; test_contract_coverage.py collects these marks.
covers = pytest.mark.covers


def load_ref(name):
    return json.loads((REFERENCE_DIR / name).read_text(encoding="utf-8"))


def load_transcript(name):
    return [json.loads(line) for line in (REFERENCE_DIR / name).read_text(encoding="utf-8").splitlines()
            if line.strip()]


def transcript_messages(name):
    """The server messages of a recorded WebSocket transcript, in order."""
    return [line["msg"] for line in load_transcript(name) if line["kind"] in ("text", "trailing")]


def _kind(value):
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}[type(value)]


def _signature(value):
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_signature(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ",".join(sorted({_signature(v) for v in value})) + "]"
    return _kind(value)


def _is_map(path, maps):
    return any(len(p) == len(path) and all(a in ("*", b) for a, b in zip(p, path)) for p in maps)


def _compare(actual, expected, path, maps, problems):
    where = "$" + "".join(f"[{p!r}]" if p != "[]" else "[]" for p in path)
    if _kind(actual) != _kind(expected):
        problems.append(f"{where}: expected {_kind(expected)}, got {_kind(actual)} ({str(actual)[:80]})")
        return
    if isinstance(expected, dict) and _is_map(path, maps):
        # Keys are ids (prompt ids, node ids, class names): every value must look like a recorded one.
        if expected and not actual:
            problems.append(f"{where}: expected entries, got an empty object")
        for key, value in actual.items():
            attempts = []
            for candidate in expected.values():
                attempt = []
                _compare(value, candidate, path + (key,), maps, attempt)
                if not attempt:
                    break
                attempts.append(attempt)
            else:
                if expected:
                    problems.extend(attempts[0])
    elif isinstance(expected, dict):
        missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
        if missing or extra:
            problems.append(f"{where}: missing keys {missing}, unexpected keys {extra}")
        for key in set(expected) & set(actual):
            _compare(actual[key], expected[key], path + (key,), maps, problems)
    elif isinstance(expected, list) and expected:
        if len({_signature(v) for v in expected}) == 1:
            if not actual:
                problems.append(f"{where}: expected a non-empty list")
            for item in actual:
                _compare(item, expected[0], path + ("[]",), maps, problems)
        elif len(actual) != len(expected):
            problems.append(f"{where}: expected {len(expected)} positional items, got {len(actual)}")
        else:
            for a, e in zip(actual, expected):
                _compare(a, e, path + ("[]",), maps, problems)


def shape_problems(actual, expected, maps=()):
    problems = []
    _compare(actual, expected, (), tuple(tuple(m) for m in maps), problems)
    return problems


def assert_shape(actual, expected, maps=()):
    """Same keys and value types, recursively; int, float, bool, str and null are all distinct.

    Lists whose recorded items all share one shape are compared item by item against it (and
    must not be empty); mixed lists (e.g. ["INT", {...}]) are compared position by position.
    maps lists the paths of objects keyed by ids, whose keys differ from run to run (a path is a
    tuple of keys, "*" for any key, "[]" for list items; () is the top level): there each value
    must match one of the recorded values.
    """
    problems = shape_problems(actual, expected, maps)
    assert not problems, "shape differs from the recording:\n" + "\n".join(problems[:25])
