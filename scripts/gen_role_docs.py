#!/usr/bin/env python
"""Write docs/variables.md from every role's meta/argument_specs.yml (the single source of the variables' docs).

    scripts/gen_role_docs.py          rewrite docs/variables.md
    scripts/gen_role_docs.py --check  exit 1 if docs/variables.md is out of date (a test runs this)
"""
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "variables.md"


def cell(value):
    text = " ".join(value) if isinstance(value, list) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render():
    lines = ["# Role variables", "",
             "Generated from each role's `meta/argument_specs.yml` by `scripts/gen_role_docs.py`; do not edit by hand.", ""]
    for spec_file in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        role = spec_file.parents[1].name
        main = yaml.safe_load(spec_file.read_text())["argument_specs"]["main"]
        lines += [f"## `{role}`", "", cell(main.get("short_description", "")), "",
                  "| variable | type | default | description |", "|---|---|---|---|"]
        for name, opt in main["options"].items():
            kind = opt.get("type", "str")
            if opt.get("elements"):
                kind += f" of {opt['elements']}"
            if opt.get("choices"):
                kind += " (" + ", ".join(map(str, opt["choices"])) + ")"
            default = f"`{opt['default']}`" if "default" in opt else ""
            lines.append(f"| `{name}` | {kind} | {cell(default)} | {cell(opt.get('description', ''))} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run scripts/gen_role_docs.py", file=sys.stderr)
            sys.exit(1)
    else:
        OUT.write_text(text)
