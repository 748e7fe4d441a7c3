import asyncio
import collections
import contextlib
import json
import logging
from datetime import UTC, datetime

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from chat import metrics
from chat.history import recent_messages, store_message
from chat.protocol import FrameError, message_from_frame
from chat.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

# Close codes a chat client can get besides the usual ones (see README.md, "Interface").
POLICY_VIOLATION = 1008  # it kept sending over the rate limit
INTERNAL_ERROR = 1011  # a bug, logged with its traceback
TRY_AGAIN_LATER = 1013  # the channel layer (Redis) or the database is unavailable
TOO_SLOW = 4001  # it did not read its frames fast enough; reconnect for the history

# What the channel layer raises when Redis is down, restarting, full or unreachable:
# redis-py's errors (ConnectionError, TimeoutError, BusyLoadingError, ResponseError such as
# OOM), and OSError from a socket it did not wrap. A send to the client never gets here: the
# writer task handles those.
CHANNEL_LAYER_ERRORS = (RedisError, OSError)


class ClientGone(Exception):
    """The client left before its handshake was answered: the server's accept failed.

    Not an OSError, so that it is not taken for the channel layer's.
    """


# How an error frame (send_error) starts; every other frame the writer sends is a message.
ERROR_FRAME = '{"error"'

# Frames over the rate limit in a row after which the client is closed (POLICY_VIOLATION).
FLOOD_LIMIT = 50

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


