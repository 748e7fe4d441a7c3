"""Websocket client processes for the benchmarks.

One process holds at most a few thousand sockets (every process on the test
machine may open 20,000 files at most) and runs the coordinator's commands one
at a time: open sockets, echo, listen to a chat room, close. Every answer
carries the CPU time the process used since the coordinator's last "mark", so
a saturated client shows beside each figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import resource
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import InvalidStatus

# Linux: bind a source address now, choose the port at connect() from the
# whole 4-tuple, so each source address gets its own ephemeral port range.
IP_BIND_ADDRESS_NO_PORT = 24
ORIGIN = "http://localhost"


@dataclass
class Target:
    """Where sockets go: nginx over TCP (from several source addresses) or the app's socket."""

    kind: str  # "tcp" or "unix"
    host: str = "127.0.0.1"
    port: int = 80
    path: str = ""
    sources: list[str] = field(default_factory=lambda: ["127.0.0.1"])


@dataclass
class Chat:
    """What one chat socket received of the benchmark's numbered messages."""

    seqs: set[int] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    by_seq: dict[int, float] = field(default_factory=dict)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


def bench_message(seq: int) -> str:
    """The chat text of message seq: its number and when it was sent (monotonic, system-wide)."""
    return f"bench {seq} {time.monotonic():.6f}"


