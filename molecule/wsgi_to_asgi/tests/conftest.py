"""Fixtures of the conversion scenario: the shared ones, plus re-running site.yml.

The shared fixtures (``site``, ``http_port``, ...) come from
../../resources/tests/stack_testing.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

# Shared with the other single-host scenarios (molecule/resources/tests/stack_testing.py);
# listed in __all__ so that pytest registers the fixtures and tests import the helpers.
from stack_testing import (
    REPO,
    PlaybookRun,
    Site,
    container,
    http_port,
    redis_admin,
    run_playbook,
    site,
)

__all__ = ["REPO", "Site", "container", "http_port", "redis_admin", "site"]

CHATDEMO = {
    "django_app_local_path": str(REPO / "apps" / "chatdemo"),
    "django_app_settings_module": "chatdemo.settings",
    "django_app_wsgi_application": "chatdemo.wsgi:application",
    "django_app_asgi_application": "chatdemo.asgi:application",
}


def converge(**extra_vars: object) -> PlaybookRun:
    """Run playbooks/site.yml against the scenario's host, as a user re-running it would."""
    # The controller packs the local source under TMPDIR; a directory of this checkout's
    # own keeps concurrent runs from other checkouts of the repository from sharing it.
    tmpdir = REPO / ".cache" / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    return run_playbook("site", extra_vars=extra_vars, env={"TMPDIR": str(tmpdir)})


def recap(result: PlaybookRun) -> str:
    """The PLAY RECAP and what precedes a failure, for assertion messages."""
    return result.output[-6000:]


@dataclass
class ClientLoop:
    """Sequential GETs through nginx in a background thread, timing every answer.

    ``longest_gap`` is the longest time between two successful answers (or between the
    start and the first one): how long the site was unable to answer while it switched.
    """

    site: Site
    path: str = "/"
    timeout: float = 30.0
    # Pause between requests: about 50 a second, gentle on a small test machine.
    interval: float = 0.02
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    longest_gap: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                status, _, _ = self.site.get(self.path, timeout=self.timeout)
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                self._stop.wait(self.interval)
                continue
            now = time.monotonic()
            if status == 200:
                self.ok += 1
                self.longest_gap = max(self.longest_gap, now - last)
                last = now
            else:
                self.failures.append(f"HTTP {status}")
            self._stop.wait(self.interval)

    def __enter__(self) -> ClientLoop:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(self.timeout + 5)

    def report(self, switch: str) -> str:
        kinds = ", ".join(f"{n} x {kind}" for kind, n in Counter(self.failures).most_common(3))
        line = (
            f"switch {switch}: {self.ok} requests answered, {len(self.failures)} failed"
            f"{f' ({kinds})' if kinds else ''}, longest gap between answers "
            f"{self.longest_gap:.3f} s"
        )
        print(f"\n{line}")
        return line
