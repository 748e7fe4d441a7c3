"""Fixtures of the ha scenario: seven containers, and the site through the shared address.

The load balancers share keepalived_virtual_address (molecule.yml), an address
of ha-net that docker never hands out. The controller is on ha-net's bridge,
so clients connect to that address directly and send the site's host name;
checks inside the containers go through ``docker exec`` (testinfra's docker
backend). The three Redis hosts are one shard: a primary, two replicas and a
Sentinel on each.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml
from stack_testing import Site

SCENARIO = Path(__file__).resolve().parents[1]
APP = "channels-app"
LBS = ("ha-lb1", "ha-lb2")
APP_HOSTS = ("ha-app1", "ha-app2")
REDIS_HOSTS = ("ha-redis1", "ha-redis2", "ha-redis3")
# PostgreSQL, away from the Redis hosts the tests stop.
DB = "ha-app2"
ALL_HOSTS = (*LBS, *APP_HOSTS, *REDIS_HOSTS)
MASTER_NAME = "channels-main"
SENTINEL_PORT = 26379


def inventory_var(name: str) -> Any:
    """A variable the scenario's inventory gives every host (molecule.yml)."""
    config = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
    return config["provisioner"]["inventory"]["group_vars"]["all"][name]


VIRTUAL_ADDRESS = inventory_var("keepalived_virtual_address").split("/")[0]


ADDRESS_FORMAT = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"


def docker_host(name: str):
    return testinfra.get_host(f"docker://{name}")


@pytest.fixture(scope="session")
def hosts() -> dict[str, Any]:
    return {name: docker_host(name) for name in ALL_HOSTS}


@pytest.fixture(scope="session")
def shared_site() -> Site:
    """The site through the load balancers' shared address."""
    return Site(80, address=VIRTUAL_ADDRESS)


@pytest.fixture(scope="session")
def addresses() -> dict[str, str]:
    return {name: private_address(name) for name in ALL_HOSTS}


@pytest.fixture(scope="session")
def redis_secrets(hosts) -> dict[str, str]:
    """The passwords the redis role generated, kept on the first Redis host (read
    before any test stops it)."""
    first = hosts[REDIS_HOSTS[0]]
    return {
        name: first.check_output(f"cat /etc/redis/{name}.password").strip()
        for name in ("default", "sentinel-clients")
    }


def container_running(name: str) -> bool:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", name],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return out == "true"


def holds_address(name: str) -> bool:
    """Whether the load balancer has the shared address on an interface now."""
    if not container_running(name):
        return False
    out = subprocess.run(
        ["docker", "exec", name, "ip", "-4", "-o", "addr", "show"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return f" {VIRTUAL_ADDRESS}/" in out


def private_address(name: str) -> str:
    """A host's own address on ha-net (docker's, not the shared one)."""
    return subprocess.run(
        ["docker", "inspect", "-f", ADDRESS_FORMAT, name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def holders() -> list[str]:
    return [name for name in LBS if holds_address(name)]


def wait_for_single_holder(within: float = 30, among: tuple[str, ...] = LBS) -> str:
    """The one load balancer of `among` holding the address, once exactly one does."""
    deadline = time.monotonic() + within
    while True:
        found = holders()
        if len(found) == 1 and found[0] in among:
            return found[0]
        assert time.monotonic() < deadline, f"address holders after {within} s: {found}"
        time.sleep(0.2)


def vrrp_state(host) -> str:
    """The VRRP state keepalived last logged on a load balancer (MASTER, BACKUP, FAULT)."""
    out = host.run(
        "journalctl -b -q -u keepalived -o cat --no-pager"
        " | grep -Eo 'Entering [A-Z]+ STATE' | tail -n 1"
    ).stdout.strip()
    return out.split()[1] if out else ""
