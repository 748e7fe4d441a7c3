"""Keep each role's meta/argument_specs.yml in step with its defaults/main.yml.

    python scripts/role-specs.py          # rewrite the specs' defaults and add missing options
    python scripts/role-specs.py --check  # fail when they disagree (make lint)

Every variable of defaults/main.yml has an option in the main entry point, and
the option's default is the defaults file's value, expressions included, so
`ansible-doc -t role` shows what a role really does. A new option gets the
comment above the variable as its description (edit it afterwards); options
the defaults file does not define must be required.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def comments_above(defaults_text: str) -> dict[str, str]:
    """The comment block right above each top-level variable, as one sentence."""
    found: dict[str, str] = {}
    block: list[str] = []
    for line in defaults_text.splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip()
            if text.startswith("---"):
                block = []
            else:
                block.append(text)
        elif match := re.match(r"^([a-z_][a-z0-9_]*):", line):
            found[match.group(1)] = " ".join(t for t in block if t and not t.startswith("-"))
            block = []
        elif not line.strip():
            block = []
    return found


def type_of(value: object) -> dict:
    if isinstance(value, bool):
        return {"type": "bool"}
    if isinstance(value, int):
        return {"type": "int"}
    if isinstance(value, list):
        return {
            "type": "list",
            "elements": "dict" if value and isinstance(value[0], dict) else "str",
        }
    if isinstance(value, dict):
        return {"type": "dict"}
    return {"type": "str"}


def synced(role: Path) -> tuple[str, list[str]]:
    """The spec file's new text and the problems found."""
    spec_path = role / "meta" / "argument_specs.yml"
    defaults_path = role / "defaults" / "main.yml"
    specs = yaml.safe_load(spec_path.read_text())["argument_specs"]
    defaults_text = defaults_path.read_text() if defaults_path.exists() else ""
    defaults = yaml.safe_load(defaults_text) or {}
    comments = comments_above(defaults_text)
    main = specs["main"].setdefault("options", {})
    problems = []
    for name, value in defaults.items():
        option = main.get(name)
        if option is None:
            problems.append(f"{role.name}: {name} has no argument spec")
            option = main[name] = {**type_of(value), "description": comments.get(name) or name}
        if option.get("default") != value:
            if "default" in option or value not in (None, "", [], {}):
                problems.append(
                    f"{role.name}: {name}: the spec's default is not defaults/main.yml's"
                )
            option["default"] = value
    for name, option in list(main.items()):
        if name not in defaults and not option.get("required"):
            problems.append(f"{role.name}: {name} is in the spec but not in defaults/main.yml")
            del main[name]
    return render(specs, role.name), problems


class _Dumper(yaml.SafeDumper):
    """Sequences indented under their key, as yamllint wants them."""

    anchor = ""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)

    def generate_anchor(self, node):
        return self.anchor

    def ignore_aliases(self, data):
        return not isinstance(data, dict) or "description" in data


def render(specs: dict, role: str) -> str:
    """YAML with the main options written once and shared by entry points that reuse them."""
    dumper = type("Dumper", (_Dumper,), {"anchor": f"{role}_options"})
    text = yaml.dump(
        {"argument_specs": specs}, Dumper=dumper, sort_keys=False, width=110, allow_unicode=True
    )
    return "---\n" + text


def main() -> int:
    check = "--check" in sys.argv
    problems: list[str] = []
    for role in sorted(
        p for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists()
    ):
        text, found = synced(role)
        spec_path = role / "meta" / "argument_specs.yml"
        if found and not check:
            spec_path.write_text(text)
            print(f"updated {spec_path.relative_to(ROOT)}")
        problems += found
    for line in problems:
        print(line, file=sys.stderr)
    if problems and check:
        print("run: python scripts/role-specs.py, then describe new options", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
