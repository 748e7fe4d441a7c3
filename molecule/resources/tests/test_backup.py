"""Backups of the database (the db_backup role) and playbooks/restore.yml."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

from stack_testing import APP, run_playbook

BACKUP_DIR = f"/var/backups/{APP}"
DATABASE = f"/var/lib/{APP}/db.sqlite3"  # SQLite: no db_servers host in this scenario
PROGRAM = "/usr/local/sbin/channels-stack-backup"


def history(site, room: str) -> list[str]:
    """The messages a new client of the room gets as its history."""

    async def read() -> list[str]:
        got = []
        async with site.ws(f"/ws/chat/{room}/") as ws:
            while True:
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 1))
                except TimeoutError:
                    return got
                if frame.get("history"):
                    got.append(frame["message"])

    return asyncio.run(read())


def chat(site, room: str, texts: list[str]) -> None:
    async def send() -> None:
        async with site.ws(f"/ws/chat/{room}/") as ws:
            for text in texts:
                await ws.send(json.dumps({"message": text}))
                while json.loads(await asyncio.wait_for(ws.recv(), 5)).get("message") != text:
                    pass

    asyncio.run(send())


def take_backup(host, app: str = APP) -> str:
    """Start the backup service on host now; the name of the newest backup."""
    taken = host.run(f"systemctl start {app}-backup.service")
    assert taken.rc == 0, taken.stderr + host.run(f"journalctl -u {app}-backup -n 20").stdout
    newest = host.check_output(f"{PROGRAM} list --dir /var/backups/{app} --prefix {app} | tail -1")
    assert newest.startswith(f"{app}-"), newest
    return newest


def backup_restore_round_trip(host, site, restore: Callable[[], tuple[int, str]]) -> None:
    """Messages written, a backup taken, the database destroyed, restored: every message back."""
    room = f"backup-{uuid.uuid4().hex[:8]}"
    texts = [f"kept {n}" for n in range(5)]
    chat(site, room, texts)
    assert take_backup(host).endswith(".sqlite3.gz")

    # Destroyed: the file emptied (an empty SQLite database: no tables, no messages).
    assert host.run(f"truncate -s 0 {DATABASE} && rm -f {DATABASE}-wal {DATABASE}-shm").rc == 0
    assert host.file(DATABASE).size == 0

    rc, output = restore()
    assert rc == 0, output[-3000:]
    assert history(site, room) == texts
    assert host.file(DATABASE).user == APP
    assert host.service(f"{APP}.service").is_running


def test_the_backup_timer_is_waiting_and_the_backups_are_private(host):
    timer = host.service(f"{APP}-backup.timer")
    assert timer.is_enabled and timer.is_running
    directory = host.file(BACKUP_DIR)
    assert directory.user == APP and directory.mode == 0o700


def test_messages_come_back_after_the_database_is_destroyed_and_restored(host, site):
    def restore() -> tuple[int, str]:
        run = run_playbook("restore")
        return run.rc, run.output

    backup_restore_round_trip(host, site, restore)


def test_a_restore_of_a_missing_backup_fails_before_the_app_stops(host):
    before = host.check_output(f"systemctl show -p MainPID --value {APP}.service")
    run = run_playbook("restore", extra_vars={"db_backup_restore_file": "no-such-backup"})
    assert run.rc != 0
    assert "no-such-backup is not among the backups on" in " ".join(run.output.split())
    assert host.check_output(f"systemctl show -p MainPID --value {APP}.service") == before
