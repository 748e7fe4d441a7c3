"""The channel layer's shard: a primary, two replicas and a Sentinel on each.

The primary's host is lost while clients chat through the load balancer: the
Sentinels promote a replica, the app finds it through them with no restart,
and the old primary comes back as a replica.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections import Counter

from conftest import APP, APP_HOSTS, LBS, MASTER_NAME, REDIS_HOSTS, SENTINEL_PORT
from stack_testing import changed_tasks, run_playbook

# Sentinel finds the primary down after redis_sentinel_down_after_ms (3 s),
# then elects a leader and promotes a replica; clients then reconnect. The
# target (broadcasts back within 15 s) is read from the printed figure; the
# test fails when broadcasts do not come back in a time no working failover
# takes, even on a machine busy with other runs.
BROADCAST_BACK_TARGET = 15
BROADCAST_BACK_WITHIN = 45
CLIENTS = 6
SEND_EVERY = 0.25


def redis_cli(host, password: str, *args: str, port: int = 6379) -> str:
    cmd = host.run(
        f"REDISCLI_AUTH=%s redis-cli -p {port} --no-auth-warning " + " ".join(["%s"] * len(args)),
        password,
        *args,
    )
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip()


def role(host, secrets) -> list[str]:
    return redis_cli(host, secrets["default"], "ROLE").splitlines()


def sentinel(host, secrets, *args: str) -> str:
    return redis_cli(host, secrets["sentinel-clients"], "SENTINEL", *args, port=SENTINEL_PORT)


def primary_address(host, secrets) -> str:
    return sentinel(host, secrets, "get-master-addr-by-name", MASTER_NAME).splitlines()[0]


def gunicorn_pid(host) -> str:
    return host.check_output(f"systemctl show -p MainPID --value {APP}.service")


def test_one_primary_two_replicas_and_a_quorum_of_three_sentinels(hosts, addresses, redis_secrets):
    first, *others = REDIS_HOSTS
    assert role(hosts[first], redis_secrets)[0] == "master"
    for name in others:
        replica = role(hosts[name], redis_secrets)
        assert replica[:3] == ["slave", addresses[first], "6379"], replica
        assert replica[3] == "connected", replica
    for name in REDIS_HOSTS:
        assert sentinel(hosts[name], redis_secrets, "ckquorum", MASTER_NAME).startswith(
            "OK 3 usable Sentinels"
        )
        assert primary_address(hosts[name], redis_secrets) == addresses[first]


def test_the_app_reaches_the_channel_layer_through_every_sentinel(hosts, addresses):
    for name in APP_HOSTS:
        env = hosts[name].file(f"/etc/{APP}/env").content_string
        line = next(x for x in env.splitlines() if x.startswith("DJANGO_CHANNEL_LAYERS="))
        (layer_host,) = json.loads(line.split("=", 1)[1].strip("'"))["default"]["CONFIG"]["hosts"]
        assert layer_host["master_name"] == MASTER_NAME
        assert layer_host["sentinels"] == [[addresses[r], SENTINEL_PORT] for r in REDIS_HOSTS]
        assert layer_host["socket_timeout"] is None
        # A plain Redis URL would tie the app to one host.
        assert "DJANGO_REDIS_URL=" not in env and "\nREDIS_URL=" not in env


def test_the_app_asks_each_sentinel_once_so_a_lost_one_costs_one_timeout(hosts):
    # redis-py's default retries would hold the search for the primary on the
    # lost primary's own Sentinel for 13 s or more (docs/design.md).
    out = hosts[APP_HOSTS[0]].check_output(
        f"/usr/local/bin/{APP}-manage shell -c %s",
        "from django.conf import settings;"
        "(layer_host,) = settings.CHANNEL_LAYERS['default']['CONFIG']['hosts'];"
        "kw = layer_host['sentinel_kwargs'];"
        "print(kw['retry'].get_retries(), kw['socket_connect_timeout'], kw['socket_timeout'])",
    )
    # The last line: Django's shell may say first what it imported.
    assert out.splitlines()[-1].split() == ["0", "1", "1"], out


def test_redis_and_sentinel_admit_only_app_and_redis_hosts(hosts, addresses):
    probe = (
        "import socket,sys;s=socket.socket();s.settimeout(3);"
        "r=s.connect_ex((sys.argv[1],int(sys.argv[2])));print('connected' if r==0 else 'refused')"
    )
    target = addresses[REDIS_HOSTS[1]]
    for port in (6379, SENTINEL_PORT):
        for client, expected in (
            (LBS[0], "refused"),
            (APP_HOSTS[0], "connected"),
            (REDIS_HOSTS[0], "connected"),
        ):
            got = hosts[client].check_output("python3 -c %s %s %s", probe, target, str(port))
            assert got == expected, f"{client} -> {REDIS_HOSTS[1]}:{port}: {got}"


def test_a_config_rewrite_cannot_replace_the_managed_redis_conf(hosts, redis_secrets):
    replica = hosts[REDIS_HOSTS[1]]
    before = replica.file("/etc/redis/redis.conf").sha256sum
    cmd = replica.run(
        "REDISCLI_AUTH=%s redis-cli --no-auth-warning CONFIG REWRITE", redis_secrets["default"]
    )
    assert "ERR" in cmd.stdout + cmd.stderr, cmd.stdout
    assert replica.file("/etc/redis/redis.conf").user == "root"
    assert replica.file("/etc/redis/redis.conf").sha256sum == before


def run_with_shards(tmp_path, shards: dict[str, str], *extra: str):
    """site.yml with the Redis hosts put in the given shards by an extra inventory file."""
    inventory = tmp_path / "shards.yml"
    inventory.write_text(
        json.dumps({"all": {"hosts": {h: {"redis_shard": s} for h, s in shards.items()}}})
    )
    return run_playbook("site", "-i", str(inventory), *extra, timeout=300)


def test_a_shard_of_two_hosts_is_refused_before_anything_changes(tmp_path):
    # With a layer that shards correctly, so that the Redis check is the one that refuses.
    run = run_with_shards(
        tmp_path,
        {REDIS_HOSTS[2]: "b"},
        "-e",
        "django_app_channel_layer_backend=channels_redis.pubsub.RedisPubSubChannelLayer",
    )
    assert run.rc != 0
    assert "redis_shard: shard main has two hosts" in run.output, run.output[-2000:]
    assert run.recap().get("changed", 0) == 0, run.output[-2000:]


def test_several_shards_are_refused_with_the_layer_that_loses_their_messages(tmp_path):
    run = run_with_shards(tmp_path, dict(zip(REDIS_HOSTS, ("a", "b", "c"), strict=True)))
    assert run.rc != 0
    assert "over 3 Redis shards (a, b, c)" in " ".join(run.output.split()), run.output[-2000:]
    assert run.recap().get("changed", 0) == 0, run.output[-2000:]


class Chat:
    """CLIENTS chat sockets in one room through the load balancer, reconnecting when
    closed; one of them sends a numbered message every SEND_EVERY seconds."""

    def __init__(self, site) -> None:
        self.site = site
        self.room = f"ha-{uuid.uuid4().hex[:8]}"
        self.received: dict[str, dict[int, float]] = {}  # message -> client -> time
        self.sent: dict[str, float] = {}
        self.acked: set[str] = set()
        self.reconnects = Counter()
        self.stop = asyncio.Event()

    async def client(self, index: int) -> None:
        while not self.stop.is_set():
            try:
                async with self.site.ws(f"/ws/chat/{self.room}/", open_timeout=5) as ws:
                    sender = asyncio.create_task(self.send_loop(ws)) if index == 0 else None
                    try:
                        async for frame in ws:
                            data = json.loads(frame)
                            text = data.get("message")
                            if text and not data.get("history"):
                                self.received.setdefault(text, {})[index] = time.monotonic()
                                if index == 0:
                                    self.acked.add(text)
                            if self.stop.is_set():
                                break
                    finally:
                        if sender:
                            sender.cancel()
            except Exception:  # closed, refused, timed out: count it and come back
                pass
            if not self.stop.is_set():
                self.reconnects[index] += 1
                await asyncio.sleep(0.2)

    async def send_loop(self, ws) -> None:
        while True:
            text = f"m{len(self.sent):04d}"
            self.sent[text] = time.monotonic()
            await ws.send(json.dumps({"message": text}))
            await asyncio.sleep(SEND_EVERY)

    def everyone_got(self, text: str) -> bool:
        return len(self.received.get(text, {})) == CLIENTS

    def first_full_after(self, moment: float) -> tuple[str, float] | None:
        """The first message sent after `moment` that every client got, and when the last did."""
        for text, at in sorted(self.sent.items(), key=lambda kv: kv[1]):
            if at > moment and self.everyone_got(text):
                return text, max(self.received[text].values())
        return None


class Poller(threading.Thread):
    """GET / and /healthz through the load balancer every 100 ms, counting statuses."""

    def __init__(self, site) -> None:
        super().__init__(daemon=True)
        self.site = site
        self.statuses: Counter = Counter()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for path in ("/", "/healthz"):
                try:
                    status, _, _ = self.site.get(path, timeout=5)
                    self.statuses[(path, status)] += 1
                except OSError as exc:
                    self.statuses[(path, type(exc).__name__)] += 1
            time.sleep(0.1)


def stored_messages(hosts, room: str) -> set[str]:
    out = hosts[APP_HOSTS[0]].check_output(
        f"/usr/local/bin/{APP}-manage shell -c %s",
        "from chat.models import Message;"
        f"print('\\n'.join(Message.objects.filter(room='{room}').values_list('text', flat=True)))",
    )
    return set(out.split())


# The host the failover test stopped, for the test of its return.
LOST: dict[str, str] = {}


def host_at(addresses, address: str) -> str:
    return next(name for name in REDIS_HOSTS if addresses[name] == address)


def test_losing_the_primary_host_brings_broadcasts_back_through_sentinel_without_an_app_restart(
    hosts, addresses, shared_site, redis_secrets
):
    first = host_at(addresses, primary_address(hosts[REDIS_HOSTS[0]], redis_secrets))
    others = [name for name in REDIS_HOSTS if name != first]
    pids = {name: gunicorn_pid(hosts[name]) for name in APP_HOSTS}
    chat, poller = Chat(shared_site), Poller(shared_site)

    async def scenario() -> dict:
        clients = [asyncio.create_task(chat.client(i)) for i in range(CLIENTS)]
        deadline = time.monotonic() + 20
        while not (len(chat.sent) > 4 and chat.everyone_got(f"m{len(chat.sent) - 3:04d}")):
            assert time.monotonic() < deadline, "the chat never worked before the failover"
            await asyncio.sleep(0.2)
        lost_at = time.monotonic()
        kill = await asyncio.create_subprocess_exec("docker", "kill", first, stdout=-3, stderr=-3)
        assert await kill.wait() == 0, f"docker kill {first} failed"
        # Counted from the kill's start, but only a message sent once the host is
        # gone proves the way back: one sent while docker was still killing it
        # can reach everyone through the old primary.
        killed_at = time.monotonic()
        back = None
        while back is None and time.monotonic() < lost_at + 60:
            await asyncio.sleep(0.25)
            back = chat.first_full_after(killed_at)
        await asyncio.sleep(2)  # a few more messages after the recovery
        chat.stop.set()
        await asyncio.sleep(1)
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        return {"lost_at": lost_at, "back": back}

    poller.start()
    try:
        result = asyncio.run(scenario())
    finally:
        poller.halt.set()
        poller.join(10)
    back = result["back"]
    assert back is not None, "broadcasts never reached every client again within 60 s"
    recovery = back[1] - result["lost_at"]
    LOST["host"] = first
    new_primary = primary_address(hosts[others[0]], redis_secrets)
    stored = stored_messages(hosts, chat.room)
    unstored_acks = sorted(chat.acked - stored)
    server_errors = {k: v for k, v in poller.statuses.items() if k[1] == 500}
    print(
        f"\nREDIS FAILOVER | primary {first} ({addresses[first]}) killed | new {new_primary}"
        f" | broadcasts to all {CLIENTS} clients back after {recovery:.1f} s (message {back[0]};"
        f" target {BROADCAST_BACK_TARGET} s)"
        f" | reconnects {sum(chat.reconnects.values())} | sent {len(chat.sent)}, acknowledged"
        f" {len(chat.acked)}, stored {len(stored)}, acknowledged not stored {len(unstored_acks)}"
        f" | HTTP {dict(poller.statuses)}"
    )
    assert new_primary in [addresses[name] for name in others]
    assert recovery <= BROADCAST_BACK_WITHIN, f"broadcasts came back after {recovery:.1f} s"
    assert not unstored_acks, f"acknowledged messages missing from the database: {unstored_acks}"
    assert not server_errors, f"HTTP 500 answers: {server_errors}"
    assert {name: gunicorn_pid(hosts[name]) for name in APP_HOSTS} == pids, "the app restarted"


def test_the_old_primary_comes_back_as_a_replica_and_a_site_run_keeps_the_new_primary(
    hosts, addresses, redis_secrets
):
    assert LOST, "runs after the failover test"
    first = LOST["host"]
    others = [name for name in REDIS_HOSTS if name != first]
    primary = primary_address(hosts[others[0]], redis_secrets)
    assert primary != addresses[first]
    subprocess.run(["docker", "start", first], check=True, capture_output=True)
    started = time.monotonic()
    while True:
        cmd = hosts[first].run(
            "REDISCLI_AUTH=%s redis-cli --no-auth-warning ROLE", redis_secrets["default"]
        )
        lines = cmd.stdout.split()
        if cmd.rc == 0 and lines[:2] == ["slave", primary] and "connected" in lines:
            break
        assert time.monotonic() - started < 60, (
            f"{first} did not become a replica of {primary}: {cmd.stdout!r}"
        )
        time.sleep(1)
    rejoined = time.monotonic() - started
    redis_pids = {
        name: hosts[name].check_output("systemctl show -p MainPID --value redis-server.service")
        for name in REDIS_HOSTS
    }
    # The role now writes what the Sentinels say: the files change, nothing restarts.
    run = run_playbook("site", "--tags", "redis,keepalived")
    assert run.rc == 0, run.output[-3000:]
    again = run_playbook("site", "--tags", "redis,keepalived")
    assert again.rc == 0, again.output[-3000:]
    print(
        f"\nREDIS REJOIN | {first} a replica of {primary} {rejoined:.1f} s after its start"
        f" | site.yml --tags redis,keepalived changed {changed_tasks(run.output)},"
        f" then {changed_tasks(again.output)}"
    )
    assert changed_tasks(again.output) == []
    assert {
        name: hosts[name].check_output("systemctl show -p MainPID --value redis-server.service")
        for name in REDIS_HOSTS
    } == redis_pids, "a converge after the failover restarted Redis"
    assert primary_address(hosts[first], redis_secrets) == primary
    replica_conf = hosts[first].file("/etc/redis/replication.conf").content_string
    assert f"replicaof {primary} 6379" in replica_conf
