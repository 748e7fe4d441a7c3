import json

import pytest
from channels.testing import ApplicationCommunicator, HttpCommunicator, WebsocketCommunicator
from chatdemo.asgi import application

IN_MEMORY_LAYER = {"BACKEND": "channels.layers.InMemoryChannelLayer"}
ALLOWED_ORIGIN = b"http://localhost"
TIMEOUT = 3


@pytest.fixture(autouse=True)
def in_memory_channel_layer(settings):
    """A fresh in-memory channel layer for every test (the setting change drops the old one)."""
    settings.CHANNEL_LAYERS = {"default": dict(IN_MEMORY_LAYER)}


@pytest.fixture
def no_rate_limit(settings):
    """For tests that send more than a burst (20 messages) at once, as no person types."""
    settings.CHAT_RATE_BURST = 1_000_000


class Response:
    def __init__(self, raw):
        self.status = raw["status"]
        self.headers = {name.decode().lower(): value.decode() for name, value in raw["headers"]}
        self.body = raw["body"]

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode()


@pytest.fixture
def http():
    """Send one HTTP request through the project's ASGI application."""

    async def request(method, path, host=b"localhost", headers=()):
        communicator = HttpCommunicator(
            application, method, path, headers=[(b"host", host), *headers]
        )
        try:
            return Response(await communicator.get_response(timeout=TIMEOUT))
        finally:
            await communicator.wait(timeout=TIMEOUT)

    return request


@pytest.fixture
async def ws():
    """Open WebSockets through the project's ASGI application; all are closed at teardown.

    `await ws(path)` returns (accepted, communicator). `app` replaces the project's ASGI
    application, for one wrapped by a test.
    """
    opened = []

    async def connect(path, origin=ALLOWED_ORIGIN, app=application):
        headers = [(b"origin", origin)] if origin is not None else []
        communicator = WebsocketCommunicator(app, path, headers=headers)
        opened.append(communicator)
        accepted, _ = await communicator.connect(timeout=TIMEOUT)
        return accepted, communicator

    yield connect

    for communicator in opened:
        if not communicator.future.done():
            await communicator.disconnect(timeout=TIMEOUT)


def leaving_client(path, gone_at):
    """A websocket client through the project's ASGI application that leaves at once: the
    server's first send of the type `gone_at` raises, as uvicorn's ClientDisconnected (an
    OSError) does once the client has gone. Feed it with `send_input`."""

    async def app(scope, receive, send):
        async def client_gone_at(message):
            if message["type"] == gone_at:
                raise OSError("client disconnected")
            await send(message)

        await application(scope, receive, client_gone_at)

    scope = {
        "type": "websocket",
        "path": path,
        "headers": [(b"origin", ALLOWED_ORIGIN)],
        "subprotocols": [],
    }
    return ApplicationCommunicator(app, scope)
