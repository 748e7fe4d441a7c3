#!/usr/bin/python
"""A secret generated once on the host and kept there, or the one given."""

from __future__ import annotations

DOCUMENTATION = r"""
module: kept_secret
short_description: A secret generated on the host on first use and kept there
description:
  - Returns the secret kept in O(path), generating it first (O(length) random characters of
    O(alphabet), a file of mode 0600 owned by root) when the file does not exist. Run it only
    when the user gave no secret of their own, and with no_log.
  - In check mode a missing secret is reported as one that would be generated, and the value
    returned is empty.
  - O(paths) does the same for several files in one module run.
options:
  path:
    type: path
    description: File that keeps the secret. One of O(path) and O(paths) is required.
  paths:
    type: list
    elements: path
    description: Files that each keep a secret of their own.
  length:
    type: int
    default: 40
  alphabet:
    type: str
    default: alphanumeric
    choices: [alphanumeric, django]
    description: alphanumeric (letters and digits), or django (also -_!@#%^&*(=+)).
"""

RETURN = r"""
value:
  description: The secret.
  type: str
  returned: with O(path)
secrets:
  description: Each file of O(paths) and its secret.
  type: dict
  returned: with O(paths)
"""

import os
import secrets
import string
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

ALPHABETS = {
    "alphanumeric": string.ascii_letters + string.digits,
    "django": string.ascii_letters + string.digits + "-_!@#%^&*(=+)",
}


def keep(path: Path, length: int, alphabet: str, check_mode: bool = False) -> tuple[str, bool]:
    """The kept secret and whether it was generated now."""
    if path.is_file():
        return path.read_text().strip(), False
    if check_mode:
        return "", True
    value = "".join(secrets.choice(ALPHABETS[alphabet]) for _ in range(length))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    os.chown(partial, 0, 0)
    os.replace(partial, path)
    return value, True


def keep_all(
    paths: list[Path], length: int, alphabet: str, check_mode: bool = False
) -> tuple[dict[str, str], bool]:
    """Each path's kept secret, and whether any was generated now."""
    kept, changed = {}, False
    for path in paths:
        kept[str(path)], generated = keep(path, length, alphabet, check_mode)
        changed = changed or generated
    return kept, changed


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path"},
            "paths": {"type": "list", "elements": "path"},
            "length": {"type": "int", "default": 40},
            "alphabet": {"type": "str", "default": "alphanumeric", "choices": list(ALPHABETS)},
        },
        required_one_of=[("path", "paths")],
        mutually_exclusive=[("path", "paths")],
        supports_check_mode=True,
    )
    p = module.params
    if p["path"] is not None:
        value, generated = keep(Path(p["path"]), p["length"], p["alphabet"], module.check_mode)
        module.exit_json(changed=generated, value=value)
    paths = [Path(x) for x in p["paths"]]
    kept, changed = keep_all(paths, p["length"], p["alphabet"], module.check_mode)
    module.exit_json(changed=changed, secrets=kept)


if __name__ == "__main__":
    main()
