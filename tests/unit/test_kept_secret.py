"""kept_secret: a secret generated once on the host, then read back unchanged."""

from __future__ import annotations

import stat

from conftest import load_plugin

kept_secret = load_plugin("modules", "kept_secret")


def test_several_secrets_are_generated_once_each_and_then_read_back(tmp_path):
    paths = [tmp_path / "default.password", tmp_path / "app.password"]

    first, changed = kept_secret.keep_all(paths, 40, "alphanumeric")
    again, changed_again = kept_secret.keep_all(paths, 40, "alphanumeric")

    assert changed and not changed_again
    assert again == first
    assert set(first) == {str(p) for p in paths}
    assert len(set(first.values())) == 2, "each file keeps a secret of its own"
    assert all(len(value) == 40 and value.isalnum() for value in first.values())
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_only_the_missing_secret_is_generated(tmp_path):
    (tmp_path / "given.password").write_text("kept-from-before\n")
    paths = [tmp_path / "given.password", tmp_path / "new.password"]

    kept, changed = kept_secret.keep_all(paths, 40, "alphanumeric")

    assert changed
    assert kept[str(paths[0])] == "kept-from-before"
    assert len(kept[str(paths[1])]) == 40


def test_check_mode_writes_nothing(tmp_path):
    kept, changed = kept_secret.keep_all([tmp_path / "new.password"], 40, "alphanumeric", True)

    assert changed
    assert kept == {str(tmp_path / "new.password"): ""}
    assert not (tmp_path / "new.password").exists()
