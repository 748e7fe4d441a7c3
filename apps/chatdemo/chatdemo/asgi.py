"""ASGI entry point: Django for HTTP, Channels consumers for WebSockets.

Served by gunicorn with uvicorn workers: gunicorn -k uvicorn_worker.UvicornWorker
chatdemo.asgi:application
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatdemo.settings")

# Set up Django (settings, app registry) before anything imports models or consumers.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from chat.consumers import RefuseConsumer  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

from chatdemo.origins import WebsocketOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Browsers always send Origin on a WebSocket handshake; one whose scheme, host and
        # port are not those the site is served at (or a handshake without Origin) is
        # refused with HTTP 403.
        "websocket": WebsocketOriginValidator(
            URLRouter(websocket_urlpatterns), deny=RefuseConsumer.as_asgi()
        ),
    }
)
