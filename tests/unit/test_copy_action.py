"""The copy action's shortcut: when is a file whose content matches already right?"""

from __future__ import annotations

import pytest
from conftest import load_plugin

copy = load_plugin("action", "copy")

STAT = {
    "exists": True,
    "isreg": True,
    "islnk": False,
    "mode": "0640",
    "pw_name": "root",
    "gr_name": "redis",
    "uid": 0,
    "gid": 104,
}


def args(**kw):
    return {"state": "file", "recurse": False, "dest": "/etc/x", **kw}


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"owner": "root", "group": "redis", "mode": "0640"},
        {"owner": "0", "group": "104", "mode": "640"},
        {"mode": 0o640},
        {"owner": "root", "seuser": None, "attributes": ""},
    ],
)
def test_matching_owner_group_and_mode_need_no_file_module_run(given):
    assert copy.already_right(args(**given), STAT)


@pytest.mark.parametrize(
    "given",
    [
        {"owner": "redis"},
        {"group": "root"},
        {"mode": "0644"},
        {"mode": 0o600},
        # Forms the stat cannot be compared with: the file module decides.
        {"mode": "u=rw,g=r"},
        {"mode": "preserve"},
        {"seuser": "system_u"},
        {"attributes": "+i"},
        {"recurse": True},
        {"state": "directory"},
    ],
)
def test_anything_else_runs_the_file_module(given):
    assert not copy.already_right(args(**given), STAT)


@pytest.mark.parametrize(
    "stat",
    [
        {**STAT, "exists": False},
        {**STAT, "isreg": False, "isdir": True},
        {**STAT, "islnk": True},
    ],
)
def test_a_path_that_is_not_a_regular_file_runs_the_file_module(stat):
    assert not copy.already_right(args(owner="root"), stat)


def test_modes_are_compared_as_the_stat_module_writes_them():
    assert copy.octal_mode("0755") == "0755"
    assert copy.octal_mode("755") == "0755"
    assert copy.octal_mode(0o4755) == "4755"
    assert copy.octal_mode("0o755") is None
    assert copy.octal_mode(True) is None


def test_the_action_is_ansibles_own_copy_action():
    """Everything but the shortcut is Ansible's code."""
    from ansible.plugins.action import ActionBase

    assert issubclass(copy.ActionModule, ActionBase)
    assert copy.ActionModule.__mro__[1].__module__ == "channels_stack_ansible_copy_action"