class Worker:
    def __init__(self, conn: Connection, index: int) -> None:
        self.conn = conn
        self.index = index
        self.sockets: dict[str, list[ClientConnection]] = {}
        self.chats: dict[ClientConnection, Chat] = {}
        self.readers: set[asyncio.Task[None]] = set()
        self.opened = 0
        self.mark()

    def mark(self) -> None:
        self.mark_cpu = cpu_seconds()
        self.mark_wall = time.monotonic()

    def usage(self) -> dict[str, float]:
        wall = time.monotonic() - self.mark_wall
        cpu = cpu_seconds() - self.mark_cpu
        return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3)}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            command, args = await loop.run_in_executor(None, self.conn.recv)
            if command == "stop":
                return
            try:
                result = await getattr(self, f"do_{command}")(**args)
            except Exception as exc:  # answer instead of leaving the coordinator waiting
                result = {"error": f"{type(exc).__name__}: {exc}"}
            result["usage"] = self.usage()
            self.conn.send(result)

    async def do_mark(self) -> dict[str, Any]:
        self.mark()
        return {}

    async def do_usage(self) -> dict[str, Any]:
        return {}

    async def connect_one(
        self, target: Target, path: str, compression: bool, number: int
    ) -> ClientConnection:
        options: dict[str, Any] = {
            "origin": ORIGIN,
            "compression": "deflate" if compression else None,
            "open_timeout": 120,
            "ping_interval": None,  # the server pings; the client answers
            "close_timeout": 10,
            "max_size": 2**20,
        }
        if target.kind == "unix":
            return await unix_connect(target.path, f"ws://localhost{path}", **options)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((target.sources[number % len(target.sources)], 0))
            sock.setblocking(False)
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (target.host, target.port)), 120
            )
        except BaseException:
            sock.close()
            raise
        return await connect(f"ws://localhost{path}", sock=sock, **options)

    async def do_open(
        self,
        target: dict[str, Any],
        path: str,
        count: int,
        concurrency: int,
        tag: str,
        compression: bool = False,
        chat: bool = False,
    ) -> dict[str, Any]:
        """Open count sockets to path, concurrency at a time; chat sockets get a reader each."""
        where = Target(**target)
        gate = asyncio.Semaphore(concurrency)
        failures: dict[str, int] = {}
        opened: list[ClientConnection] = []
        handshakes: list[float] = []

        async def one(number: int) -> None:
            async with gate:
                started = time.monotonic()
                try:
                    ws = await self.connect_one(where, path, compression, number)
                except Exception as exc:
                    reason = failure_reason(exc)
                    failures[reason] = failures.get(reason, 0) + 1
                    return
                handshakes.append(time.monotonic() - started)
                opened.append(ws)
                if chat:
                    self.chats[ws] = Chat()
                    task = asyncio.create_task(self.read_chat(ws))
                    self.readers.add(task)
                    task.add_done_callback(self.readers.discard)

        started = time.monotonic()
        base = self.opened + self.index
        self.opened += count
        await asyncio.gather(*(one(base + i * 7919) for i in range(count)))
        self.sockets.setdefault(tag, []).extend(opened)
        handshakes.sort()
        return {
            "opened": len(opened),
            "failures": failures,
            "seconds": round(time.monotonic() - started, 3),
            "handshake_ms": [
                round(h * 1000, 2) for h in handshakes[:: max(1, len(handshakes) // 500)]
            ],
        }

    async def read_chat(self, ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for frame in ws:
                now = time.monotonic()
                event = json.loads(frame)
                text = event.get("message", "")
                if event.get("history") or not text.startswith("bench "):
                    continue
                _, seq, sent = text.split()
                record = self.chats[ws]  # replaced by chat_reset
                record.seqs.add(int(seq))
                record.latencies.append(now - float(sent))
                record.by_seq[int(seq)] = now - float(sent)

    async def do_chat_reset(self, tag: str) -> dict[str, Any]:
        for ws in self.sockets.get(tag, []):
            self.chats[ws] = Chat()
        return {}

    async def do_chat_collect(self, tag: str, first: int, last: int) -> dict[str, Any]:
        """Latencies of messages first..last and how many each socket missed."""
        latencies: list[float] = []
        first_at: dict[int, float] = {}
        last_at: dict[int, float] = {}
        missed = 0
        lost_sockets = 0
        expected = set(range(first, last + 1))
        for ws in self.sockets.get(tag, []):
            record = self.chats[ws]
            latencies.extend(record.latencies)
            for seq, latency in record.by_seq.items():
                first_at[seq] = min(first_at.get(seq, latency), latency)
                last_at[seq] = max(last_at.get(seq, latency), latency)
            missing = len(expected - record.seqs)
            missed += missing
            lost_sockets += missing > 0
        return {
            "latencies_ms": [round(x * 1000, 3) for x in latencies],
            "first_ms": {seq: round(x * 1000, 3) for seq, x in first_at.items()},
            "last_ms": {seq: round(x * 1000, 3) for seq, x in last_at.items()},
            "missed": missed,
            "sockets_missing_messages": lost_sockets,
            "sockets": len(self.sockets.get(tag, [])),
        }

    async def do_echo(self, tag: str, sockets: int, seconds: float, payload: str) -> dict[str, Any]:
        """Round trips of payload on the first sockets of tag, one after the other, for seconds."""
        chosen = self.sockets.get(tag, [])[:sockets]
        rtts: list[float] = []
        errors = 0
        stop_at = time.monotonic() + seconds

        async def loop_one(ws: ClientConnection) -> None:
            nonlocal errors
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    await ws.send(payload)
                    await ws.recv()
                except Exception:
                    errors += 1
                    return
                rtts.append(time.perf_counter() - started)

        await asyncio.gather(*(loop_one(ws) for ws in chosen))
        return {
            "round_trips": len(rtts),
            "errors": errors,
            "rtt_ms": [round(x * 1000, 3) for x in rtts[:: max(1, len(rtts) // 20000)]],
        }

    async def do_count_open(self, tag: str) -> dict[str, Any]:
        from websockets.protocol import State

        held = self.sockets.get(tag, [])
        return {"open": sum(ws.state is State.OPEN for ws in held), "held": len(held)}

    async def do_close(self, tag: str, concurrency: int) -> dict[str, Any]:
        held = self.sockets.pop(tag, [])
        gate = asyncio.Semaphore(concurrency)

        async def one(ws: ClientConnection) -> None:
            async with gate:
                with contextlib.suppress(Exception):
                    await ws.close()
            self.chats.pop(ws, None)

        started = time.monotonic()
        await asyncio.gather(*(one(ws) for ws in held))
        return {"closed": len(held), "seconds": round(time.monotonic() - started, 3)}


def worker_main(conn: Connection, index: int) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(Worker(conn, index).serve())
