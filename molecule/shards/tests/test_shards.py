"""The channel layer over two Redis shards (RedisPubSubChannelLayer).

Each room's group lives on one shard, chosen by the layer's consistent
hashing of its name; both shards hold some. A broadcast reaches every member
across the app's workers whichever shard its room is on. With one shard's
Redis stopped, the rooms of the other go on; started again, its rooms come
back without an app restart. The figure is printed on a line starting with
``SHARD LOSS``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from conftest import SHARDS, WEB
from stack_testing import APP
from websockets.exceptions import InvalidHandshake

ROOMS = [f"shard-room-{i:02d}" for i in range(12)]
MEMBERS = 3
# How long a room on the restarted shard may take to carry broadcasts again.
MAX_BACK = 60.0


def run(coro):
    return asyncio.run(coro)


def layer_settings(host) -> dict:
    env = host.file(f"/etc/{APP}/env").content_string
    line = next(x for x in env.splitlines() if x.startswith("DJANGO_CHANNEL_LAYERS="))
    return json.loads(line.split("=", 1)[1].strip("'"))["default"]


def group_channels(host, password: str) -> set[str]:
    """The rooms whose group channel has a subscriber on this Redis host."""
    out = host.check_output(
        "REDISCLI_AUTH=%s redis-cli --no-auth-warning PUBSUB CHANNELS %s",
        password,
        "*__group__chat.shard-room-*",
    )
    return {line.rsplit("chat.", 1)[1] for line in out.split()}


async def open_rooms(site, rooms):
    return {name: [await site.ws(f"/ws/chat/{name}/") for _ in range(MEMBERS)] for name in rooms}


async def broadcast_reaches_all(members, wait: float = 5) -> bool:
    """Whether one message from the first member reaches every member of the room."""
    text = f"hello {uuid.uuid4().hex}"
    await members[0].send(json.dumps({"message": text}))
    try:
        for ws in members:
            while json.loads(await asyncio.wait_for(ws.recv(), wait)).get("message") != text:
                pass
    except (TimeoutError, OSError):
        return False
    return True


async def close_all(rooms):
    for members in rooms.values():
        for ws in members:
            await ws.close()


def test_the_layer_names_both_shards_in_inventory_order(hosts, addresses):
    layer = layer_settings(hosts[WEB])
    assert layer["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    hosts_list = layer["CONFIG"]["hosts"]
    # Where each entry points, without its password.
    assert [h["address"].rsplit("@", 1)[1] for h in hosts_list] == [
        f"{addresses[name]}:6379/0" for name in SHARDS
    ]
    # The app's own user, never the admin.
    assert [h["address"].split(":", 2)[:2] for h in hosts_list] == [["redis", "//channels"]] * 2


def test_each_room_lives_on_one_shard_both_hold_some_and_broadcasts_reach_every_member(
    site, hosts, admin_password
):
    async def scenario():
        rooms = await open_rooms(site, ROOMS)
        try:
            placed = {name: group_channels(hosts[name], admin_password) for name in SHARDS}
            print(f"\nrooms per shard: { {n: len(r) for n, r in placed.items()} }")
            assert placed[SHARDS[0]] | placed[SHARDS[1]] == set(ROOMS), placed
            assert not placed[SHARDS[0]] & placed[SHARDS[1]], placed
            assert placed[SHARDS[0]] and placed[SHARDS[1]], placed
            for name, members in rooms.items():
                assert await broadcast_reaches_all(members), name
        finally:
            await close_all(rooms)

    run(scenario())


def test_a_stopped_shard_stops_only_its_rooms_and_they_come_back_when_it_does(
    site, hosts, admin_password
):
    async def scenario():
        rooms = await open_rooms(site, ROOMS)
        lost, kept = SHARDS[1], SHARDS[0]
        on_lost = group_channels(hosts[lost], admin_password)
        on_kept = group_channels(hosts[kept], admin_password)
        assert on_lost and on_kept
        hosts[lost].check_output("systemctl stop redis-server")
        try:
            for name in sorted(on_kept):
                assert await broadcast_reaches_all(rooms[name]), f"{name} on {kept}"
        finally:
            hosts[lost].check_output("systemctl start redis-server")
        started = time.monotonic()
        await close_all(rooms)
        # Clients joining a room of the restarted shard: broadcasts flow again.
        name = sorted(on_lost)[0]
        while True:
            try:
                members = [await site.ws(f"/ws/chat/{name}/") for _ in range(MEMBERS)]
            except (OSError, TimeoutError, InvalidHandshake):
                # A handshake may fail while the layer reconnects to the shard.
                members = []
            ok = bool(members) and await broadcast_reaches_all(members, wait=2)
            for ws in members:
                await ws.close()
            if ok:
                break
            assert time.monotonic() - started < MAX_BACK, f"{name} still silent"
            await asyncio.sleep(0.5)
        back = time.monotonic() - started
        print(
            f"\nSHARD LOSS | {len(on_kept)} rooms on {kept} carried broadcasts while {lost} was"
            f" stopped | a room on {lost} back {back:.1f} s after its start, no app restart"
        )

    pid = hosts[WEB].check_output(f"systemctl show -p MainPID --value {APP}.service")
    run(scenario())
    assert hosts[WEB].check_output(f"systemctl show -p MainPID --value {APP}.service") == pid
