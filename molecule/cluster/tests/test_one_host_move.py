"""A one_host background service (the demo's announcer, a scheduler's stand-in) moved from one
app host to the other by site.yml never runs on both, whichever host the one-at-a-time app
play reaches first."""

from __future__ import annotations

import subprocess
import threading
import time

from conftest import APP, APP_HOSTS
from stack_testing import run_playbook

ANNOUNCER = f"{APP}-announcer"
UNIT_FILE = f"/etc/systemd/system/{ANNOUNCER}.service"


def active(name: str) -> bool:
    return (
        subprocess.run(
            ["docker", "exec", name, "systemctl", "is-active", "--quiet", ANNOUNCER],
            check=False,
        ).returncode
        == 0
    )


class AnnouncerWatch(threading.Thread):
    """Where the announcer is active, both app hosts asked one after the other, over and over."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.samples: list[tuple[float, tuple[str, ...]]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            running = tuple(name for name in APP_HOSTS if active(name))
            self.samples.append((time.monotonic(), running))
            time.sleep(0.1)

    def __enter__(self) -> AnnouncerWatch:
        self.start()
        time.sleep(1)
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(1)
        self.stop.set()
        self.join(30)

    def on_both(self) -> list[float]:
        return [at for at, running in self.samples if len(running) > 1]

    def gap(self, old: str, new: str) -> float:
        """From the last sample with the announcer on the old host to the first on the new."""
        last_old = max(at for at, running in self.samples if old in running)
        first_new = min(at for at, running in self.samples if new in running)
        return first_new - last_old


def move(old: str, new: str) -> AnnouncerWatch:
    assert active(old) and not active(new)
    with AnnouncerWatch() as watch:
        run = run_playbook(
            "site", "--tags", "app", extra_vars={"django_app_background_one_host": new}, timeout=600
        )
    assert run.rc == 0, run.output[-6000:]
    assert watch.samples[0][1] == (old,) and watch.samples[-1][1] == (new,), watch.samples
    print(
        f"\nannouncer {old} -> {new}: site.yml --tags app {run.seconds:.1f} s, "
        f"{len(watch.samples)} samples, on both in {len(watch.on_both())}, "
        f"stopped for {watch.gap(old, new):.1f} s"
    )
    assert watch.on_both() == [], f"on both hosts in {len(watch.on_both())} samples"
    return watch


def test_a_one_host_service_moved_to_another_host_never_runs_on_both(hosts):
    first, second = APP_HOSTS
    try:
        # Away from the first app host (the inventory's): the play reaches the old host first.
        move(first, second)
        assert not hosts[first].file(UNIT_FILE).exists
        assert hosts[second].service(ANNOUNCER).is_enabled
        # And back: the play reaches the new host first, while the old one still runs it.
        move(second, first)
        assert not hosts[second].file(UNIT_FILE).exists
        assert hosts[first].service(ANNOUNCER).is_enabled
    finally:
        if not active(first):  # as the inventory says, for the tests after this one
            run_playbook("site", "--tags", "app", timeout=600)
