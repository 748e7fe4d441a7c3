"""The table of bench/steps.sh: each step's cost per delivery against the step before it.

    python -m bench.steps_report bench/results/steps.json [docs/benchmarks.md]

Printed as Markdown; with a document given, the table also replaces what stands
between its `<!-- steps -->` and `<!-- /steps -->` lines.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.report import fmt


def change(now: float | None, before: float | None) -> str:
    if now is None or not before:
        return ""
    return f" ({(now - before) / before * 100:+.0f}%)"


def measured(data: dict[str, Any]) -> str:
    """When each phase was measured: update runs measure some phases again."""
    dates: dict[str, list[str]] = {}
    for step in data["steps"]:
        for phase, date in step.get("measured", {}).items():
            if date not in dates.setdefault(phase, []):
                dates[phase].append(date)
    if not dates:
        return data.get("machine", {}).get("date", "?")
    runs = list(dates.values())
    if all(when == runs[0] for when in runs):  # one run: each step's phases together
        first, last = runs[0][0], runs[0][-1]
        return first if first == last else f"one run, steps from {first} to {last}"
    return "; ".join(f"{phase} {', '.join(when)}" for phase, when in sorted(dates.items()))


def table(data: dict[str, Any]) -> list[str]:
    machine = data.get("machine", {})
    lines = [
        f"Measured on {machine.get('cpus', '?')} CPUs ({measured(data)}). Server CPU per "
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
        # A run of some phases only leaves the others out: they print as n/a.
        cost, fanout, idle = (step.get(phase) or {} for phase in ("cost", "fanout", "idle"))
        main = fanout.get("room_1000") or {}
        total = cost.get("server_us_per_delivery")
        against = step.get("against", "")
        versus = f" [{against}]" if against in totals else ""
        delta = change(total, totals.get(against))
        lines.append(
            f"| **{step['label']}**: {step['description']} "
            f"| {fmt(total, ' µs')}{delta}{versus} ({fmt(cost.get('app_us_per_delivery'))} / "
            f"{fmt(cost.get('nginx_us_per_delivery'))} / {fmt(cost.get('redis_us_per_delivery'))}) "
            f"| {fmt(main.get('p50_ms'), ' ms')} / {fmt(main.get('p99_ms'), ' ms')}, "
            f"{fmt(main.get('missed'))} "
            f"| {fmt(fanout.get('largest_room_p99_100ms'))} "
            f"| {fmt(idle.get('app_kib_per_socket'), ' KiB')} / "
            f"{fmt(idle.get('nginx_kib_per_socket'), ' KiB')} |"
        )
        if total is not None:
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


def report(argv: list[str], make_table: Callable[[Any], list[str]], section: str) -> int:
    """Print the table of the results file argv[1]; put it in the document argv[2], if given."""
    lines = make_table(json.loads(Path(argv[1]).read_text()))
    print("\n".join(lines))
    return 0 if len(argv) < 3 or replace_section(Path(argv[2]), section, lines) else 1


def main(argv: list[str]) -> int:
    return report(argv, table, "steps")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
