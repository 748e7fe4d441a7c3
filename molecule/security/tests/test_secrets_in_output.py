"""Secrets from an Ansible Vault file reach the host and never the run's output.

Runs playbooks/site.yml once more against the converged host with fresh
random secrets in a vault-encrypted vars file, as an operator's
group_vars/all/vault.yml would give them, verbose, and searches the whole
output for each value. The tests after this one run on the new secrets.
"""

from __future__ import annotations

import os
import secrets
import string
import subprocess
from pathlib import Path

from conftest import APP

REPO = Path(__file__).resolve().parents[3]


def token(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def test_vault_secrets_reach_the_host_but_never_the_output_of_a_full_converge(host, tmp_path):
    values = {
        "django_app_secret_key": token(64),
        "redis_password": token(40),
        "redis_app_password": token(40),
    }
    plain = tmp_path / "vault.yml"
    plain.write_text("---\n" + "".join(f'{k}: "{v}"\n' for k, v in values.items()))
    password_file = tmp_path / "vault-pass"
    password_file.write_text(token(32))
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_VAULT_PASSWORD_FILE=str(password_file),
        ANSIBLE_NOCOLOR="1",
    )
    subprocess.run(["ansible-vault", "encrypt", str(plain)], env=env, check=True)
    assert plain.read_text().startswith("$ANSIBLE_VAULT;")

    result = subprocess.run(
        [
            "ansible-playbook",
            "-v",
            "-i",
            str(Path(env["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"),
            str(REPO / "playbooks" / "site.yml"),
            "-e",
            f"@{plain}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    leaked = [name for name, value in values.items() if value in out]
    assert not leaked, f"secret values printed in the converge output: {leaked}"

    # The values did reach the host: Django's key and the app's Redis password.
    env_file = host.file(f"/etc/{APP}/env").content_string
    assert values["django_app_secret_key"] in env_file
    assert values["redis_app_password"] in env_file
    ping = host.run(
        "redis-cli --no-auth-warning --user default --pass %s PING", values["redis_password"]
    )
    assert ping.stdout.strip() == "PONG", ping.stdout + ping.stderr
