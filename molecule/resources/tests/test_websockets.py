"""Websockets through nginx: echo, rooms, broadcast across workers, Origin, idle sockets."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import pytest
from stack_testing import APP, redis_admin
from websockets.exceptions import InvalidStatus


def run(coro):
    return asyncio.run(coro)


def room() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def worker_pids_with_clients(host) -> set[int]:
    """PIDs of gunicorn workers holding accepted connections on the app socket."""
    listing = host.check_output(f"ss -xn state connected src /run/{APP}/gunicorn.sock")
    accepted = set(re.findall(r"gunicorn\.sock\s+(\d+)", listing))
    # /proc/PID/fd of the workers is readable by their own user only.
    fds = host.check_output(
        f"for p in $(pgrep -P $(systemctl show -p MainPID --value {APP}.service)); do "
        f"echo $p $(runuser -u {APP} -- ls -l /proc/$p/fd | grep -o 'socket:[[][0-9]*'); done"
    )
    pids = set()
    for line in fds.splitlines():
        pid, *sockets = line.split()
        if accepted & {s.split("[")[1] for s in sockets}:
            pids.add(int(pid))
    return pids


def test_echo_through_nginx(site):
    async def scenario():
        async with site.ws("/ws/echo/") as ws:
            for text in ("hello", "ünïcode ✓", "x" * 1000):
                await ws.send(text)
                assert await asyncio.wait_for(ws.recv(), 5) == text

    run(scenario())


def test_broadcast_reaches_every_client_in_the_room_across_workers(host, site):
    name, other = room(), room()

    async def scenario():
        clients = []
        try:
            # Open clients, eight at once so that several workers accept, until
            # the app's workers hold them between at least two.
            for _ in range(6):
                batch = [site.ws(f"/ws/chat/{name}/") for _ in range(8)]
                clients.extend(await asyncio.gather(*batch))
                if len(worker_pids_with_clients(host)) >= 2:
                    break
            assert len(worker_pids_with_clients(host)) >= 2, "clients never spread over workers"
            outsider = await site.ws(f"/ws/chat/{other}/")
            clients.append(outsider)
            text = f"hello {uuid.uuid4().hex}"
            await clients[0].send(json.dumps({"message": text}))
            for ws in clients[:-1]:
                got = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert got["message"] == text
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(outsider.recv(), 1)
        finally:
            for ws in clients:
                await ws.close()

    run(scenario())


def channel_layer_backend(host) -> str:
    """The app's channel layer class, from its environment file."""
    env = host.file(f"/etc/{APP}/env").content_string
    layers = re.search(r"^DJANGO_CHANNEL_LAYERS='(.*)'$", env, re.M)
    assert layers, env
    return json.loads(layers.group(1))["default"]["BACKEND"]


def test_group_members_are_removed_when_clients_leave(host, site):
    name = room()
    if "pubsub" in channel_layer_backend(host):
        # RedisPubSubChannelLayer: a worker subscribes to the group's channel while one of
        # its consumers is a member, and unsubscribes when the last one leaves.
        def members() -> int:
            reply = redis_admin(host, "PUBSUB", "NUMSUB", f"asgi__group__chat.{name}")
            return int(reply.split()[-1])

        least = 1
    else:
        # RedisChannelLayer: each member's channel in the group's sorted set.
        def members() -> int:
            return int(redis_admin(host, "ZCARD", f"asgi:group:chat.{name}"))

        least = 10

    async def scenario():
        clients = [await site.ws(f"/ws/chat/{name}/") for _ in range(10)]
        assert members() >= least
        for ws in clients:
            await ws.close()

    run(scenario())
    deadline = time.monotonic() + 10
    while members() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert members() == 0


def foreign_origin(site, kind: str) -> str:
    other_scheme = "http" if site.scheme == "https" else "https"
    return {
        "another-host": f"{site.scheme}://evil.example",
        "the-other-scheme": f"{other_scheme}://{site.host}",
        "another-port": f"{site.scheme}://{site.host}:1234",
    }[kind]


@pytest.mark.parametrize("kind", ["another-host", "the-other-scheme", "another-port"])
def test_foreign_origin_is_refused(site, kind):
    """Only the site's own origin (scheme, host and default port) may open a websocket."""
    origin = foreign_origin(site, kind)

    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            async with site.ws("/ws/echo/", origin=origin):
                pass
        assert refused.value.response.status_code == 403, origin

    run(scenario())


def test_unknown_websocket_path_is_refused(site):
    async def scenario():
        with pytest.raises(InvalidStatus):
            async with site.ws("/ws/nothing-here/"):
                pass

    run(scenario())


def test_idle_socket_still_chats_after_75s_past_proxy_and_redis_read_timeouts(site):
    """75 s of silence outlasts nginx's 60 s proxy default and redis-py's 5 s read timeout."""
    name = room()

    async def scenario():
        # No client pings: the socket is as idle as a client can make it.
        async with site.ws(f"/ws/chat/{name}/", ping_interval=None) as idle:
            await asyncio.sleep(75)
            async with site.ws(f"/ws/chat/{name}/") as fresh:
                await fresh.send(json.dumps({"message": "still there?"}))
                got = json.loads(await asyncio.wait_for(idle.recv(), 5))
                assert got["message"] == "still there?"
                await idle.send(json.dumps({"message": "yes"}))
                got = json.loads(await asyncio.wait_for(fresh.recv(), 5))
                if got["message"] == "still there?":  # its own broadcast arrives first
                    got = json.loads(await asyncio.wait_for(fresh.recv(), 5))
                assert got["message"] == "yes"

    run(scenario())


def test_chat_handshakes_succeed_right_after_a_redis_restart(host, site):
    """Connections pooled before the restart are stale; the layer must retry, not answer 500."""
    host.run_expect([0], "systemctl restart redis-server")
    name = room()

    async def scenario():
        for i in range(12):
            async with site.ws(f"/ws/chat/{name}/") as ws:
                await ws.send(json.dumps({"message": f"after restart {i}"}))
                got = json.loads(await asyncio.wait_for(ws.recv(), 5))
                while got.get("history"):  # the room's earlier messages come first
                    got = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert got["message"] == f"after restart {i}"

    run(scenario())


def test_the_apps_redis_user_was_refused_no_command(host):
    """Redis logs each command it refused an ACL user: none of the app's, after all of the above."""
    log = redis_admin(host, "ACL", "LOG").splitlines()
    refused = [log[i + 1] for i, line in enumerate(log[:-1]) if line == "username"]
    assert "channels" not in refused, redis_admin(host, "ACL", "LOG")
