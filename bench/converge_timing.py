"""Record how long one ansible-playbook run took and how many tasks it ran.

    python bench/converge_timing.py LABEL PLAYBOOK START END LOG RESULT_JSON

Tasks are counted from the PLAY RECAP (ok + changed + skipped + failed, summed
over hosts); the result file keeps one entry per label.
"""

import json
import re
import sys
from pathlib import Path

RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)\s+skipped=(\d+)")


def main(argv: list[str]) -> None:
    label, playbook, start, end, log, result = argv[1:7]
    text = Path(log).read_text(encoding="utf-8", errors="replace")
    ok = changed = failed = skipped = 0
    for match in RECAP.finditer(text):
        ok += int(match[1])
        changed += int(match[2])
        failed += int(match[3])
        skipped += int(match[4])
    tasks = ok + skipped + failed
    seconds = float(end) - float(start)
    path = Path(result)
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[label] = {
        "playbook": playbook,
        "seconds": round(seconds, 1),
        "tasks": tasks,
        "changed": changed,
        "seconds_per_task": round(seconds / tasks, 3) if tasks else None,
    }
    path.write_text(json.dumps(runs, indent=2) + "\n")
    per_task = seconds / max(tasks, 1)
    print(f"    {label}: {seconds:.1f} s, {tasks} tasks, changed={changed}, {per_task:.2f} s/task")


if __name__ == "__main__":
    main(sys.argv)
