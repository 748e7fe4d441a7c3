"""Fail when Ansible would silently skip a variable file under group_vars/ or host_vars/.

Runs on the controller (an action plugin: it reads the controller's files).

    - name: Check that Ansible skips no variable file
      vars_layout:
        paths: "{{ ansible_inventory_sources | list + [playbook_dir] }}"
"""

from __future__ import annotations

from pathlib import Path

from ansible.plugins.action import ActionBase

# The order in which Ansible looks for a group's or host's variables: the first
# that exists is loaded (a directory with all its files), the others are skipped.
VARS_CANDIDATES = ("", ".yml", ".yaml", ".json")


def ignored_vars_files(paths: list[str]) -> list[str]:
    """Variable files Ansible would silently skip under group_vars/ and host_vars/.

    ``paths`` are inventory sources and playbook directories; for a file, the
    directory holding it is searched, as Ansible does. Ansible loads, for each
    group or host name, the first of ``name``, ``name.yml``, ``name.yaml`` and
    ``name.json`` that exists (``name`` may be a directory) and ignores the
    rest. Each problem is one line naming the skipped file and what is loaded.
    """
    problems: list[str] = []
    seen: set[Path] = set()
    for path in paths:
        directory = Path(path) if Path(path).is_dir() else Path(path).parent
        for kind in ("group_vars", "host_vars"):
            base = Path(directory, kind).resolve()
            if base in seen or not base.is_dir():
                continue
            seen.add(base)
            names = {_stem(entry.name) for entry in base.iterdir()}
            for name in sorted(names):
                found = [base / (name + ext) for ext in VARS_CANDIDATES]
                loaded, *skipped = [candidate for candidate in found if candidate.exists()]
                for ignored in skipped:
                    shown = f"{Path(directory, kind, loaded.name)}{'/' if loaded.is_dir() else ''}"
                    problems.append(
                        f"{Path(directory, kind, ignored.name)}: never loaded, Ansible reads "
                        f"{shown} for '{name}' and skips this file; "
                        f"move its variables into {Path(directory, kind, name)}/main.yml"
                    )
    return problems


def _stem(filename: str) -> str:
    for ext in VARS_CANDIDATES[1:]:
        if filename.endswith(ext):
            return filename[: -len(ext)]
    return filename


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        problems = ignored_vars_files(list(self._task.args.get("paths", [])))
        result.update(changed=False, problems=problems)
        if problems:
            result.update(failed=True, msg="; ".join(problems))
        return result
