"""The JSON access log (nginx_access_log_format: json in molecule.yml)."""

from __future__ import annotations

import asyncio
import json
import time

ACCESS_LOG = "/var/log/nginx/access.log"
HELD = 2.0  # seconds the websocket stays open


def logged(host, request_id: str, within: float = 5.0) -> dict:
    """The access log's entry for request_id; every line of the log must be JSON."""
    deadline = time.monotonic() + within
    while True:
        entries = [json.loads(line) for line in host.file(ACCESS_LOG).content_string.splitlines()]
        found = [e for e in entries if e["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, (request_id, found)
            return found[0]
        time.sleep(0.2)


def test_a_websocket_is_one_json_line_with_how_long_it_stayed_open_and_its_upstream(host, site):
    async def session() -> str:
        async with site.ws("/ws/echo/") as ws:
            request_id = ws.response.headers["X-Request-ID"]
            await ws.send("logged")
            assert await asyncio.wait_for(ws.recv(), 5) == "logged"
            await asyncio.sleep(HELD)
        return request_id

    # nginx writes the line when the request ends: for a websocket, when it closes.
    entry = logged(host, asyncio.run(session()))
    assert entry["status"] == 101 and entry["upstream_status"] == "101", entry
    assert entry["upgrade"] == "websocket" and entry["uri"] == "/ws/echo/", entry
    assert entry["request_time"] >= HELD, entry
    assert entry["upstream_addr"].startswith("unix:"), entry


def test_an_http_request_line_names_its_upstream_time_and_matches_the_apps_request_id(host, site):
    status, headers, body = site.get("/healthz")
    assert status == 200
    request_id = headers["x-request-id"]
    assert json.loads(body)["request_id"] == request_id
    entry = logged(host, request_id)
    assert entry["status"] == 200 and entry["method"] == "GET", entry
    # The upstream's time is part of the request's; nginx reads the two from
    # different clocks (the request's start from its cached time, to the
    # millisecond), so the part may exceed the whole by a few milliseconds.
    assert 0 <= float(entry["upstream_response_time"]) <= entry["request_time"] + 0.005, entry
