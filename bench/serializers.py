"""What the channel layer's serializer costs per delivery, for each one channels_redis has.

    python -m bench.serializers [--repeat 200000]

channels_redis serializes an event once per copy it stores or publishes and
deserializes it once per copy received: with RedisChannelLayer one copy per
recipient, so one serialize and one deserialize per delivery. The event is the
demo chat's broadcast as it crosses the layer (the finished frame text, and
the recipient channel channels_redis adds). Prints microseconds per delivery
and the size of a serialized event for each format, on this machine's Python.
"""

from __future__ import annotations

import argparse
import json
import time

from channels_redis.serializers import registry

FRAME = json.dumps(
    {
        "message": "a chat message of ordinary length, some fifty characters",
        "room": "lobby",
        "sent_at": "2026-12-02T17:20:00.123456Z",
    }
)
EVENT = {
    "type": "chat.message",
    "frame": FRAME,
    "__asgi_channel__": "specific.8f4c2a1b0e9d4c7f8a6b5e4d3c2b1a09!0a1b2c3d4e5f",
}


def per_delivery(fmt: str, repeat: int) -> tuple[float, int]:
    """Microseconds for one serialize and one deserialize, and the serialized size."""
    serializer = registry.get_serializer(fmt, expiry=60)
    data = serializer.serialize(EVENT)
    assert serializer.deserialize(data) == EVENT
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            serializer.deserialize(serializer.serialize(EVENT))
        best = min(best, time.perf_counter() - started)
    return best / repeat * 1e6, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200_000)
    args = parser.parse_args()
    print("| serializer_format | serialize + deserialize per delivery | bytes per event |")
    print("|---|---|---|")
    for fmt in ("msgpack", "json"):
        micros, size = per_delivery(fmt, args.repeat)
        print(f"| {fmt} | {micros:.2f} µs | {size} |")


if __name__ == "__main__":
    main()
