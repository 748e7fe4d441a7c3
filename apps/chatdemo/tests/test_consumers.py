import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from channels.layers import get_channel_layer

from tests.conftest import leaving_client

SETTLE = 0.2  # seconds to wait when checking that nothing arrives

# Chat messages are stored in the database before they are broadcast.
pytestmark = pytest.mark.django_db(transaction=True)


def assert_recent_utc(sent_at):
    assert sent_at.endswith("Z")
    stamp = datetime.fromisoformat(sent_at)
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=10)


async def test_chat_message_is_broadcast_to_everyone_in_the_room(ws):
    _, alice = await ws("/ws/chat/lobby/")
    _, bob = await ws("/ws/chat/lobby/")

    await alice.send_json_to({"message": "hello, room"})

    for member in (alice, bob):
        received = await member.receive_json_from(timeout=1)
        assert set(received) == {"message", "room", "sent_at"}
        assert received["message"] == "hello, room"
        assert received["room"] == "lobby"
        assert_recent_utc(received["sent_at"])
    assert await alice.receive_nothing(timeout=SETTLE)
    assert await bob.receive_nothing(timeout=SETTLE)


async def test_a_broadcast_is_encoded_once_and_every_member_gets_the_same_text(ws, monkeypatch):
    from chat import consumers

    encoded = []
    real_dumps = json.dumps

    def counting_dumps(value, *args, **kwargs):
        text = real_dumps(value, *args, **kwargs)
        if isinstance(value, dict) and "sent_at" in value and not value.get("history"):
            encoded.append(text)
        return text

    members = [(await ws("/ws/chat/once/"))[1] for _ in range(3)]
    monkeypatch.setattr(consumers.json, "dumps", counting_dumps)

    await members[0].send_json_to({"message": "one encoding"})

    texts = {await member.receive_from(timeout=1) for member in members}
    assert texts == set(encoded)
    assert len(encoded) == 1


async def test_no_message_waits_for_a_database_check_in_a_worker_thread(ws, monkeypatch):
    """Channels' own dispatch runs close_old_connections in a thread before every handler."""
    import channels.consumer
    from channels.db import aclose_old_connections

    checks = []

    async def counting_check():
        checks.append(1)
        await aclose_old_connections()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counting_check)
    _, alice = await ws("/ws/chat/checks/")
    _, bob = await ws("/ws/chat/checks/")
    _, echo = await ws("/ws/echo/")

    await alice.send_json_to({"message": "no thread hop"})
    for member in (alice, bob):
        assert (await member.receive_json_from(timeout=1))["message"] == "no thread hop"
    await echo.send_to(text_data="ping")
    assert await echo.receive_from(timeout=1) == "ping"

    assert checks == []


async def test_an_event_of_an_unknown_type_closes_with_1011(ws, caplog):
    _, alice = await ws("/ws/chat/unknown/")

    await get_channel_layer().group_send("chat.unknown", {"type": "chat.nonsense"})

    closed = await alice.receive_output(timeout=1)
    assert closed == {"type": "websocket.close", "code": 1011, "reason": "internal error"}
    assert "No handler for message type chat.nonsense" in caplog.text


async def test_an_event_with_the_fields_of_an_older_release_is_still_delivered(ws):
    _, alice = await ws("/ws/chat/mixed/")
    sent_at = "2025-01-31T12:34:56.789Z"

    await get_channel_layer().group_send(
        "chat.mixed",
        {
            "type": "chat.message",
            "message": "from an older worker",
            "room": "mixed",
            "sent_at": sent_at,
        },
    )

    received = await alice.receive_json_from(timeout=1)
    assert received == {"message": "from an older worker", "room": "mixed", "sent_at": sent_at}


async def test_rooms_are_isolated(ws):
    _, alice = await ws("/ws/chat/lobby/")
    _, bob = await ws("/ws/chat/lobby/")
    _, carol = await ws("/ws/chat/kitchen/")

    await alice.send_json_to({"message": "lobby only"})

    assert (await bob.receive_json_from(timeout=1))["message"] == "lobby only"
    assert await carol.receive_nothing(timeout=SETTLE)

    await carol.send_json_to({"message": "kitchen only"})

    received = await carol.receive_json_from(timeout=1)
    assert received["message"] == "kitchen only"
    assert received["room"] == "kitchen"
    assert (await alice.receive_json_from(timeout=1))["message"] == "lobby only"
    assert await alice.receive_nothing(timeout=SETTLE)
    assert await bob.receive_nothing(timeout=SETTLE)


