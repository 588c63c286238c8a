"""docs/variables.md and roles/<role>/README.md stay in sync with the roles' argument specs, the specs with the
defaults."""
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALL_ROLES = sorted(p.parents[1].name for p in ROOT.glob("roles/*/meta/argument_specs.yml"))
# the roles an operator applies; internal ones (_common) have only tasks_from entry points
ROLES = [role for role in ALL_ROLES if not role.startswith("_")]


def generator():
    spec = importlib.util.spec_from_file_location("gen_role_docs", ROOT / "scripts" / "gen_role_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@pytest.mark.parametrize("role", ROLES)
def test_readme_documents_the_role_and_every_variable(role):
    readme = (ROOT / "roles" / role / "README.md").read_text()
    main = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
    assert readme.startswith("# comfyops.comfyui.%s\n" % role)
    assert " ".join(main["short_description"].split()) in readme
    assert "    - role: comfyops.comfyui.%s\n" % role in readme
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(main["options"])
    assert "C(" not in readme and "I(" not in readme  # Ansible markup became markdown


def test_a_changed_spec_or_a_new_role_makes_the_docs_stale(tmp_path):
    gen = generator()
    for role in ALL_ROLES:
        shutil.copytree(ROOT / "roles" / role / "meta", tmp_path / "roles" / role / "meta")
        shutil.copy(ROOT / "roles" / role / "README.md", tmp_path / "roles" / role / "README.md")
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "variables.md", tmp_path / "docs")
    assert gen.stale(gen.outputs(tmp_path)) == []

    spec_file = tmp_path / "roles" / "docker" / "meta" / "argument_specs.yml"
    spec_file.write_text(spec_file.read_text().replace("description:", "description: Changed.", 1))
    (tmp_path / "roles" / "extra" / "meta").mkdir(parents=True)
    (tmp_path / "roles" / "extra" / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n"
        "  repo:\n    short_description: An apt repository\n"
        "    options:\n      extra_url: {type: str, required: true, description: The C(deb) URL.}\n"
        "  main:\n    short_description: Extra\n")
    files = gen.outputs(tmp_path)
    assert gen.stale(files) == [tmp_path / "docs" / "variables.md", tmp_path / "roles" / "docker" / "README.md",
                                tmp_path / "roles" / "extra" / "README.md"]
    extra = files[tmp_path / "roles" / "extra" / "README.md"]
    assert "## Variables\n\nNo variables.\n" in extra
    assert ("## Entry point `repo`\n\n`tasks_from: repo`. An apt repository.\n\n| variable | type | default | "
            "description |\n|---|---|---|---|\n| `extra_url` | str |  | The `deb` URL. |\n") in extra
    assert "## `extra` (entry point `repo`)" in files[tmp_path / "docs" / "variables.md"]


def test_the_internal_role_documents_every_entry_point_and_only_those():
    spec = yaml.safe_load((ROOT / "roles" / "_common" / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    tasks = {p.stem for p in (ROOT / "roles" / "_common" / "tasks").glob("*.yml")}
    # main.yml refuses direct use, guard.yml is what every entry point starts with
    assert sorted(spec) == sorted(tasks - {"main", "guard"})
    assert "main" not in spec
    readme = (ROOT / "roles" / "_common" / "README.md").read_text()
    assert "tasks_from:" in readme and "    - role: comfyops.comfyui._common" not in readme
    for entry, entry_spec in spec.items():
        assert "## Entry point `%s`" % entry in readme
        assert entry_spec["short_description"].startswith("Internal.")
        text = (ROOT / "roles" / "_common" / "tasks" / (entry + ".yml")).read_text()
        assert text.split("\n- ", 1)[1].startswith("name: Refuse direct use\n  ansible.builtin.import_tasks: guard.yml"), entry
        for name, option in entry_spec["options"].items():
            assert name.startswith("_common_") and option.get("description"), name
            assert "| `%s` |" % name in readme
    # docs/variables.md is for operators: the internal role's parameters are not there
    assert "_common_" not in (ROOT / "docs" / "variables.md").read_text()


def test_the_internal_role_defaults_are_its_optional_parameters():
    spec = yaml.safe_load((ROOT / "roles" / "_common" / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    defaults = yaml.safe_load((ROOT / "roles" / "_common" / "defaults" / "main.yml").read_text())
    optional = {name: option["default"] for entry in spec.values() for name, option in entry["options"].items()
                if not option.get("required")}
    assert defaults == optional
