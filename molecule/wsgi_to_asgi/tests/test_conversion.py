"""Converting a running WSGI deployment in place: wsgi -> asgi -> channels -> wsgi.

The tests run in this order and each starts from the state the previous one left. Every
switch re-runs playbooks/site.yml with another django_app_serving_mode while a client loop
requests pages through nginx; no request may fail, and the longest wait is printed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shlex
import time

from conftest import CHATDEMO, REPO, ClientLoop, converge, recap
from websockets.exceptions import InvalidStatus

APP = "channels-app"
MANAGE = f"/usr/local/bin/{APP}-manage"
WS_LOCATION = "location /ws/ {"


def gunicorn_conf(host) -> str:
    return host.file(f"/etc/{APP}/gunicorn.conf.py").content_string


def exec_start(host) -> str:
    return host.check_output(f"systemctl show -p ExecStart --value {APP}.service")


def nginx_config(host) -> str:
    return host.check_output("nginx -T 2>/dev/null")


def app_env(host) -> dict[str, str]:
    lines = host.file(f"/etc/{APP}/env").content_string.splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {name: shlex.split(value)[0] if value else "" for name, value in pairs}


def handshake_refusal(site, path: str = "/ws/echo/") -> int | None:
    """HTTP status a websocket handshake through nginx was refused with; None if accepted."""

    async def attempt() -> int | None:
        try:
            async with site.ws(path):
                return None
        except InvalidStatus as refused:
            return refused.response.status_code

    return asyncio.run(attempt())


def test_wsgi_mode_serves_the_sample_with_sync_workers_and_nothing_else(host, site):
    status, body = site.get_json("/healthz")
    assert (status, body["status"], body["interface"]) == (200, "ok", "wsgi")
    status, _, page = site.get("/")
    assert status == 200 and b"<h1>Notes</h1>" in page
    assert 'worker_class = "sync"' in gunicorn_conf(host)
    assert "wsgisample.wsgi:application" in exec_start(host)
    # Only what the mode needs: no ASGI server, no Redis, no channel layer settings.
    python = f"/srv/{APP}/current/.venv/bin/python"
    assert host.run(f"{python} -c 'import gunicorn'").rc == 0
    assert host.run(f"{python} -c 'import uvicorn'").rc != 0
    assert not host.package("redis-server").is_installed
    assert "DJANGO_CHANNEL_LAYERS" not in app_env(host)


def test_wsgi_mode_has_no_websocket_location_and_refuses_handshakes(host, site):
    assert WS_LOCATION not in nginx_config(host)
    assert handshake_refusal(site) is not None


def test_switch_to_asgi_drops_no_request_and_an_async_view_answers(host, site):
    create_note = "from notes.models import Note; Note.objects.create(text='from wsgi')"
    host.run_expect([0], f'{MANAGE} shell -c "{create_note}"')

    with ClientLoop(site) as loop:
        result = converge(django_app_serving_mode="asgi")
    loop.report("wsgi -> asgi")

    assert result.returncode == 0, recap(result)
    assert loop.failures == [], loop.failures[:5]
    assert loop.ok > 0
    status, body = site.get_json("/async/notes/")
    assert status == 200
    assert body["interface"] == "asgi"
    assert "from wsgi" in body["latest"]
    assert 'worker_class = "uvicorn_worker.UvicornWorker"' in gunicorn_conf(host)
    assert "wsgisample.asgi:application" in exec_start(host)
    # Websockets are the ASGI app's to take in this mode; the sample takes none.
    assert WS_LOCATION in nginx_config(host)
    assert handshake_refusal(site) is not None
    assert not host.package("redis-server").is_installed


def test_channels_mode_is_refused_for_a_project_without_channels_leaving_asgi_serving(host, site):
    result = converge(django_app_serving_mode="channels")

    assert result.returncode != 0
    flat = " ".join(result.stdout.split())
    assert "the channels serving mode (django_app_serving_mode) needs channels" in flat, recap(
        result
    )
    assert "was not switched to" in flat and "The app still serves release" in flat, recap(result)
    assert 'worker_class = "uvicorn_worker.UvicornWorker"' in gunicorn_conf(host)
    assert "wsgisample.asgi:application" in exec_start(host)
    # The settings the refused mode was given were put back.
    assert "DJANGO_CHANNEL_LAYERS" not in app_env(host)
    assert not [name for name in host.file(f"/etc/{APP}").listdir() if "~" in name]
    status, body = site.get_json("/async/notes/")
    assert (status, body["interface"]) == (200, "asgi")


def test_switch_demo_chat_to_channels_drops_no_request(host, site):
    with ClientLoop(site) as loop:
        result = converge(django_app_serving_mode="channels", **CHATDEMO)
    loop.report("asgi (wsgisample) -> channels (chatdemo)")

    assert result.returncode == 0, recap(result)
    assert loop.failures == [], loop.failures[:5]
    status, body = site.get_json("/healthz")
    assert status == 200
    assert body["channel_layer"] == "ok"
    assert WS_LOCATION in nginx_config(host)
    redis = host.service("redis-server")
    assert redis.is_running and redis.is_enabled
    assert "RedisChannelLayer" in app_env(host)["DJANGO_CHANNEL_LAYERS"]


def test_channels_mode_echoes_and_broadcasts_through_nginx_across_workers(host, site):
    """The default scenario's own websocket tests, against the converted host."""
    path = REPO / "molecule" / "resources" / "tests" / "test_websockets.py"
    spec = importlib.util.spec_from_file_location("resources_test_websockets", path)
    assert spec is not None and spec.loader is not None
    shared_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared_tests)

    shared_tests.test_echo_through_nginx(site)
    shared_tests.test_broadcast_reaches_every_client_in_the_room_across_workers(host, site)
    for kind in ("another-host", "the-other-scheme", "another-port"):
        shared_tests.test_foreign_origin_is_refused(site, kind)


def test_switch_back_to_wsgi_drops_no_request_and_leaves_nothing_unneeded_running(host, site):
    with ClientLoop(site) as loop:
        result = converge(django_app_serving_mode="wsgi", **CHATDEMO)
    loop.report("channels (chatdemo) -> wsgi (chatdemo)")

    assert result.returncode == 0, recap(result)
    assert loop.failures == [], loop.failures[:5]
    status, body = site.get_json("/healthz")
    assert (status, body["status"]) == (200, "ok")
    assert WS_LOCATION not in nginx_config(host)
    assert handshake_refusal(site) is not None
    assert 'worker_class = "sync"' in gunicorn_conf(host)
    assert "chatdemo.wsgi:application" in exec_start(host)
    redis = host.service("redis-server")
    assert not redis.is_running and not redis.is_enabled
    assert host.run("pgrep -x redis-server").rc == 1
    assert "DJANGO_CHANNEL_LAYERS" not in app_env(host)


def test_a_second_run_after_the_switch_back_changes_nothing(host):
    result = converge(django_app_serving_mode="wsgi", **CHATDEMO)

    assert result.returncode == 0, recap(result)
    recap_line = next(line for line in result.stdout.splitlines() if " : ok=" in line)
    assert " changed=0 " in recap_line, recap(result)


def test_the_client_loop_records_failures_when_nothing_answers(site):
    """The loop that proves zero failed requests does see a failure when there is one."""
    loop = ClientLoop(site, path="/", timeout=2)
    loop.site = type(site)(port=1)  # nothing listens on port 1
    with loop:
        deadline = time.monotonic() + 10
        while not loop.failures and time.monotonic() < deadline:
            time.sleep(0.05)
    assert loop.ok == 0
    assert loop.failures and "ConnectionRefusedError" in loop.failures[0]
