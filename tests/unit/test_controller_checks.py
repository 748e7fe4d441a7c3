"""The checks that run on the controller before any host is touched."""

from __future__ import annotations

from pathlib import Path

from conftest import load_plugin

layout = load_plugin("action", "vars_layout")
requirement = load_plugin("action", "python_requirement")


def test_a_file_beside_a_directory_of_the_same_group_is_named_as_never_loaded(tmp_path):
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "group_vars" / "all" / "main.yml").write_text("a: 1\n")
    (tmp_path / "group_vars" / "all.yml").write_text("b: 1\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "web1.yml").write_text("c: 1\n")
    (tmp_path / "host_vars" / "web1.yaml").write_text("d: 1\n")

    problems = layout.ignored_vars_files([str(tmp_path / "hosts.yml")])

    gv, hv = tmp_path / "group_vars", tmp_path / "host_vars"
    assert problems == [
        f"{gv}/all.yml: never loaded, Ansible reads {gv}/all/ for 'all' and skips this file; "
        f"move its variables into {gv}/all/main.yml",
        f"{hv}/web1.yaml: never loaded, Ansible reads {hv}/web1.yml for 'web1' and skips this "
        f"file; move its variables into {hv}/web1/main.yml",
    ]


def test_a_layout_of_directories_only_has_no_problem(tmp_path):
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "group_vars" / "all" / "vault.yml").write_text("x: 1\n")
    (tmp_path / "group_vars" / "app_servers.yml").write_text("y: 1\n")
    assert layout.ignored_vars_files([str(tmp_path)]) == []


def test_the_python_check_reads_the_host_facts_version_and_the_release_engines_rules(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nrequires-python = ">=3.12"\n')
    facts = {"major": 3, "minor": 11, "micro": 2}
    problem = requirement.python_requirement_problem(str(tmp_path), facts, "12")
    assert problem.endswith("Debian 13 (Python 3.13) would")
    assert requirement.python_requirement_problem(str(Path(tmp_path)), "3.13.5", "13") == ""
