import asyncio
import re
import sqlite3

import pytest
from channels.layers import get_channel_layer
from chat import views
from django.contrib.staticfiles import finders
from django.db.backends.sqlite3.base import DatabaseWrapper


async def test_index_renders_the_chat_page(http):
    response = await http("GET", "/")

    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<script src="/static/chat/chat.js" defer></script>' in page
    assert '<link rel="stylesheet" href="/static/chat/chat.css">' in page
    assert re.search(r'<input id="room" name="room" value="lobby"', page)
    assert 'id="messages"' in page
    assert 'id="message"' in page
    assert 'id="status"' in page


def test_the_static_files_the_page_loads_exist():
    assert finders.find("chat/chat.js") is not None
    assert finders.find("chat/chat.css") is not None


@pytest.mark.parametrize(
    ("query", "room"),
    [("?room=dev.ops-2_b", "dev.ops-2_b"), ("?room=no%20spaces", "lobby"), ("?room=", "lobby")],
)
async def test_index_takes_the_room_from_the_query_string_when_valid(http, query, room):
    response = await http("GET", "/" + query)

    assert response.status == 200
    assert f'name="room" value="{room}"' in response.text


async def test_index_refuses_an_unknown_host(http):
    response = await http("GET", "/", host=b"evil.example")

    assert response.status == 400


@pytest.mark.django_db(transaction=True)
async def test_healthz_ok(http, settings):
    settings.APP_VERSION = "1.4.2"

    response = await http("GET", "/healthz")

    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "channel_layer": "ok",
        "version": "1.4.2",
        "request_id": "",
    }


@pytest.mark.django_db(transaction=True)
async def test_healthz_names_the_request_id_the_proxy_gave(http):
    request_id = b"0123456789abcdef0123456789abcdef"

    response = await http("GET", "/healthz", headers=[(b"x-request-id", request_id)])

    assert response.json()["request_id"] == request_id.decode()


@pytest.mark.django_db(transaction=True)
async def test_healthz_reports_dev_as_the_default_version(http):
    response = await http("GET", "/healthz")

    assert response.json()["version"] == "dev"


@pytest.mark.django_db(transaction=True)
async def test_healthz_answers_head(http):
    response = await http("HEAD", "/healthz")

    assert response.status == 200
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
async def test_healthz_refuses_other_methods(http, method):
    response = await http(method, "/healthz")

    assert response.status == 405
    assert response.headers["allow"] == "GET, HEAD"


def healthz_warnings(caplog):
    return [r for r in caplog.records if r.name == "chat.views"]


@pytest.mark.django_db(transaction=True)
async def test_healthz_503_when_the_channel_layer_send_fails(http, monkeypatch, caplog):
    async def refuse(channel, message):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(get_channel_layer(), "send", refuse)

    response = await http("GET", "/healthz")

    assert response.status == 503
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "status": "error",
        "database": "ok",
        "channel_layer": "error",
        "version": "dev",
        "request_id": "",
    }
    assert "6379" not in response.text
    [warning] = healthz_warnings(caplog)
    assert warning.levelname == "WARNING"
    assert warning.exc_info is None
    assert warning.getMessage() == (
        "healthz: channel layer check failed: "
        "ConnectionError: Error 111 connecting to 127.0.0.1:6379. Connection refused."
    )


@pytest.mark.django_db(transaction=True)
async def test_healthz_503_when_the_channel_layer_does_not_deliver(http, monkeypatch, caplog):
    async def never(channel):
        await asyncio.sleep(3600)

    monkeypatch.setattr(views, "CHANNEL_LAYER_TIMEOUT", 0.05)
    monkeypatch.setattr(get_channel_layer(), "receive", never)

    response = await http("GET", "/healthz")

    assert response.status == 503
    assert response.json()["channel_layer"] == "error"
    [warning] = healthz_warnings(caplog)
    assert warning.getMessage() == (
        "healthz: channel layer check failed: no round trip within 0.05s"
    )


@pytest.mark.django_db(transaction=True)
async def test_healthz_503_when_the_channel_layer_returns_another_message(
    http, monkeypatch, caplog
):
    async def stale(channel):
        return {"type": "healthz.ping", "nonce": "not-the-one-sent"}

    monkeypatch.setattr(get_channel_layer(), "receive", stale)

    response = await http("GET", "/healthz")

    assert response.status == 503
    assert response.json()["channel_layer"] == "error"
    [warning] = healthz_warnings(caplog)
    assert "RuntimeError" in warning.getMessage()


@pytest.mark.django_db(transaction=True)
async def test_healthz_503_when_the_database_query_fails(http, monkeypatch, caplog):
    def broken_cursor(self, name=None):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(DatabaseWrapper, "create_cursor", broken_cursor)

    response = await http("GET", "/healthz")

    assert response.status == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"] == "error"
    assert body["channel_layer"] == "ok"
    assert "disk I/O" not in response.text
    [warning] = healthz_warnings(caplog)
    assert warning.getMessage() == (
        "healthz: database check failed: OperationalError: disk I/O error"
    )


async def test_fault_injection_endpoints_are_not_routed_by_default(http):
    response = await http("POST", "/fault/block?seconds=1")

    assert response.status == 404


def test_fault_injection_endpoints_are_routed_only_when_enabled():
    from django.conf import settings
    from django.urls import Resolver404, resolve

    assert settings.FAULT_INJECTION is False
    with pytest.raises(Resolver404):
        resolve("/fault/block")