async def test_malformed_json_gets_an_error_and_the_connection_stays_usable(ws):
    _, alice = await ws("/ws/chat/lobby/")
    _, bob = await ws("/ws/chat/lobby/")

    await alice.send_to(text_data='{"message": "unterminated')

    assert await alice.receive_json_from(timeout=1) == {"error": "malformed JSON"}
    assert await bob.receive_nothing(timeout=SETTLE)

    await alice.send_json_to({"message": "still here"})

    assert (await alice.receive_json_from(timeout=1))["message"] == "still here"
    assert (await bob.receive_json_from(timeout=1))["message"] == "still here"


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ('["message", "hi"]', "expected a JSON object"),
        ('"hi"', "expected a JSON object"),
        ("{}", 'expected a string "message"'),
        ('{"text": "hi"}', 'expected a string "message"'),
        ("42", "expected a JSON object"),
        ("null", "expected a JSON object"),
        ("true", "expected a JSON object"),
        ("[]", "expected a JSON object"),
        ('{"message": 42}', 'expected a string "message"'),
        ('{"message": 4.2e1}', 'expected a string "message"'),
        ('{"message": NaN}', 'expected a string "message"'),
        ('{"message": null}', 'expected a string "message"'),
        ('{"message": true}', 'expected a string "message"'),
        ('{"message": ["hi"]}', 'expected a string "message"'),
        ('{"message": {"text": "hi"}}', 'expected a string "message"'),
        ('{"Message": "hi"}', 'expected a string "message"'),
        ('{"message": ""}', "message must be 1 to 4096 characters"),
        (json.dumps({"message": "x" * 4097}), "message must be 1 to 4096 characters"),
        ('{"message": ' + "9" * 5000 + "}", "malformed JSON"),
        (" ", "malformed JSON"),
        ('{"message": "hi"} {}', "malformed JSON"),
        ('{"message": "\\ud800"}', "message is not valid Unicode (lone surrogate)"),
        ('{"message": "a\\udfffb"}', "message is not valid Unicode (lone surrogate)"),
        ('{"message": "nul \\u0000 inside"}', "message must not contain NUL characters"),
    ],
)
async def test_invalid_messages_get_an_error_for_the_sender_only(ws, frame, error):
    _, alice = await ws("/ws/chat/lobby/")
    _, bob = await ws("/ws/chat/lobby/")

    await alice.send_to(text_data=frame)

    assert await alice.receive_json_from(timeout=1) == {"error": error}
    assert await bob.receive_nothing(timeout=SETTLE)


async def test_longest_message_is_accepted(ws):
    _, alice = await ws("/ws/chat/lobby/")
    longest = "é" * 4096

    await alice.send_json_to({"message": longest, "ignored": True})

    assert (await alice.receive_json_from(timeout=1))["message"] == longest


async def test_longest_message_in_its_longest_json_form_is_accepted(ws):
    _, alice = await ws("/ws/chat/lobby/")
    longest = "\U0001f600" * 4096
    frame = json.dumps({"message": longest})  # each character as "\ud83d\ude00"
    assert len(frame) > 49_000

    await alice.send_to(text_data=frame)

    assert (await alice.receive_json_from(timeout=1))["message"] == longest


async def assert_still_usable(member, text="still here"):
    await member.send_json_to({"message": text})
    assert (await member.receive_json_from(timeout=1))["message"] == text


async def test_deeply_nested_json_gets_an_error_and_the_connection_stays_usable(ws, caplog):
    _, alice = await ws("/ws/chat/lobby/")

    await alice.send_to(text_data="[" * 30_000 + "]" * 30_000)
    assert await alice.receive_json_from(timeout=1) == {"error": "JSON nested too deeply"}
    await alice.send_to(text_data='{"message": "hi", "extra": ' + "[" * 30_000 + "}")
    assert await alice.receive_json_from(timeout=1) == {"error": "JSON nested too deeply"}

    await assert_still_usable(alice)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 200_000,
        '{"message": "hi"}' + " " * 65_536,
        json.dumps({"message": "x" * 4096, "padding": "y" * 70_000}),
    ],
)
async def test_a_frame_above_the_limit_gets_an_error_unparsed_and_the_connection_stays_usable(
    ws, frame
):
    _, alice = await ws("/ws/chat/lobby/")

    await alice.send_to(text_data=frame)

    assert await alice.receive_json_from(timeout=1) == {
        "error": "frame too large: at most 65536 characters"
    }
    await assert_still_usable(alice)


async def test_a_lone_surrogate_is_refused_as_invalid_unicode_without_a_traceback(ws, caplog):
    from chat.models import Message

    _, alice = await ws("/ws/chat/lobby/")
    _, bob = await ws("/ws/chat/lobby/")

    for _ in range(3):
        await alice.send_to(text_data='{"message": "\\ud800"}')
        assert await alice.receive_json_from(timeout=1) == {
            "error": "message is not valid Unicode (lone surrogate)"
        }

    assert await bob.receive_nothing(timeout=SETTLE)
    assert await Message.objects.acount() == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    await alice.send_to(text_data='{"message": "a valid pair: \\ud83d\\ude00"}')
    assert (await alice.receive_json_from(timeout=1))["message"] == "a valid pair: \U0001f600"


