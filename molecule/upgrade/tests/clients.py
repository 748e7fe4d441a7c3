"""Clients that keep using the site through nginx while a deploy runs.

One thread asks /healthz over and over (a new connection each time) and
records every failure; another holds a chat websocket, and when the server
closes it, reconnects the way the demo page does (after 0.5 s, then with
backoff) and records the close code and how long the chat was gone.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 10.0


@dataclass
class LoadReport:
    requests: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)
    reconnect_gaps: list[float] = field(default_factory=list)
    chat_errors: list[str] = field(default_factory=list)

    @property
    def longest_gap(self) -> float:
        return max(self.reconnect_gaps, default=0.0)

    def summary(self) -> str:
        return (
            f"{self.requests} HTTP requests, {len(self.failures)} failed; "
            f"versions seen {sorted(set(self.versions))}; websocket closes {self.close_codes}; "
            f"longest chat reconnect {self.longest_gap:.2f} s; chat errors {self.chat_errors}"
        )


class SiteLoad:
    """Background HTTP loop and chat socket against the site at 127.0.0.1:port."""

    def __init__(self, port: int, host: str = "localhost") -> None:
        self.port = port
        self.host = host
        self.report = LoadReport()
        self._stop = threading.Event()
        self._chat_ready = threading.Event()
        self._threads = [
            threading.Thread(target=self._http_loop, daemon=True),
            threading.Thread(target=lambda: asyncio.run(self._chat_loop()), daemon=True),
        ]

    def __enter__(self) -> SiteLoad:
        for thread in self._threads:
            thread.start()
        if not self._chat_ready.wait(15):
            raise AssertionError(f"the chat client did not connect: {self.report.chat_errors}")
        return self

    def __exit__(self, *exc: object) -> None:
        # Let a pending reconnect finish before judging it.
        deadline = time.monotonic() + 15
        while not self._chat_ready.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()
        for thread in self._threads:
            thread.join(20)

    def _http_loop(self) -> None:
        while not self._stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
            try:
                conn.request("GET", "/healthz", headers={"Host": self.host})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
                self.report.versions.append(json.loads(body)["version"])
            except Exception as exc:
                self.report.failures.append((time.time(), f"{type(exc).__name__}: {exc}"))
            finally:
                conn.close()
                self.report.requests += 1
            time.sleep(0.05)

    async def _chat_loop(self) -> None:
        room = f"upgrade-{uuid.uuid4().hex[:8]}"
        url = f"ws://{self.host}/ws/chat/{room}/"
        closed_at: float | None = None
        delay = RECONNECT_FIRST_DELAY
        while not self._stop.is_set():
            try:
                async with connect(
                    url,
                    host="127.0.0.1",
                    port=self.port,
                    origin=f"http://{self.host}",
                    open_timeout=10,
                ) as ws:
                    # Back only once a message makes the round trip through Redis.
                    await ws.send(json.dumps({"message": "hello"}))
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if reply.get("message") != "hello":
                        raise RuntimeError(f"unexpected chat reply {reply!r}")
                    if closed_at is not None:
                        self.report.reconnect_gaps.append(time.monotonic() - closed_at)
                        closed_at = None
                    delay = RECONNECT_FIRST_DELAY
                    self._chat_ready.set()
                    while not self._stop.is_set():
                        try:
                            await asyncio.wait_for(ws.recv(), 0.2)
                        except TimeoutError:
                            continue
            except ConnectionClosed as exc:
                self._chat_ready.clear()
                self.report.close_codes.append(exc.rcvd.code if exc.rcvd else None)
                closed_at = closed_at or time.monotonic()
            except Exception as exc:
                self._chat_ready.clear()
                self.report.chat_errors.append(f"{type(exc).__name__}: {exc}")
                closed_at = closed_at or time.monotonic()
            if not self._stop.is_set():
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX_DELAY, delay * 2)
