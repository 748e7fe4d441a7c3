import asyncio
import logging
import re
import secrets

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from chat.routing import ROOM_NAME_PATTERN

logger = logging.getLogger(__name__)

DEFAULT_ROOM = "lobby"
ROOM_NAME_RE = re.compile(ROOM_NAME_PATTERN)

# Seconds each health check may take before it counts as failed.
DATABASE_TIMEOUT = 5.0
CHANNEL_LAYER_TIMEOUT = 2.0
MAX_ERROR_LENGTH = 200


@require_safe
def index(request):
    room = request.GET.get("room", "")
    if not ROOM_NAME_RE.fullmatch(room):
        room = DEFAULT_ROOM
    return render(request, "chat/index.html", {"room": room})


def _describe(exc):
    """The exception for the log: its class and message, shortened."""
    detail = str(exc).strip()
    text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return text[:MAX_ERROR_LENGTH]


@database_sync_to_async
def _query_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        row = cursor.fetchone()
    if row is None or row[0] != 1:
        raise RuntimeError(f"SELECT 1 returned {row!r}")


async def _check(part, probe, limit, silence):
    """ "ok" when probe() finishes within limit seconds, else "error".

    The reason goes to the log only (one WARNING line): the public body names the failing
    part, never addresses or messages from inside.
    """
    try:
        await asyncio.wait_for(probe(), limit)
    except TimeoutError:
        reason = f"{silence} within {limit:g}s"
    except Exception as exc:
        reason = _describe(exc)
    else:
        return "ok"
    logger.warning("healthz: %s check failed: %s", part, reason)
    return "error"


async def check_database():
    return await _check("database", _query_database, DATABASE_TIMEOUT, "no answer")


async def _channel_layer_round_trip():
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")
    nonce = secrets.token_hex(8)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "healthz.ping", "nonce": nonce})
    message = await layer.receive(channel)
    if message.get("nonce") != nonce:
        raise RuntimeError("the message received is not the one sent")


async def check_channel_layer():
    return await _check(
        "channel layer", _channel_layer_round_trip, CHANNEL_LAYER_TIMEOUT, "no round trip"
    )


@csrf_exempt  # so that POST and the like get 405 from require_safe, not a CSRF 403
@require_safe
async def healthz(request):
    """200 when both the database and the channel layer answer, 503 otherwise."""
    database, channel_layer = await asyncio.gather(check_database(), check_channel_layer())
    healthy = database == "ok" and channel_layer == "ok"
    response = JsonResponse(
        {
            "status": "ok" if healthy else "error",
            "database": database,
            "channel_layer": channel_layer,
            "version": settings.APP_VERSION,
            # The id nginx gave this request (X-Request-ID), as the app sees it.
            "request_id": request.headers.get("X-Request-ID", ""),
        },
        status=200 if healthy else 503,
    )
    response["Cache-Control"] = "no-store"
    return response