async def test_binary_frame_gets_an_error_and_the_connection_stays_usable(ws):
    _, alice = await ws("/ws/chat/lobby/")

    await alice.send_to(bytes_data=b'{"message": "hi"}')

    reply = await alice.receive_json_from(timeout=1)
    assert set(reply) == {"error"}
    assert "binary" in reply["error"]

    await alice.send_json_to({"message": "as text"})
    assert (await alice.receive_json_from(timeout=1))["message"] == "as text"


async def test_disconnect_leaves_the_room_group(ws):
    _, alice = await ws("/ws/chat/lobby/")
    _, bob = await ws("/ws/chat/lobby/")
    layer = get_channel_layer()
    assert len(layer.groups["chat.lobby"]) == 2

    await bob.disconnect()

    assert len(layer.groups["chat.lobby"]) == 1
    await alice.send_json_to({"message": "anyone?"})
    assert (await alice.receive_json_from(timeout=1))["message"] == "anyone?"


async def test_echo_returns_text_and_binary_frames(ws):
    accepted, echo = await ws("/ws/echo/")
    assert accepted

    await echo.send_to(text_data="ping ü")
    assert await echo.receive_from(timeout=1) == "ping ü"

    await echo.send_to(bytes_data=b"\x00\xffbinary")
    assert await echo.receive_from(timeout=1) == b"\x00\xffbinary"


async def test_echo_does_not_depend_on_the_channel_layer(ws, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "no.such.ChannelLayer"}}

    accepted, echo = await ws("/ws/echo/")
    assert accepted
    await echo.send_to(text_data="still echoing")
    assert await echo.receive_from(timeout=1) == "still echoing"


@pytest.mark.parametrize("gone_at", ["websocket.accept", "websocket.send"])
async def test_echo_ends_quietly_when_its_client_is_gone(gone_at, caplog):
    """uvicorn's send raises ClientDisconnected (an OSError) once the client has left: at the
    handshake's answer, or at the echo of a frame sent just before leaving."""
    echo = leaving_client("/ws/echo/", gone_at)
    await echo.send_input({"type": "websocket.connect"})
    await echo.send_input({"type": "websocket.receive", "text": "last words"})

    await echo.wait(timeout=1)  # ended, without an exception for uvicorn to log
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "path",
    [
        "/ws/chat/a.b_c-D9/",
        "/ws/chat/" + "r" * 80 + "/",
    ],
)
async def test_valid_room_names_are_accepted(ws, path):
    accepted, _ = await ws(path)

    assert accepted


@pytest.mark.parametrize(
    "path",
    [
        "/ws/chat/with space/",
        "/ws/chat/caf%C3%A9/",
        "/ws/chat/" + "r" * 81 + "/",
        "/ws/chat//",
        "/ws/chat/lobby",
        "/ws/chat/lobby/extra/",
        "/ws/nowhere/",
        "/",
    ],
)
async def test_invalid_room_or_unknown_path_is_refused(ws, path):
    accepted, _ = await ws(path)

    assert not accepted


async def test_messages_are_stored_before_they_are_broadcast(ws):
    from chat.models import Message

    _, alice = await ws("/ws/chat/lobby/")

    await alice.send_json_to({"message": "kept"})
    received = await alice.receive_json_from(timeout=1)

    stored = await Message.objects.aget(room="lobby")
    assert stored.text == "kept"
    assert received["sent_at"] == stored.sent_at.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


async def test_a_new_client_gets_the_rooms_last_50_messages_oldest_first(ws, no_rate_limit):
    _, alice = await ws("/ws/chat/lobby/")
    _, carol = await ws("/ws/chat/kitchen/")
    await carol.send_json_to({"message": "other room"})
    await carol.receive_json_from(timeout=1)
    for i in range(55):
        await alice.send_json_to({"message": f"m{i}"})
        await alice.receive_json_from(timeout=1)

    _, bob = await ws("/ws/chat/lobby/")

    history = [await bob.receive_json_from(timeout=1) for _ in range(50)]
    assert [h["message"] for h in history] == [f"m{i}" for i in range(5, 55)]
    for h in history:
        assert set(h) == {"message", "room", "sent_at", "history"}
        assert h["room"] == "lobby"
        assert h["history"] is True
        assert_recent_utc(h["sent_at"])
    assert await bob.receive_nothing(timeout=SETTLE)

    await alice.send_json_to({"message": "live"})
    live = await bob.receive_json_from(timeout=1)
    assert live["message"] == "live"
    assert "history" not in live


async def test_a_message_that_cannot_be_stored_is_not_broadcast(ws, monkeypatch):
    from chat import consumers

    async def broken_store(room, text, sent_at):
        raise RuntimeError("database is locked")

    _, alice = await ws("/ws/chat/lobby/")
    _, bob = await ws("/ws/chat/lobby/")
    monkeypatch.setattr(consumers, "store_message", broken_store)

    await alice.send_json_to({"message": "lost?"})

    assert await alice.receive_json_from(timeout=1) == {
        "error": "message not stored, send it again"
    }
    assert await bob.receive_nothing(timeout=SETTLE)
