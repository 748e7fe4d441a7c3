"""Metrics: Prometheus on the data host (monitoring_servers) scrapes every exporter and the
app's endpoint at the hosts' private addresses; the exporters admit only the monitoring host.

Prometheus listens on the data host's loopback; its HTTP API is read from inside the container.
It scrapes every 2 s in this scenario (molecule.yml), so each wait below is a poll with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from conftest import APP, APP_HOSTS, DATA, LB, recv_until, tcp_connect
from stack_testing import prometheus_api

HOSTS = (LB, *APP_HOSTS, DATA)
PORTS = {
    "node": 9100,
    "nginx": 9113,
    "nginx_log": 3903,
    "redis": 9121,
    "postgres": 9187,
    "app": 9808,
}
# Every target Prometheus must scrape: job and host (the prometheus job scrapes itself).
EXPECTED = [
    *(("node", name) for name in HOSTS),
    ("nginx", LB),
    ("nginx_log", LB),
    ("redis", DATA),
    ("postgres", DATA),
    *(("app", name) for name in APP_HOSTS),
]
SOCKETS = 6
WEBSOCKETS_LOGGED = 'channels_stack_nginx_responses_total{status="101"}'


def prometheus(hosts, *args: str) -> Any:
    return prometheus_api(hosts[DATA], *args)


def expected_targets(addresses) -> set[tuple[str, str]]:
    return {(job, f"{addresses[name]}:{PORTS[job]}") for job, name in EXPECTED} | {
        ("prometheus", "127.0.0.1:9090")
    }


def scraped(hosts) -> dict[tuple[str, str], str]:
    """(job, instance) of every active target, and its health."""
    return {
        (t["labels"]["job"], t["labels"]["instance"]): t["health"]
        for t in prometheus(hosts, "targets")["activeTargets"]
    }


def app_sum(hosts, figure: str) -> float | None:
    """One of the app's figures, summed over every worker of every app host."""
    result = prometheus(hosts, "query", f"sum({figure})")["result"]
    return float(result[0]["value"][1]) if result else None


def settled(hosts, figure: str, within: float = 30) -> float:
    """A figure once three scrapes (2 s apart) have agreed on it: closes logged a moment ago
    are counted in it."""
    deadline = time.monotonic() + within
    seen = [app_sum(hosts, figure) or 0]
    while len(seen) < 3 or len(set(seen[-3:])) > 1:
        assert time.monotonic() < deadline, f"{figure} per Prometheus keeps moving: {seen}"
        time.sleep(2)
        seen.append(app_sum(hosts, figure) or 0)
    return seen[-1]


def wait_for(hosts, figure: str, wanted: float, within: float = 30) -> float:
    deadline = time.monotonic() + within
    while (got := app_sum(hosts, figure)) != wanted:
        assert time.monotonic() < deadline, f"{figure} per Prometheus: {got}, wanted {wanted}"
        time.sleep(0.5)
    return got


def test_prometheus_scrapes_every_exporter_and_app_endpoint_and_all_are_up(hosts, addresses):
    wanted = expected_targets(addresses)
    deadline = time.monotonic() + 60
    while True:
        targets = scraped(hosts)
        if set(targets) == wanted and set(targets.values()) == {"up"}:
            break
        assert time.monotonic() < deadline, (
            f"missing: {sorted(wanted - set(targets))}; "
            f"unexpected: {sorted(set(targets) - wanted)}; "
            f"not up: {sorted(k for k, v in targets.items() if v != 'up')}"
        )
        time.sleep(1)
    print(f"Prometheus targets up: {len(targets)} of {len(wanted)}: {sorted(targets)}")


