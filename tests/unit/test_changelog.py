"""The changelog is antsibull-changelog's: fragments valid, changelogs/changelog.yaml valid, CHANGELOG.md rendered from it.

Fragments (changelogs/fragments/*.yml) go into a release only with `antsibull-changelog release`, so they never make
CHANGELOG.md stale; a hand edit of CHANGELOG.md or changelog.yaml without `antsibull-changelog generate` does.
"""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = Path(sys.executable).parent / "antsibull-changelog"


def changelog(*args, cwd=ROOT):
    return subprocess.run([str(TOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_fragments_are_valid():
    res = changelog("lint")
    assert (res.returncode, res.stdout + res.stderr) == (0, "")


def test_changelog_yaml_is_valid():
    res = changelog("lint-changelog-yaml", "changelogs/changelog.yaml")
    assert (res.returncode, res.stdout + res.stderr) == (0, "")


def test_rendered_changelog_is_current(tmp_path):
    rendered = tmp_path / "CHANGELOG.md"
    res = changelog("generate", "--output", str(rendered), "--output-format", "md")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (ROOT / "CHANGELOG.md").read_text() == rendered.read_text(), \
        "CHANGELOG.md is stale: run `antsibull-changelog generate` (do not edit CHANGELOG.md by hand)"


SECTIONS = ("major_changes", "minor_changes", "breaking_changes", "deprecated_features", "removed_features",
            "security_fixes", "bugfixes", "known_issues", "trivial")


def test_lint_accepts_the_usual_sections_and_names_a_bad_fragment(tmp_path):
    """The lint above can fail: an unknown section or a string instead of a list is refused, by file name."""
    shutil.copy(ROOT / "galaxy.yml", tmp_path)
    shutil.copytree(ROOT / "changelogs", tmp_path / "changelogs", ignore=shutil.ignore_patterns(".plugin-cache.yaml"))
    fragments = tmp_path / "changelogs" / "fragments"
    fragments.mkdir(exist_ok=True)
    (fragments / "good.yml").write_text("".join("%s:\n  - '``x`` changed.'\n" % s for s in SECTIONS))
    (fragments / "bad.yml").write_text("bugfix:\n  - typo\nminor_changes: not a list\n")
    res = changelog("lint", cwd=tmp_path)
    assert res.returncode != 0
    assert res.stdout.splitlines() == ["changelogs/fragments/bad.yml:0:0: invalid section: bugfix",
                                       'changelogs/fragments/bad.yml:0:0: section "minor_changes" must be type list '
                                       "not str"]
