"""Fixtures for the release tests: the site's port, playbook runs, app copies."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

# Shared with the other single-host scenarios (molecule/resources/tests/stack_testing.py);
# listed in __all__ so that pytest registers the fixtures and tests import the helpers.
from stack_testing import container, http_port, playbook_env

__all__ = ["container", "http_port"]

REPO = Path(__file__).resolve().parents[3]
APP = REPO / "apps" / "chatdemo"


@dataclass
class PlaybookRun:
    rc: int
    output: str
    seconds: float

    @property
    def recap(self) -> str:
        lines = self.output.splitlines()
        start = max(i for i, line in enumerate(lines) if "PLAY RECAP" in line)
        return "\n".join(lines[start : start + 3])


@pytest.fixture(scope="module")
def playbook() -> Callable[..., PlaybookRun]:
    """Run playbooks/<name>.yml against the molecule host, as an operator would."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    env = playbook_env()

    def run(name: str, **extra_vars: str) -> PlaybookRun:
        argv = ["ansible-playbook", "-i", str(inventory), str(REPO / "playbooks" / f"{name}.yml")]
        for key, value in extra_vars.items():
            argv += ["-e", f"{key}={value}"]
        start = time.monotonic()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO)
        result = PlaybookRun(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start)
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
