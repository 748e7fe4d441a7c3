"""Check a release before it is switched to: run as the app user, in the release
directory, with the release's virtualenv and the app's environment.

    python check_app.py --mode channels --application chat.asgi:application

Checks, in order: the settings load; the application imports and fits the
serving mode (WSGI for wsgi; ASGI for asgi; a Channels ProtocolTypeRouter
routing websockets for channels); the default database answers SELECT 1;
the default channel layer carries a message (when one is configured, or
required) and the default cache stores and returns a value (unless it is a
per-process or dummy cache). Prints "ok", or one line saying what failed,
and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import os
import secrets
import sys

LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)
IN_PROCESS_LAYERS = ("channels.layers.InMemoryChannelLayer",)
TIMEOUT = 5.0


def is_asgi(app: object) -> bool:
    """An async function, or an object whose __call__ is one."""
    if inspect.isfunction(app) or inspect.ismethod(app):
        return inspect.iscoroutinefunction(app)
    return inspect.iscoroutinefunction(type(app).__call__)


def load_application(target: str) -> object:
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    app = getattr(module, attribute or "application", None)
    if app is None:
        raise LookupError(f"{module_name} has no attribute {attribute or 'application'!r}")
    return app


def check_mode(mode: str, target: str, app: object) -> str | None:
    if mode == "wsgi":
        return None if callable(app) and not is_asgi(app) else f"{target} is not a WSGI application"
    if not is_asgi(app):
        return f"{target} is not an ASGI application (no async __call__)"
    if mode != "channels":
        return None
    try:
        from channels.routing import ProtocolTypeRouter
    except ImportError:
        return (
            "the channels serving mode (django_app_serving_mode) needs channels, which is not "
            "installed in the release's virtualenv (add it to the requirements)"
        )
    mapping = getattr(app, "application_mapping", {}) if isinstance(app, ProtocolTypeRouter) else {}
    if "websocket" not in mapping:
        return (
            f"{target} routes no websockets (a Channels ProtocolTypeRouter with a "
            "'websocket' key); serve other ASGI applications in the asgi mode"
        )
    return None


def check_database() -> str | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        row = cursor.fetchone()
    return None if row and row[0] == 1 else f"the database answered {row!r} to SELECT 1"


async def _layer_round_trip(layer) -> None:
    nonce = secrets.token_hex(8)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "release.check", "nonce": nonce})
    message = await layer.receive(channel)
    if message.get("nonce") != nonce:
        raise RuntimeError("the message received is not the one sent")


def check_channel_layer(required: bool) -> str | None:
    from django.conf import settings

    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    backend = layers.get("default", {}).get("BACKEND", "")
    if not backend:
        return "CHANNEL_LAYERS has no default layer" if required else None
    if backend in IN_PROCESS_LAYERS:
        return f"the channel layer {backend} reaches one process only" if required else None
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    try:
        asyncio.run(asyncio.wait_for(_layer_round_trip(layer), TIMEOUT))
    except TimeoutError:
        return f"the channel layer carried no message within {TIMEOUT:g} s"
    return None


def check_cache() -> str | None:
    from django.conf import settings
    from django.core.cache import cache

    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if backend in LOCAL_CACHES:
        return None
    key, value = f"release-check-{secrets.token_hex(6)}", secrets.token_hex(8)
    cache.set(key, value, 30)
    got = cache.get(key)
    cache.delete(key)
    return None if got == value else f"the cache ({backend}) did not return what it stored"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["wsgi", "asgi", "channels"], required=True)
    parser.add_argument("--application", required=True)
    args = parser.parse_args()
    # The project is imported from the release directory, as the server does.
    sys.path.insert(0, os.getcwd())
    steps = [
        (
            "importing " + args.application,
            lambda: check_mode(args.mode, args.application, load_application(args.application)),
        ),
        ("the database", check_database),
        ("the channel layer", lambda: check_channel_layer(args.mode == "channels")),
        ("the cache", check_cache),
    ]
    for what, step in steps:
        try:
            problem = step()
        except Exception as exc:
            problem = f"{what} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        if problem:
            print(problem)
            return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
