"""Run the websocket benchmarks against a deployed stack and print the figures.

Runs in the network namespace of the stack's container (scripts/bench.sh uses
nsenter), so nginx is 127.0.0.1:80 and the client can bind many loopback
source addresses; the app's own socket is reached through /proc/<pid>/root.

    python -m bench.run --container NAME --pid PID --out bench/results/latest.json

Each phase's result is merged into the output file under its name (and the
channel layer's label for the fan-out and burst phases), so a second run with
another layer adds to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import sys
import time
import urllib.request
import uuid
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench.client import ORIGIN, Target, bench_message, worker_main
from bench.stack import Stack

SOCKETS_PER_PROCESS = 10_000  # well below the 20,000 files a process may open here
# Forty source addresses: the defaults hold 256 websockets per client address
# (nginx_websocket_connections_per_address), so 10,240 in all.
SOURCES = [f"127.0.1.{n}" for n in range(2, 42)]
SCALE_LEVELS = [1_000, 5_000, 10_000, 20_000, 50_000]
APP_SOCKET = "/run/channels-app/gunicorn.sock"
# What a chat client sends and gets back: a short sentence in the app's JSON.
CHAT_FRAME = json.dumps(
    {
        "message": "Meeting moved to 15:00 in room 4, bring the quarterly figures please",
        "room": "lobby",
        "sent_at": "2025-01-31T12:34:56.789Z",
    }
)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)], 2)


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "max_ms": round(max(values), 2) if values else None,
    }


class Clients:
    """A pool of client processes driven through pipes."""

    def __init__(self, processes: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs = []
        for index in range(processes):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(theirs, index), daemon=True)
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)
        self.mark()

    def call(self, command: str, per_process: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for pipe, args in zip(self.pipes, per_process, strict=True):
            pipe.send((command, args))
        results = [pipe.recv() for pipe in self.pipes]
        for result in results:
            if "error" in result:
                raise RuntimeError(f"client {command}: {result['error']}")
        return results

    def all(self, command: str, **args: Any) -> list[dict[str, Any]]:
        return self.call(command, [args] * len(self.pipes))

    def mark(self) -> None:
        self.all("mark")
        self.marked = time.monotonic()

    def usage(self, results: list[dict[str, Any]]) -> dict[str, float]:
        """Client CPU since the last mark: cores used in all and the busiest process."""
        busiest = max(r["usage"]["cpu_s"] / max(r["usage"]["wall_s"], 1e-6) for r in results)
        total = sum(r["usage"]["cpu_s"] for r in results)
        wall = time.monotonic() - self.marked
        return {
            "client_processes": len(results),
            "client_cpu_cores": round(total / wall, 2),
            "client_busiest_process_pct": round(100 * busiest, 1),
            "client_cpu_s": total,
        }

    def open(
        self, count: int, path: str, tag: str, target: Target, concurrency: int, **extra: Any
    ) -> dict[str, Any]:
        """Open count sockets spread over the processes; the failures by reason."""
        shares = [
            count // len(self.pipes) + (i < count % len(self.pipes)) for i in range(len(self.pipes))
        ]
        per = [
            {
                "target": asdict(target),
                "path": path,
                "count": share,
                "concurrency": max(1, concurrency // len(self.pipes)),
                "tag": tag,
                **extra,
            }
            for share in shares
        ]
        results = self.call("open", per)
        failures: dict[str, int] = {}
        for result in results:
            for reason, n in result["failures"].items():
                failures[reason] = failures.get(reason, 0) + n
        handshakes = [h for r in results for h in r["handshake_ms"]]
        return {
            "requested": count,
            "opened": sum(r["opened"] for r in results),
            "failures": failures,
            "seconds": max(r["seconds"] for r in results),
            "handshake": summary(handshakes),
        }

    def stop(self) -> None:
        for pipe in self.pipes:
            pipe.send(("stop", {}))
        for proc in self.procs:
            proc.join(10)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stack = Stack(args.container, args.pid)
        self.nginx = Target(kind="tcp", sources=SOURCES)
        self.direct = Target(kind="unix", path=f"/proc/{args.pid}/root{APP_SOCKET}")
        for source in SOURCES:  # the loopback /8 answers every address; check one anyway
            assert source.startswith("127.")

    def wait_healthy(self, seconds: float = 60) -> None:
        """Until nginx answers /healthz with 200 through to the app."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                request = urllib.request.Request(
                    "http://127.0.0.1/healthz", headers={"Host": "localhost"}
                )
                with urllib.request.urlopen(request, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"/healthz not 200 within {seconds} s")
            time.sleep(0.5)

    def cpu_during(self, before: dict[str, float], seconds: float) -> dict[str, float]:
        after = self.stack.cpu()
        return {f"{s}_cpu_cores": round((after[s] - before[s]) / seconds, 2) for s in after}

    # --- Phase: scaling curve and idle sockets held ---------------------------------------

    def scale(self) -> dict[str, Any]:
        levels = [n for n in SCALE_LEVELS if n <= self.args.max_sockets]
        clients = Clients(max(2, math.ceil(levels[-1] / SOCKETS_PER_PROCESS)))
        try:
            time.sleep(1)
            baseline = self.stack.memory()
            print(f"scale: baseline memory {baseline} KiB")
            points = []
            held = 0
            failures: dict[str, int] = {}
            for level in levels:
                clients.mark()
                cpu_before = self.stack.cpu()
                started = time.monotonic()
                opened = clients.open(
                    level - held, "/ws/echo/", "idle", self.nginx, self.args.concurrency
                )
                open_seconds = time.monotonic() - started
                for reason, n in opened["failures"].items():
                    failures[reason] = failures.get(reason, 0) + n
                held += opened["opened"]
                usage = clients.usage(clients.all("usage"))
                server_cpu = self.cpu_during(cpu_before, open_seconds)
                time.sleep(3)
                memory = self.stack.memory()
                clients.mark()
                echo = clients.all("echo", tag="idle", sockets=20, seconds=5, payload=CHAT_FRAME)
                echo_usage = clients.usage(echo)
                rtts = [x for r in echo for x in r["rtt_ms"]]
                point = {
                    "sockets": held,
                    "failures": dict(failures),
                    "open_seconds": round(open_seconds, 1),
                    "handshake": opened["handshake"],
                    "open_client": usage,
                    "open_server": server_cpu,
                    "memory_kib": memory,
                    "app_kib_per_socket": round(
                        (memory["channels-app"] - baseline["channels-app"]) / held, 2
                    ),
                    "nginx_kib_per_socket": round((memory["nginx"] - baseline["nginx"]) / held, 2),
                    "tcp_kib_per_socket": round(
                        (memory["tcp_buffers"] - baseline["tcp_buffers"]) / held, 2
                    ),
                    "app_sockets_per_worker": self.stack.sockets_per_worker(),
                    "nginx_sockets_per_worker": self.stack.sockets_per_worker("nginx"),
                    "echo_while_held": {**summary(rtts), **echo_usage},
                }
                points.append(point)
                echo = point["echo_while_held"]
                print(
                    f"scale: {held} sockets held ({failures or 'no failures'}), opened in "
                    f"{open_seconds:.0f} s; app {point['app_kib_per_socket']} KiB/socket, "
                    f"nginx {point['nginx_kib_per_socket']} KiB/socket; echo p50 "
                    f"{echo['p50_ms']} ms p99 {echo['p99_ms']} ms; "
                    f"client {usage['client_cpu_cores']} cores while opening "
                    f"(busiest process {usage['client_busiest_process_pct']}%)"
                )
                if sum(failures.values()) > level * 0.01:
                    print("scale: more than 1% of handshakes failed, not going higher")
                    break
            print(f"scale: holding {held} idle sockets for {self.args.hold} s (pings every 20 s)")
            time.sleep(self.args.hold)
            still = clients.all("count_open", tag="idle")
            still_open = sum(r["open"] for r in still)
            print(f"scale: {still_open} of {held} still open after the hold")
            closed = clients.all("close", tag="idle", concurrency=2000)
            return {
                "baseline_memory_kib": baseline,
                "points": points,
                "held": held,
                "still_open_after_hold": still_open,
                "hold_seconds": self.args.hold,
                "handshake_failures": failures,
                "close_seconds": max(r["seconds"] for r in closed),
            }
        finally:
            clients.stop()

    # --- Phase: deflate memory and bandwidth ----------------------------------------------

    def deflate(self) -> dict[str, Any]:
        clients = Clients(2)
        count = 2000
        result: dict[str, Any] = {"sockets": count, "payload_bytes": len(CHAT_FRAME)}
        try:
            for compression in (False, True):
                label = "deflate" if compression else "plain"
                time.sleep(2)
                before = self.stack.memory()
                opened = clients.open(
                    count, "/ws/echo/", label, self.nginx, 200, compression=compression
                )
                time.sleep(3)
                after = self.stack.memory()
                lo_before = lo_bytes()
                clients.mark()
                echo = clients.all("echo", tag=label, sockets=100, seconds=5, payload=CHAT_FRAME)
                trips = sum(r["round_trips"] for r in echo)
                lo_after = lo_bytes()
                result[label] = {
                    "opened": opened["opened"],
                    "failures": opened["failures"],
                    "app_kib_per_socket": round(
                        (after["channels-app"] - before["channels-app"]) / count, 2
                    ),
                    "nginx_kib_per_socket": round((after["nginx"] - before["nginx"]) / count, 2),
                    "loopback_bytes_per_round_trip": round(
                        (lo_after - lo_before) / max(trips, 1), 1
                    ),
                    "round_trips": trips,
                    **clients.usage(echo),
                }
                print(f"deflate: {label}: {result[label]}")
                clients.all("close", tag=label, concurrency=500)
            return result
        finally:
            clients.stop()

    # --- Phase: echo through nginx against straight to the app -----------------------------

    def echo(self) -> dict[str, Any]:
        clients = Clients(2)
        sockets, seconds = 100, self.args.echo_seconds
        result: dict[str, Any] = {
            "sockets": sockets,
            "payload_bytes": len(CHAT_FRAME),
            "rounds": [],
        }
        try:
            clients.open(sockets, "/ws/echo/", "nginx", self.nginx, 50)
            clients.open(sockets, "/ws/echo/", "direct", self.direct, 50)
            totals: dict[str, dict[str, Any]] = {
                "nginx": {"trips": 0, "rtts": [], "seconds": 0.0, "cpu": []},
                "direct": {"trips": 0, "rtts": [], "seconds": 0.0, "cpu": []},
            }
            for _ in range(self.args.echo_rounds):  # alternating: both see the same neighbours
                for path in ("nginx", "direct"):
                    clients.mark()
                    cpu_before = self.stack.cpu()
                    echo = clients.all(
                        "echo", tag=path, sockets=sockets, seconds=seconds, payload=CHAT_FRAME
                    )
                    server = self.cpu_during(cpu_before, seconds)
                    usage = clients.usage(echo)
                    trips = sum(r["round_trips"] for r in echo)
                    totals[path]["trips"] += trips
                    totals[path]["seconds"] += seconds
                    totals[path]["rtts"].extend(x for r in echo for x in r["rtt_ms"])
                    result["rounds"].append(
                        {
                            "path": path,
                            "round_trips_per_s": round(trips / seconds),
                            **usage,
                            **server,
                        }
                    )
                    print(f"echo: {path}: {trips / seconds:.0f} round trips/s, {usage}, {server}")
            for path, total in totals.items():
                result[path] = {
                    "round_trips_per_s": round(total["trips"] / total["seconds"]),
                    **summary(total["rtts"]),
                }
            result["ratio"] = round(
                result["nginx"]["round_trips_per_s"]
                / max(result["direct"]["round_trips_per_s"], 1),
                3,
            )
            print(f"echo: nginx/direct = {result['ratio']}")
            clients.all("close", tag="nginx", concurrency=100)
            clients.all("close", tag="direct", concurrency=100)
            return result
        finally:
            clients.stop()

    # --- Phase: broadcast fan-out ---------------------------------------------------------

    def fanout_room(
        self, clients: Clients, size: int, messages: int, interval: float
    ) -> dict[str, Any]:
        room = f"bench-{uuid.uuid4().hex[:8]}"
        tag = room
        before_workers = self.stack.sockets_per_worker()
        opened = clients.open(
            size,
            f"/ws/chat/{room}/",
            tag,
            self.nginx,
            16,
            chat=True,
            compression=self.args.compression,
        )
        spread = [
            a - b for a, b in zip(self.stack.sockets_per_worker(), before_workers, strict=False)
        ]
        time.sleep(2)  # history frames drained
        clients.all("chat_reset", tag=tag)
        clients.mark()
        cpu_before = self.stack.cpu()
        started = time.monotonic()
        asyncio.run(send_messages(f"ws://localhost/ws/chat/{room}/", messages, interval))
        time.sleep(2)  # the last deliveries
        seconds = time.monotonic() - started
        collected = clients.all("chat_collect", tag=tag, first=1, last=messages)
        latencies = [x for r in collected for x in r["latencies_ms"]]
        # Per message: when its first and its last recipient had it. The first shows
        # the path (sender, app, layer, Redis, back); the spread, the work done once
        # per recipient (app, nginx and client, one after the other on each core).
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        for r in collected:
            for seq, x in r["first_ms"].items():
                first[seq] = min(first.get(seq, x), x)
            for seq, x in r["last_ms"].items():
                last[seq] = max(last.get(seq, x), x)
        cpu_after = self.stack.cpu()
        server = self.cpu_during(cpu_before, seconds)
        usage = clients.usage(collected)
        # From the CPU seconds themselves, not the rounded cores: at a message a
        # second nginx and Redis use a few hundredths of a core.
        used = {
            "app": cpu_after["channels-app"] - cpu_before["channels-app"],
            "nginx": cpu_after["nginx"] - cpu_before["nginx"],
            "redis": cpu_after["redis-server"] - cpu_before["redis-server"],
            "client": usage.pop("client_cpu_s"),
        }
        cost = {
            f"{name}_us_per_delivery": round(cpu_s * 1e6 / len(latencies) if latencies else 0, 1)
            for name, cpu_s in used.items()
        }
        result = {
            "room_size": size,
            "opened": opened["opened"],
            "open_failures": opened["failures"],
            "app_connections_per_worker": spread,
            "messages": messages,
            "interval_ms": round(interval * 1000),
            "deliveries": len(latencies),
            "missed": sum(r["missed"] for r in collected) + (size - opened["opened"]) * messages,
            **summary(latencies),
            "first_recipient_p50_ms": percentile(list(first.values()), 50),
            "last_recipient_p50_ms": percentile(list(last.values()), 50),
            **cost,
            **usage,
            **server,
        }
        clients.all("close", tag=tag, concurrency=500)
        result["group_members_left"] = self.members_left(f"asgi:group:chat.{room}")
        return result

    def members_left(self, group: str, wait: float = 15) -> int:
        """Members of group still in Redis once its clients are gone (waits up to wait s)."""
        if "pubsub" in self.args.layer:
            return 0  # RedisPubSubChannelLayer keeps groups in the workers, not in Redis
        left = 0
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            left = self.stack.group_members().get(group, 0)
            if not left:
                break
            time.sleep(1)
        return left

    def cost(self) -> dict[str, Any]:
        """Server CPU per delivery, from a fan-out the stack keeps up with (a message a second)."""
        clients = Clients(2)
        try:
            result = self.fanout_room(clients, 1000, self.args.cost_messages, 1.0)
        finally:
            clients.stop()
        result["server_us_per_delivery"] = round(
            sum(result[f"{name}_us_per_delivery"] for name in ("app", "nginx", "redis")), 1
        )
        print(
            f"cost: {result['server_us_per_delivery']} us of server CPU per delivery (app "
            f"{result['app_us_per_delivery']}, nginx {result['nginx_us_per_delivery']}, redis "
            f"{result['redis_us_per_delivery']}); p50 {result['p50_ms']} ms, "
            f"missed {result['missed']}"
        )
        return result

    # --- Phase: idle chat sockets ---------------------------------------------------------

    def idle(self) -> dict[str, Any]:
        """Memory per idle chat socket: each in a room, so each with a layer channel and a group."""
        count, rooms = self.args.idle_sockets, 10
        # From a fresh start: memory a process freed after earlier phases would
        # otherwise be handed to these sockets and hide their cost.
        self.stack.restart("channels-app.service", "nginx.service")
        self.wait_healthy()
        clients = Clients(max(2, math.ceil(count / SOCKETS_PER_PROCESS)))
        try:
            time.sleep(2)
            before = self.stack.memory()
            failures: dict[str, int] = {}
            opened = 0
            for index in range(rooms):
                share = count // rooms + (index < count % rooms)
                result = clients.open(
                    share,
                    f"/ws/chat/idle-{index}-{uuid.uuid4().hex[:6]}/",
                    "idle",
                    self.nginx,
                    200,
                    chat=True,
                )
                opened += result["opened"]
                for reason, n in result["failures"].items():
                    failures[reason] = failures.get(reason, 0) + n
            time.sleep(5)  # history frames sent, buffers settled
            after = self.stack.memory()
            members = (
                sum(self.stack.group_members(rooms="chat.idle-*").values())
                if "pubsub" not in self.args.layer
                else None
            )
            clients.all("close", tag="idle", concurrency=1000)
        finally:
            clients.stop()
        result = {
            "sockets": count,
            "opened": opened,
            "failures": failures,
            "app_kib_per_socket": round(
                (after["channels-app"] - before["channels-app"]) / max(opened, 1), 1
            ),
            "nginx_kib_per_socket": round((after["nginx"] - before["nginx"]) / max(opened, 1), 1),
            "redis_kib_per_socket": round(
                (after["redis-server"] - before["redis-server"]) / max(opened, 1), 1
            ),
            "group_members": members,
        }
        print(f"idle: {result}")
        return result

    def fanout(self) -> dict[str, Any]:
        clients = Clients(2)
        try:
            main = self.fanout_room(clients, 1000, self.args.fanout_messages, 0.2)
            print(f"fanout: {main}")
            fits = main["p99_ms"] is not None and main["p99_ms"] <= 100 and main["missed"] == 0
            largest = 1000 if fits else None
            steps = []
            for size in self.args.room_sizes if fits else []:
                step = self.fanout_room(clients, size, 50, 0.2)
                step.pop("app_connections_per_worker", None)
                steps.append(step)
                print(
                    f"fanout: room of {size}: p50 {step['p50_ms']} ms p99 {step['p99_ms']} ms, "
                    f"missed {step['missed']}, client {step['client_cpu_cores']} cores"
                )
                if step["p99_ms"] is None or step["p99_ms"] > 100 or step["missed"] > 0:
                    break
                largest = size
            return {"room_1000": main, "steps": steps, "largest_room_p99_100ms": largest}
        finally:
            clients.stop()

    # --- Phase: burst of connections ------------------------------------------------------

    def burst(self) -> dict[str, Any]:
        clients = Clients(2)
        count = 2000
        room = f"burst-{uuid.uuid4().hex[:8]}"
        try:
            clients.mark()
            cpu_before = self.stack.cpu()
            started = time.monotonic()
            opened = clients.open(count, f"/ws/chat/{room}/", "burst", self.nginx, count, chat=True)
            seconds = time.monotonic() - started
            usage = clients.usage(clients.all("usage"))
            server = self.cpu_during(cpu_before, seconds)
            group = f"asgi:group:chat.{room}"
            members_open = self.stack.group_members().get(group, 0)
            closed = clients.all("close", tag="burst", concurrency=count)
            left: dict[str, int] = {}
            for _ in range(30):
                time.sleep(1)
                left = {k: v for k, v in self.stack.group_members().items() if v}
                if not left.get(group):
                    break
            result = {
                "clients": count,
                "connected": opened["opened"],
                "failures": opened["failures"],
                "http_500": opened["failures"].get("HTTP 500", 0),
                "connect_seconds": round(seconds, 2),
                "handshake": opened["handshake"],
                "group_members_while_open": members_open,
                "close_seconds": max(r["seconds"] for r in closed),
                "group_members_left": left.get(group, 0),
                "group_members_left_all_groups": sum(left.values()),
                **usage,
                **server,
            }
            print(f"burst: {result}")
            return result
        finally:
            clients.stop()


