"""The stored chat history: written before each broadcast, read on connect, pruned on store.

Retention: a room keeps its newest settings.CHAT_HISTORY_KEEP messages, and no room keeps
messages older than settings.CHAT_HISTORY_MAX_AGE_DAYS days (0: no limit, for either). The
pruning runs in the same worker-thread call as the store of every PRUNE_EVERY-th message
(by id, so about one store in PRUNE_EVERY across all rooms), never on the event loop: two
indexed DELETEs, one for the room of that message and one for old messages of every room.
"""

import logging
from datetime import datetime, timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError

from chat.models import HISTORY_LENGTH, Message

logger = logging.getLogger(__name__)

PRUNE_EVERY = 100


@database_sync_to_async
def store_message(room: str, text: str, sent_at: datetime) -> None:
    message = Message.objects.create(room=room, text=text, sent_at=sent_at)
    if message.id % PRUNE_EVERY == 0:
        try:
            prune(room, sent_at)
        except DatabaseError as exc:  # the message is stored: pruning waits for the next turn
            logger.warning("chat: pruning the history failed: %s: %s", type(exc).__name__, exc)


@database_sync_to_async
def recent_messages(room: str) -> list[tuple[str, datetime]]:
    """The room's last HISTORY_LENGTH messages, oldest first."""
    newest_first = Message.objects.filter(room=room).order_by("-id")[:HISTORY_LENGTH]
    return [(m.text, m.sent_at) for m in reversed(newest_first)]


def prune(room: str, now: datetime) -> None:
    """Delete what the retention settings no longer keep: in room, and old ones everywhere."""
    keep = settings.CHAT_HISTORY_KEEP
    if keep:
        # The id of the newest message beyond the ones kept, through the (room, -id) index.
        newest_first = Message.objects.filter(room=room).order_by("-id")
        beyond = list(newest_first.values_list("id", flat=True)[keep : keep + 1])
        if beyond:
            Message.objects.filter(room=room, id__lte=beyond[0]).delete()
    max_age_days = settings.CHAT_HISTORY_MAX_AGE_DAYS
    if max_age_days:
        Message.objects.filter(sent_at__lt=now - timedelta(days=max_age_days)).delete()
