"""The repository as an Ansible collection: built, installed, and run by name.

A project of its own (an ansible.cfg, an inventory with the settings this
checkout's group_vars give) installs channels_stack.stack from the built file
and runs channels_stack.stack.site against this scenario's host, which this
checkout converged: the collection must find nothing to change.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from stack_testing import REPO, changed_tasks, playbook_env


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_the_collection_installs_and_converges_this_host_with_nothing_to_change(tmp_path):
    project = tmp_path / "project"
    (project / "inventory" / "group_vars" / "all").mkdir(parents=True)
    (project / "ansible.cfg").write_text("[defaults]\ncollections_path = ./collections\n")
    # The settings this checkout's group_vars give, as a project of its own would set
    # them (pip's CA bundle is the scenario inventory's), and the demo app's path.
    settings = yaml.safe_load((REPO / "group_vars" / "all" / "main.yml").read_text())
    settings.pop("python_pip_ca_bundle")
    settings["django_app_local_path"] = str(REPO / "apps" / "chatdemo")
    (project / "inventory" / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump(settings))
    # Molecule's own paths would win over the project's ansible.cfg: its
    # ANSIBLE_COLLECTIONS_PATH holds the copy of this collection that every
    # scenario's run installs again, possibly while this test reads it.
    own = (
        "ANSIBLE_ROLES_PATH",
        "ANSIBLE_CONFIG",
        "ANSIBLE_COLLECTIONS_PATH",
        "ANSIBLE_COLLECTIONS_PATHS",
    )
    env = {k: v for k, v in playbook_env().items() if k not in own}
    env["ANSIBLE_CONFIG"] = str(project / "ansible.cfg")

    built = run(
        ["ansible-galaxy", "collection", "build", "--output-path", str(tmp_path)], REPO, env
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (archive,) = tmp_path.glob("channels_stack-stack-*.tar.gz")
    installed = run(
        ["ansible-galaxy", "collection", "install", str(archive), "-p", "collections", "--no-deps"],
        project,
        env,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = run(
        ["ansible-galaxy", "collection", "list", "channels_stack.stack", "--format", "json"],
        project,
        env,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert list(json.loads(listed.stdout)) == [
        str(project / "collections" / "ansible_collections")
    ], "Ansible would find another copy of the collection than the one installed here"
    assert not (
        project / "collections" / "ansible_collections" / "channels_stack" / "stack" / "molecule"
    ).exists()

    molecule_inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    converge = run(
        [
            "ansible-playbook",
            "-i",
            str(molecule_inventory),
            "-i",
            "inventory",
            "channels_stack.stack.site",
        ],
        project,
        env,
    )
    output = converge.stdout + converge.stderr
    recap = re.search(
        r"PLAY RECAP \*+\n\S+\s*: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", output
    )
    shown = recap.group(0).splitlines()[-1] if recap else output[-500:]
    print(f"\nchannels_stack.stack.site: {shown}")
    assert converge.returncode == 0, output[-6000:]
    assert "TASK [channels_stack.stack.django_app : " in output, (
        "the roles did not come from the collection"
    )
    assert recap and recap.group(1) == "0", changed_tasks(output)
    shutil.rmtree(project / "collections")
