"""The table of bench/steps.sh: each step's cost per delivery against the step before it.

    python -m bench.steps_report bench/results/steps.json [docs/benchmarks.md]

Printed as Markdown; with a document given, the table also replaces what stands
between its `<!-- steps -->` and `<!-- /steps -->` lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.report import fmt


def change(now: float | None, before: float | None) -> str:
    if now is None or not before:
        return ""
    return f" ({(now - before) / before * 100:+.0f}%)"


def table(data: dict[str, Any]) -> list[str]:
    machine = data.get("machine", {})
    lines = [
        f"Measured {machine.get('date', '?')} on {machine.get('cpus', '?')} CPUs "
        f"(load average at the start {machine.get('load_average_at_start', '?')}). Server CPU per "
        "delivery: CPU seconds of app, nginx and Redis over messages delivered, 1,000 clients in "
        "one room, one message a second; the change is against the step named in brackets.",
        "",
        "| step | server CPU per delivery (app / nginx / Redis) | 1,000 clients, a message "
        "every 200 ms: p50 / p99, missed | largest room with p99 ≤ 100 ms | idle chat socket: "
        "app / nginx |",
        "|---|---|---|---|---|",
    ]
    totals: dict[str, float] = {}
    for step in data["steps"]:
        cost, fanout, idle = step["cost"], step["fanout"], step["idle"]
        main = fanout["room_1000"]
        total = cost["server_us_per_delivery"]
        against = step.get("against", "")
        versus = f" [{against}]" if against in totals else ""
        delta = change(total, totals.get(against))
        lines.append(
            f"| **{step['label']}**: {step['description']} "
            f"| {fmt(total, ' µs')}{delta}{versus} ({fmt(cost['app_us_per_delivery'])} / "
            f"{fmt(cost['nginx_us_per_delivery'])} / {fmt(cost['redis_us_per_delivery'])}) "
            f"| {fmt(main['p50_ms'], ' ms')} / {fmt(main['p99_ms'], ' ms')}, {fmt(main['missed'])} "
            f"| {fmt(fanout['largest_room_p99_100ms'])} "
            f"| {fmt(idle['app_kib_per_socket'], ' KiB')} / "
            f"{fmt(idle['nginx_kib_per_socket'], ' KiB')} |"
        )
        totals[step["label"]] = total
    return lines


def replace_section(doc: Path, name: str, lines: list[str]) -> bool:
    """Put lines between the document's <!-- name --> and <!-- /name --> lines."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    head, found, rest = doc.read_text().partition(start)
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        print(f"{doc} has no {start} ... {end} lines", file=sys.stderr)
        return False
    doc.write_text(f"{head}{start}\n" + "\n".join(lines) + f"\n{end}{tail}")
    return True


def main(argv: list[str]) -> int:
    lines = table(json.loads(Path(argv[1]).read_text()))
    print("\n".join(lines))
    return 0 if len(argv) < 3 or replace_section(Path(argv[2]), "steps", lines) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
