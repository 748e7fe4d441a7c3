"""Filters that read a Django project on the controller before anything changes."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _release_module():
    """The release engine (plugins/modules/django_release.py): one copy of its rules."""
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


class FilterModule:
    def filters(self) -> dict:
        return {"python_requirement_problem": python_requirement_problem}
