"""The chat's own figures, for Prometheus.

Under gunicorn the stack sets PROMETHEUS_MULTIPROC_DIR: every worker writes its
figures to files there, and the stack's metrics endpoint adds them up (the open
websockets gauge is summed over the live workers). Without prometheus_client
installed (metrics off), the figures are not kept and nothing else changes.
"""

from __future__ import annotations

from typing import Any

try:
    from prometheus_client import Counter, Gauge
except ImportError:  # the stack installs prometheus_client only with metrics on
    Counter = Gauge = None


class _Unkept:
    """Stands for a figure when prometheus_client is not installed."""

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass


def _figure(kind: Any, name: str, documentation: str, **kwargs: Any) -> Any:
    return kind(name, documentation, **kwargs) if kind is not None else _Unkept()


WEBSOCKETS_OPEN = _figure(
    Gauge,
    "chat_websockets_open",
    "Chat websockets open now (summed over the live workers).",
    multiprocess_mode="livesum",
)
HANDSHAKES = _figure(Counter, "chat_websocket_handshakes", "Chat websocket handshakes accepted.")
MESSAGES_DELIVERED = _figure(
    Counter,
    "chat_messages_delivered",
    "Chat messages (live and history) written to a client's websocket.",
)
CHANNEL_LAYER_ERRORS = _figure(
    Counter,
    "chat_channel_layer_errors",
    "Chat sockets closed because the channel layer (Redis) failed.",
)