class DirectDispatch:
    """Hands each message to its handler without Channels' per-message database check.

    Channels' AsyncConsumer.dispatch runs django.db.close_old_connections in a worker thread
    before every handler: one thread hop for every frame received and every channel-layer
    message delivered. On a broadcast that was over a third of the app's CPU per delivery
    (docs/benchmarks.md). These consumers touch the database only through
    database_sync_to_async (chat.history), which closes stale connections around each call in
    the thread that holds them, so the hop guards nothing here. A consumer that used the ORM
    any other way would need it back.
    """

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class ChatConsumer(DirectDispatch, AsyncWebsocketConsumer):
    """A chat room: every valid message is broadcast to everyone in the same room.

    Client -> server: {"message": "<1..4096 characters>"} (see chat.protocol)
    Server -> client: {"message": ..., "room": ..., "sent_at": "<ISO 8601 UTC>"}
                      or {"error": "<reason>"} for a frame that was refused.
    On connect the room's last 50 stored messages come first, oldest first, each with
    "history": true. A message is stored before it is broadcast, so a sender that
    receives its own message back knows it is kept.

    Frames for the client go through an outbox that a writer task empties, so a client that
    reads slowly never holds up this consumer's reading of the channel layer (where it would
    lose messages silently once the layer's capacity is reached). A client that lets the
    outbox fill up, or takes no frame for CHAT_SEND_TIMEOUT seconds, is closed with TOO_SLOW
    instead: until then it has had every message, in order. The outbox and the writer exist
    only while frames wait: an idle socket holds neither (nor its history, once sent).

    While the channel layer (Redis) or the database is unavailable, a handshake is accepted
    and closed with TRY_AGAIN_LATER, and so are open sockets whose layer calls fail: one
    WARNING line each, no traceback. redis-py reconnects by itself once Redis is back.
    """

    group_name = None
    accepted = False
    closed = False
    outbox: collections.deque[str] | None = None  # frames waiting for the writer
    writer: asyncio.Task | None = None

    async def __call__(self, scope, receive, send):
        """Run the consumer; a failure closes the socket with a code instead of dropping it.

        A layer error surfaces here from group_add, group_send, group_discard or from the
        layer's receive loop, which channels runs beside the client's (await_many_dispatch).
        """
        self.room = scope["url_route"]["kwargs"]["room"]
        try:
            await super().__call__(scope, receive, send)
        except ClientGone:
            logger.info("chat: room %s: the client left during its handshake", self.room)
            await self.leave_group()
        except CHANNEL_LAYER_ERRORS as exc:
            metrics.CHANNEL_LAYER_ERRORS.inc()
            await self.unavailable("channel layer", exc)
        except DatabaseError as exc:
            await self.unavailable("database", exc)
        except Exception:
            logger.exception("chat: room %s: closing with %d", self.room, INTERNAL_ERROR)
            await self.close_now(INTERNAL_ERROR, "internal error")
        finally:
            if self.accepted:
                metrics.WEBSOCKETS_OPEN.dec()
            await self.stop_writer()

    async def unavailable(self, part: str, exc: Exception) -> None:
        """One WARNING line, and a close the client can retry on.

        A handshake is accepted first, so that the client gets the code, not an HTTP error.
        """
        action = "socket closed" if self.closed else f"closing with {TRY_AGAIN_LATER}"
        logger.warning(
            "chat: room %s: %s unavailable (%s): %s", self.room, part, type(exc).__name__, action
        )
        await self.close_now(TRY_AGAIN_LATER, f"{part} unavailable, try again later")

    async def connect(self):
        self.group_name = f"chat.{self.room}"
        self.send_queue = settings.CHAT_SEND_QUEUE
        self.send_timeout = settings.CHAT_SEND_TIMEOUT
        self.bucket = TokenBucket(settings.CHAT_RATE_PER_SECOND, settings.CHAT_RATE_BURST)
        self.over_limit_in_a_row = 0
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()
        history = collections.deque(
            json.dumps(
                {"message": text, "room": self.room, "sent_at": iso_utc(sent_at), "history": True}
            )
            for text, sent_at in await recent_messages(self.room)
        )
        if history:
            self.writer = asyncio.create_task(self.write_frames(history))

    async def accept(self, subprotocol=None, headers=None):
        try:
            await super().accept(subprotocol, headers)
        except OSError as exc:  # uvicorn's ClientDisconnected: nobody to answer
            raise ClientGone from exc
        self.accepted = True
        metrics.HANDSHAKES.inc()
        metrics.WEBSOCKETS_OPEN.inc()

    async def websocket_disconnect(self, message):
        self.closed = True  # nothing more may be sent
        await self.stop_writer()
        await super().websocket_disconnect(message)

    async def disconnect(self, code):
        if self.group_name is not None:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def leave_group(self) -> None:
        """Leave the room's group for a socket that never opened (no disconnect follows)."""
        if self.group_name is not None:
            with contextlib.suppress(*CHANNEL_LAYER_ERRORS):
                await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if self.closed:
            return
        if not self.bucket.take():
            await self.over_limit()
            return
        self.over_limit_in_a_row = 0
        try:
            message = message_from_frame(text_data, bytes_data)
        except FrameError as refused:
            await self.send_error(str(refused))
            return
        now = datetime.now(UTC)
        try:
            await store_message(self.room, message, now)
        except Exception as exc:  # one line per frame: an outage must not flood the log
            logger.warning(
                "chat: room %s: message not stored: %s: %s", self.room, type(exc).__name__, exc
            )
            await self.send_error("message not stored, send it again")
            return
        # Encoded once here, not once per recipient: the event carries the frame's text.
        frame = json.dumps({"message": message, "room": self.room, "sent_at": iso_utc(now)})
        await self.channel_layer.group_send(
            self.group_name, {"type": "chat.message", "frame": frame}
        )

    async def chat_message(self, event):
        # The event was validated, stamped and encoded by the sender: forward it as it is.
        frame = event.get("frame")
        if frame is None:  # from an older release of this app, which sent the fields
            frame = json.dumps(
                {"message": event["message"], "room": event["room"], "sent_at": event["sent_at"]}
            )
        await self.queue_text(frame)

    async def over_limit(self) -> None:
        """A frame over the rate limit: an error frame, or a close once FLOOD_LIMIT in a row."""
        self.over_limit_in_a_row += 1
        if self.over_limit_in_a_row < FLOOD_LIMIT:
            await self.send_error("rate limit exceeded, slow down")
            return
        logger.warning(
            "chat: room %s: %d frames in a row over the rate limit: closing with %d",
            self.room,
            FLOOD_LIMIT,
            POLICY_VIOLATION,
        )
        await self.close_now(POLICY_VIOLATION, "rate limit exceeded")

    async def send_error(self, reason: str) -> None:
        await self.queue({"error": reason})

    async def queue(self, frame: dict[str, object]) -> None:
        await self.queue_text(json.dumps(frame))

    async def queue_text(self, frame: str) -> None:
        """Put a frame in the outbox and start the writer; a full outbox closes the client."""
        if self.closed:
            return
        if self.outbox is None:
            self.outbox = collections.deque()
        if len(self.outbox) >= self.send_queue:
            logger.warning(
                "chat: room %s: client too slow, %d frames waiting: closing with %d",
                self.room,
                len(self.outbox),
                TOO_SLOW,
            )
            await self.close_now(TOO_SLOW, "too slow")
            return
        self.outbox.append(frame)
        if self.writer is None:
            self.writer = asyncio.create_task(self.write_frames())

    async def write_frames(self, history: collections.deque[str] | None = None) -> None:
        """The writer task: the history, then the outbox's frames, in order, each let go once
        sent; it ends when both are empty (queue_text starts the next one)."""
        while history:
            if not await self.write(history.popleft()):
                return
        while self.outbox:
            if not await self.write(self.outbox.popleft()):
                return
        # No await since the outbox was found empty: queue_text cannot have added a frame.
        self.writer = None
        self.outbox = None

    async def write(self, frame: str) -> bool:
        """Send one frame within send_timeout; False when the socket is closed or gone."""
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.send(text_data=frame)
        except TimeoutError:
            logger.warning(
                "chat: room %s: client took no frame for %gs: closing with %d",
                self.room,
                self.send_timeout,
                TOO_SLOW,
            )
            self.writer = None  # this task ends here: close_now must not wait for it
            await self.close_now(TOO_SLOW, "too slow")
            return False
        except OSError as exc:  # the client is gone (uvicorn's ClientDisconnected)
            logger.info("chat: room %s: send failed: %s", self.room, type(exc).__name__)
            self.closed = True  # its websocket.disconnect ends the consumer
            return False
        if not frame.startswith(ERROR_FRAME):
            metrics.MESSAGES_DELIVERED.inc()
        return True

    async def stop_writer(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.cancel()
            await asyncio.wait([writer])  # neither raises its exception nor eats our cancel

    async def close_now(self, code: int, reason: str = "") -> None:
        """Close the socket now with code, accepting it first if need be.

        Frames still in the outbox are dropped: the client is told with the code instead.
        """
        if self.closed:
            return
        self.closed = True
        await self.stop_writer()
        if not self.accepted:
            try:
                await self.accept()
            except ClientGone:  # nobody to tell
                return
        with contextlib.suppress(OSError):  # the client is gone already: nobody to tell
            await self.base_send({"type": "websocket.close", "code": code, "reason": reason})


class EchoConsumer(DirectDispatch, AsyncWebsocketConsumer):
    """Sends every frame back: text as text, binary as binary."""

    channel_layer_alias = NO_CHANNEL_LAYER

    async def __call__(self, scope, receive, send):
        # uvicorn's ClientDisconnected: the client left, and there is nobody to answer.
        with contextlib.suppress(OSError):
            await super().__call__(scope, receive, send)

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
