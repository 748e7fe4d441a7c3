"""Shared helpers and fixtures of the scenarios: reach the stack in a molecule
container through nginx. Scenario conftests import them from here
(pyproject.toml puts this directory on pytest's path).

By default nginx is published on the controller's loopback (``127.0.0.1::80``
in molecule.yml); clients connect there and send the site's host name, so
every request crosses nginx exactly as a browser's would. A scenario whose
converge writes site.json (scheme, host, address, port, ca) is reached there.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SITE_HOST = "localhost"


def site_description() -> dict[str, Any] | None:
    """Where a scenario's converge says the site is (site.json in its ephemeral directory)."""
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    path = Path(ephemeral, "site.json") if ephemeral else None
    return json.loads(path.read_text()) if path and path.exists() else None


# A task of a role that changes something: every such task's name starts with "Ensure".
ENSURE_TASK = re.compile(r"TASK \[[a-z_]+ : Ensure ")

# The app's name on the host: the scenario's (site.json), else the bundle's default.
APP = (site_description() or {}).get("app", "channels-app")


def role_default(role: str, name: str) -> Any:
    return yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())[name]


def group_var(name: str) -> Any:
    return yaml.safe_load((REPO / "group_vars" / "all" / "main.yml").read_text())[name]


def playbook_env(**overrides: str) -> dict[str, str]:
    """The environment for running this checkout's playbooks against a scenario's hosts."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        # Facts are gathered anew: a container made again may have a new address.
        ANSIBLE_CACHE_PLUGIN="memory",
    )
    env.update(overrides)
    return env


@dataclass
class PlaybookRun:
    """What an ansible-playbook run printed and returned, and how long it took."""

    rc: int
    output: str
    seconds: float

    @property
    def returncode(self) -> int:
        return self.rc

    @property
    def stdout(self) -> str:
        return self.output

    stderr = ""  # both streams are in output

    def recap(self) -> dict[str, int]:
        """Totals of the last PLAY RECAP over every host."""
        block = self.output[self.output.rindex("PLAY RECAP") :]
        totals: dict[str, int] = {}
        for line in block.splitlines()[1:]:
            if " : ok=" not in line:
                break
            for key, value in re.findall(r"(\w+)=(\d+)", line):
                totals[key] = totals.get(key, 0) + int(value)
        return totals


def changed_tasks(output: str) -> list[str]:
    """The tasks an ansible-playbook output reports changed (on any host), in order."""
    changed, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed:") and (not changed or changed[-1] != task):
            changed.append(task)
    return changed


def run_playbook(
    name: str,
    *extra: str,
    extra_vars: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    inventory: Path | None = None,
) -> PlaybookRun:
    """Run playbooks/<name>.yml of this checkout against the scenario's hosts, as a user
    re-running it would (the molecule inventory, or the one given; this project's
    ansible.cfg)."""
    inventory = inventory or Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    argv = [
        "ansible-playbook",
        "-i",
        str(inventory),
        str(REPO / "playbooks" / f"{name}.yml"),
        *extra,
    ]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    started = time.monotonic()
    proc = subprocess.run(
        argv,
        cwd=REPO,
        env=playbook_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return PlaybookRun(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def container(host) -> str:
    return host.backend.get_hostname()


def published_port(container: str, port: int) -> int:
    """The controller's loopback port docker publishes a container's port on."""
    out = subprocess.run(
        ["docker", "port", container, f"{port}/tcp"], check=True, capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        if line.startswith("127.0.0.1:"):
            return int(line.rsplit(":", 1)[1])
    raise AssertionError(f"port {port} of {container} is not published on 127.0.0.1: {out!r}")


@pytest.fixture(scope="module")
def http_port(container: str) -> int:
    return published_port(container, 80)


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address, sending and checking the site's name (SNI), whatever it resolves to."""

    def __init__(self, address: str, server_name: str, port: int, **kwargs: Any) -> None:
        super().__init__(server_name, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class Site:
    """HTTP and websocket access to the site through nginx, at an address, by the site's name."""

    def __init__(
        self,
        port: int,
        host: str = SITE_HOST,
        scheme: str = "http",
        ssl_context: ssl.SSLContext | None = None,
        address: str = "127.0.0.1",
    ) -> None:
        self.port = port
        self.host = host
        self.scheme = scheme
        self.ssl_context = ssl_context
        self.address = address
        self.origin = f"{scheme}://{host}"

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return _HTTPSConnection(
                self.address, self.host, self.port, timeout=timeout, context=self.ssl_context
            )
        return http.client.HTTPConnection(self.address, self.port, timeout=timeout)

    def get(
        self,
        path: str,
        host: str | None = None,
        timeout: float = 10,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection(timeout)
        try:
            conn.request("GET", path, headers={"Host": host or self.host, **(headers or {})})
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
            kwargs.setdefault("server_hostname", self.host)
        return connect(
            f"{'wss' if self.scheme == 'https' else 'ws'}://{self.host}{path}",
            host=self.address,
            port=self.port,
            origin=origin or self.origin,
            **kwargs,
        )


@pytest.fixture(scope="module")
def site(host) -> Iterator[Site]:
    """The site through nginx: as site.json describes it, else plain HTTP on the published port."""
    described = site_description()
    if described is None:
        yield Site(published_port(host.backend.get_hostname(), 80))
        return
    context = None
    if described["scheme"] == "https":
        context = ssl.create_default_context(cafile=described["ca"])
    yield Site(
        described["port"],
        host=described["host"],
        scheme=described["scheme"],
        ssl_context=context,
        address=described["address"],
    )


def redis_admin(host, *args: str) -> str:
    """Run redis-cli on the container as the default (admin) user.

    Its password is the one generated on the host, or the one site.json gives
    (a scenario whose inventory sets redis_password).
    """
    described = site_description() or {}
    password = described.get("redis_admin_password") or host.check_output(
        "cat /etc/redis/default.password"
    )
    cmd = host.run(
        "redis-cli --no-auth-warning --user default --pass %s " + " ".join(["%s"] * len(args)),
        password,
        *args,
    )
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip()


# Prometheus's HTTP API, asked from inside the monitoring host (it listens on loopback).
_PROMETHEUS_API_GET = (
    "import sys,urllib.request as u,urllib.parse as p;"
    "q=('?'+p.urlencode({'query':sys.argv[2]})) if len(sys.argv)>2 else '';"
    "print(u.urlopen('http://127.0.0.1:9090/api/v1/'+sys.argv[1]+q,timeout=5).read().decode())"
)


def prometheus_api(host, *args: str) -> Any:
    """The data of Prometheus's answer to api/v1/<args[0]> (with args[1] as its query)."""
    out = json.loads(
        host.check_output(
            "python3 -c %s " + " ".join(["%s"] * len(args)), _PROMETHEUS_API_GET, *args
        )
    )
    assert out["status"] == "success", out
    return out["data"]
