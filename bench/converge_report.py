"""The table of bench/converge.sh: Ansible's wall time over SSH, per run and per task.

    python -m bench.converge_report bench/results/converge-ssh.json [docs/benchmarks.md]

Printed as Markdown; with a document given, the table also replaces what stands
between its `<!-- converge -->` and `<!-- /converge -->` lines.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from bench.steps_report import report


def table(runs: dict[str, dict]) -> list[str]:
    groups: dict[str, list[dict]] = {}
    for label, run in runs.items():
        groups.setdefault(label.rsplit("-", 1)[0] if label[-1].isdigit() else label, []).append(run)
    lines = [
        "| run | playbook | runs | median wall time | tasks | per task | changed |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, group in groups.items():
        seconds = statistics.median(run["seconds"] for run in group)
        tasks = group[0]["tasks"]
        lines.append(
            f"| {label} | `{Path(group[0]['playbook']).name}` | {len(group)} | {seconds:.1f} s "
            f"| {tasks} | {seconds / max(tasks, 1):.2f} s | "
            f"{', '.join(str(run['changed']) for run in group)} |"
        )
    return lines


def main(argv: list[str]) -> int:
    return report(argv, table, "converge")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
