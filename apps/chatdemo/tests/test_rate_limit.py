"""The per-connection message rate limit: a token bucket, then a close for a flood."""

import logging

import pytest
from chat import ratelimit
from chat.ratelimit import TokenBucket

pytestmark = pytest.mark.django_db(transaction=True)

POLICY_VIOLATION = 1008
OVER = {"error": "rate limit exceeded, slow down"}


class Clock:
    """A clock that moves only when told."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(ratelimit, "monotonic", clock)
    return clock


def test_the_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    bucket = TokenBucket(rate=5, burst=3, clock=clock)

    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.1
    assert not bucket.take()  # half a token
    clock.now += 0.1
    assert bucket.take()
    assert not bucket.take()


def test_the_bucket_holds_at_most_the_burst():
    clock = Clock()
    bucket = TokenBucket(rate=5, burst=3, clock=clock)

    clock.now += 3600
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


async def send(member, text):
    await member.send_json_to({"message": text})
    return await member.receive_json_from(timeout=1)


async def test_a_burst_of_20_passes_and_the_next_frame_gets_an_error(ws, clock):
    _, alice = await ws("/ws/chat/lobby/")
    _, bob = await ws("/ws/chat/lobby/")

    for i in range(20):
        assert (await send(alice, f"m{i}"))["message"] == f"m{i}"
        assert (await bob.receive_json_from(timeout=1))["message"] == f"m{i}"

    assert await send(alice, "one too many") == OVER
    assert await bob.receive_nothing(timeout=0.1)

    clock.now += 0.2  # 5 a second: one more
    assert (await send(alice, "later"))["message"] == "later"
    assert await send(alice, "again too soon") == OVER


async def test_every_frame_counts_invalid_ones_too(ws, settings, clock):
    settings.CHAT_RATE_BURST = 2
    _, alice = await ws("/ws/chat/lobby/")

    await alice.send_to(bytes_data=b"\x00")
    assert "binary" in (await alice.receive_json_from(timeout=1))["error"]
    await alice.send_to(text_data="not json")
    assert await alice.receive_json_from(timeout=1) == {"error": "malformed JSON"}

    assert await send(alice, "valid, but over") == OVER


async def test_a_client_that_keeps_flooding_is_closed_with_1008(ws, settings, clock, caplog):
    settings.CHAT_RATE_BURST = 1
    _, alice = await ws("/ws/chat/lobby/")
    assert (await send(alice, "first"))["message"] == "first"

    for _ in range(49):
        assert await send(alice, "flood") == OVER
    await alice.send_json_to({"message": "flood"})

    closed = await alice.receive_output(timeout=1)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == POLICY_VIOLATION
    [warning] = [r for r in caplog.records if r.name == "chat.consumers"]
    assert warning.levelno == logging.WARNING
    assert warning.exc_info is None
    assert "lobby" in warning.getMessage()


async def test_a_frame_within_the_limit_starts_the_count_again(ws, settings, clock):
    settings.CHAT_RATE_BURST = 1
    _, alice = await ws("/ws/chat/lobby/")
    assert (await send(alice, "first"))["message"] == "first"

    for _ in range(49):
        assert await send(alice, "flood") == OVER
    clock.now += 0.2
    assert (await send(alice, "within"))["message"] == "within"
    for _ in range(49):
        assert await send(alice, "flood") == OVER

    assert (await alice.receive_nothing(timeout=0.1)) is True
