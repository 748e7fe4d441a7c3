"""Bad input on the wire, through nginx: the stack refuses it and keeps serving."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from conftest import chat, new_room, report
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.protocol import State

# A frame announced bigger than this is refused with 1009 (message too big): uvicorn's
# own limit, far above the role's gunicorn_ws_max_size (test_abuse.py checks that one).
WS_MAX_SIZE = 16 * 1024 * 1024
# client_header_timeout in this scenario's nginx (molecule.yml); nginx's default is 60 s.
HEADER_TIMEOUT = 10


def run(coro):
    return asyncio.run(coro)


async def still_serving(site) -> None:
    async with site.ws("/ws/echo/") as ws:
        await ws.send("still serving")
        assert await asyncio.wait_for(ws.recv(), 5) == "still serving"


@pytest.mark.parametrize("path", ["/ws/echo/", "/ws/chat/big/"])
def test_an_oversized_frame_is_refused_with_1009_and_the_server_keeps_serving(site, path):
    async def scenario():
        ws = await site.ws(path, max_size=None)
        # The header of a text frame announcing 16 MiB + 1 KiB (masked with a zero
        # key), and nothing of its payload: the server refuses it from the header
        # alone. Bytes of payload arriving after the server has closed would make
        # its kernel answer with a reset, which can take the close frame with it
        # (seen as a close without a code, under load).
        length = WS_MAX_SIZE + 1024
        header = bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big") + bytes(4)
        try:
            ws.transport.write(header)
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        finally:
            if ws.state is State.OPEN:  # not closed by the server: a failure, clean up
                await ws.close()

    code = run(scenario())
    run(still_serving(site))
    report(
        f"a {WS_MAX_SIZE // 2**20} MiB + 1 KiB frame on {path}",
        "closed with 1009, server keeps serving",
        f"closed with {code}; a new echo works",
        None,
    )
    assert code == 1009


def test_malformed_json_gets_an_error_and_the_connection_stays_usable(site):
    room = new_room("json")

    async def scenario():
        async with site.ws(f"/ws/chat/{room}/") as ws:
            await ws.send('{"message": "unterminated')
            error = json.loads(await asyncio.wait_for(ws.recv(), 5))
            await ws.send(b"\x00\xff binary")
            binary_error = json.loads(await asyncio.wait_for(ws.recv(), 5))
            got = await chat(ws, "still usable")
            return error, binary_error, got

    error, binary_error, got = run(scenario())
    assert error == {"error": "malformed JSON"}
    assert "binary" in binary_error["error"]
    assert got["message"] == "still usable"


@pytest.mark.parametrize("path", ["/ws/nothing-here/", "/ws/chat/caf%C3%A9/", "/ws/chat/x/y/"])
def test_an_unknown_websocket_path_is_refused_with_403(site, path):
    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            async with site.ws(path):
                pass
        return refused.value.response.status_code

    assert run(scenario()) == 403
    run(still_serving(site))


@pytest.mark.parametrize("origin", [None, "http://evil.example", "null"])
def test_a_missing_or_foreign_origin_is_refused_with_403(site, origin):
    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"ws://{site.host}/ws/chat/lobby/",
                host="127.0.0.1",
                port=site.port,
                origin=origin,
                open_timeout=10,
            ):
                pass
        return refused.value.response.status_code

    assert run(scenario()) == 403


def test_a_client_trickling_its_headers_is_cut_off_by_nginx_after_10s(site):
    """nginx's client_header_timeout (10 s here) ends a request whose headers never finish."""
    sock = socket.create_connection(("127.0.0.1", site.port), timeout=HEADER_TIMEOUT + 20)
    start = time.monotonic()
    received = b""
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        sock.settimeout(1)
        while time.monotonic() - start < HEADER_TIMEOUT + 20:
            try:
                sock.sendall(b"a")
            except OSError:
                break
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            received += chunk
        cut = time.monotonic() - start
    finally:
        sock.close()
    report(
        "a slow client trickling header bytes, one a second",
        f"cut off by nginx after client_header_timeout ({HEADER_TIMEOUT} s)",
        f"connection closed after {cut:.2f} s, {len(received)} bytes of response",
        cut,
    )
    assert HEADER_TIMEOUT - 1 <= cut <= HEADER_TIMEOUT + 5
    assert b"200 OK" not in received
    run(still_serving(site))


def test_an_unknown_host_gets_no_response_over_http_or_websocket(site):
    status_line = b""
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: not-our-site.example\r\n\r\n")
        status_line = sock.recv(4096)
    assert status_line == b"", status_line

    async def scenario():
        with pytest.raises((InvalidMessage, ConnectionClosed, EOFError, OSError)):
            async with connect(
                "ws://not-our-site.example/ws/echo/",
                host="127.0.0.1",
                port=site.port,
                origin="http://not-our-site.example",
                open_timeout=10,
            ):
                pass

    run(scenario())
    run(still_serving(site))
