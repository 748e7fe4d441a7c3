#!/usr/bin/python
"""Several directories, each with its owner, group and mode, in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
module: directories
short_description: Ensure several directories exist with their owner, group and mode
description:
  - What a loop of M(ansible.builtin.file) with C(state=directory) does, in one module run
    instead of one per directory. A missing directory is made (its missing parents too, as
    root with mode 0755); an existing one gets the owner, group and mode asked when they
    differ. A path that exists as anything but a directory (or a link to one) fails the
    task before any directory changes.
  - Supports check mode and diff mode.
options:
  paths:
    type: list
    elements: dict
    required: true
    description:
      - One entry per directory, in the order they are made. Keys C(path) (absolute),
        C(owner) and C(group) (names), C(mode) (octal, such as C("0750")).
"""

RETURN = r"""
changed_paths:
  description: The directories made or changed, in order.
  type: list
  elements: str
  returned: always
"""

import grp
import os
import pwd
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule


class Refused(ValueError):
    """An entry the module will not apply; str() says which and why."""


def wanted(entry: dict[str, Any]) -> tuple[str, int, int, int]:
    """(path, uid, gid, mode) of one entry, or Refused naming what is wrong with it."""
    path = entry.get("path")
    if not isinstance(path, str) or not os.path.isabs(path):
        raise Refused(f"path: {path!r} is not an absolute path")
    mode = str(entry.get("mode", ""))
    if not mode or any(c not in "01234567" for c in mode) or int(mode, 8) > 0o7777:
        raise Refused(f"{path}: mode {mode!r} is not an octal mode such as '0750'")
    try:
        uid = pwd.getpwnam(str(entry.get("owner"))).pw_uid
    except KeyError:
        raise Refused(f"{path}: owner {entry.get('owner')!r} is not a user on this host") from None
    try:
        gid = grp.getgrnam(str(entry.get("group"))).gr_gid
    except KeyError:
        raise Refused(f"{path}: group {entry.get('group')!r} is not a group on this host") from None
    return path, uid, gid, int(mode, 8)


def differences(path: str, uid: int, gid: int, mode: int) -> dict[str, Any]:
    """What differs between the directory at path and what is wanted ({} when nothing)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {"state": "absent"}
    if not stat.S_ISDIR(st.st_mode):
        raise Refused(f"{path}: exists and is not a directory")
    found: dict[str, Any] = {}
    if st.st_uid != uid:
        found["owner"] = st.st_uid
    if st.st_gid != gid:
        found["group"] = st.st_gid
    if stat.S_IMODE(st.st_mode) != mode:
        found["mode"] = f"{stat.S_IMODE(st.st_mode):04o}"
    return found


def apply(path: str, uid: int, gid: int, mode: int, absent: bool) -> None:
    if absent:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o755)
        os.mkdir(path, mode=0o700)  # no wider than asked until its owner is right
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def ensure(entries: list[dict[str, Any]], check_mode: bool = False) -> dict[str, Any]:
    """Apply every entry; every entry is checked before the first change."""
    plan = []
    for entry in entries:
        path, uid, gid, mode = wanted(entry)
        plan.append((path, uid, gid, mode, differences(path, uid, gid, mode)))
    changed = [path for path, _, _, _, found in plan if found]
    before, after = [], []
    for path, uid, gid, mode, found in plan:
        if not found:
            continue
        before.append(f"{path}: {found}")
        after.append(f"{path}: owner {uid}, group {gid}, mode {mode:04o}")
        if not check_mode:
            apply(path, uid, gid, mode, found.get("state") == "absent")
    diff = {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n"} if changed else {}
    return {"changed": bool(changed), "changed_paths": changed, "diff": diff}


def main() -> None:
    module = AnsibleModule(
        argument_spec={"paths": {"type": "list", "elements": "dict", "required": True}},
        supports_check_mode=True,
    )
    try:
        result = ensure(module.params["paths"], module.check_mode)
    except Refused as refused:
        module.fail_json(msg=f"directories: {refused}; nothing was changed")
    except OSError as error:
        module.fail_json(msg=f"directories: {error}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
