"""Fixtures of the cluster scenario: the four containers and the site through nginx.

Only the load balancer publishes a port (``127.0.0.1::80``); clients connect
there and send the site's host name. Checks inside the containers go through
``docker exec`` (testinfra's docker backend).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import testinfra

REPO = Path(__file__).resolve().parents[3]
SITE_HOST = "localhost"
APP = "channels-app"
APP_PORT = 8000
LB = "cluster-lb"
APP_HOSTS = ("cluster-app1", "cluster-app2")
DATA = "cluster-data"


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
    return {name: testinfra.get_host(f"docker://{name}") for name in (LB, *APP_HOSTS, DATA)}


@pytest.fixture(scope="session")
def addresses() -> dict[str, str]:
    return {name: container_address(name) for name in (LB, *APP_HOSTS, DATA)}


@pytest.fixture(scope="session")
def http_port() -> int:
    out = subprocess.run(
        ["docker", "port", LB, "80/tcp"], check=True, capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        if line.startswith("127.0.0.1:"):
            return int(line.rsplit(":", 1)[1])
    raise AssertionError(f"nginx port of {LB} is not published on 127.0.0.1: {out!r}")


class Site:
    """HTTP and websocket access to the site through nginx on the load balancer."""

    def __init__(self, port: int, host: str = SITE_HOST) -> None:
        self.port = port
        self.host = host
        self.origin = f"http://{host}"

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": self.host})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> tuple[int, dict[str, Any]]:
        status, body = self.get(path)
        return status, json.loads(body)

    def ws(self, path: str, **kwargs: Any):
        from websockets.asyncio.client import connect

        kwargs.setdefault("open_timeout", 10)
        return connect(
            f"ws://{self.host}{path}",
            host="127.0.0.1",
            port=self.port,
            origin=self.origin,
            **kwargs,
        )


@pytest.fixture(scope="session")
def site(http_port: int) -> Site:
    return Site(http_port)


def app_peers(host) -> set[str]:
    """Peers (address:port) of the established connections to the app on one app host."""
    out = host.check_output(f"ss -Htn state established '( sport = :{APP_PORT} )'")
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


class Placement:
    """Finds the app host holding a websocket, from the app hosts' logs.

    Each client's URL carries a unique query string (the router ignores it);
    the app host that accepted the handshake logs it.
    """

    def __init__(self, hosts: dict[str, Any]) -> None:
        self.hosts = hosts

    @staticmethod
    def tagged(path: str) -> tuple[str, str]:
        tag = uuid.uuid4().hex
        return f"{path}?client={tag}", tag

    def host_of(self, tag: str, within: float = 10) -> str:
        deadline = time.monotonic() + within
        while True:
            found = [
                name
                for name in APP_HOSTS
                if self.hosts[name]
                .run(
                    f"journalctl -q -u {APP}.service -o cat --since=-15min | grep -qF %s",
                    f"client={tag}",
                )
                .rc
                == 0
            ]
            if found:
                assert len(found) == 1, f"one handshake logged on several hosts: {found}"
                return found[0]
            assert time.monotonic() < deadline, f"no app host logged the handshake of {tag}"
            time.sleep(0.2)

    async def connect(self, site: Site, path: str):
        """Open a websocket through nginx; return (app host, websocket)."""
        url, tag = self.tagged(path)
        ws = await site.ws(url)
        return self.host_of(tag), ws


async def recv_json(ws, within: float = 5) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def recv_until(ws, wanted: str, within: float = 5) -> dict[str, Any]:
    """The first frame carrying `wanted` as its live (not history) message."""
    deadline = time.monotonic() + within
    while True:
        got = await recv_json(ws, max(0.1, deadline - time.monotonic()))
        if got.get("message") == wanted and not got.get("history"):
            return got


def healthy_app(host, address: str) -> bool:
    out = host.run(
        "python3 -c 'import sys,urllib.request as u;"
        'r=u.urlopen(u.Request(sys.argv[1],headers={"Host":"localhost"}),timeout=5);'
        "print(r.status)' %s",
        f"http://{address}:{APP_PORT}/healthz",
    )
    return out.rc == 0 and out.stdout.strip() == "200"


def wait_healthy(host, address: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not healthy_app(host, address):
        assert time.monotonic() < deadline, f"the app at {address} never became healthy"
        time.sleep(0.5)


def nginx_upstream_servers(lb) -> list[str]:
    config = lb.check_output("nginx -T 2>/dev/null")
    block = re.search(r"upstream \w+ \{(.*?)\}", config, re.S)
    assert block, "no upstream block"
    return re.findall(r"^\s*server ([^;]+);", block.group(1), re.M)


def unique(items: Iterable[str]) -> list[str]:
    return sorted(set(items))


CONNECT_PROBE = (
    "import socket,sys;"
    "s=socket.socket();s.settimeout(5);"
    "r=s.connect_ex((sys.argv[1],int(sys.argv[2])));"
    "print({0:'connected',111:'refused',110:'timeout',11:'timeout'}.get(r,r))"
)


def tcp_connect(host, address: str, port: int) -> str:
    """What a plain TCP connect from `host` to address:port gets."""
    return host.check_output("python3 -c %s %s %s", CONNECT_PROBE, address, str(port))
