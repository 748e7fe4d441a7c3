"""Outages of the channel layer (Redis) and the database: a close code, one log line each.

FlakyChannelLayer (tests/layers.py) raises what redis-py raises while Redis is unreachable.
"""

import asyncio
import logging

import pytest
from channels.layers import get_channel_layer
from chat import consumers
from chatdemo.asgi import application
from django.db import OperationalError
from prometheus_client import REGISTRY

from tests.conftest import leaving_client

pytestmark = pytest.mark.django_db(transaction=True)

TRY_AGAIN_LATER = 1013
INTERNAL_ERROR = 1011


@pytest.fixture
def layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "tests.layers.FlakyChannelLayer"}}
    return get_channel_layer()


def chat_logs(caplog):
    return [r for r in caplog.records if r.name.startswith("chat.")]


def assert_one_line_warnings(records, count, *words):
    assert len(records) == count, [r.getMessage() for r in records]
    for record in records:
        assert record.levelno == logging.WARNING
        assert record.exc_info is None
        for word in words:
            assert word in record.getMessage()


async def assert_closed(member, code):
    closed = await member.receive_output(timeout=1)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == code
    await member.wait(timeout=1)  # the consumer has ended, without an exception


async def chat(member, text):
    await member.send_json_to({"message": text})
    assert (await member.receive_json_from(timeout=1))["message"] == text


async def test_a_handshake_while_the_layer_is_down_is_accepted_then_closed_with_1013(
    ws, layer, caplog
):
    layer.go_down()

    accepted, alice = await ws("/ws/chat/lobby/")

    assert accepted  # not an HTTP 500: a close code the client can act on
    await assert_closed(alice, TRY_AGAIN_LATER)
    assert_one_line_warnings(chat_logs(caplog), 1, "lobby", "ConnectionError", "1013")


async def test_open_sockets_get_1013_when_the_layer_fails(ws, layer, caplog):
    _, alice = await ws("/ws/chat/lobby/")
    _, bob = await ws("/ws/chat/kitchen/")
    await chat(alice, "before")

    layer.go_down()

    await assert_closed(alice, TRY_AGAIN_LATER)
    await assert_closed(bob, TRY_AGAIN_LATER)
    records = chat_logs(caplog)
    assert_one_line_warnings(records, 2, "channel layer unavailable (ConnectionError)")
    assert sorted(r.getMessage().split()[2] for r in records) == ["kitchen:", "lobby:"]


async def test_a_message_stored_while_the_broadcast_fails_comes_with_the_history(
    ws, layer, monkeypatch, caplog
):
    _, alice = await ws("/ws/chat/lobby/")

    async def refused(group, message):
        layer.go_down()
        layer.check()

    monkeypatch.setattr(layer, "group_send", refused)
    await alice.send_json_to({"message": "kept"})

    await assert_closed(alice, TRY_AGAIN_LATER)
    assert_one_line_warnings(chat_logs(caplog), 1, "lobby", "ConnectionError")
    monkeypatch.undo()
    layer.come_back()
    _, again = await ws("/ws/chat/lobby/")
    assert (await again.receive_json_from(timeout=1))["message"] == "kept"


async def test_chat_works_again_when_the_layer_comes_back(ws, layer):
    _, alice = await ws("/ws/chat/lobby/")
    layer.go_down()
    await assert_closed(alice, TRY_AGAIN_LATER)
    _, refused = await ws("/ws/chat/lobby/")
    await assert_closed(refused, TRY_AGAIN_LATER)

    layer.come_back()

    accepted, alice = await ws("/ws/chat/lobby/")
    assert accepted
    _, bob = await ws("/ws/chat/lobby/")
    await chat(alice, "back")
    assert (await bob.receive_json_from(timeout=1))["message"] == "back"


async def test_a_client_leaving_during_an_outage_ends_its_consumer_quietly(ws, layer, caplog):
    _, alice = await ws("/ws/chat/lobby/")
    layer.go_down(receivers_fail=False)  # its receive loop keeps waiting

    await alice.disconnect(timeout=1)

    assert_one_line_warnings(chat_logs(caplog), 1, "lobby", "ConnectionError", "socket closed")


async def test_a_client_gone_before_the_close_frame_ends_its_consumer_quietly(ws, layer, caplog):
    gone = asyncio.Event()

    async def app(scope, receive, send):
        async def send_unless_gone(message):
            if gone.is_set():
                raise OSError("client disconnected")  # as uvicorn's ClientDisconnected
            await send(message)

        await application(scope, receive, send_unless_gone)

    _, alice = await ws("/ws/chat/lobby/", app=app)
    gone.set()
    layer.go_down()

    await alice.wait(timeout=1)  # the consumer has ended, without an exception
    assert_one_line_warnings(chat_logs(caplog), 1, "lobby", "ConnectionError")


async def test_a_client_gone_during_its_handshake_is_no_outage_and_leaves_no_member(caplog):
    """The client left before the handshake's answer: uvicorn's send raises, at accept."""

    before = REGISTRY.get_sample_value("chat_channel_layer_errors_total") or 0.0
    consumer = leaving_client("/ws/chat/lobby/", "websocket.accept")
    await consumer.send_input({"type": "websocket.connect"})

    await consumer.wait(timeout=1)  # the consumer has ended, without an exception
    assert not get_channel_layer().groups.get("chat.lobby")  # it left the room's group
    assert (REGISTRY.get_sample_value("chat_channel_layer_errors_total") or 0.0) == before
    assert [r.levelno for r in chat_logs(caplog)] == [logging.INFO], chat_logs(caplog)
    assert "left during its handshake" in chat_logs(caplog)[0].getMessage()


async def test_a_handshake_while_the_database_is_down_is_closed_with_1013(ws, monkeypatch, caplog):
    async def broken(room):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(consumers, "recent_messages", broken)

    accepted, alice = await ws("/ws/chat/lobby/")

    assert accepted
    await assert_closed(alice, TRY_AGAIN_LATER)
    assert_one_line_warnings(chat_logs(caplog), 1, "lobby", "database", "OperationalError")


async def test_an_unexpected_error_closes_with_1011_and_logs_its_traceback(ws, monkeypatch, caplog):
    def bug(text_data, bytes_data):
        raise KeyError("bug")

    _, alice = await ws("/ws/chat/lobby/")
    monkeypatch.setattr(consumers, "message_from_frame", bug)

    await alice.send_json_to({"message": "hi"})

    await assert_closed(alice, INTERNAL_ERROR)
    [record] = chat_logs(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
