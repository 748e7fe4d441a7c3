"""Keep each role README's variable table in step with meta/argument_specs.yml.

    python scripts/role-readme.py          # rewrite the tables
    python scripts/role-readme.py --check  # fail when a table is stale (make lint)

The table sits between the markers ``<!-- variables -->`` and
``<!-- /variables -->`` in roles/<role>/README.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- variables -->", "<!-- /variables -->"


def cell(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(spec_path: Path) -> str:
    specs = yaml.safe_load(spec_path.read_text())["argument_specs"]
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    seen: set[str] = set()
    for entry, spec in specs.items():
        for name, opt in (spec.get("options") or {}).items():
            if name in seen:  # entry points sharing the main options list them once
                continue
            seen.add(name)
            kind = opt.get("type", "str")
            if kind == "list" and "elements" in opt:
                kind = f"list of {opt['elements']}"
            default = opt.get("default", "")
            shown = cell(default) or '""'
            default = "(required)" if opt.get("required") else f"`{shown}`"
            desc = opt.get("description", "")
            desc = " ".join(desc) if isinstance(desc, list) else desc
            if "choices" in opt:
                desc += " One of: " + ", ".join(f"`{c}`" for c in opt["choices"]) + "."
            if entry != "main":
                desc = f"({entry}) {desc}"
            rows.append(f"| `{name}` | {kind} | {default} | {cell(desc)} |")
    return "\n".join(rows)


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for spec in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        readme = spec.parents[1] / "README.md"
        text = readme.read_text() if readme.exists() else ""
        if START not in text or END not in text:
            stale.append(f"{readme.relative_to(ROOT)}: no {START} ... {END} markers")
            continue
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        new = f"{head}{START}\n{table(spec)}\n{END}{tail}"
        if new != text:
            if check:
                stale.append(f"{readme.relative_to(ROOT)}: variable table is stale")
            else:
                readme.write_text(new)
                print(f"updated {readme.relative_to(ROOT)}")
    for line in stale:
        print(line, file=sys.stderr)
    if stale and check:
        print("run: python scripts/role-readme.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
