"""tests/sanity/ignore-2.19.txt stays reviewable: each entry names an existing file and says why.

ansible-test itself rejects blank and comment-only lines and paths that do not exist, but only when the
(slow) sanity run happens; this catches a renamed file or a missing reason in the ordinary pytest run.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IGNORES = ROOT / "tests" / "sanity" / "ignore-2.19.txt"
# path, then test[:code] or test!skip, then " # reason" (ansible-test strips " *#.*$" before parsing)
ENTRY = re.compile(r"^(?P<path>\S+) (?P<test>[a-z0-9-]+)(?P<code>:[A-Za-z0-9-]+|!skip)? +# +(?P<reason>\S.*)$")


def entries():
    return IGNORES.read_text().splitlines()


def test_every_line_is_an_entry_with_a_reason():
    bad = [(n, line) for n, line in enumerate(entries(), start=1) if not ENTRY.match(line)]
    assert not bad, bad


def test_every_path_exists():
    missing = [m["path"] for m in map(ENTRY.match, entries()) if m and not (ROOT / m["path"]).is_file()]
    assert not missing, "renamed or removed; update tests/sanity/ignore-2.19.txt: %s" % missing


def test_no_duplicates():
    keys = [(m["path"], m["test"], m["code"]) for m in map(ENTRY.match, entries()) if m]
    assert len(keys) == len(set(keys))


def test_shipped_content_has_no_exceptions():
    # ansible-lint's production profile (rule `sanity`) refuses most ignores for plugins/ and roles/ anyway
    assert not [line for line in entries() if line.startswith(("plugins/", "roles/", "meta/"))]
