"""History retention: the newest CHAT_HISTORY_KEEP messages per room, none older than
CHAT_HISTORY_MAX_AGE_DAYS days, pruned on store."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
from chat import history
from chat.models import Message
from django.db import OperationalError

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def prune_on_every_store(monkeypatch):
    monkeypatch.setattr(history, "PRUNE_EVERY", 1)


async def chat(member, text):
    await member.send_json_to({"message": text})
    assert (await member.receive_json_from(timeout=1))["message"] == text


async def texts(room):
    return [m.text async for m in Message.objects.filter(room=room).order_by("id")]


async def test_a_room_keeps_its_newest_messages_only(ws, settings, prune_on_every_store):
    settings.CHAT_HISTORY_KEEP = 5
    _, alice = await ws("/ws/chat/lobby/")
    _, carol = await ws("/ws/chat/kitchen/")
    for i in range(2):
        await chat(carol, f"k{i}")

    for i in range(8):
        await chat(alice, f"m{i}")

    assert await texts("lobby") == [f"m{i}" for i in range(3, 8)]
    assert await texts("kitchen") == ["k0", "k1"]


async def test_messages_older_than_the_maximum_age_go_from_every_room(
    ws, settings, prune_on_every_store
):
    settings.CHAT_HISTORY_MAX_AGE_DAYS = 30
    now = datetime.now(UTC)
    for room, text, age in [
        ("abandoned", "old", 31),
        ("lobby", "old", 30.1),
        ("lobby", "recent", 29.9),
        ("abandoned", "recent", 1),
    ]:
        await Message.objects.acreate(room=room, text=text, sent_at=now - timedelta(days=age))
    _, alice = await ws("/ws/chat/lobby/")
    for _ in range(2):
        assert (await alice.receive_json_from(timeout=1))["history"]

    await chat(alice, "new")

    assert await texts("lobby") == ["recent", "new"]
    assert await texts("abandoned") == ["recent"]


async def test_zero_keeps_everything(ws, settings, prune_on_every_store):
    settings.CHAT_HISTORY_KEEP = 0
    settings.CHAT_HISTORY_MAX_AGE_DAYS = 0
    await Message.objects.acreate(
        room="lobby", text="ancient", sent_at=datetime.now(UTC) - timedelta(days=3650)
    )
    _, alice = await ws("/ws/chat/lobby/")
    assert (await alice.receive_json_from(timeout=1))["message"] == "ancient"

    for i in range(3):
        await chat(alice, f"m{i}")

    assert await texts("lobby") == ["ancient", "m0", "m1", "m2"]


async def test_pruning_runs_on_one_store_in_prune_every(ws, settings, monkeypatch):
    settings.CHAT_HISTORY_KEEP = 2
    monkeypatch.setattr(history, "PRUNE_EVERY", 4)
    _, alice = await ws("/ws/chat/lobby/")
    expected, most = [], 0

    for i in range(8):
        await chat(alice, f"m{i}")
        expected.append(f"m{i}")
        if (await Message.objects.alatest("id")).id % 4 == 0:
            expected = expected[-2:]
        assert await texts("lobby") == expected
        most = max(most, len(expected))

    assert most == 5  # 2 kept, then 3 stores without pruning


async def test_a_failed_pruning_keeps_the_message_and_logs_a_warning(
    ws, monkeypatch, prune_on_every_store, caplog
):
    def broken_prune(room, now):
        raise OperationalError("database is locked")

    monkeypatch.setattr(history, "prune", broken_prune)
    _, alice = await ws("/ws/chat/lobby/")

    await chat(alice, "kept anyway")

    assert await texts("lobby") == ["kept anyway"]
    [warning] = [r for r in caplog.records if r.name == "chat.history"]
    assert warning.levelno == logging.WARNING
    assert warning.getMessage() == (
        "chat: pruning the history failed: OperationalError: database is locked"
    )


async def test_history_on_connect_is_still_the_last_50(
    ws, no_rate_limit, settings, prune_on_every_store
):
    settings.CHAT_HISTORY_KEEP = 60
    _, alice = await ws("/ws/chat/lobby/")
    for i in range(70):
        await chat(alice, f"m{i}")

    _, bob = await ws("/ws/chat/lobby/")

    history_frames = [await bob.receive_json_from(timeout=1) for _ in range(50)]
    assert [h["message"] for h in history_frames] == [f"m{i}" for i in range(20, 70)]
    assert len(await texts("lobby")) == 60
