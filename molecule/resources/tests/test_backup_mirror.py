"""The backups mirrored to another host over SSH (rsync), as the backup timer runs them.

Only the default scenario sets a mirror: its prepare.yml gives the host an
account `mirror` reached over SSH on the host itself, the key and host key of
which the scenario's settings hand to the db_backup role.
"""

from __future__ import annotations

from stack_testing import APP
from test_backup import BACKUP_DIR, take_backup

MIRROR = "/home/mirror/backups"
SSH_DIR = f"/etc/channels-stack/backup-ssh/{APP}"


def checksums(host, directory: str) -> dict[str, str]:
    out = host.check_output(f"cd {directory} && sha256sum {APP}-*")
    return {name: digest for digest, name in (line.split() for line in out.splitlines())}


def test_every_kept_backup_is_mirrored_over_ssh(host):
    newest = take_backup(host)
    local = checksums(host, BACKUP_DIR)
    mirrored = checksums(host, MIRROR)
    print(f"{len(local)} backups here, {len(mirrored)} mirrored; newest {newest}")
    assert newest in mirrored
    assert mirrored == local
    assert host.file(f"{MIRROR}/{newest}").user == "mirror"


def test_the_mirror_key_and_host_key_are_the_backup_users_alone(host):
    owner = host.check_output(f"stat -c %U {BACKUP_DIR}")
    assert host.file(SSH_DIR).mode == 0o700
    # Root loads firewall rules from under /etc/channels-stack: the app user owns none of it.
    for parent in ("/etc/channels-stack", "/etc/channels-stack/backup-ssh"):
        d = host.file(parent)
        assert (d.user, d.mode) == ("root", 0o755), parent
    for name in ("id", "known_hosts"):
        f = host.file(f"{SSH_DIR}/{name}")
        assert (f.user, f.mode) == (owner, 0o600), name


def test_a_changed_host_key_stops_the_mirror_and_keeps_the_local_backup(host):
    known_hosts = f"{SSH_DIR}/known_hosts"
    saved = host.file(known_hosts).content_string
    # Another key for the same name: what SSH sees when the target is not the host it knew.
    host.run_expect([0], "rm -f /tmp/other-key*; ssh-keygen -q -t ed25519 -N '' -f /tmp/other-key")
    other = host.check_output("cut -d' ' -f1,2 /tmp/other-key.pub")
    before = set(checksums(host, BACKUP_DIR))
    host.run_expect([0], f"echo 'localhost {other}' > {known_hosts}")
    try:
        taken = host.run(f"systemctl start {APP}-backup.service")
        journal = host.check_output(f"journalctl -u {APP}-backup -n 30 --no-pager")
        assert taken.rc != 0
        assert "rsync to mirror@localhost:backups/ (the local backup is kept)" in journal
        assert "Host key verification failed" in journal
        assert len(set(checksums(host, BACKUP_DIR)) - before) == 1
    finally:
        host.run_expect([0], f"printf '%s' '{saved}' > {known_hosts}")
        host.run("rm -f /tmp/other-key /tmp/other-key.pub")
