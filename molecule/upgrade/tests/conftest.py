"""Fixtures for the release tests: the site's port, playbook runs, app copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

# Shared with the other single-host scenarios (molecule/resources/tests/stack_testing.py);
# listed in __all__ so that pytest registers the fixtures and tests import the helpers.
from stack_testing import PlaybookRun, container, http_port, run_playbook

__all__ = ["container", "http_port"]

REPO = Path(__file__).resolve().parents[3]
APP = REPO / "apps" / "chatdemo"


@pytest.fixture(scope="module")
def playbook() -> Callable[..., PlaybookRun]:
    """Run playbooks/<name>.yml against the molecule host, as an operator would."""

    def run(name: str, **extra_vars: str) -> PlaybookRun:
        result = run_playbook(name, extra_vars=extra_vars or None)
        print(f"\n{name}.yml {extra_vars} -> rc={result.rc} in {result.seconds:.1f} s")
        return result

    return run


@pytest.fixture(scope="module")
def app_copy(tmp_path_factory) -> Callable[[str, Callable[[Path], None] | None], Path]:
    """A copy of the demo app, optionally edited: the source of one release."""

    def make(name: str, edit: Callable[[Path], None] | None = None) -> Path:
        dest = tmp_path_factory.mktemp("releases") / name
        shutil.copytree(
            APP,
            dest,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "staticfiles"),
        )
        if edit is not None:
            edit(dest)
        return dest

    return make


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not found in {path}"
    path.write_text(text.replace(old, new))
