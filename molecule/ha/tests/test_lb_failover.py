"""Two load balancers sharing one address: it moves when nginx or its host fails.

Clients use the site only through the shared address: a GET /healthz every
50 ms, each on a new connection, and chat clients that send a message every
half second and wait for it to come back through the room. The figures of
each failover are printed on one line starting with ``LB FAILOVER``.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
from conftest import (
    LBS,
    VIRTUAL_ADDRESS,
    docker_host,
    holders,
    private_address,
    vrrp_state,
    wait_for_single_holder,
)
from stack_testing import SITE_HOST

CONFIG = "/etc/keepalived/keepalived.conf"
CHECK_PROGRAM = "/usr/local/libexec/channels-stack/keepalived-http-check"
# The targets (HTTP answering again within 5 s of the failure) are read from
# the printed figures; the test fails when the site does not come back at all
# in a time no healthy failover takes, even on a machine busy with other runs.
MAX_HTTP_BACK = 15.0
# A chat client notices its socket is gone at its next message, then connects again.
MAX_CHAT_BACK = 20.0
CHAT_CLIENTS = 3


@dataclass
class Traffic:
    """HTTP and chat clients using the site through the shared address, in two threads."""

    site: object
    http: list[tuple[float, int | None]] = field(default_factory=list)
    # Per chat client: (time, True for a message that came back, False for a lost socket).
    chat: dict[int, list[tuple[float, bool]]] = field(default_factory=dict)
    # When a message did not come back within its 2 s on a socket still open (the client
    # then connects again): a lost socket to a silent host, or a slow echo on a busy machine.
    slow: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Traffic:
        self.threads = [
            threading.Thread(target=self._http_loop, daemon=True),
            threading.Thread(target=lambda: asyncio.run(self._chat()), daemon=True),
        ]
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + 15
        while not self.chatting(time.monotonic() - 1):
            assert time.monotonic() < deadline, "the chat clients never got going"
            time.sleep(0.2)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)

    def _http_loop(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            status = None
            try:
                # Half a second to connect, as a SYN sent to a dead host is lost: the next
                # request tries again. Then 5 s for the answer.
                conn = http.client.HTTPConnection(VIRTUAL_ADDRESS, 80, timeout=0.5)
                conn.connect()
                conn.sock.settimeout(5)
                conn.request("GET", "/healthz", headers={"Host": SITE_HOST})
                resp = conn.getresponse()
                resp.read()
                conn.close()
                status = resp.status
            except (OSError, http.client.HTTPException):
                pass
            self.http.append((started, status))
            time.sleep(0.05)

    async def _chat(self) -> None:
        room = f"ha-{uuid.uuid4().hex[:10]}"
        await asyncio.gather(*(self._chat_client(i, room) for i in range(CHAT_CLIENTS)))

    async def _chat_client(self, index: int, room: str) -> None:
        events = self.chat.setdefault(index, [])
        while not self.stop.is_set():
            try:
                # A socket to a host that is gone does not wait out a closing handshake.
                path = f"/ws/chat/{room}/"
                async with self.site.ws(path, open_timeout=2, close_timeout=0.5) as ws:
                    await self._chat_on(ws, index, events)
            except Exception:  # a failed reconnect: note it, try again
                events.append((time.monotonic(), False))
                await asyncio.sleep(0.1)

    async def _chat_on(self, ws, index: int, events: list[tuple[float, bool]]) -> None:
        """Chat until the socket fails, noting the failure at once."""
        try:
            while not self.stop.is_set():
                text = f"client {index} {uuid.uuid4().hex}"
                await ws.send(json.dumps({"message": text}))
                await _recv_live(ws, text, within=2)
                events.append((time.monotonic(), True))
                await asyncio.sleep(0.5)
        except TimeoutError:  # the message did not come back
            self.slow.append(time.monotonic())
            events.append((self.slow[-1], False))
        except Exception:  # a lost socket
            events.append((time.monotonic(), False))

    def chatting(self, since: float) -> bool:
        """Whether every chat client got a message back after `since`."""
        return len(self.chat) == CHAT_CLIENTS and all(
            any(ok and t > since for t, ok in events) for events in list(self.chat.values())
        )

    def http_back(self, since: float) -> float | None:
        """Seconds from `since` to the first answer after the last failed request (0: none)."""
        requests = [r for r in list(self.http) if r[0] >= since]
        failed = [t for t, status in requests if status is None]
        if not failed:
            return 0.0
        answered = [t for t, status in requests if status is not None and t > failed[-1]]
        return answered[0] - since if answered else None

    def chat_back(self, since: float) -> float | None:
        """Seconds from `since` until the last chat client to lose its socket chats again."""
        backs = []
        for events in list(self.chat.values()):
            events = [e for e in events if e[0] >= since]
            lost = [t for t, ok in events if not ok]
            if not lost:
                continue
            again = [t for t, ok in events if ok and t > lost[-1]]
            if not again:
                return None
            backs.append(again[0] - since)
        return max(backs, default=0.0)

    def failed_requests(self, since: float) -> int:
        return sum(1 for t, status in list(self.http) if t >= since and status is None)

    def server_errors(self) -> list[int]:
        return [status for _, status in list(self.http) if status is not None and status >= 500]

    def lost_sockets(self, since: float) -> int:
        return sum(1 for events in self.chat.values() for t, ok in events if t >= since and not ok)

    def closed_sockets(self, since: float) -> int:
        """Sockets closed or reset, or not opened, since then: not counting slow echoes."""
        return self.lost_sockets(since) - sum(1 for t in self.slow if t >= since)

    def wait_back(self, since: float, within: float = 30) -> None:
        """Until HTTP answers and every chat client has chatted again after a failover."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            http_back, chat_back = self.http_back(since), self.chat_back(since)
            if http_back is not None and chat_back is not None and self.chatting(since + chat_back):
                time.sleep(2)  # and keeps working
                return
            time.sleep(0.2)


