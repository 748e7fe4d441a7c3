"""Fixtures of the shards scenario: the site's host and the two Redis shards.

Only shards-web publishes a port (``127.0.0.1::80``, nginx); clients connect
there and send the site's host name. Checks inside the containers go through
``docker exec`` (testinfra's docker backend).
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import testinfra
from stack_testing import Site, published_port

WEB = "shards-web"
# In inventory order: the layer's hosts list follows it.
SHARDS = ("shards-redis-a", "shards-redis-b")
ADDRESS_FORMAT = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"


@pytest.fixture(scope="session")
def hosts() -> dict[str, Any]:
    return {name: testinfra.get_host(f"docker://{name}") for name in (WEB, *SHARDS)}


@pytest.fixture(scope="session")
def addresses() -> dict[str, str]:
    return {
        name: subprocess.run(
            ["docker", "inspect", "-f", ADDRESS_FORMAT, name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for name in (WEB, *SHARDS)
    }


@pytest.fixture(scope="session")
def site() -> Site:
    return Site(published_port(WEB, 80))


@pytest.fixture(scope="session")
def admin_password(hosts) -> str:
    """The Redis admin password, generated on the first Redis host and the same on both."""
    return hosts[SHARDS[0]].check_output("cat /etc/redis/default.password").strip()
