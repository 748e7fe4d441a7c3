"""A rolling run of playbooks/site.yml while clients keep using the site through nginx."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

from conftest import APP, APP_HOSTS, REPO, SITE_HOST
from stack_testing import playbook_env

CHAT_CLIENTS = 4
MAX_CHAT_GAP = 5.0


class HttpLoop(threading.Thread):
    """GET /healthz through nginx over and over, each on a new connection."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.requests = 0
        self.failures: list[str] = []
        self.slowest = 0.0

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/healthz", headers={"Host": SITE_HOST})
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status != 200:
                    self.failures.append(f"HTTP {resp.status}")
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.requests += 1
            self.slowest = max(self.slowest, time.monotonic() - started)
            time.sleep(0.05)


class ChatLoop(threading.Thread):
    """Chat clients that reconnect whenever their socket closes, timing each gap."""

    def __init__(self, site) -> None:
        super().__init__(daemon=True)
        self.site = site
        self.stop = threading.Event()
        self.gaps: list[float] = []
        self.errors: list[str] = []
        self.room = f"r-{uuid.uuid4().hex[:10]}"

    def run(self) -> None:
        asyncio.run(self.main())

    async def main(self) -> None:
        await asyncio.gather(*(self.client(i) for i in range(CHAT_CLIENTS)))

    async def client(self, index: int) -> None:
        closed_at = None
        while not self.stop.is_set():
            try:
                async with self.site.ws(f"/ws/chat/{self.room}/", open_timeout=5) as ws:
                    # Back once a message makes the round trip through the new socket.
                    text = f"client {index} {uuid.uuid4().hex}"
                    await ws.send(json.dumps({"message": text}))
                    while json.loads(await asyncio.wait_for(ws.recv(), 5)).get("message") != text:
                        pass
                    if closed_at is not None:
                        self.gaps.append(time.monotonic() - closed_at)
                        closed_at = None
                    while not self.stop.is_set():
                        try:
                            await asyncio.wait_for(ws.recv(), 0.5)
                        except TimeoutError:
                            continue
            except Exception as exc:  # a closed socket or a failed reconnect: retry
                if closed_at is None:
                    closed_at = time.monotonic()
                self.errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.1)
        if closed_at is not None:
            self.gaps.append(float("inf"))


def worker_pids(host) -> set[str]:
    """The gunicorn workers of the app: a reload (HUP) or a restart replaces them all."""
    main_pid = host.check_output(f"systemctl show -p MainPID --value {APP}.service")
    return set(host.check_output(f"pgrep -P {main_pid}").split())


def test_rolling_update_restarts_every_app_host_without_failed_requests_takes_minutes(
    site, hosts, http_port
):
    """Runs the whole site playbook with a new app version: minutes of Ansible."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    version = f"rolling-{uuid.uuid4().hex[:8]}"
    workers_before = {name: worker_pids(hosts[name]) for name in APP_HOSTS}
    env = playbook_env()
    http_loop, chat_loop = HttpLoop(http_port), ChatLoop(site)
    http_loop.start()
    chat_loop.start()
    time.sleep(3)  # every chat client connected before the run
    playbook = ["ansible-playbook", "-i", str(inventory), "playbooks/site.yml"]
    started = time.monotonic()
    run = subprocess.run(
        [*playbook, "-e", f"django_app_version={version}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    duration = time.monotonic() - started
    time.sleep(MAX_CHAT_GAP + 1)  # clients closed at the very end get their chance
    http_loop.stop.set()
    chat_loop.stop.set()
    http_loop.join(40)
    chat_loop.join(20)
    longest = max(chat_loop.gaps, default=0.0)
    print(
        f"\nrolling update: playbook {duration:.1f} s; {http_loop.requests} HTTP requests, "
        f"{len(http_loop.failures)} failed, slowest {http_loop.slowest:.2f} s; "
        f"{len(chat_loop.gaps)} chat reconnects, longest gap {longest:.2f} s"
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    for name in APP_HOSTS:
        release_env = hosts[name].file(f"/srv/{APP}/current/.release.env").content_string
        assert f"DJANGO_APP_VERSION='{version}'" in release_env, name
        assert not worker_pids(hosts[name]) & workers_before[name], f"{name} kept its old workers"
    assert http_loop.requests > 20
    assert http_loop.failures == []
    assert chat_loop.gaps, "no chat client was disconnected: the test proved nothing"
    assert longest < MAX_CHAT_GAP, chat_loop.gaps
