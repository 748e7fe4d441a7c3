"""The directories module: a loop of file state=directory in one run, on a real filesystem."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import pytest
from conftest import load_plugin

directories = load_plugin("modules", "directories")

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def entry(path: Path, mode: str = "0750") -> dict[str, str]:
    return {"path": str(path), "owner": USER, "group": GROUP, "mode": mode}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_missing_directories_and_parents_are_made_with_their_modes(tmp_path):
    wanted = [entry(tmp_path / "home"), entry(tmp_path / "deep" / "er" / "data", "0700")]

    result = directories.ensure(wanted)

    assert result["changed"]
    assert result["changed_paths"] == [str(tmp_path / "home"), str(tmp_path / "deep/er/data")]
    assert mode_of(tmp_path / "home") == 0o750
    assert mode_of(tmp_path / "deep/er/data") == 0o700
    assert (tmp_path / "deep" / "er").is_dir()


def test_a_second_run_changes_nothing(tmp_path):
    wanted = [entry(tmp_path / "a"), entry(tmp_path / "b", "0755")]
    directories.ensure(wanted)

    result = directories.ensure(wanted)

    assert result == {"changed": False, "changed_paths": [], "diff": {}}


def test_only_the_directory_whose_mode_drifted_is_changed(tmp_path):
    wanted = [entry(tmp_path / "a"), entry(tmp_path / "b")]
    directories.ensure(wanted)
    (tmp_path / "b").chmod(0o777)

    result = directories.ensure(wanted)

    assert result["changed_paths"] == [str(tmp_path / "b")]
    assert "mode" in result["diff"]["before"]
    assert mode_of(tmp_path / "b") == 0o750


def test_check_mode_reports_and_changes_nothing(tmp_path):
    (tmp_path / "a").mkdir(mode=0o700)

    result = directories.ensure([entry(tmp_path / "a"), entry(tmp_path / "new")], check_mode=True)

    assert result["changed_paths"] == [str(tmp_path / "a"), str(tmp_path / "new")]
    assert mode_of(tmp_path / "a") == 0o700
    assert not (tmp_path / "new").exists()


def test_a_link_to_a_directory_counts_as_the_directory(tmp_path):
    (tmp_path / "real").mkdir(mode=0o750)
    (tmp_path / "link").symlink_to(tmp_path / "real")

    assert not directories.ensure([entry(tmp_path / "link")])["changed"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"mode": "u=rwx"}, "is not an octal mode"),
        ({"mode": "0799"}, "is not an octal mode"),
        ({"owner": "no-such-user-here"}, "is not a user on this host"),
        ({"group": "no-such-group-here"}, "is not a group on this host"),
        ({"path": "relative/dir"}, "is not an absolute path"),
    ],
)
def test_a_bad_entry_is_refused_before_any_directory_is_made(tmp_path, change, reason):
    bad = {**entry(tmp_path / "bad"), **change}

    with pytest.raises(directories.Refused, match=reason):
        directories.ensure([entry(tmp_path / "first"), bad])

    assert not (tmp_path / "first").exists()


def test_a_file_in_the_way_is_refused_before_any_directory_is_made(tmp_path):
    (tmp_path / "taken").write_text("a file")

    with pytest.raises(directories.Refused, match="exists and is not a directory"):
        directories.ensure([entry(tmp_path / "first"), entry(tmp_path / "taken")])

    assert not (tmp_path / "first").exists()
