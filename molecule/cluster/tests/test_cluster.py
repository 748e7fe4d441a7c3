"""The split layout through nginx: spread, broadcast, shared history, failover, refusal."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest
from conftest import (
    APP,
    APP_HOSTS,
    APP_PORT,
    DATA,
    LB,
    Placement,
    app_peers,
    nginx_upstream_servers,
    recv_json,
    recv_until,
    tcp_connect,
    wait_healthy,
)


def room() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


def test_nginx_balances_over_every_app_host_with_least_conn_and_keepalive(hosts, addresses):
    config = hosts[LB].check_output("nginx -T 2>/dev/null")
    servers = nginx_upstream_servers(hosts[LB])
    assert sorted(s.split()[0] for s in servers) == sorted(
        f"{addresses[h]}:{APP_PORT}" for h in APP_HOSTS
    )
    assert all("max_fails=" in s and "fail_timeout=" in s for s in servers), servers
    assert "least_conn;" in config
    assert "keepalive 32;" in config
    assert "proxy_set_header Connection $connection_upgrade;" in config


def test_app_hosts_listen_on_their_private_address_and_trust_only_the_load_balancer(
    hosts, addresses
):
    for name in APP_HOSTS:
        host = hosts[name]
        assert host.socket(f"tcp://{addresses[name]}:{APP_PORT}").is_listening
        assert not host.socket(f"tcp://0.0.0.0:{APP_PORT}").is_listening
        conf = host.file(f"/etc/{APP}/gunicorn.conf.py").content_string
        line = next(x for x in conf.splitlines() if x.startswith("forwarded_allow_ips"))
        trusted = set(line.split("=", 1)[1].strip().strip('"').split(","))
        assert trusted == {"127.0.0.1", "::1", addresses[LB]}, line


def test_app_hosts_use_postgresql_and_redis_on_the_data_host(hosts, addresses):
    for name in APP_HOSTS:
        env = hosts[name].file(f"/etc/{APP}/env").content_string
        assert "DJANGO_DATABASE_URL='postgres://channels_app:" in env
        assert f"@{addresses[DATA]}:5432/channels_app'" in env
        assert f"@{addresses[DATA]}:6379/0" in env


def test_healthz_through_nginx_sees_postgresql_and_redis(site):
    for _ in range(4):  # least_conn over idle hosts: both answer
        status, body = site.get_json("/healthz")
        assert status == 200, body
        assert body["database"] == "ok"
        assert body["channel_layer"] == "ok"


def test_static_files_are_served_by_the_load_balancer(site, hosts):
    status, page = site.get("/")
    assert status == 200
    assets = re.findall(rb'(?:src|href)="(/static/[^"]+)"', page)
    assert assets
    for asset in assets:
        status, body = site.get(asset.decode())
        assert status == 200, asset
        assert body
    assert hosts[LB].file("/srv/channels-app/static").is_directory


def test_clients_are_spread_over_both_app_hosts_and_one_broadcast_reaches_all(site, hosts):
    name = room()

    async def scenario():
        placement = Placement(hosts)
        clients: list[tuple[str, object]] = []
        try:
            for _ in range(6):
                clients.append(await placement.connect(site, f"/ws/chat/{name}/"))
            per_host = {h: sum(1 for c, _ in clients if c == h) for h in APP_HOSTS}
            counts = {h: len(app_peers(hosts[h])) for h in APP_HOSTS}
            print(f"chat clients per app host: {per_host}; app connections: {counts}")
            assert all(per_host[h] >= 2 for h in APP_HOSTS), per_host
            # One broadcast from a client on each host reaches everyone in the room.
            for origin in APP_HOSTS:
                sender = next(ws for h, ws in clients if h == origin)
                text = f"from {origin} {uuid.uuid4().hex}"
                await sender.send(json.dumps({"message": text}))
                for _, ws in clients:
                    got = await recv_until(ws, text)
                    assert got["room"] == name
        finally:
            for _, ws in clients:
                await ws.close()

    asyncio.run(scenario())


ANNOUNCER = f"{APP}-announcer"  # one_host in molecule.yml: on the first app host alone
ANNOUNCEMENT = re.compile(r"^release \S+: announcement (\d+)$")


def test_a_one_host_background_service_runs_on_the_first_app_host_alone(site, hosts):
    first, *others = APP_HOSTS
    assert hosts[first].service(ANNOUNCER).is_running
    assert hosts[first].service(ANNOUNCER).is_enabled
    for name in others:
        assert not hosts[name].file(f"/etc/systemd/system/{ANNOUNCER}.service").exists, name
        assert not hosts[name].service(ANNOUNCER).is_running, name

    async def numbers() -> list[int]:
        """The announcement numbers a client in the room receives live over 4.5 s."""
        got: list[int] = []
        async with site.ws("/ws/chat/announcements/") as ws:
            deadline = asyncio.get_running_loop().time() + 4.5
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    frame = await recv_json(ws, left)
                except TimeoutError:
                    break
                match = ANNOUNCEMENT.match(frame.get("message", ""))
                if match and not frame.get("history"):
                    got.append(int(match.group(1)))
        return got

    got = asyncio.run(numbers())
    print(f"\nannouncements received live in 4.5 s: {got}")
    # One announcer counts up by one each second; a second would repeat numbers.
    assert 3 <= len(got) <= 6, got
    assert got == list(range(got[0], got[0] + len(got))), got


def test_message_sent_through_one_app_host_is_in_history_through_the_other(site, hosts):
    name = room()
    texts = [f"first {uuid.uuid4().hex}", f"second {uuid.uuid4().hex}"]

    async def scenario():
        placement = Placement(hosts)
        opened = []
        try:
            writer_host, writer = await placement.connect(site, f"/ws/chat/{name}/")
            opened.append(writer)
            for text in texts:
                await writer.send(json.dumps({"message": text}))
                await recv_until(writer, text)  # stored before it was broadcast
            # least_conn sends the next client to the host without one; loop in case
            # an HTTP keepalive connection tipped the balance.
            for _ in range(6):
                reader_host, reader = await placement.connect(site, f"/ws/chat/{name}/")
                opened.append(reader)
                if reader_host != writer_host:
                    break
            else:
                raise AssertionError(f"every new client went to {writer_host}")
            history = [await recv_json(reader) for _ in texts]
            assert [h["message"] for h in history] == texts  # oldest first
            assert all(h["history"] is True and h["room"] == name for h in history)
            assert all("sent_at" in h for h in history)
        finally:
            for ws in opened:
                await ws.close()

    asyncio.run(scenario())


def test_with_gunicorn_stopped_on_one_host_requests_and_reconnects_go_to_the_other(
    site, hosts, addresses
):
    stopped, alive = APP_HOSTS[1], APP_HOSTS[0]
    name = room()

    async def scenario():
        placement = Placement(hosts)
        clients = []
        try:
            for _ in range(4):
                clients.append(await placement.connect(site, f"/ws/chat/{name}/"))
            assert {h for h, _ in clients} == set(APP_HOSTS)
            hosts[stopped].run_expect([0], f"systemctl stop {APP}.socket {APP}.service")
            try:
                assert (
                    not hosts[stopped].socket(f"tcp://{addresses[stopped]}:{APP_PORT}").is_listening
                )
                # The stopped host's clients are closed; they reconnect through nginx.
                for i, (where, ws) in enumerate(clients):
                    if where != stopped:
                        continue
                    await asyncio.wait_for(ws.wait_closed(), 30)
                    clients[i] = await placement.connect(site, f"/ws/chat/{name}/")
                    assert clients[i][0] == alive
                for _ in range(10):
                    status, body = site.get_json("/healthz")
                    assert status == 200, body
                for _ in range(4):
                    clients.append(await placement.connect(site, f"/ws/chat/{name}/"))
                    assert clients[-1][0] == alive
                text = f"while {stopped} is down"
                await clients[0][1].send(json.dumps({"message": text}))
                for _, ws in clients:
                    await recv_until(ws, text)
            finally:
                hosts[stopped].run_expect([0], f"systemctl start {APP}.socket {APP}.service")
                wait_healthy(hosts[stopped], addresses[stopped])
        finally:
            for _, ws in clients:
                await ws.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("port", [6379, 5432], ids=["redis", "postgresql"])
def test_the_load_balancer_is_refused_at_connect_by_redis_and_postgresql(hosts, addresses, port):
    assert tcp_connect(hosts[LB], addresses[DATA], port) == "refused"
    for name in APP_HOSTS:
        assert tcp_connect(hosts[name], addresses[DATA], port) == "connected", name


def test_the_data_host_firewall_is_loaded_by_systemd_and_survives_a_reload(hosts, addresses):
    data = hosts[DATA]
    for service in ("redis", "postgresql"):
        unit = data.service(f"channels-stack-firewall@{service}")
        assert unit.is_enabled and unit.is_running, service
        data.check_output("systemctl reload channels-stack-firewall@%s", service)
        table = data.check_output("nft list table inet channels_stack_%s", service)
        for name in APP_HOSTS:
            assert addresses[name] in table, (service, name)
        assert addresses[LB] not in table
    assert tcp_connect(hosts[LB], addresses[DATA], 6379) == "refused"


PG_STARTUP = (
    "import socket,struct,sys;"
    "s=socket.create_connection((sys.argv[1],5432),timeout=5);"
    "body=struct.pack('!i',196608)+b'user\\0channels_app\\0database\\0channels_app\\0\\0';"
    "s.sendall(struct.pack('!i',len(body)+4)+body);"
    "r=s.recv(4096);print(r[:1].decode(),r[5:].decode(errors='replace'))"
)


def pg_startup_answer(host, address: str) -> str:
    """First answer of PostgreSQL to a startup packet (E: error, R: asks for a password)."""
    return host.check_output("python3 -c %s %s", PG_STARTUP, address)


def test_postgresql_refuses_other_hosts_before_any_password_behind_the_firewall(hosts, addresses):
    # The data host passes its own firewall (loopback); pg_hba.conf still has
    # no entry for its private address, which is not an app host's.
    answer = pg_startup_answer(hosts[DATA], addresses[DATA])
    assert answer.startswith("E"), answer
    assert "no pg_hba.conf entry" in answer
    assert addresses[DATA] in answer


def test_postgresql_asks_app_hosts_for_their_password(hosts, addresses):
    for name in APP_HOSTS:
        assert pg_startup_answer(hosts[name], addresses[DATA]).startswith("R")


REDIS_PROBE = (
    "import socket,sys;"
    "s=socket.create_connection((sys.argv[1],6379),timeout=5);"
    "s.sendall(sys.argv[2].encode()+b'\\r\\n');"
    "print(s.recv(4096).decode().strip())"
)


def test_redis_asks_for_the_app_credentials_behind_the_firewall(hosts, addresses):
    # Checked from the data host itself, which its firewall lets through.
    data = hosts[DATA]
    out = data.check_output("python3 -c %s %s %s", REDIS_PROBE, addresses[DATA], "PING")
    assert out.startswith("-NOAUTH"), out
    for guess in ("AUTH default ''", "AUTH channels channels", "AUTH nopass"):
        out = data.check_output("python3 -c %s %s %s", REDIS_PROBE, addresses[DATA], guess)
        assert out.startswith("-WRONGPASS") or out.startswith("-ERR"), (guess, out)
    # The credentials live on the data host and in the app hosts' root-only env file.
    lb = hosts[LB]
    assert not lb.file(f"/etc/{APP}/env").exists
    assert not lb.file("/etc/redis").exists


def test_redis_and_postgresql_listen_on_loopback_and_the_private_address_only(hosts, addresses):
    data = hosts[DATA]
    for port in (6379, 5432):
        listening = [s for s in data.socket.get_listening_sockets() if s.endswith(f":{port}")]
        assert listening, port
        for sock in listening:
            address = sock.split("://", 1)[1].rsplit(":", 1)[0]
            assert address in ("127.0.0.1", "::1", "[::1]", addresses[DATA]), sock
