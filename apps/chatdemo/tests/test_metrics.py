"""The chat's figures for Prometheus (chat.metrics): sockets, handshakes, messages, errors."""

import pytest
from channels.layers import get_channel_layer
from prometheus_client import REGISTRY

from tests.test_outages import TRY_AGAIN_LATER, assert_closed

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "tests.layers.FlakyChannelLayer"}}
    return get_channel_layer()


def figure(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_open_sockets_count_up_on_handshake_and_down_on_close(ws):
    before_open = figure("chat_websockets_open")
    before_handshakes = figure("chat_websocket_handshakes_total")

    members = [(await ws("/ws/chat/counted/"))[1] for _ in range(3)]

    assert figure("chat_websockets_open") == before_open + 3
    assert figure("chat_websocket_handshakes_total") == before_handshakes + 3

    for member in members[:2]:
        await member.disconnect(timeout=1)

    assert figure("chat_websockets_open") == before_open + 1
    assert figure("chat_websocket_handshakes_total") == before_handshakes + 3


async def test_a_refused_origin_is_no_handshake_and_no_open_socket(ws):
    before_open = figure("chat_websockets_open")
    before_handshakes = figure("chat_websocket_handshakes_total")

    accepted, _ = await ws("/ws/chat/counted/", origin=b"http://evil.example")

    assert not accepted
    assert figure("chat_websockets_open") == before_open
    assert figure("chat_websocket_handshakes_total") == before_handshakes


async def test_each_message_written_to_a_member_is_delivered_once_and_errors_are_not(ws):
    _, alice = await ws("/ws/chat/delivered/")
    _, bob = await ws("/ws/chat/delivered/")
    before = figure("chat_messages_delivered_total")

    await alice.send_json_to({"message": "to both"})
    for member in (alice, bob):
        assert (await member.receive_json_from(timeout=1))["message"] == "to both"
    await alice.send_json_to({"message": ""})  # refused: an error frame, not a message
    assert "error" in await alice.receive_json_from(timeout=1)

    assert figure("chat_messages_delivered_total") == before + 2

    _, carol = await ws("/ws/chat/delivered/")  # the history: one stored message
    assert (await carol.receive_json_from(timeout=1))["history"] is True
    assert figure("chat_messages_delivered_total") == before + 3


async def test_a_channel_layer_failure_is_counted_and_its_socket_leaves_the_open_count(ws, layer):
    before_errors = figure("chat_channel_layer_errors_total")
    before_open = figure("chat_websockets_open")
    _, alice = await ws("/ws/chat/lobby/")
    assert figure("chat_websockets_open") == before_open + 1

    layer.go_down()
    await assert_closed(alice, TRY_AGAIN_LATER)

    assert figure("chat_channel_layer_errors_total") == before_errors + 1
    assert figure("chat_websockets_open") == before_open
