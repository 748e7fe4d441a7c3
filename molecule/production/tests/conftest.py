"""Fixtures of the production scenario: the operator's checkout, environment and site.

The converge (walkthrough.py) followed the README in a copy of this checkout
and left, in the scenario's ephemeral directory, the copy (checkout/), the
operator's environment (operator-env.json: home, SSH key, known_hosts, vault
password file), the site's address (site.json, read by the shared `site`
fixture) and its timings (walkthrough.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# Shared fixtures: the container (checks inside it) and the site over https.
from stack_testing import container, site

__all__ = ["container", "site"]

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
CHECKOUT = EPHEMERAL / "checkout"
INVENTORY = "inventories/mysite"
SITE_YML = [".venv/bin/ansible-playbook", "-i", INVENTORY, "playbooks/site.yml"]


@dataclass
class Run:
    rc: int
    output: str
    seconds: float

    def recap(self) -> dict[str, int]:
        block = self.output[self.output.rindex("PLAY RECAP") :]
        totals: dict[str, int] = {}
        for line in block.splitlines()[1:]:
            if "ok=" not in line:
                break
            for key, value in (pair.split("=") for pair in line.split()[2:] if "=" in pair):
                totals[key] = totals.get(key, 0) + int(value)
        return totals


class Operator:
    """Runs commands in the operator's checkout, with their SSH key, vault and home."""

    def __init__(self) -> None:
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("ANSIBLE_", "MOLECULE_"))
        }
        self.env.update(json.loads((EPHEMERAL / "operator-env.json").read_text()))
        self.env.update(NO_COLOR="1", ANSIBLE_NOCOLOR="1")
        self.checkout = CHECKOUT

    def run(self, *argv: str, timeout: float = 900, env: dict[str, str] | None = None) -> Run:
        start = time.monotonic()
        proc = subprocess.run(
            list(argv),
            cwd=self.checkout,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start)

    def site_yml(self, *extra: str) -> Run:
        return self.run(*SITE_YML, *extra)


@pytest.fixture(scope="session")
def operator() -> Operator:
    return Operator()


@pytest.fixture(scope="session")
def walkthrough() -> dict:
    return json.loads((EPHEMERAL / "walkthrough.json").read_text())
