"""Fail when a project on the controller needs a Python the host does not have.

Runs on the controller before any host changes; the rules are the release
engine's (plugins/modules/django_release.py), which applies them on the host
to a git source.

    - name: Check that the project's Python requirement fits the host's Python
      python_requirement:
        project_dir: "{{ django_app_local_path }}"
        python: "{{ ansible_facts['python']['version'] }}"
        debian: "{{ ansible_facts['distribution_major_version'] }}"
        variable: django_app_local_path
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ansible.plugins.action import ActionBase


def _release_module():
    """The release engine, loaded from its file: one copy of its rules."""
    path = Path(__file__).resolve().parents[1] / "modules" / "django_release.py"
    spec = importlib.util.spec_from_file_location("_channels_stack_django_release", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_requirement_problem(project_dir: str, python: object, debian: object = "") -> str:
    """Why the project cannot run on the host's Python (a version string, or the
    ansible_facts python.version dict), naming a Debian release that could; empty if it can."""
    if isinstance(python, dict):
        python = f"{python['major']}.{python['minor']}.{python['micro']}"
    problem = _release_module().python_problem(Path(project_dir), str(python), str(debian))
    return problem or ""


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        problem = python_requirement_problem(
            args["project_dir"], args["python"], args.get("debian", "")
        )
        result.update(changed=False)
        if problem:
            result.update(failed=True, msg=f"{args.get('variable', 'project_dir')}: {problem}")
        return result
