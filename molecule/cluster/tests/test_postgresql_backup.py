"""PostgreSQL on the data host: backed up by its timer's service, restored by restore.yml."""

from __future__ import annotations

import uuid

from conftest import APP, APP_HOSTS, DATA
from stack_testing import run_playbook
from test_backup import chat, history, take_backup

DATABASE = "channels_app"  # postgresql_database's default


def test_the_backup_timer_runs_on_the_data_host_only(hosts):
    assert hosts[DATA].service(f"{APP}-backup.timer").is_enabled
    for name in APP_HOSTS:
        assert not hosts[name].file(f"/etc/systemd/system/{APP}-backup.timer").exists


def test_messages_come_back_after_the_table_is_dropped_and_the_database_restored(site, hosts):
    data = hosts[DATA]
    room = f"backup-{uuid.uuid4().hex[:8]}"
    texts = [f"kept {n}" for n in range(5)]
    chat(site, room, texts)
    assert take_backup(data, APP).endswith(".pgdump")

    dropped = data.run(
        f"runuser -u postgres -- psql -v ON_ERROR_STOP=1 -d {DATABASE}"
        " -c 'DROP TABLE chat_message CASCADE'"
    )
    assert dropped.rc == 0, dropped.stderr

    run = run_playbook("restore")
    assert run.rc == 0, run.output[-3000:]
    assert history(site, room) == texts
