"""Where a setting wins, proved on the host: one probe variable per layer.

In the operator's checkout, probe_1 .. probe_7 are set in the layers the README
lists, probe_N in layers 1 to N only, each value naming its layer; a playbook
of the checkout writes what the host sees. probe_N must carry layer N's name.
A variable file Ansible would skip (group_vars/all.yml beside all/) stops
every run, naming the file, before any host is contacted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CHECKOUT, INVENTORY

LAYERS = [
    # (name, file in the checkout that holds the layer; None: -e)
    ("role_default", "roles/layering_probe/defaults/main.yml"),
    ("shared_all", "group_vars/all/layering_probe.yml"),
    ("inventory_all", f"{INVENTORY}/group_vars/all/layering_probe.yml"),
    ("shared_group", "group_vars/app_servers/layering_probe.yml"),
    ("inventory_group", f"{INVENTORY}/group_vars/app_servers/layering_probe.yml"),
    ("host_vars", f"{INVENTORY}/host_vars/chat1.example.com/layering_probe.yml"),
    ("extra_vars", None),
]
PROBE_RESULT = "/tmp/layering-probe.json"
PLAYBOOK = "playbooks/layering_probe.yml"


@pytest.fixture
def layered(operator):
    """The probe files in the checkout, removed again afterwards."""
    made: list[Path] = []
    for index, (name, path) in enumerate(LAYERS[:-1], 1):
        target = CHECKOUT / path
        target.parent.mkdir(parents=True, exist_ok=True)
        # Layer `index` sets probe_index .. probe_7 (the higher ones are overridden above it).
        lines = [f"probe_{n}: {name}" for n in range(index, len(LAYERS) + 1)]
        target.write_text("---\n" + "\n".join(lines) + "\n")
        made.append(target)
    (CHECKOUT / "roles/layering_probe/tasks").mkdir(parents=True, exist_ok=True)
    probes = ", ".join(f"'probe_{n}': probe_{n}" for n in range(1, len(LAYERS) + 1))
    (CHECKOUT / "roles/layering_probe/tasks/main.yml").write_text(
        "---\n- name: Write what this host sees of each probe\n"
        "  ansible.builtin.copy:\n"
        f'    content: "{{{{ {{{probes}}} | to_json }}}}"\n'
        f"    dest: {PROBE_RESULT}\n"
        '    mode: "0644"\n'
    )
    (CHECKOUT / PLAYBOOK).write_text(
        "---\n- name: Layering probe\n  hosts: app_servers\n  gather_facts: false\n"
        "  roles:\n    - layering_probe\n"
    )
    made += [CHECKOUT / "roles/layering_probe/tasks/main.yml", CHECKOUT / PLAYBOOK]
    yield
    for path in made:
        path.unlink()
    for path in made:
        for parent in path.parents:
            if parent == CHECKOUT or any(parent.iterdir()):
                break
            parent.rmdir()


def test_each_layer_outranks_the_ones_below_it_on_the_host(host, operator, layered):
    run = operator.run(
        ".venv/bin/ansible-playbook", "-i", INVENTORY, PLAYBOOK, "-e", "probe_7=extra_vars"
    )
    assert run.rc == 0, run.output[-3000:]
    seen = json.loads(host.file(PROBE_RESULT).content_string)
    expected = {f"probe_{n}": name for n, (name, _) in enumerate(LAYERS, 1)}
    assert seen == expected


def test_a_vars_file_ansible_would_skip_stops_the_run_naming_it(operator):
    skipped = CHECKOUT / INVENTORY / "group_vars" / "all.yml"
    skipped.write_text("---\nnginx_server_names: [typo.example.com]\n")
    try:
        run = operator.site_yml()
    finally:
        skipped.unlink()
    assert run.rc != 0
    flat = " ".join(run.output.split())
    assert f"{INVENTORY}/group_vars/all.yml: never loaded, Ansible reads" in flat, run.output[
        -2000:
    ]
    assert "Gathering Facts" not in run.output, "hosts were contacted before the check"
    assert run.recap()["changed"] == 0


def test_without_the_projects_ansible_cfg_the_playbooks_refuse_to_run(operator, tmp_path):
    other = tmp_path / "ansible.cfg"
    other.write_text("[defaults]\n")
    run = operator.run(
        ".venv/bin/ansible-playbook",
        "-i",
        INVENTORY,
        "playbooks/site.yml",
        env={"ANSIBLE_CONFIG": str(other)},
    )
    assert run.rc != 0
    assert "ansible.cfg: this project's ansible.cfg is not in effect" in " ".join(
        run.output.split()
    )
