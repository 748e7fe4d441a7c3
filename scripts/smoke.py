"""Websocket smoke check of a deployed stack, through nginx.

    python scripts/smoke.py http://localhost:8080

Checks /healthz, an echo round trip and a chat broadcast between two clients.
Exits non-zero on the first failure.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
import uuid
from urllib.parse import urlsplit

from websockets.asyncio.client import connect


def check_health(base: str) -> None:
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as resp:
        health = json.load(resp)
    assert health["status"] == "ok", health
    print(f"ok   /healthz: {health}")


async def check_websockets(base: str) -> None:
    parts = urlsplit(base)
    ws_base = ("wss" if parts.scheme == "https" else "ws") + "://" + parts.netloc
    async with connect(f"{ws_base}/ws/echo/", origin=base) as ws:
        await ws.send("ping")
        assert await asyncio.wait_for(ws.recv(), 5) == "ping"
    print("ok   websocket echo through nginx")

    room = f"smoke-{uuid.uuid4().hex[:8]}"
    async with (
        connect(f"{ws_base}/ws/chat/{room}/", origin=base) as alice,
        connect(f"{ws_base}/ws/chat/{room}/", origin=base) as bob,
    ):
        await alice.send(json.dumps({"message": "hello from alice"}))
        got = json.loads(await asyncio.wait_for(bob.recv(), 5))
        assert got["message"] == "hello from alice", got
    print(f"ok   chat broadcast in room {room!r} through Redis")


def main() -> int:
    base = (sys.argv[1] if len(sys.argv) > 1 else "http://localhost:8080").rstrip("/")
    try:
        check_health(base)
        asyncio.run(check_websockets(base))
    except Exception as exc:  # report any failure as one line
        print(f"FAIL smoke check against {base}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"smoke check passed against {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
