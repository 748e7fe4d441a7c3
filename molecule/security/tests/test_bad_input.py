"""Bad settings fail in the first play, naming the variable, before anything changes.

Each case re-runs playbooks/site.yml against the converged host with one bad
value given as an extra var (the highest precedence, as a typo in group_vars
would be for its host) and checks the message, that no later play started,
and that no configuration file changed. The stack must still serve afterwards.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import APP, CERT
from stack_testing import ENSURE_TASK, run_playbook

REPO = Path(__file__).resolve().parents[3]
WATCHED = [
    f"/etc/nginx/sites-available/{APP}.conf",
    "/etc/nginx/nginx.conf",
    "/etc/redis/redis.conf",
    f"/etc/{APP}/env",
    f"/etc/{APP}/gunicorn.conf.py",
    f"/etc/systemd/system/{APP}.service",
    "/etc/systemd/system/nginx.service.d/channels-stack.conf",
    CERT,
    f"/etc/letsencrypt/renewal/{APP}.conf",
]

CASES = {
    "tls-provided-without-certificate": (
        {"nginx_tls_mode": "provided"},
        "nginx_tls_certificate: nginx_tls_mode is provided but this holds no PEM certificate",
    ),
    "tls-provided-without-key": (
        {"nginx_tls_mode": "provided", "nginx_tls_certificate": "@cert"},
        "nginx_tls_certificate_key: nginx_tls_mode is provided but this holds no PEM private key",
    ),
    "tls-mode-unknown": (
        {"nginx_tls_mode": "letsencrypt"},
        "value of nginx_tls_mode must be one of: none, provided, selfsigned, acme",
    ),
    "acme-directory-unreachable": (
        {"nginx_acme_directory_url": "https://localhost:14999/dir"},
        # Refused, or "cannot assign requested address" where localhost is ::1 first.
        "nginx_acme_directory_url: https://localhost:14999/dir did not answer as an ACME "
        "directory from security-debian12 (",
    ),
    "acme-directory-not-trusted": (
        {"nginx_acme_ca_certificate": ""},
        "nginx_acme_directory_url: https://localhost:14000/dir did not answer as an ACME "
        "directory from security-debian12 (SSLCertVerificationError",
    ),
    "acme-wildcard-name": (
        {"nginx_server_names": ["localhost", "*.chat.example.com"]},
        "nginx_server_names: *.chat.example.com cannot be validated over HTTP-01",
    ),
    "http-port-out-of-range": (
        {"nginx_listen_port": 70000},
        "nginx_listen_port: 70000 is not a port (1-65535)",
    ),
    "https-port-same-as-http": (
        {"nginx_tls_port": 80},
        "nginx_tls_port: 80 is also nginx_listen_port",
    ),
    "server-name-not-a-hostname": (
        {"nginx_server_names": ["chat example.com"]},
        "nginx_server_names: chat example.com is not a host name",
    ),
    "websocket-timeout-below-ping-interval": (
        {"nginx_websocket_read_timeout": 15},
        "nginx_websocket_read_timeout: 15 s is not longer than the 20 s between the app's",
    ),
    "worker-connections-not-a-number": (
        {"nginx_worker_connections": "lots"},
        "nginx_worker_connections",
    ),
    "gunicorn-workers-not-a-number": (
        {"gunicorn_workers": "lots"},
        "gunicorn_workers",
    ),
    "production-without-secret-key": (
        {"django_app_secret_key_required": True},
        "django_app_secret_key: empty, and this inventory sets django_app_secret_key_required",
    ),
    "secret-key-too-short": (
        {"django_app_secret_key": "changeme"},
        "django_app_secret_key: shorter than 50 characters",
    ),
    "allowed-host-not-a-hostname": (
        {"django_app_allowed_hosts": ["localhost", "chat_example!"]},
        "django_app_allowed_hosts: chat_example! is not a host name",
    ),
    "csrf-origin-without-scheme": (
        {"django_app_csrf_trusted_origins": ["chat.example.com"]},
        "django_app_csrf_trusted_origins: chat.example.com is not an origin with scheme",
    ),
    "secure-proxy-without-tls": (
        {"nginx_tls_mode": "none"},
        "django_app_secure_proxy: on, but nginx_tls_mode is none",
    ),
    "redis-port-zero-without-socket": (
        {"redis_port": 0},
        "redis_port: 0 (no TCP) but redis_unixsocket is empty",
    ),
    "redis-bound-to-every-address": (
        {"redis_bind_addresses": ["0.0.0.0"]},
        "redis_bind_addresses: 0.0.0.0 listens on every address",
    ),
    "redis-firewall-admitting-no-client": (
        {"redis_bind_addresses": ["127.0.0.1", "10.9.9.9"], "redis_allowed_clients": []},
        "redis_allowed_clients: empty while Redis listens on 127.0.0.1, 10.9.9.9",
    ),
    "redis-firewall-client-not-an-address": (
        {"redis_bind_addresses": ["127.0.0.1", "10.9.9.9"], "redis_allowed_clients": ["app1.lan"]},
        "redis_allowed_clients: 'app1.lan' is not an IPv4 or IPv6 address or network",
    ),
    "redis-firewall-on-a-host-without-net-admin": (
        {"redis_bind_addresses": ["127.0.0.1", "10.9.9.9"], "redis_allowed_clients": ["10.9.9.8"]},
        "this host (a container?) lacks the NET_ADMIN capability",
    ),
    "project-needs-a-newer-python": (
        {"django_app_local_path": str(REPO / "apps" / "realworld")},
        "django_app_local_path: the project's requires-python needs Python >=3.12, and this "
        "host has Python 3.11.2 (Debian 12); Debian 13 (Python 3.13) would",
    ),
    "backup-schedule-not-a-calendar-event": (
        {"db_backup_schedule": "every day at 03:15"},
        "db_backup_schedule: every day at 03:15 is not a systemd calendar event",
    ),
    "backup-schedule-hour-out-of-range": (
        {"db_backup_schedule": "*-*-* 25:15:00"},
        "db_backup_schedule: *-*-* 25:15:00 is not a systemd calendar event",
    ),
    "redis-port-out-of-range": (
        {"django_app_redis_port": 99999},
        "django_app_redis_port: 99999 is not a port (1-65535)",
    ),
}


def checksums(host) -> str:
    return host.check_output("sha256sum " + " ".join(WATCHED))


def run_site(extra_vars: dict):
    # One line per result: messages are not wrapped.
    env = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_CALLBACK_FORMAT_PRETTY": "0"}
    return run_playbook("site", extra_vars=extra_vars, env=env, timeout=300)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_setting_fails_first_naming_the_variable_and_changes_nothing(host, case):
    extra, message = CASES[case]
    if extra.get("nginx_tls_certificate") == "@cert":
        extra = {**extra, "nginx_tls_certificate": host.file(CERT).content_string}
    before = checksums(host)
    result = run_site(extra)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert message in " ".join(out.replace("\\n", " ").split()), out[-3000:]
    assert "PLAY [Check every host's settings before anything changes]" in out
    assert not ENSURE_TASK.search(out), "a task that changes things ran after the checks"
    assert "changed=0" in out and "failed=1" in out, out[-1500:]
    assert checksums(host) == before


def test_stack_still_serves_after_the_refused_runs(site):
    status, body = site.get_json("/healthz")
    assert status == 200 and body["status"] == "ok"

    async def echo():
        async with site.ws("/ws/echo/") as ws:
            await ws.send("still here")
            return await asyncio.wait_for(ws.recv(), 5)

    assert asyncio.run(echo()) == "still here"


def test_deploy_alone_checks_the_settings_and_changes_nothing(host):
    """deploy.yml has no first play of checks: the django_app role checks them itself."""
    before = checksums(host)
    env = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_CALLBACK_FORMAT_PRETTY": "0"}
    result = run_playbook(
        "deploy", extra_vars={"django_app_secret_key": "changeme"}, env=env, timeout=300
    )
    out = result.output
    assert result.rc != 0, out[-3000:]
    assert "django_app_secret_key: shorter than 50 characters" in out, out[-3000:]
    assert not ENSURE_TASK.search(out), "a task that changes things ran before the check"
    assert checksums(host) == before
