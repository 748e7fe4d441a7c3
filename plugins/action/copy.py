"""ansible.builtin.copy, one round trip shorter when the file is already right.

Ansible's copy action (which ansible.builtin.template also uses, under the
name ``ansible.legacy.copy`` that this file answers to) stats the remote
file, and when its checksum matches, runs the ``file`` module anyway, in case
the owner, group or mode differ: two module runs for a file that is already
right. The stat has already told the owner, group and mode, so when they
match what the task asks, and the task asks for nothing else the stat cannot
tell (SELinux context, file attributes), this action answers the ``file``
run itself: unchanged. Everything else goes to Ansible's own code.

It is found first under ``ansible.legacy.copy`` through ansible.cfg's
``action_plugins``; tasks that name ``ansible.builtin.copy`` get Ansible's
own action, and so does everything when this project is used as a
collection without its ansible.cfg.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import ansible.plugins.action


def _ansible_copy_action() -> type:
    """Ansible's own copy action: this file is loaded under its module name, so the
    original is loaded from Ansible's directory under another."""
    path = os.path.join(os.path.dirname(ansible.plugins.action.__file__), "copy.py")
    spec = importlib.util.spec_from_file_location("channels_stack_ansible_copy_action", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ActionModule


CopyAction = _ansible_copy_action()

# file module options the remote stat does not report: when any is asked,
# the file module runs as usual.
UNSEEN_OPTIONS = ("seuser", "serole", "setype", "selevel", "attributes", "attr")


def octal_mode(mode: Any) -> str | None:
    """A numeric mode as the stat module reports it ('0640'); None for any other form."""
    if isinstance(mode, int) and not isinstance(mode, bool):
        return f"{mode:04o}"
    if isinstance(mode, str) and mode.isdigit() and all(c in "01234567" for c in mode):
        return f"{int(mode, 8):04o}"
    return None


def already_right(args: dict[str, Any], stat: dict[str, Any]) -> bool:
    """Whether running the file module with ``args`` would change nothing, by ``stat``.

    ``args`` are the file module's arguments the copy action built for a file
    whose content already matches; ``stat`` is the stat module's answer for it.
    """
    if args.get("state") != "file" or args.get("recurse"):
        return False
    if not (stat.get("exists") and stat.get("isreg")) or stat.get("islnk"):
        return False
    if any(args.get(name) not in (None, "") for name in UNSEEN_OPTIONS):
        return False
    owner, group, mode = args.get("owner"), args.get("group"), args.get("mode")
    if owner not in (None, "") and str(owner) not in (stat.get("pw_name"), str(stat.get("uid"))):
        return False
    if group not in (None, "") and str(group) not in (stat.get("gr_name"), str(stat.get("gid"))):
        return False
    if mode not in (None, ""):
        wanted = octal_mode(mode)
        if wanted is None or wanted != stat.get("mode"):
            return False
    return True


class ActionModule(CopyAction):
    """Ansible's copy action, remembering its last remote stat."""

    _last_stat: tuple[str, dict[str, Any]] | None = None

    def _execute_remote_stat(self, path, all_vars, follow, tmp=None, checksum=True):
        status = super()._execute_remote_stat(path, all_vars, follow, tmp=tmp, checksum=checksum)
        # Only a stat that does not follow links describes the path itself.
        self._last_stat = (path, status) if not follow else None
        return status

    def _execute_module(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        last = self._last_stat
        if (
            module_name == "ansible.legacy.file"
            and module_args is not None
            and last is not None
            and module_args.get("dest", module_args.get("path")) == last[0]
            and already_right(module_args, last[1])
        ):
            path, stat = last
            result = {
                "changed": False,
                "path": path,
                "state": "file",
                "owner": stat.get("pw_name"),
                "group": stat.get("gr_name"),
                "uid": stat.get("uid"),
                "gid": stat.get("gid"),
                "mode": stat.get("mode"),
                "size": stat.get("size"),
            }
            if self._task.diff:
                result["diff"] = {"before": {"path": path}, "after": {"path": path}}
            return result
        return super()._execute_module(
            module_name=module_name, module_args=module_args, task_vars=task_vars, **kwargs
        )
