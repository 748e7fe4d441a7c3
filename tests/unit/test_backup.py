"""The backup program (roles/db_backup/files/channels-stack-backup) on real SQLite files.

Backup, retention, choice of the backup to restore and the restore itself run for real in a
temporary directory; PostgreSQL's pg_dump and pg_restore are proved by the cluster scenario.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sqlite3
import sys
from pathlib import Path

import pytest

PROGRAM = Path(__file__).resolve().parents[2] / "roles/db_backup/files/channels-stack-backup"
loader = importlib.machinery.SourceFileLoader("channels_stack_backup", str(PROGRAM))
spec = importlib.util.spec_from_loader(loader.name, loader)
backup = importlib.util.module_from_spec(spec)
sys.modules[loader.name] = backup
loader.exec_module(backup)


def database(path: Path, rows: list[str]) -> Path:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS message (text TEXT)")
        conn.execute("DELETE FROM message")
        conn.executemany("INSERT INTO message VALUES (?)", [(r,) for r in rows])
    conn.close()
    return path


def texts(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT text FROM message ORDER BY rowid")]
    finally:
        conn.close()


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "backups").mkdir()
    (tmp_path / "data").mkdir()
    return {
        "db": database(tmp_path / "data" / "db.sqlite3", ["one", "two"]),
        **{"dir": tmp_path / "backups"},
    }


def args(layout, *extra: str) -> list[str]:
    return [
        "--dir", str(layout["dir"]), "--prefix", "app",
        "--engine", "sqlite", "--database", str(layout["db"]), *extra,
    ]  # fmt: skip


def test_a_backup_is_one_complete_file_that_restores_every_row(layout):
    assert backup.main(["backup", *args(layout)]) == 0
    [made] = backup.backups(layout["dir"], "app")
    assert made.name.startswith("app-") and made.name.endswith(".sqlite3.gz")
    assert list(layout["dir"].glob(".*")) == []  # no partial file left

    layout["db"].unlink()
    assert backup.main(["restore", *args(layout)]) == 0
    assert texts(layout["db"]) == ["one", "two"]


def test_restore_keeps_the_owner_and_mode_of_the_file_it_replaces(layout):
    os.chmod(layout["db"], 0o600)
    backup.main(["backup", *args(layout)])
    database(layout["db"], ["changed"])
    backup.main(["restore", *args(layout)])
    assert layout["db"].stat().st_mode & 0o777 == 0o600
    assert texts(layout["db"]) == ["one", "two"]


def test_only_the_newest_backups_are_kept(layout, monkeypatch):
    clock = iter(range(1_700_000_000, 1_700_000_100, 10))
    monkeypatch.setattr(backup, "now", lambda: next(clock))
    for _ in range(4):
        assert backup.main(["backup", *args(layout, "--keep", "2")]) == 0
    kept = [p.name for p in backup.backups(layout["dir"], "app")]
    assert kept == ["app-20231114T221340Z.sqlite3.gz", "app-20231114T221350Z.sqlite3.gz"]


def test_a_named_backup_is_restored_and_an_unknown_name_is_refused_naming_the_newest(
    layout, monkeypatch, capsys
):
    clock = iter([1_700_000_000, 1_700_000_060])
    monkeypatch.setattr(backup, "now", lambda: next(clock))
    backup.main(["backup", *args(layout)])
    database(layout["db"], ["three"])
    backup.main(["backup", *args(layout)])

    assert backup.main(["restore", *args(layout, "--file", "app-20231114T221320Z.sqlite3.gz")]) == 0
    assert texts(layout["db"]) == ["one", "two"]

    assert backup.main(["restore", *args(layout, "--file", "app-nope.sqlite3.gz")]) == 1
    err = capsys.readouterr().err
    assert "no backup named app-nope.sqlite3.gz" in err and "app-20231114T221420Z" in err


def test_restore_without_any_backup_fails_and_leaves_the_database(layout, capsys):
    assert backup.main(["restore", *args(layout)]) == 1
    assert "no backup of app in" in capsys.readouterr().err
    assert texts(layout["db"]) == ["one", "two"]


def test_a_corrupt_backup_is_refused_and_the_database_is_left_as_it_was(layout, capsys):
    backup.main(["backup", *args(layout)])
    [made] = backup.backups(layout["dir"], "app")
    made.write_bytes(b"not gzip at all")
    assert backup.main(["restore", *args(layout)]) == 1
    assert "restoring" in capsys.readouterr().err
    assert texts(layout["db"]) == ["one", "two"]
    assert [p.name for p in layout["db"].parent.iterdir()] == ["db.sqlite3"]


def test_a_missing_database_fails_the_backup_and_leaves_nothing_behind(layout, capsys):
    layout["db"].unlink()
    assert backup.main(["backup", *args(layout)]) == 1
    assert "no SQLite database at" in capsys.readouterr().err
    assert list(layout["dir"].iterdir()) == []


def test_a_backup_killed_halfway_leaves_a_partial_file_the_next_one_removes(layout):
    stale = layout["dir"] / ".app-20200101T000000Z.sqlite3.gz.partial"
    stale.write_bytes(b"half")
    raw = layout["dir"] / ".app-20200101T000000Z.sqlite3.gz.partial.raw"
    raw.write_bytes(b"a whole uncompressed copy")
    assert backup.main(["backup", *args(layout)]) == 0
    assert not stale.exists() and not raw.exists()
    assert len(backup.backups(layout["dir"], "app")) == 1


def test_a_restore_needs_the_databases_directory_and_makes_no_file_of_roots(layout, capsys):
    backup.main(["backup", *args(layout)])
    missing = layout["db"].parent / "gone" / "db.sqlite3"
    assert backup.main(["restore", *args({**layout, "db": missing})]) == 1
    assert "no directory" in capsys.readouterr().err
    assert not missing.parent.exists()
