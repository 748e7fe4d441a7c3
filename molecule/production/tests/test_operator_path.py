"""The converge took the user's path: SSH as deploy, sudo to root, the copied
inventory with its vault; and it left nothing to change, in check mode too."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from conftest import CHECKOUT, INVENTORY
from stack_testing import APP
from test_backup import backup_restore_round_trip

REPO = Path(__file__).resolve().parents[3]


def test_ansible_logged_in_over_ssh_as_deploy_and_became_root_with_sudo(host):
    ssh = host.check_output("journalctl -q -u ssh.service -o cat")
    assert "Accepted publickey for deploy" in ssh
    assert "Accepted publickey for root" not in ssh
    sudo = host.check_output("journalctl -q _COMM=sudo -o cat")
    assert "deploy : " in sudo and "USER=root" in sudo


def vault_value(plain: str, name: str) -> str:
    return next(
        line.split(":", 1)[1].strip().strip('"')
        for line in plain.splitlines()
        if line.startswith(f"{name}:")
    )


def test_vault_and_plain_values_of_group_all_both_reach_the_host(host, operator):
    vault = operator.run(".venv/bin/ansible-vault", "view", f"{INVENTORY}/group_vars/all/vault.yml")
    assert vault.rc == 0, vault.output
    secret = vault_value(vault.output, "vault_django_secret_key")
    env = dict(
        line.split("=", 1)
        for line in host.check_output(f"cat /etc/{APP}/env").splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert shlex.split(env["DJANGO_SECRET_KEY"])[0] == secret, "the vault's SECRET_KEY is not used"
    redis_password = vault_value(vault.output, "vault_redis_app_password")
    assert f":{redis_password}@" in shlex.split(env["REDIS_URL"])[0], "the vault's Redis password"
    assert shlex.split(env["DJANGO_ALLOWED_HOSTS"])[0] == "chat.example.com"


def test_the_vault_is_encrypted_and_ignored_by_git():
    vault = CHECKOUT / INVENTORY / "group_vars" / "all" / "vault.yml"
    assert vault.read_text().startswith("$ANSIBLE_VAULT;")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", f"{INVENTORY}/group_vars/all/vault.yml"],
        cwd=REPO,
        check=False,
    )
    assert ignored.returncode == 0


def test_a_rerun_and_a_check_mode_run_change_nothing_and_fail_nothing(walkthrough):
    print(
        "\nwalkthrough:", json.dumps({k: v for k, v in walkthrough.items() if k != "readme_steps"})
    )
    for step in walkthrough["readme_steps"]:
        print(f"  {step['seconds']:7.1f} s  {step['command']}  {step.get('recap', '')}")
    for key in ("rerun", "check"):
        recap = walkthrough[key]["recap"]
        assert recap["changed"] == 0 and recap["failed"] == 0, (key, recap)


def test_check_mode_on_the_new_server_ran_through(walkthrough):
    (preview,) = [s for s in walkthrough["readme_steps"] if "--check" in s["command"]]
    assert preview["recap"]["failed"] == 0, preview
    assert preview["recap"]["unreachable"] == 0, preview


def test_a_release_deploys_and_rolls_back_over_ssh_as_deploy(operator, site):
    def version() -> str:
        status, body = site.get_json("/healthz")
        assert status == 200, body
        return body["version"]

    def playbook(name: str, *extra: str):
        run = operator.run(
            ".venv/bin/ansible-playbook", "-i", INVENTORY, f"playbooks/{name}.yml", *extra
        )
        print(f"\n{name}.yml {' '.join(extra)} over SSH: {run.seconds:.1f} s, {run.recap()}")
        assert run.rc == 0, run.output[-3000:]
        return run

    before = version()
    playbook("deploy", "-e", "django_app_version=2")
    assert version() == "2"
    again = playbook("deploy", "-e", "django_app_version=2")
    assert again.recap()["changed"] == 0, again.output[-3000:]
    playbook("rollback")
    assert version() == before


def test_the_database_is_restored_from_its_backup_over_ssh_as_deploy(host, operator, site):
    def restore() -> tuple[int, str]:
        run = operator.run(".venv/bin/ansible-playbook", "-i", INVENTORY, "playbooks/restore.yml")
        print(f"\nrestore.yml over SSH: {run.seconds:.1f} s, {run.recap()}")
        return run.rc, run.output

    backup_restore_round_trip(host, site, restore)