async def _recv_live(ws, text: str, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        left = max(0.05, deadline - time.monotonic())
        frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        if frame.get("message") == text and not frame.get("history"):
            return


def figures(event: str, moved: float, traffic: Traffic, since: float) -> str:
    http_back, chat_back = traffic.http_back(since), traffic.chat_back(since)
    return (
        f"LB FAILOVER | {event} | address moved after {moved:.1f} s"
        f" | http back after {http_back if http_back is None else round(http_back, 1)} s,"
        f" {traffic.failed_requests(since)} failed connections, {len(traffic.server_errors())} 5xx"
        f" | ws reconnect after {chat_back if chat_back is None else round(chat_back, 1)} s,"
        f" {traffic.lost_sockets(since)} sockets lost or not opened"
    )


def assert_failover(traffic: Traffic, since: float) -> None:
    http_back, chat_back = traffic.http_back(since), traffic.chat_back(since)
    assert traffic.server_errors() == [], "answers with a 5xx status through the shared address"
    assert http_back is not None and http_back < MAX_HTTP_BACK, f"HTTP back after {http_back} s"
    assert chat_back is not None and chat_back < MAX_CHAT_BACK, f"chat back after {chat_back} s"
    assert traffic.chatting(since + chat_back), "a chat client did not chat again"


def other(lb: str) -> str:
    return next(name for name in LBS if name != lb)


def wait_state(name: str, state: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    host = docker_host(name)
    while vrrp_state(host) != state:
        assert time.monotonic() < deadline, f"{name} is {vrrp_state(host)}, not {state}"
        time.sleep(0.5)


@pytest.fixture
def preferred_holder(hosts) -> str:
    """The first load balancer holds the address (a restart of the other's keepalived moves it)."""
    holder = wait_for_single_holder()
    if holder != LBS[0]:
        hosts[holder].check_output("systemctl restart keepalived")
        holder = wait_for_single_holder(among=(LBS[0],))
    wait_state(LBS[1], "BACKUP")
    return holder


def test_both_load_balancers_run_keepalived_and_exactly_one_holds_the_address(hosts):
    for name in LBS:
        service = hosts[name].service("keepalived")
        assert service.is_enabled and service.is_running, name
        config = hosts[name].file(CONFIG).content_string
        peer = private_address(other(name))
        assert "unicast_peer {\n        " + peer + "\n    }" in config, config
        assert "nopreempt" in config
        # The configuration test as the role runs it: silent (2.2.7 then ends with 143).
        test = hosts[name].check_output(
            'out=$(keepalived --config-test --use-file %s 2>&1); echo "$?:$out"', CONFIG
        )
        assert test in ("0:", "143:"), test
    assert len(holders()) == 1, holders()
    # The first load balancer is the preferred one.
    for name, priority in zip(LBS, (150, 140), strict=True):
        assert f"priority {priority}\n" in hosts[name].file(CONFIG).content_string


# Files of the Debian release, not of the site: the list of media types
# grows from one release to the next (ha-lb2 runs Debian 13).
RELEASE_FILES = {"/etc/nginx/mime.types"}


def nginx_files(dump: str) -> dict[str, str]:
    """`nginx -T` as the text of each configuration file, without the release's own."""
    files: dict[str, str] = {}
    for part in dump.split("# configuration file ")[1:]:
        path, _, text = part.partition(":\n")
        files[path] = text
    assert "/etc/nginx/nginx.conf" in files, dump[:2000]
    return {path: text for path, text in files.items() if path not in RELEASE_FILES}


def test_nginx_listens_on_every_address_with_the_same_site_and_static_files_on_both(
    hosts, shared_site
):
    configs, static = {}, {}
    for name in LBS:
        assert hosts[name].socket("tcp://0.0.0.0:80").is_listening, name
        configs[name] = nginx_files(hosts[name].check_output("nginx -T 2>/dev/null"))
        static[name] = hosts[name].check_output(
            "cd /srv/channels-app/static && find . -type f -print0 | sort -z | xargs -0 sha256sum"
        )
    assert configs[LBS[0]] == configs[LBS[1]]
    assert static[LBS[0]] and static[LBS[0]] == static[LBS[1]]
    status, _, _ = shared_site.get("/")
    assert status == 200
    # A hashed stylesheet of the page, through the shared address.
    css = next(line.split()[1][2:] for line in static[LBS[0]].splitlines() if line.endswith(".css"))
    status, _, body = shared_site.get(f"/static/{css}")
    assert status == 200 and hashlib.sha256(body).hexdigest() in static[LBS[0]]


def test_the_health_check_fails_when_nginx_does_not_answer(hosts):
    lb = hosts[LBS[0]]
    ok = lb.run(
        "runuser -u keepalived_script -- %s http://127.0.0.1/ --host localhost", CHECK_PROGRAM
    )
    assert ok.rc == 0, ok.stderr
    # Nothing listens on port 9: the check fails, within its timeout.
    refused = lb.run("%s http://127.0.0.1:9/ --timeout 1", CHECK_PROGRAM)
    assert refused.rc == 1, refused.stderr


def test_the_address_moves_when_nginx_stops_on_its_holder_and_stays_when_it_returns_takes_a_minute(
    hosts, shared_site, preferred_holder
):
    holder, backup = preferred_holder, other(preferred_holder)
    with Traffic(shared_site) as traffic:
        since = time.monotonic()
        hosts[holder].check_output("systemctl --no-block stop nginx")
        try:
            wait_for_single_holder(among=(backup,))
            moved = time.monotonic() - since
            traffic.wait_back(since)
            print(f"\n{figures(f'nginx stopped on {holder}', moved, traffic, since)}")
            assert_failover(traffic, since)
        finally:
            hosts[holder].check_output("systemctl start nginx")
        # Back in the election, below the new holder: no second move.
        returned = time.monotonic()
        wait_state(holder, "BACKUP")
        time.sleep(5)
        assert holders() == [backup], "the address moved back when nginx returned"
        assert traffic.failed_requests(returned) == 0
        # A move would reset every socket; an echo slower than 2 s (once, on a machine
        # running other scenarios) is no move.
        assert traffic.closed_sockets(returned) == 0, f"slow echoes at {traffic.slow}"
        assert traffic.chatting(returned), "a chat client stopped chatting"
    assert traffic.server_errors() == []


def test_the_address_moves_when_its_holder_dies_and_it_rejoins_as_backup_takes_a_minute(
    hosts, shared_site
):
    holder = wait_for_single_holder()
    backup = other(holder)
    with Traffic(shared_site) as traffic:
        since = time.monotonic()
        # Power off: no goodbye advert, the other host waits out three missed ones.
        subprocess.run(["docker", "kill", holder], check=True, capture_output=True)
        try:
            wait_for_single_holder(among=(backup,))
            moved = time.monotonic() - since
            traffic.wait_back(since)
            print(f"\n{figures(f'{holder} killed', moved, traffic, since)}")
            assert_failover(traffic, since)
        finally:
            subprocess.run(["docker", "start", holder], check=True, capture_output=True)
        returned = time.monotonic()
        docker_host(holder).run("systemctl is-system-running --wait")
        wait_state(holder, "BACKUP", within=120)
        time.sleep(5)
        assert holders() == [backup], "the address moved back to the load balancer that returned"
        assert traffic.failed_requests(returned) == 0
        # A move would reset every socket; an echo slower than 2 s (once, on a machine
        # running other scenarios) is no move.
        assert traffic.closed_sockets(returned) == 0, f"slow echoes at {traffic.slow}"
        assert traffic.chatting(returned), "a chat client stopped chatting"
    assert traffic.server_errors() == []
    for name in LBS:
        assert docker_host(name).service("keepalived").is_running, name
        assert docker_host(name).service("nginx").is_running, name
