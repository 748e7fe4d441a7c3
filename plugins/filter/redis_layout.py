"""The Redis tier as the channel layer sees it: shards, and each shard's hosts.

``redis_shards`` groups the inventory's Redis hosts by their ``redis_shard``
host variable. A shard of one host is plain Redis; a shard of three or more
is a primary and replicas watched by Redis Sentinel, reached by its master
name. ``channel_layer_hosts`` turns the shards into channels_redis's
``hosts`` list, one entry per shard, which channels_redis spreads channels
and groups over by consistent hashing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

DEFAULT_SHARD = "main"
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
# A shard needs this many hosts for Sentinel: a quorum of 2 that a majority
# can still reach with one host lost.
SENTINEL_MIN_HOSTS = 3


def _var(hostvars: Mapping[str, Any], host: str, name: str, default: Any) -> Any:
    value = hostvars[host].get(name, default)
    return default if value is None or value == "" else value


def sentinel_master_name(shard: str) -> str:
    """The name Sentinel knows a shard's primary by."""
    return f"channels-{shard}"


def redis_shards(hosts: Iterable[str], hostvars: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The shards of the Redis hosts, in the order their first host appears.

    Each shard: ``name``; ``sentinel`` (three hosts or more); ``master_name``;
    ``members``, each ``host`` (inventory name), ``address`` (private
    address), ``port`` and ``sentinel_port``. A shard of two hosts is
    reported as it is, for the redis role's check to refuse.
    """
    shards: dict[str, dict[str, Any]] = {}
    for host in hosts:
        name = str(_var(hostvars, host, "redis_shard", DEFAULT_SHARD))
        shard = shards.setdefault(
            name, {"name": name, "master_name": sentinel_master_name(name), "members": []}
        )
        shard["members"].append(
            {
                "host": host,
                "address": str(_var(hostvars, host, "private_address", "")),
                "port": int(_var(hostvars, host, "redis_port", DEFAULT_PORT)),
                "sentinel_port": int(
                    _var(hostvars, host, "redis_sentinel_port", DEFAULT_SENTINEL_PORT)
                ),
            }
        )
    for shard in shards.values():
        shard["sentinel"] = len(shard["members"]) >= SENTINEL_MIN_HOSTS
    return list(shards.values())


def channel_layer_hosts(
    shards: Iterable[Mapping[str, Any]],
    this_host: str,
    username: str,
    password: str,
    sentinel_password: str = "",
    db: int = 0,
    options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """channels_redis's ``hosts``: one entry per shard, each with ``options``.

    A plain shard is a ``redis://`` address (loopback when its host is this
    one); a Sentinel shard names its master and every Sentinel, so a failover
    needs no change here.
    """
    options = dict(options or {})
    result = []
    for shard in shards:
        members = list(shard["members"])
        if not members:
            raise ValueError(f"Redis shard {shard.get('name')!r} has no hosts")
        if shard.get("sentinel"):
            entry = {
                "master_name": shard["master_name"],
                "sentinels": [[m["address"], int(m["sentinel_port"])] for m in members],
                # Sentinels answer at once or not at all: a stopped host
                # must not hold up finding the primary.
                "sentinel_kwargs": {
                    "password": sentinel_password,
                    "socket_connect_timeout": 1,
                    "socket_timeout": 1,
                },
                "username": username,
                "password": password,
                "db": int(db),
            }
        else:
            member = members[0]
            host = "127.0.0.1" if member["host"] == this_host else member["address"]
            entry = {
                "address": f"redis://{quote(username, safe='')}:{quote(password, safe='')}"
                f"@{host}:{int(member['port'])}/{int(db)}"
            }
        entry.update(options)
        result.append(entry)
    return result


class FilterModule:
    """Ansible's entry point."""

    def filters(self) -> dict[str, Any]:
        return {"redis_shards": redis_shards, "channel_layer_hosts": channel_layer_hosts}
