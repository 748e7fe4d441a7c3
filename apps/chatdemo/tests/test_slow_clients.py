"""A client that reads slowly or not at all: it is closed with 4001, never silently skipped.

The server writes a frame by awaiting the ASGI send, which does not return while the client
leaves the data unread (the socket's buffers are full). SlowReader stands for such a client:
it wraps the application so that each websocket.send waits for a credit.
"""

import asyncio
import json
import logging

import pytest
from chatdemo.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

TOO_SLOW = 4001


class SlowReader:
    """The ASGI application, behind a client that reads `credits` frames, then no more."""

    def __init__(self, credits=0):
        self.credits = asyncio.Semaphore(credits)

    def read(self, frames):
        for _ in range(frames):
            self.credits.release()

    async def __call__(self, scope, receive, send):
        async def slow_send(message):
            if message["type"] == "websocket.send":
                await self.credits.acquire()
            await send(message)

        await application(scope, receive, slow_send)


async def chat_from(member, texts):
    for text in texts:
        await member.send_json_to({"message": text})
        assert (await member.receive_json_from(timeout=1))["message"] == text


async def test_a_client_that_stops_reading_is_closed_before_any_message_is_skipped(
    ws, settings, caplog
):
    settings.CHAT_SEND_QUEUE = 3
    slow = SlowReader(credits=2)
    _, alice = await ws("/ws/chat/lobby/", app=slow)
    _, bob = await ws("/ws/chat/lobby/")

    # Alice reads m0 and m1, then stops: m2 waits in the send, m3 to m5 in the outbox,
    # and m6 finds the outbox full.
    await chat_from(bob, [f"m{i}" for i in range(8)])

    assert (await alice.receive_json_from(timeout=1))["message"] == "m0"
    assert (await alice.receive_json_from(timeout=1))["message"] == "m1"
    closed = await alice.receive_output(timeout=1)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == TOO_SLOW
    assert await alice.receive_nothing(timeout=0.2)
    [warning] = [r for r in caplog.records if r.name == "chat.consumers"]
    assert warning.levelno == logging.WARNING
    assert warning.exc_info is None
    assert "lobby" in warning.getMessage()
    assert "4001" in warning.getMessage()


async def test_a_client_gets_every_message_or_is_closed_first_never_a_gap(ws, no_rate_limit):
    # With the defaults: 100 frames may wait, more than the in-memory layer's capacity
    # (100 per channel) once the one being sent is counted.
    slow = SlowReader(credits=10)
    _, alice = await ws("/ws/chat/lobby/", app=slow)
    _, bob = await ws("/ws/chat/lobby/")
    sent = [f"m{i}" for i in range(150)]

    await chat_from(bob, sent)
    slow.read(1000)

    received = []
    while (frame := await alice.receive_output(timeout=1))["type"] == "websocket.send":
        received.append(json.loads(frame["text"])["message"])
    assert frame == {"type": "websocket.close", "code": TOO_SLOW, "reason": "too slow"}
    assert received == sent[: len(received)]


async def test_a_client_that_catches_up_within_the_bound_gets_every_message_in_order(ws, settings):
    settings.CHAT_SEND_QUEUE = 3
    slow = SlowReader(credits=0)
    _, alice = await ws("/ws/chat/lobby/", app=slow)
    _, bob = await ws("/ws/chat/lobby/")

    # One frame waits in the send, three in the outbox: the most that may wait.
    await chat_from(bob, [f"m{i}" for i in range(4)])
    slow.read(100)

    for i in range(4):
        assert (await alice.receive_json_from(timeout=1))["message"] == f"m{i}"
    await chat_from(alice, ["caught up"])


async def test_a_client_that_takes_no_frame_for_the_send_timeout_is_closed(ws, settings):
    settings.CHAT_SEND_TIMEOUT = 0.2
    slow = SlowReader(credits=0)
    _, alice = await ws("/ws/chat/lobby/", app=slow)
    _, bob = await ws("/ws/chat/lobby/")

    await chat_from(bob, ["anyone reading?"])

    closed = await alice.receive_output(timeout=2)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == TOO_SLOW


async def test_an_idle_client_with_nothing_to_read_is_not_closed(ws, settings):
    settings.CHAT_SEND_TIMEOUT = 0.1
    _, alice = await ws("/ws/chat/lobby/", app=SlowReader(credits=0))

    assert await alice.receive_nothing(timeout=0.3)


async def test_the_history_on_connect_does_not_count_against_the_outbox(ws, settings):
    from chat.models import Message
    from django.utils import timezone

    settings.CHAT_SEND_QUEUE = 1
    await Message.objects.abulk_create(
        Message(room="lobby", text=f"h{i}", sent_at=timezone.now()) for i in range(50)
    )
    slow = SlowReader(credits=0)
    _, alice = await ws("/ws/chat/lobby/", app=slow)
    await asyncio.sleep(0.1)

    slow.read(100)

    history = [await alice.receive_json_from(timeout=1) for _ in range(50)]
    assert [h["message"] for h in history] == [f"h{i}" for i in range(50)]
    assert await alice.receive_nothing(timeout=0.2)


async def test_an_idle_socket_keeps_no_outbox_writer_or_history(ws):
    """Once its frames are sent, a socket holds no queue, no task and no history frame."""
    import gc

    from chat.consumers import ChatConsumer

    _, alice = await ws("/ws/chat/idle/")
    for text in ("one", "two", "three"):
        await alice.send_json_to({"message": text})
        await alice.receive_json_from(timeout=1)
    _, bob = await ws("/ws/chat/idle/")
    history = [await bob.receive_json_from(timeout=1) for _ in range(3)]
    assert [frame["message"] for frame in history] == ["one", "two", "three"]
    await alice.send_json_to({"message": "live"})
    for member in (alice, bob):
        assert (await member.receive_json_from(timeout=1))["message"] == "live"
    await asyncio.sleep(0.1)  # the writers end once their outbox is empty

    consumers = [o for o in gc.get_objects() if isinstance(o, ChatConsumer) and not o.closed]
    assert len(consumers) == 2
    for consumer in consumers:
        assert consumer.writer is None
        assert consumer.outbox is None
