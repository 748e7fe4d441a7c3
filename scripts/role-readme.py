"""Keep the generated parts of the READMEs in step with what they describe.

    python scripts/role-readme.py          # rewrite them
    python scripts/role-readme.py --check  # fail when one is stale (make lint)

Each role README's variable table (between ``<!-- variables -->`` and
``<!-- /variables -->``) comes from its meta/argument_specs.yml; the list of
test scenarios in README.md (between ``<!-- scenarios -->`` and
``<!-- /scenarios -->``) from molecule/scenarios.txt, which `make test` runs.
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


def scenarios() -> str:
    rows = ["| scenario | what it proves |", "|---|---|"]
    for line in (ROOT / "molecule" / "scenarios.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, what = line.split(None, 1)
            rows.append(f"| `{name}` | {cell(what.strip())} |")
    return "\n".join(rows)


def replace_between(text: str, start: str, end: str, body: str) -> str | None:
    if start not in text or end not in text:
        return None
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = replace_between(text, "<!-- scenarios -->", "<!-- /scenarios -->", scenarios())
    if new is None:
        stale.append("README.md: no <!-- scenarios --> ... <!-- /scenarios --> markers")
    elif new != text:
        if check:
            stale.append("README.md: the scenario list is stale")
        else:
            readme.write_text(new)
            print("updated README.md")
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
