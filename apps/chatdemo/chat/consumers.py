import json
import logging
from datetime import UTC, datetime

from channels.generic.websocket import AsyncWebsocketConsumer

from chat.history import recent_messages, store_message
from chat.protocol import FrameError, message_from_frame

logger = logging.getLogger(__name__)

# Consumers that never use the channel layer name an alias that is not configured, so
# Channels gives them no layer: no channel name and no layer receive loop per connection,
# and they keep working while the layer (Redis) is down.
NO_CHANNEL_LAYER = None


def iso_utc(moment):
    """A time in ISO 8601, UTC, millisecond precision: 2025-01-31T12:34:56.789Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now_iso():
    """The current time in ISO 8601, UTC, millisecond precision: 2025-01-31T12:34:56.789Z."""
    return iso_utc(datetime.now(UTC))


class ChatConsumer(AsyncWebsocketConsumer):
    """A chat room: every valid message is broadcast to everyone in the same room.

    Client -> server: {"message": "<1..4096 characters>"} (see chat.protocol)
    Server -> client: {"message": ..., "room": ..., "sent_at": "<ISO 8601 UTC>"}
                      or {"error": "<reason>"} for a frame that was refused.
    On connect the room's last 50 stored messages come first, oldest first, each with
    "history": true. A message is stored before it is broadcast, so a sender that
    receives its own message back knows it is kept.
    """

    group_name = None

    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group_name = f"chat.{self.room}"
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()
        for text, sent_at in await recent_messages(self.room):
            await self.send(
                text_data=json.dumps(
                    {
                        "message": text,
                        "room": self.room,
                        "sent_at": iso_utc(sent_at),
                        "history": True,
                    }
                )
            )

    async def disconnect(self, code):
        if self.group_name is not None:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            message = message_from_frame(text_data, bytes_data)
        except FrameError as refused:
            await self.send_error(str(refused))
            return
        now = datetime.now(UTC)
        try:
            await store_message(self.room, message, now)
        except Exception:
            logger.exception("chat: could not store a message for room %s", self.room)
            await self.send_error("message not stored, send it again")
            return
        await self.channel_layer.group_send(
            self.group_name,
            {
                "type": "chat.message",
                "message": message,
                "room": self.room,
                "sent_at": iso_utc(now),
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
