"""The WebSocket Origin check: scheme, host and port against the origins the site is served at."""

import pytest
from chatdemo.origins import parse_websocket_origins
from django.core.exceptions import ImproperlyConfigured

# The test settings keep the default ALLOWED_HOSTS: localhost and 127.0.0.1.


@pytest.mark.parametrize(
    "origin",
    [
        b"http://localhost",
        b"https://localhost",
        b"http://localhost:80",
        b"https://localhost:443",
        b"HTTP://LocalHost",
        b"http://127.0.0.1",
    ],
)
async def test_an_origin_of_an_allowed_host_on_a_default_port_is_accepted(ws, origin):
    accepted, _ = await ws("/ws/echo/", origin=origin)

    assert accepted


@pytest.mark.parametrize(
    "origin",
    [
        b"http://localhost:1234",
        b"https://localhost:8443",
        b"http://localhost:443",
        b"https://localhost:80",
        b"ftp://localhost",
        b"http://evil.example",
        b"https://localhost.evil.example",
        b"http://user@localhost",
        b"http://localhost:99999",
        b"http://[::1",
        b"null",
        b"",
        b"\xff\xfe",
        None,
    ],
)
async def test_any_other_or_a_missing_origin_is_refused(ws, origin):
    accepted, _ = await ws("/ws/echo/", origin=origin)

    assert not accepted


async def test_a_handshake_with_two_origin_headers_is_refused():
    from channels.testing import WebsocketCommunicator
    from chatdemo.asgi import application

    headers = [(b"origin", b"http://localhost"), (b"origin", b"http://localhost")]
    communicator = WebsocketCommunicator(application, "/ws/echo/", headers=headers)

    accepted, _ = await communicator.connect()

    assert not accepted


async def test_listed_origins_replace_those_derived_from_allowed_hosts(ws, settings):
    settings.WEBSOCKET_ORIGINS = parse_websocket_origins("http://localhost:8080,https://chat.test")

    assert (await ws("/ws/echo/", origin=b"http://localhost:8080"))[0]
    assert (await ws("/ws/echo/", origin=b"https://chat.test:443"))[0]
    assert not (await ws("/ws/echo/", origin=b"http://localhost"))[0]
    assert not (await ws("/ws/echo/", origin=b"http://chat.test"))[0]


async def test_a_leading_dot_in_allowed_hosts_allows_subdomains(ws, settings):
    settings.ALLOWED_HOSTS = [".example.com"]

    assert (await ws("/ws/echo/", origin=b"https://example.com"))[0]
    assert (await ws("/ws/echo/", origin=b"http://chat.example.com"))[0]
    assert not (await ws("/ws/echo/", origin=b"https://chat.example.com:8443"))[0]
    assert not (await ws("/ws/echo/", origin=b"https://notexample.com"))[0]


async def test_a_star_in_allowed_hosts_allows_any_host_on_the_default_ports(ws, settings):
    settings.ALLOWED_HOSTS = ["*"]

    assert (await ws("/ws/echo/", origin=b"https://anything.example"))[0]
    assert not (await ws("/ws/echo/", origin=b"http://anything.example:8000"))[0]
    assert not (await ws("/ws/echo/", origin=None))[0]


async def test_an_ipv6_allowed_host_matches_its_bracketed_origin(ws, settings):
    settings.ALLOWED_HOSTS = ["[::1]"]

    assert (await ws("/ws/echo/", origin=b"http://[::1]"))[0]
    assert not (await ws("/ws/echo/", origin=b"http://[::1]:8000"))[0]


def test_listed_origins_are_normalised():
    assert parse_websocket_origins(
        " http://localhost, http://localhost:80 ,HTTPS://Chat.Example.com/,http://[::1]:8080,"
    ) == [
        "http://localhost:80",
        "http://localhost:80",
        "https://chat.example.com:443",
        "http://[::1]:8080",
    ]
    assert parse_websocket_origins("") == []


@pytest.mark.parametrize(
    "raw",
    [
        "chat.example.com",
        "ws://chat.example.com",
        "https://chat.example.com/chat",
        "https://chat.example.com?x=1",
        "http://localhost:99999",
        "http://user:pw@localhost",
        "https://",
        "null",
    ],
)
def test_a_listed_value_that_is_not_an_origin_is_refused_naming_the_variable(raw):
    with pytest.raises(ImproperlyConfigured, match=r"^DJANGO_WEBSOCKET_ORIGINS: "):
        parse_websocket_origins(f"http://localhost,{raw}")