async def send_messages(url: str, messages: int, interval: float) -> None:
    """One sender in the room: message n every interval, on a steady clock."""
    async with connect(url, origin=ORIGIN, compression=None) as ws:
        reader = asyncio.create_task(drain(ws))
        start = time.monotonic()
        for seq in range(1, messages + 1):
            await asyncio.sleep(max(0.0, start + (seq - 1) * interval - time.monotonic()))
            await ws.send(json.dumps({"message": bench_message(seq)}))
        reader.cancel()


async def drain(ws: Any) -> None:
    async for _ in ws:
        pass


def lo_bytes() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, data = line.partition(":")
        if name.strip() == "lo":
            return int(data.split()[0])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--container", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--converge", type=Path, help="converge timings to include")
    parser.add_argument("--phases", default="scale,deflate,echo,fanout,burst")
    parser.add_argument("--layer", default="core", help="label of the stack's variant under test")
    parser.add_argument(
        "--compression", action="store_true", help="fan-out clients offer per-message deflate"
    )
    parser.add_argument("--max-sockets", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=400, help="handshakes in flight")
    parser.add_argument("--hold", type=int, default=45, help="seconds the most sockets are held")
    parser.add_argument("--echo-seconds", type=float, default=10)
    parser.add_argument("--echo-rounds", type=int, default=3, help="nginx/direct alternations")
    parser.add_argument("--fanout-messages", type=int, default=150)
    parser.add_argument("--cost-messages", type=int, default=30, help="one a second")
    parser.add_argument("--idle-sockets", type=int, default=5000)
    parser.add_argument(
        "--room-sizes",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[1250, 1500, 2000, 3000, 5000],
    )
    args = parser.parse_args()

    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.converge and args.converge.exists():
        results["converge"] = json.loads(args.converge.read_text())
    results["machine"] = {
        "cpus": multiprocessing.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": sys.version.split()[0],
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    bench = Bench(args)
    for phase in args.phases.split(","):
        print(f"==> {phase} ({args.layer} layer)")
        started = time.monotonic()
        figures = getattr(bench, phase)()
        figures["phase_seconds"] = round(time.monotonic() - started, 1)
        if phase in ("fanout", "burst", "cost", "idle"):
            results.setdefault(phase, {})[args.layer] = figures
        else:
            results[phase] = figures
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"==> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
