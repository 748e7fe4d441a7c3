"""Fixtures and helpers for the fault tests, on top of the shared ones.

The shared fixtures (``container``, ``http_port``, ``site``) and ``redis_admin`` come from
``molecule/resources/tests/stack_testing.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

# Shared with the other single-host scenarios (molecule/resources/tests/stack_testing.py);
# listed in __all__ so that pytest registers the fixtures and tests import the helpers.
from stack_testing import REPO, container, http_port, redis_admin, site

__all__ = ["REPO", "container", "http_port", "redis_admin", "site"]

APP = "channels-app"
ARTIFACTS = REPO / ".cache" / "artifacts"


def new_room(prefix: str = "f") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def report(fault: str, expected: str, observed: str, seconds: float | None) -> None:
    """Print one row of the fault table (collected in the test output)."""
    took = "-" if seconds is None else f"{seconds:.2f} s"
    print(f"\nFAULT | {fault} | {expected} | {observed} | {took}")


def inject(host, command: str) -> float:
    """Run a fault-injecting command on the host; return when it started (time.time()).

    Containers share the controller's clock, so this times recovery from the moment the
    fault happened, without the latency of reaching the host.
    """
    out = host.run(f"date +%s.%N && {command}")
    assert out.rc == 0, f"{command}: {out.stderr}"
    return float(out.stdout.split()[0])


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.1) -> float:
    """Call check until it returns something true; return the seconds it took."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{check} still false after {timeout} s")
        time.sleep(interval)


# --- The app's processes ---------------------------------------------------------------------


def main_pid(host) -> int:
    return int(host.check_output(f"systemctl show -p MainPID --value {APP}.service"))


def worker_pids(host) -> set[int]:
    pid = main_pid(host)
    if pid == 0:
        return set()
    out = host.run(f"pgrep -P {pid}").stdout
    return {int(p) for p in out.split()}


def worker_sockets(host) -> dict[int, int]:
    """How many connections from nginx each worker holds on the app socket."""
    listing = host.check_output(f"ss -xn state connected src /run/{APP}/gunicorn.sock")
    accepted = set(re.findall(r"gunicorn\.sock\s+(\d+)", listing))
    # /proc/PID/fd of the workers is readable by their own user only.
    fds = host.check_output(
        f"for p in $(pgrep -P $(systemctl show -p MainPID --value {APP}.service)); do "
        f"echo $p $(runuser -u {APP} -- ls -l /proc/$p/fd | grep -o 'socket:[[][0-9]*'); done"
    )
    counts = {}
    for line in fds.splitlines():
        pid, *sockets = line.split()
        counts[int(pid)] = len(accepted & {s.split("[")[1] for s in sockets})
    return counts


def workers_fds_and_rss(host) -> tuple[int, int]:
    """Open files and resident memory (KiB) of all the app's workers together."""
    out = host.check_output(
        f"for p in $(pgrep -P $(systemctl show -p MainPID --value {APP}.service)); do "
        f"echo $(runuser -u {APP} -- ls /proc/$p/fd | wc -l) "
        f"$(awk '/^VmRSS/ {{print $2}}' /proc/$p/status); done"
    )
    fds = rss = 0
    for line in out.splitlines():
        f, r = line.split()
        fds += int(f)
        rss += int(r)
    return fds, rss


# --- Chat clients ------------------------------------------------------------------------------


async def chat(ws, text: str, within: float = 5) -> dict[str, Any]:
    """Send a chat message and wait for its broadcast to come back (the acknowledgement)."""
    await ws.send(json.dumps({"message": text}))
    return await receive_message(ws, text, within)


async def receive_message(ws, text: str, within: float = 5) -> dict[str, Any]:
    """The live (not history) broadcast of text, skipping other frames."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no broadcast of {text!r} within {within} s")
        frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        if frame.get("message") == text and not frame.get("history"):
            return frame


async def history(ws, settle: float = 1.0) -> list[str]:
    """The history frames sent on connect (the server sends them first, then nothing)."""
    texts = []
    while True:
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), settle))
        except TimeoutError:
            return texts
        assert frame.get("history") is True, frame
        texts.append(frame["message"])


async def connect_retrying(site, path: str, within: float, **kwargs):
    """Open a websocket, retrying as a reconnecting client would, for up to within s."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await site.ws(path, open_timeout=3, **kwargs)
        except Exception as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not reconnect to {path} in {within} s") from exc
            await asyncio.sleep(0.1)


class Ledger:
    """Chat messages the server acknowledged, per room: none may be lost."""

    def __init__(self) -> None:
        self.acked: dict[str, list[str]] = defaultdict(list)

    async def say(self, ws, room: str, text: str, within: float = 5) -> None:
        await chat(ws, text, within)
        self.acked[room].append(text)


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return Ledger()
