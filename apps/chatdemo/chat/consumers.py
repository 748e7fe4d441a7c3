import json
import logging
from datetime import UTC, datetime

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

logger = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = 4096
HISTORY_LENGTH = 50

# Consumers that never use the channel layer name an alias that is not configured, so
# Channels gives them no layer: no channel name and no layer receive loop per connection,
# and they keep working while the layer (Redis) is down.
NO_CHANNEL_LAYER = None


@database_sync_to_async
def store_message(room, message, sent_at):
    from chat.models import Message

    Message.objects.create(room=room, message=message, sent_at=sent_at)


@database_sync_to_async
def recent_messages(room):
    from chat.models import Message

    rows = Message.objects.filter(room=room).order_by("-id")[:HISTORY_LENGTH]
    return [
        {"message": m.message, "room": m.room, "sent_at": m.sent_at, "history": True}
        for m in reversed(rows)
    ]


def utc_now_iso():
    """The current time in ISO 8601, UTC, millisecond precision: 2025-01-31T12:34:56.789Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ChatConsumer(AsyncWebsocketConsumer):
    """A chat room: every valid message is broadcast to everyone in the same room.

    Client -> server: {"message": "<1..4096 characters>"}
    Server -> client: {"message": ..., "room": ..., "sent_at": "<ISO 8601 UTC>"}
                      or {"error": "<reason>"} for a frame that was refused.
    """

    group_name = None

    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group_name = f"chat.{self.room}"
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()
        for frame in await recent_messages(self.room):
            await self.send(text_data=json.dumps(frame))

    async def disconnect(self, code):
        if self.group_name is not None:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            await self.send_error("binary frames are not supported, send JSON text")
            return
        try:
            payload = json.loads(text_data)
        except ValueError:
            await self.send_error("malformed JSON")
            return
        if not isinstance(payload, dict):
            await self.send_error("expected a JSON object")
            return
        message = payload.get("message")
        if not isinstance(message, str):
            await self.send_error('expected a string "message"')
            return
        if not 1 <= len(message) <= MAX_MESSAGE_LENGTH:
            await self.send_error(f"message must be 1 to {MAX_MESSAGE_LENGTH} characters")
            return
        sent_at = utc_now_iso()
        await store_message(self.room, message, sent_at)
        await self.channel_layer.group_send(
            self.group_name,
            {
                "type": "chat.message",
                "message": message,
                "room": self.room,
                "sent_at": sent_at,
            },
        )

    async def chat_message(self, event):
        # The event was validated and stamped by the sender: forward it as it is.
        await self.send(
            text_data=json.dumps(
                {"message": event["message"], "room": event["room"], "sent_at": event["sent_at"]}
            )
        )

    async def send_error(self, reason):
        await self.send(text_data=json.dumps({"error": reason}))


class EchoConsumer(AsyncWebsocketConsumer):
    """Sends every frame back: text as text, binary as binary."""

    channel_layer_alias = NO_CHANNEL_LAYER

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)


class RefuseConsumer(AsyncWebsocketConsumer):
    """Refuses the handshake (HTTP 403): the answer for a path with no route."""

    channel_layer_alias = NO_CHANNEL_LAYER

    async def connect(self):
        await self.close()