def test_the_open_websocket_gauge_summed_over_workers_and_hosts_equals_the_sockets_open(
    site, hosts
):
    # The earlier tests' sockets are closed: none is left open.
    wait_for(hosts, "chat_websockets_open", 0)
    handshakes = app_sum(hosts, "chat_websocket_handshakes_total") or 0
    room = f"m-{uuid.uuid4().hex[:10]}"

    async def scenario():
        clients = []
        try:
            for _ in range(SOCKETS):
                clients.append(await site.ws(f"/ws/chat/{room}/"))
            per_host = {
                name: hosts[name].check_output(
                    "ss -Htn state established '( sport = :8000 )' | wc -l"
                )
                for name in APP_HOSTS
            }
            seen = await asyncio.to_thread(wait_for, hosts, "chat_websockets_open", SOCKETS)
            print(f"{SOCKETS} websockets open through nginx; Prometheus sums {seen}; {per_host}")
            await asyncio.to_thread(
                wait_for, hosts, "chat_websocket_handshakes_total", handshakes + SOCKETS
            )
            # One message to the room is delivered to each of its sockets, once.
            delivered = app_sum(hosts, "chat_messages_delivered_total") or 0
            text = f"counted {uuid.uuid4().hex}"
            await clients[0].send(json.dumps({"message": text}))
            for ws in clients:
                await recv_until(ws, text)
            await asyncio.to_thread(
                wait_for, hosts, "chat_messages_delivered_total", delivered + SOCKETS
            )
        finally:
            for ws in clients:
                await ws.close()

    closed_before = settled(hosts, WEBSOCKETS_LOGGED)
    asyncio.run(scenario())
    # And down again once they are closed (a worker's gauge follows its closes).
    wait_for(hosts, "chat_websockets_open", 0)
    # nginx logs each websocket once, status 101, when it closes; mtail counts the lines of
    # its JSON access log (molecule.yml).
    wait_for(hosts, WEBSOCKETS_LOGGED, closed_before + SOCKETS)


@pytest.mark.parametrize(
    ("target", "job"),
    [
        (DATA, "redis"),
        (DATA, "postgres"),
        (DATA, "node"),
        (LB, "nginx"),
        (LB, "nginx_log"),
        ("cluster-app1", "app"),
    ],
)
def test_exporters_admit_the_monitoring_host_and_refuse_the_others(hosts, addresses, target, job):
    port = PORTS[job]
    refused_from = LB if target != LB else APP_HOSTS[0]
    assert tcp_connect(hosts[refused_from], addresses[target], port) == "refused"
    if target != DATA:
        assert tcp_connect(hosts[DATA], addresses[target], port) == "connected"


def test_exporters_listen_on_the_private_address_only_and_keep_credentials_private(
    hosts, addresses
):
    data = hosts[DATA]
    for job in ("node", "redis", "postgres"):
        assert data.socket(f"tcp://{addresses[DATA]}:{PORTS[job]}").is_listening, job
        assert not data.socket(f"tcp://0.0.0.0:{PORTS[job]}").is_listening, job
    redis_settings = data.file("/etc/default/prometheus-redis-exporter")
    assert (redis_settings.user, redis_settings.group, redis_settings.mode) == (
        "root",
        "prometheus",
        0o640,
    )
    # The metrics user's password is in that file, not on any command line; the
    # administration password is nowhere in the exporter's settings.
    password = data.check_output("cat /etc/redis/metrics.password")
    assert password and password in redis_settings.content_string
    assert "REDIS_USER=metrics" in redis_settings.content_string
    assert password not in data.check_output("ps -eo args")
    assert data.check_output("cat /etc/redis/default.password") not in redis_settings.content_string
    for name in APP_HOSTS:
        unit = hosts[name].service(f"{APP}-metrics")
        assert unit.is_enabled and unit.is_running, name
        assert not hosts[name].socket(f"tcp://0.0.0.0:{PORTS['app']}").is_listening


def test_the_redis_exporter_reads_figures_as_a_user_that_can_read_nothing_else(hosts):
    data = hosts[DATA]

    def as_metrics(*command: str) -> str:
        """Redis's answer to the metrics user (an error answer included)."""
        out = data.run(
            "REDISCLI_AUTH=$(cat /etc/redis/metrics.password) timeout 5 redis-cli --no-auth-warning"
            " --user metrics " + " ".join(["%s"] * len(command)),
            *command,
        )
        return (out.stdout + out.stderr).strip()

    assert as_metrics("PING") == "PONG"
    assert "maxmemory:" in as_metrics("INFO", "memory")
    for command in (
        ("GET", "any"),
        ("KEYS", "*"),
        ("CONFIG", "GET", "masterauth"),
        ("SUBSCRIBE", "x"),
    ):
        assert "NOPERM" in as_metrics(*command), command
    # Prometheus scrapes every 2 s: after a few scrapes, Redis logged no command the exporter
    # was refused (the ACL log names each refusal with its user).
    admin = "REDISCLI_AUTH=$(cat /etc/redis/default.password) redis-cli --no-auth-warning "
    data.check_output(admin + "ACL LOG RESET")
    time.sleep(6)
    assert prometheus(hosts, "query", 'redis_up{job="redis"}')["result"][0]["value"][1] == "1"
    log = data.check_output(admin + "ACL LOG 50")
    assert "metrics" not in log.split(), log
