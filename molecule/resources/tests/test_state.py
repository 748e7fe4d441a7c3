"""State of the converged host: services, sockets, files, configuration."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from stack_testing import APP, group_var, role_default


@pytest.mark.parametrize(
    "unit", ["nginx.service", "redis-server.service", f"{APP}.socket", f"{APP}.service"]
)
def test_unit_is_enabled_and_running(host, unit):
    service = host.service(unit)
    assert service.is_enabled, f"{unit} is not enabled"
    assert service.is_running, f"{unit} is not running"


def test_app_service_is_notify_type_with_reload_and_restart(host):
    props = host.check_output(
        f"systemctl show {APP}.service -p Type -p Restart -p ExecReload -p User -p LimitNOFILE"
    )
    assert "Type=notify" in props
    assert "Restart=on-failure" in props
    assert "HUP" in props
    assert f"User={APP}" in props


def test_gunicorn_socket_is_held_by_systemd_and_only_nginx_may_connect(host):
    sock = host.file(f"/run/{APP}/gunicorn.sock")
    assert sock.is_socket
    assert sock.user == "www-data"
    assert sock.mode == 0o660
    assert host.socket(f"unix:///run/{APP}/gunicorn.sock").is_listening


def test_gunicorn_runs_uvicorn_workers(host):
    conf = host.file(f"/etc/{APP}/gunicorn.conf.py").content_string
    assert 'worker_class = "uvicorn_worker.UvicornWorker"' in conf
    main_pid = host.check_output(f"systemctl show -p MainPID --value {APP}.service")
    workers = host.check_output(f"pgrep -P {main_pid} -c")
    assert int(workers) >= 2, "the cross-worker tests need at least two workers"


def test_redis_listens_on_loopback_only(host):
    listening = [s for s in host.socket.get_listening_sockets() if s.endswith(":6379")]
    assert listening, "redis is not listening"
    for sock in listening:
        address = sock.split("://", 1)[1].rsplit(":", 1)[0]
        assert address in ("127.0.0.1", "::1", "[::1]"), sock


def test_redis_refuses_clients_without_a_password(host):
    out = host.run("redis-cli PING")
    assert "NOAUTH" in out.stdout + out.stderr


def test_redis_app_user_cannot_run_admin_commands(host):
    password = host.check_output("cat /etc/redis/channels.password")
    out = host.run(
        "redis-cli --no-auth-warning --user channels --pass %s CONFIG GET maxmemory", password
    )
    assert "NOPERM" in out.stdout + out.stderr


@pytest.mark.parametrize(
    "path, owner, group, mode",
    [
        (f"/etc/{APP}/env", "root", "root", 0o600),
        (f"/etc/{APP}/secret_key", "root", "root", 0o600),
        ("/etc/redis/default.password", "root", "root", 0o600),
        ("/etc/redis/channels.password", "root", "root", 0o600),
        ("/etc/redis/redis.conf", "root", "redis", 0o640),
    ],
)
def test_secret_files_are_private(host, path, owner, group, mode):
    f = host.file(path)
    assert f.exists, path
    assert (f.user, f.group, f.mode) == (owner, group, mode)


def test_redis_conf_holds_only_password_hashes(host):
    conf = host.file("/etc/redis/redis.conf").content_string
    for secret in ("/etc/redis/default.password", "/etc/redis/channels.password"):
        assert host.file(secret).content_string.strip() not in conf


def test_channel_layer_reads_redis_without_socket_timeout(host):
    env = host.file(f"/etc/{APP}/env").content_string
    line = next(x for x in env.splitlines() if x.startswith("DJANGO_CHANNEL_LAYERS="))
    layers = json.loads(shlex.split(line.split("=", 1)[1])[0])
    (redis_host,) = layers["default"]["CONFIG"]["hosts"]
    assert redis_host["socket_timeout"] is None


def test_nginx_config_upgrades_websockets(host):
    config = host.check_output("nginx -T 2>/dev/null")
    assert "map $http_upgrade $connection_upgrade" in config
    assert "proxy_http_version 1.1;" in config
    assert "proxy_set_header Connection $connection_upgrade;" in config
    assert "server_tokens off;" in config


def test_top_level_group_vars_reach_the_host(host):
    wanted = group_var("nginx_websocket_read_timeout")
    assert wanted != role_default("nginx", "nginx_websocket_read_timeout"), (
        "group_vars/all/main.yml must set a value the role default does not, to prove it applies"
    )
    assert f"proxy_read_timeout {wanted}s;" in host.check_output("nginx -T 2>/dev/null")


def test_no_secret_was_replaced_by_ansibles_no_log_placeholder(host):
    """A no_log value that went through a module's return comes back masked; written to a
    file, the mask would become the password itself."""
    found = host.run("grep -rl VALUE_SPECIFIED_IN_NO_LOG_PARAMETER /etc /srv")
    assert found.rc == 1, found.stdout


def test_the_journal_is_capped_as_the_journald_role_says(host):
    drop_in = host.file("/etc/systemd/journald.conf.d/50-channels-stack.conf")
    assert "SystemMaxUse=1G" in drop_in.content_string
    # journald states its limits when it opens a journal: the last time, after the role.
    opened = host.check_output(
        "journalctl -b -u systemd-journald -o cat | grep -E 'Journal .* is .*, max ' | tail -1"
    )
    limit = re.search(r"(System|Runtime) Journal .* max ([0-9.]+)([KMG])", opened)
    assert limit, opened
    # systemd 252 prints 1.0G, 257 prints 1G.
    size = float(limit.group(2)) * 1024 ** "KMG".index(limit.group(3))
    assert size == {"System": 1024**2, "Runtime": 128 * 1024}[limit.group(1)], opened
