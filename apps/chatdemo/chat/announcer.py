"""The demo's background service: a message posted to one room at a fixed interval.

Each announcement is stored in the room's history and broadcast to the room's sockets, as a
message a client sends is, and its text names the release that runs it (DJANGO_APP_VERSION),
so a release switch shows in the room. Run it with `python manage.py chat_announce`.
"""

import asyncio
import contextlib
import json
import logging
import signal
from datetime import UTC, datetime

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError

from chat.consumers import CHANNEL_LAYER_ERRORS, iso_utc
from chat.history import store_message

logger = logging.getLogger(__name__)


def announcement(number: int) -> str:
    return f"release {settings.APP_VERSION}: announcement {number}"


async def announce(room: str, number: int) -> None:
    """Store announcement `number` in `room` and broadcast it to the room's sockets."""
    now = datetime.now(UTC)
    text = announcement(number)
    await store_message(room, text, now)
    frame = json.dumps({"message": text, "room": room, "sent_at": iso_utc(now)})
    await get_channel_layer().group_send(f"chat.{room}", {"type": "chat.message", "frame": frame})


async def run(room: str, every: float, count: int = 0) -> int:
    """Announce every `every` seconds until stopped (SIGTERM, SIGINT) or `count` are sent.

    A database or channel layer that is unavailable costs that turn's announcement (logged);
    the next turn tries again. Returns the number of announcements sent.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sent = number = 0
    try:
        while not stop.is_set() and (count == 0 or number < count):
            number += 1
            try:
                await announce(room, number)
                sent += 1
            except (DatabaseError, *CHANNEL_LAYER_ERRORS) as exc:
                logger.warning(
                    "chat: announcement %d to room %s not sent: %s: %s",
                    number,
                    room,
                    type(exc).__name__,
                    exc,
                )
            if count and number >= count:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return sent
