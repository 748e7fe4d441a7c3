"""Shared helpers and fixtures of the single-host scenarios: reach the stack in a
molecule container through nginx. Scenario conftests import them from here
(pyproject.toml puts this directory on pytest's path).

nginx is published on the controller's loopback (``127.0.0.1::80`` in
molecule.yml); clients connect there and send the site's host name, so every
request crosses nginx exactly as a browser's would.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SITE_HOST = "localhost"


def role_default(role: str, name: str) -> Any:
    return yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())[name]


def group_var(name: str) -> Any:
    return yaml.safe_load((REPO / "group_vars" / "all.yml").read_text())[name]


def playbook_env(**overrides: str) -> dict[str, str]:
    """The environment for running this checkout's playbooks against a scenario's hosts."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
    )
    env.update(overrides)
    return env


@pytest.fixture(scope="module")
def container(host) -> str:
    return host.backend.get_hostname()


@pytest.fixture(scope="module")
def http_port(container: str) -> int:
    out = subprocess.run(
        ["docker", "port", container, "80/tcp"], check=True, capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        if line.startswith("127.0.0.1:"):
            return int(line.rsplit(":", 1)[1])
    raise AssertionError(f"nginx port of {container} is not published on 127.0.0.1: {out!r}")


class Site:
    """HTTP and websocket access to the site through nginx."""

    def __init__(
        self,
        port: int,
        host: str = SITE_HOST,
        scheme: str = "http",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port
        self.host = host
        self.scheme = scheme
        self.ssl_context = ssl_context
        self.origin = f"{scheme}://{host}"

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        if self.scheme == "https":
            # Connect to the site's name so that TLS sends it (SNI) and checks it.
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self.ssl_context
            )
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(
        self, path: str, host: str | None = None, timeout: float = 10
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection(timeout)
        try:
            conn.request("GET", path, headers={"Host": host or self.host})
            resp = conn.getresponse()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            return resp.status, headers, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> tuple[int, dict[str, Any]]:
        status, _, body = self.get(path)
        return status, json.loads(body)

    def ws(self, path: str, origin: str | None = None, **kwargs: Any):
        from websockets.asyncio.client import connect

        kwargs.setdefault("open_timeout", 10)
        if self.scheme == "https":
            kwargs.setdefault("ssl", self.ssl_context)
        return connect(
            f"{'wss' if self.scheme == 'https' else 'ws'}://{self.host}{path}",
            host="127.0.0.1",
            port=self.port,
            origin=origin or self.origin,
            **kwargs,
        )


@pytest.fixture(scope="module")
def site(http_port: int) -> Iterator[Site]:
    yield Site(http_port)


def redis_admin(host, *args: str) -> str:
    """Run redis-cli on the container as the default (admin) user."""
    password = host.check_output("cat /etc/redis/default.password")
    cmd = host.run(
        "redis-cli --no-auth-warning --user default --pass %s " + " ".join(["%s"] * len(args)),
        password,
        *args,
    )
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip()
