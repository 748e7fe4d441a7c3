#!/usr/bin/env bash
# `make vault ENV=<inventory>`: create inventories/<inventory>/group_vars/all/vault.yml,
# encrypted with ansible-vault, holding fresh random secrets. The plain text
# never touches the disk unencrypted outside a private temporary file.
set -euo pipefail
cd "$(dirname "$0")/.."

env=${1:?usage: scripts/make-vault.sh INVENTORY}
[ -d "inventories/$env" ] || { echo "no inventory inventories/$env" >&2; exit 1; }
dir="inventories/$env/group_vars/all"
file="$dir/vault.yml"
if [ -e "$file" ]; then
  echo "$file exists; change it with: ansible-vault edit $file" >&2
  exit 1
fi
mkdir -p "$dir"
umask 077
plain=$(mktemp)
trap 'rm -f "$plain"' EXIT
python3 - >"$plain" <<'PY'
import secrets
import string

alnum = string.ascii_letters + string.digits


def token(n: int) -> str:
    return "".join(secrets.choice(alnum) for _ in range(n))


print("---")
print("# Secrets of this inventory (ansible-vault). Change: ansible-vault edit <this file>")
print(f'vault_django_secret_key: "{token(64)}"')
print(f'vault_redis_password: "{token(40)}"')
print(f'vault_redis_app_password: "{token(40)}"')
PY
# Asks for a new vault password unless ANSIBLE_VAULT_PASSWORD_FILE names one.
ansible-vault encrypt --output "$file" "$plain"
echo "created $file (encrypted); inventories/$env/group_vars/all/main.yml reads its vault_* values"
