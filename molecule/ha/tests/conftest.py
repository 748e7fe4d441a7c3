"""Fixtures of the ha scenario: seven containers, the site through a load balancer.

The load balancers publish nginx on the controller's loopback; clients connect
there and send the site's host name. Checks inside the containers go through
``docker exec`` (testinfra's docker backend).
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import testinfra
from stack_testing import Site, published_port

APP = "channels-app"
LBS = ("hr-lb1", "hr-lb2")
APP_HOSTS = ("hr-app1", "hr-app2")
REDIS_HOSTS = ("hr-redis1", "hr-redis2", "hr-redis3")
DB = "hr-app2"
ALL = (*LBS, *APP_HOSTS, *REDIS_HOSTS)
MASTER_NAME = "channels-main"
SENTINEL_PORT = 26379

ADDRESS_FORMAT = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"


def container_address(name: str) -> str:
    out = subprocess.run(
        ["docker", "inspect", "-f", ADDRESS_FORMAT, name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert out, f"{name} has no address"
    return out


@pytest.fixture(scope="session")
def hosts() -> dict[str, Any]:
    return {name: testinfra.get_host(f"docker://{name}") for name in ALL}


@pytest.fixture(scope="session")
def addresses() -> dict[str, str]:
    return {name: container_address(name) for name in ALL}


@pytest.fixture(scope="session")
def site() -> Site:
    """The site through the first load balancer's published port."""
    return Site(published_port(LBS[0], 80))


@pytest.fixture(scope="session")
def redis_secrets(hosts) -> dict[str, str]:
    """The passwords the redis role generated, kept on the first Redis host (read
    before any test stops it)."""
    first = hosts[REDIS_HOSTS[0]]
    return {
        name: first.check_output(f"cat /etc/redis/{name}.password").strip()
        for name in ("default", "sentinel-clients")
    }
