"""WebSocket Origin checking: scheme, host and port against the origins the site is served at.

channels' AllowedHostsOriginValidator compares the host only, so any port (say a local
development server on http://localhost:1234) passed. Here an origin is allowed when its
scheme, host and port all match one of:

- the origins listed in DJANGO_WEBSOCKET_ORIGINS (settings.WEBSOCKET_ORIGINS), or, when that
  is empty,
- http://<host> and https://<host> on the default ports for each host in ALLOWED_HOSTS, where
  a leading dot (".example.com") allows the domain and its subdomains and "*" any host.

A handshake without exactly one usable Origin header is refused (HTTP 403).
"""

from collections.abc import Iterable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.http import is_same_domain

DEFAULT_PORTS = {"http": 80, "https": 443}
ANY_HOST = "*"
# What Django allows when DEBUG is on and ALLOWED_HOSTS is empty.
DEBUG_HOSTS = ["localhost", "127.0.0.1", "[::1]"]


class Origin(NamedTuple):
    scheme: str
    host: str  # lower case, an IPv6 address without brackets; in patterns also ".domain" or "*"
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_origin(value: str) -> Origin | None:
    """scheme://host[:port] as an Origin (default port filled in), or None if it is not one."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if (
        scheme not in DEFAULT_PORTS
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        return None
    return Origin(scheme, parts.hostname, port or DEFAULT_PORTS[scheme])


def parse_websocket_origins(raw: str, *, variable: str = "DJANGO_WEBSOCKET_ORIGINS") -> list[str]:
    """The comma separated origins of the variable, normalised ("http://localhost:80")."""
    origins = []
    for item in (item.strip() for item in raw.split(",")):
        if not item:
            continue
        origin = parse_origin(item)
        if origin is None:
            raise ImproperlyConfigured(
                f"{variable}: {item!r} is not an origin such as https://chat.example.com "
                "or http://localhost:8080 (http or https, a host, an optional port, no path)"
            )
        origins.append(str(origin))
    return origins


def origins_from_allowed_hosts(hosts: Iterable[str]) -> list[Origin]:
    """http:// and https:// on the default ports for each ALLOWED_HOSTS entry."""
    patterns = []
    for host in hosts:
        host = host.strip().lower()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if host:
            patterns += [Origin(scheme, host, port) for scheme, port in DEFAULT_PORTS.items()]
    return patterns


def allowed_origins() -> list[Origin]:
    """The origins WebSocket handshakes may come from, read from the settings."""
    if settings.WEBSOCKET_ORIGINS:
        return [origin for origin in map(parse_origin, settings.WEBSOCKET_ORIGINS) if origin]
    hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not hosts:
        hosts = DEBUG_HOSTS
    return origins_from_allowed_hosts(hosts)


def origin_allowed(origin: Origin, patterns: Iterable[Origin]) -> bool:
    return any(
        origin.scheme == pattern.scheme
        and origin.port == pattern.port
        and (pattern.host == ANY_HOST or is_same_domain(origin.host, pattern.host))
        for pattern in patterns
    )


def handshake_origin(scope: dict[str, Any]) -> Origin | None:
    """The Origin of a handshake; None when it has none, several, or one that is no origin."""
    values = [value for name, value in scope.get("headers", []) if name.lower() == b"origin"]
    if len(values) != 1:
        return None
    try:
        return parse_origin(values[0].decode("ascii"))
    except UnicodeDecodeError:
        return None


class WebsocketOriginValidator:
    """ASGI middleware: passes a handshake from an allowed origin on, gives the rest to deny."""

    def __init__(self, application: Any, deny: Any) -> None:
        self.application = application
        self.deny = deny

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        origin = handshake_origin(scope)
        if origin is not None and origin_allowed(origin, allowed_origins()):
            return await self.application(scope, receive, send)
        return await self.deny(scope, receive, send)
