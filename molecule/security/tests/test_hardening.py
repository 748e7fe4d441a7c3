"""Redis locked down, services sandboxed, nothing listening where it should not."""

from __future__ import annotations

import re

import pytest
from conftest import APP, redis_admin

# Highest `systemd-analyze security` exposure each unit may have (10 = none).
EXPOSURE_LIMITS = {f"{APP}.service": 2.0, "redis-server.service": 2.0, "nginx.service": 3.0}


def app_redis(host, *args: str):
    password = host.check_output("cat /etc/redis/channels.password")
    return host.run(
        "redis-cli --no-auth-warning --user channels --pass %s " + " ".join(["%s"] * len(args)),
        password,
        *args,
    )


def test_redis_refuses_clients_without_a_password(host):
    out = host.run("redis-cli PING")
    assert "NOAUTH" in out.stdout + out.stderr


def test_redis_default_user_needs_its_password(host):
    out = host.run("redis-cli --no-auth-warning --user default --pass wrong PING")
    assert "WRONGPASS" in out.stdout + out.stderr
    assert redis_admin(host, "PING") == "PONG"


@pytest.mark.parametrize(
    "command",
    [
        ("CONFIG", "GET", "maxmemory"),
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("DEBUG", "SLEEP", "0"),
        ("KEYS", "*"),
        ("SHUTDOWN",),
        ("ACL", "LIST"),
        ("MONITOR",),
    ],
    ids=lambda c: c[0],
)
def test_redis_app_user_is_refused_dangerous_commands(host, command):
    out = app_redis(host, *command)
    said = out.stdout + out.stderr
    # DEBUG is off for every user ("not allowed"); the rest are the ACL's refusals.
    assert "NOPERM" in said or "command not allowed" in said, said


def test_redis_app_user_is_confined_to_channel_layer_keys(host):
    assert "NOPERM" in app_redis(host, "SET", "other:key", "x").stdout
    assert app_redis(host, "SET", "asgi:probe", "x", "EX", "5").stdout.strip() == "OK"


def test_nothing_but_nginx_listens_beyond_loopback(host):
    public = []
    for sock in host.socket.get_listening_sockets():
        if not sock.startswith(("tcp://", "udp://")):
            continue
        address, port = sock.split("://", 1)[1].rsplit(":", 1)
        if address in ("127.0.0.1", "::1", "[::1]") or address.startswith("127."):
            continue
        public.append((address, port))
    assert public, "nginx does not listen"
    assert {port for _, port in public} == {"80", "443"}, public


@pytest.mark.parametrize("unit", sorted(EXPOSURE_LIMITS))
def test_systemd_exposure_score_is_within_limit(host, unit):
    out = host.check_output(f"systemd-analyze security --no-pager {unit}")
    line = next(x for x in out.splitlines() if "Overall exposure level" in x)
    print(line)
    score = float(re.search(r":\s*([\d.]+)\s+(\w+)", line).group(1))
    rating = re.search(r":\s*[\d.]+\s+(\w+)", line).group(1)
    assert rating not in ("UNSAFE", "EXPOSED"), line
    assert score <= EXPOSURE_LIMITS[unit], line


def test_nginx_reloads_inside_its_sandbox_and_still_serves(host, site):
    host.run_expect([0], "systemctl reload nginx")
    assert host.service("nginx.service").is_running
    status, body = site.get_json("/healthz")
    assert status == 200 and body["status"] == "ok"


def test_app_unit_sees_a_read_only_system_but_its_data_directory(host):
    props = host.check_output(
        f"systemctl show {APP}.service -p ProtectSystem -p ReadWritePaths -p NoNewPrivileges "
        "-p PrivateTmp -p CapabilityBoundingSet"
    )
    assert "ProtectSystem=strict" in props
    assert f"ReadWritePaths=/var/lib/{APP}" in props
    assert "NoNewPrivileges=yes" in props
    assert "PrivateTmp=yes" in props
    assert "CapabilityBoundingSet=\n" in props + "\n"
