"""$EDITOR of the walkthrough: the edits a user makes at each step of the README.

    edit.py FILE...     (WALKTHROUGH_BLOCK names the README block being run)

Each README block that opens an editor has its edits here, by file name. A
block or file without one fails, naming it: the README asks for an edit that
this scenario does not know how to make, so the two have drifted apart.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# The app's name in this user's inventory: the tests look for it, and for no
# trace of the example's or the bundle's default name.
APP_NAME = "mychat"


def add_server_address(path: Path) -> None:
    """hosts.yml: the server keeps its name; its address is given on the commented line."""
    text = path.read_text()
    old = "# ansible_host: 203.0.113.10"
    assert old in text, f"{path}: no commented ansible_host line to fill in"
    path.write_text(text.replace(old, f"ansible_host: {os.environ['WALKTHROUGH_ADDRESS']}", 1))


def name_the_app(path: Path) -> None:
    """group_vars/all/main.yml: the site's names stay the example's (chat.example.com);
    the app gets a name of the user's own."""
    text = path.read_text()
    assert "chat.example.com" in text, f"{path}: the example site name is gone"
    old = "django_app_name: chat\n"
    assert old in text, f"{path}: no django_app_name to change"
    path.write_text(text.replace(old, f"django_app_name: {APP_NAME}\n", 1))


def use_provided_certificate(path: Path) -> None:
    """group_vars/all/main.yml: from the self-signed certificate to the one in the vault."""
    text = path.read_text()
    old = "nginx_tls_mode: selfsigned"
    assert old in text, f"{path}: no '{old}' to change"
    path.write_text(text.replace(old, "nginx_tls_mode: provided", 1))


def add_certificate_to_vault(path: Path) -> None:
    """The decrypted vault (ansible-vault edit): the chain and key, as YAML block scalars."""
    text = path.read_text()
    assert is_vault(path), f"{path}: not the vault made by make vault"
    tls = Path(os.environ["WALKTHROUGH_TLS"])

    def block(name: str, pem: str) -> str:
        return f"{name}: |\n" + "".join(f"  {line}\n" for line in pem.strip().splitlines())

    path.write_text(
        text.rstrip("\n")
        + "\n"
        + block("vault_tls_certificate", (tls / "chain.pem").read_text())
        + block("vault_tls_certificate_key", (tls / "key.pem").read_text())
    )


def is_vault(path: Path) -> bool:
    """The decrypted vault defines vault_* values; group_vars files only refer to them."""
    return re.search(r"^vault_django_secret_key:", path.read_text(), re.M) is not None


# README block number -> edits by file name ("vault" for the file ansible-vault edit opens).
EDITS = {
    1: {"hosts.yml": add_server_address, "main.yml": name_the_app},
    4: {"vault": add_certificate_to_vault, "main.yml": use_provided_certificate},
}


def main(paths: list[str]) -> int:
    block = int(os.environ["WALKTHROUGH_BLOCK"])
    for name in paths:
        path = Path(name)
        key = "vault" if is_vault(path) else path.name
        edit = EDITS.get(block, {}).get(key)
        if edit is None:
            print(
                f"edit.py: README block {block} opens {name}, and the production scenario does not "
                "know what a user writes there: update molecule/production/edit.py with the README",
                file=sys.stderr,
            )
            return 1
        edit(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
