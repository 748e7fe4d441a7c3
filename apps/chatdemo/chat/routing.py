from django.urls import re_path

from chat.consumers import ChatConsumer, EchoConsumer, RefuseConsumer

# A room name: 1 to 80 of ASCII letters, digits, "_", "." and "-".
ROOM_NAME_PATTERN = r"[A-Za-z0-9_.-]{1,80}"

websocket_urlpatterns = [
    re_path(rf"^ws/chat/(?P<room>{ROOM_NAME_PATTERN})/$", ChatConsumer.as_asgi()),
    re_path(r"^ws/echo/$", EchoConsumer.as_asgi()),
    # Any other path: refuse the handshake (HTTP 403) instead of failing with a server error.
    re_path(r"", RefuseConsumer.as_asgi()),
]
