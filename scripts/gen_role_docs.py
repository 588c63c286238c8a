#!/usr/bin/env python
"""Write the role docs from every role's meta/argument_specs.yml (the single source of the variables' docs):
docs/variables.md (all roles an operator applies) and roles/<role>/README.md (one role, with its description and
platforms from meta/main.yml). An internal role (its name starts with "_", e.g. _common) has no main entry point: its
README documents the entry points the other roles include; docs/variables.md leaves it out (nobody sets its variables).

    scripts/gen_role_docs.py          rewrite them all
    scripts/gen_role_docs.py --check  exit 1, naming each file that is out of date (a test runs this)
"""
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "comfyops.comfyui"


# Ansible's documentation markup, as argument specs use it: C(code), I(option), O(option), V(value), M(module)
_MARKUP = re.compile(r"\b([CIOVMB])\(([^()]*(?:\([^()]*\)[^()]*)*)\)")


def markdown(text):
    return _MARKUP.sub(lambda m: "**%s**" % m.group(2) if m.group(1) == "B" else "`%s`" % m.group(2), text)


def cell(value):
    text = " ".join(value) if isinstance(value, list) else str(value)
    return markdown(text).replace("|", "\\|").replace("\n", " ")


def paragraphs(value):
    return [markdown(" ".join(str(p).split())) for p in (value if isinstance(value, list) else [value]) if p]


def roles(root):
    """(role name, its argument specs by entry point, its meta/main.yml) for every role with argument specs."""
    for spec_file in sorted(root.glob("roles/*/meta/argument_specs.yml")):
        meta_file = spec_file.parent / "main.yml"
        meta = yaml.safe_load(meta_file.read_text()) if meta_file.exists() else {}
        yield spec_file.parents[1].name, yaml.safe_load(spec_file.read_text())["argument_specs"], meta or {}


def internal(role):
    return role.startswith("_")


def entry_points(specs):
    """main first, then the others by name."""
    return sorted(specs.items(), key=lambda item: (item[0] != "main", item[0]))


def table(options):
    lines = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, opt in (options or {}).items():
        kind = opt.get("type", "str")
        if opt.get("elements"):
            kind += f" of {opt['elements']}"
        if opt.get("choices"):
            kind += " (" + ", ".join(map(str, opt["choices"])) + ")"
        default = f"`{opt['default']}`" if "default" in opt else ""
        lines.append(f"| `{name}` | {kind} | {cell(default)} | {cell(opt.get('description', ''))} |")
    return lines


def render_variables(all_roles):
    lines = ["# Role variables", "",
             "Generated from each role's `meta/argument_specs.yml` by `scripts/gen_role_docs.py`; do not edit by hand.", ""]
    for role, specs, _meta in all_roles:
        if internal(role):
            continue
        for entry, spec in entry_points(specs):
            title = f"## `{role}`" if entry == "main" else f"## `{role}` (entry point `{entry}`)"
            lines += [title, "", cell(spec.get("short_description", "")), ""] + table(spec.get("options")) + [""]
    return "\n".join(lines)


def render_readme(role, specs, meta):
    info = meta.get("galaxy_info") or {}
    lines = [f"# {COLLECTION}.{role}", "",
             "<!-- Generated from meta/argument_specs.yml and meta/main.yml by scripts/gen_role_docs.py;"
             " do not edit by hand. -->", ""]
    main = specs.get("main", {})
    if main.get("short_description"):
        lines += [" ".join(str(main["short_description"]).split()) + ".", ""]
    for paragraph in paragraphs(main.get("description") or (info.get("description") if internal(role) else None)):
        lines += [paragraph, ""]
    platforms = "; ".join("%s %s" % (p["name"], ", ".join(map(str, p.get("versions", []))))
                          for p in info.get("platforms") or [])
    requirements = [f"Platforms: {platforms}." if platforms else "",
                    f"Ansible (ansible-core) {info['min_ansible_version']} or later." if info.get("min_ansible_version")
                    else ""]
    if any(requirements):
        lines += [" ".join(r for r in requirements if r), ""]
    dependencies = meta.get("dependencies") or []
    if dependencies:
        names = [d if isinstance(d, str) else d.get("role", d.get("name")) for d in dependencies]
        lines += ["Depends on: " + ", ".join(f"`{n}`" for n in names) + ".", ""]
    if internal(role):
        first = entry_points(specs)[0][0]
        lines += ["## Use", "", "Only from the tasks of the collection's roles (a play that applies or includes it fails):",
                  "", "```yaml", f"- name: Use the {first} entry point", "  ansible.builtin.include_role:",
                  f"    name: {COLLECTION}.{role}", f"    tasks_from: {first}", "  vars: {}  # the entry point's variables, below", "```", ""]
    else:
        lines += ["## Example", "", "```yaml", "- hosts: all", "  roles:", f"    - role: {COLLECTION}.{role}", "```", ""]
    for entry, spec in entry_points(specs):
        if entry == "main":
            lines += ["## Variables", ""]
        else:
            lines += [f"## Entry point `{entry}`", "", f"`tasks_from: {entry}`."
                      + (" " + " ".join(str(spec["short_description"]).split()) + "." if spec.get("short_description")
                         else ""), ""]
        lines += (table(spec.get("options")) if spec.get("options") else ["No variables."]) + [""]
    if not internal(role):
        lines += ["The variables of every role: [docs/variables.md](../../docs/variables.md).", ""]
    return "\n".join(lines)


def outputs(root=ROOT):
    """{path: text} of every generated file of the repository at root."""
    all_roles = list(roles(root))
    files = {root / "docs" / "variables.md": render_variables(all_roles)}
    for role, specs, meta in all_roles:
        files[root / "roles" / role / "README.md"] = render_readme(role, specs, meta)
    return files


def stale(files):
    """The generated files whose content on disk differs (or that are missing)."""
    return [path for path, text in files.items() if not path.exists() or path.read_text() != text]


if __name__ == "__main__":
    generated = outputs()
    if "--check" in sys.argv:
        for path in stale(generated):
            print(f"{path.relative_to(ROOT)} is out of date: run scripts/gen_role_docs.py", file=sys.stderr)
        sys.exit(1 if stale(generated) else 0)
    for path, text in generated.items():
        path.write_text(text)
