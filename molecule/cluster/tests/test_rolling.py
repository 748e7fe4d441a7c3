"""A rolling run of playbooks/site.yml while clients keep using the site through nginx."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import shutil
import threading
import time
import uuid

from conftest import APP, APP_HOSTS, REPO, SITE_HOST
from stack_testing import changed_tasks, run_playbook

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
    version = f"rolling-{uuid.uuid4().hex[:8]}"
    workers_before = {name: worker_pids(hosts[name]) for name in APP_HOSTS}
    with Load(site, http_port) as load:
        run = run_playbook("site", extra_vars={"django_app_version": version}, timeout=600)
    print(f"\nrolling update: playbook {run.seconds:.1f} s; {load.summary()}")
    assert run.rc == 0, run.output[-6000:]
    # The first play checked every host's settings; the roles' own runs do not again.
    for check in (
        "django_app : Check the settings that argument specs cannot",
        "redis : Check that Redis binds loopback or private addresses only",
        "nginx : Check that idle websockets outlive the app's pings",
    ):
        assert run.output.count(f"TASK [{check}]") == 1, check
    for name in APP_HOSTS:
        release_env = hosts[name].file(f"/srv/{APP}/current/.release.env").content_string
        assert f"DJANGO_APP_VERSION='{version}'" in release_env, name
        assert not worker_pids(hosts[name]) & workers_before[name], f"{name} kept its old workers"
    assert load.http.requests > 20
    assert load.http.failures == []
    assert load.chat.gaps, "no chat client was disconnected: the test proved nothing"
    assert max(load.chat.gaps) < MAX_CHAT_GAP, load.chat.gaps


def stylesheet(site) -> tuple[str, bytes]:
    """The chat page's stylesheet through the load balancer: its URL and body."""
    status, page = site.get("/")
    assert status == 200
    url = re.search(rb'href="(/static/chat/chat\.[0-9a-f]{12}\.css)"', page).group(1).decode()
    status, body = site.get(url)
    assert status == 200, f"{url} answered {status} on the load balancer"
    return url, body


class Load:
    """HTTP and chat clients running through the load balancer while a playbook runs."""

    def __init__(self, site, http_port: int) -> None:
        self.http, self.chat = HttpLoop(http_port), ChatLoop(site)

    def __enter__(self) -> Load:
        self.http.start()
        self.chat.start()
        time.sleep(3)  # every chat client connected before the run
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(MAX_CHAT_GAP + 1)
        self.http.stop.set()
        self.chat.stop.set()
        self.http.join(40)
        self.chat.join(20)

    def summary(self) -> str:
        longest = max(self.chat.gaps, default=0.0)
        return (
            f"{self.http.requests} HTTP requests, {len(self.http.failures)} failed, "
            f"slowest {self.http.slowest:.2f} s; "
            f"{len(self.chat.gaps)} chat reconnects, longest gap {longest:.2f} s"
        )


def test_deploy_and_rollback_go_host_by_host_and_bring_their_stylesheet_to_the_load_balancer(
    site, hosts, http_port, tmp_path
):
    """deploy.yml with a new stylesheet, then rollback.yml, both under load: minutes of Ansible."""
    old_url, old_css = stylesheet(site)
    marker = f"/* release {uuid.uuid4().hex[:8]} */"
    app = tmp_path / "chatdemo"
    shutil.copytree(
        REPO / "apps" / "chatdemo",
        app,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "staticfiles"),
    )
    with (app / "chat" / "static" / "chat" / "chat.css").open("a") as css:
        css.write(f"\n{marker}\n")

    with Load(site, http_port) as deploy_load:
        deploy = run_playbook(
            "deploy", extra_vars={"django_app_local_path": str(app), "django_app_version": "css2"}
        )
    print(f"\ndeploy.yml: {deploy.seconds:.1f} s; {deploy_load.summary()}")
    assert deploy.rc == 0, deploy.output[-6000:]
    assert deploy_load.http.failures == []
    assert max(deploy_load.chat.gaps, default=0.0) < MAX_CHAT_GAP, deploy_load.chat.gaps
    new_url, new_css = stylesheet(site)
    assert new_url != old_url and marker.encode() in new_css
    for name in APP_HOSTS:
        release_env = hosts[name].file(f"/srv/{APP}/current/.release.env").content_string
        assert "DJANGO_APP_VERSION='css2'" in release_env, name
    # Each host left the load balancers' rotation for its switch, one after the other.
    drained = [
        t for t in changed_tasks(deploy.output) if t.startswith("lb_rotation : Mark this app")
    ]
    assert len(drained) == len(APP_HOSTS), changed_tasks(deploy.output)

    with Load(site, http_port) as rollback_load:
        rollback = run_playbook("rollback")
    print(f"rollback.yml: {rollback.seconds:.1f} s; {rollback_load.summary()}")
    assert rollback.rc == 0, rollback.output[-6000:]
    assert rollback_load.http.failures == []
    assert max(rollback_load.chat.gaps, default=0.0) < MAX_CHAT_GAP, rollback_load.chat.gaps
    assert stylesheet(site) == (old_url, old_css)
