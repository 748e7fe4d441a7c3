"""The demo's background service: chat_announce posts to a room's sockets and history."""

import pytest
from chat import announcer
from chat.models import Message
from django.core.management import CommandError, call_command
from django.db import OperationalError

pytestmark = pytest.mark.django_db(transaction=True)


async def test_announcements_reach_the_room_and_its_history(ws, settings):
    settings.APP_VERSION = "7"
    accepted, member = await ws("/ws/chat/news/")
    assert accepted
    accepted, outsider = await ws("/ws/chat/other/")
    assert accepted
    assert await announcer.run("news", every=0.01, count=2) == 2

    got = [(await member.receive_json_from(timeout=1))["message"] for _ in range(2)]
    assert got == ["release 7: announcement 1", "release 7: announcement 2"]
    assert await outsider.receive_nothing(timeout=0.2)
    stored = [m.text async for m in Message.objects.filter(room="news").order_by("id")]
    assert stored == got


async def test_an_unavailable_database_costs_one_announcement_not_the_service(
    ws, monkeypatch, caplog
):
    calls = []

    async def failing_once(room, text, now):
        calls.append(text)
        if len(calls) == 1:
            raise OperationalError("database is locked")

    monkeypatch.setattr(announcer, "store_message", failing_once)
    assert await announcer.run("news", every=0.01, count=2) == 1
    assert "announcement 1 to room news not sent: OperationalError" in caplog.text


def test_a_bad_room_is_refused_before_anything_is_sent():
    with pytest.raises(CommandError, match="--room"):
        call_command("chat_announce", room="no room", count=1)
    assert not Message.objects.exists()
