"""The Redis shards the inventory describes, and channels_redis's hosts made from them."""

from __future__ import annotations

import json

import pytest
from conftest import load_plugin

layout = load_plugin("filter", "redis_layout")


def hostvars(**hosts: dict) -> dict:
    return {
        name: dict(vars_, private_address=f"10.0.0.{i}")
        for i, (name, vars_) in enumerate(hosts.items(), 1)
    }


def test_one_host_is_one_plain_shard():
    shards = layout.redis_shards(["data"], hostvars(data={}))
    assert shards == [
        {
            "name": "main",
            "master_name": "channels-main",
            "sentinel": False,
            "members": [
                {"host": "data", "address": "10.0.0.1", "port": 6379, "sentinel_port": 26379}
            ],
        }
    ]


def test_three_hosts_of_a_shard_are_watched_by_sentinel_in_inventory_order():
    hv = hostvars(r1={}, r2={"redis_port": 6380}, r3={"redis_sentinel_port": 26380})
    (shard,) = layout.redis_shards(["r1", "r2", "r3"], hv)
    assert shard["sentinel"] is True
    assert [m["host"] for m in shard["members"]] == ["r1", "r2", "r3"]
    assert shard["members"][1]["port"] == 6380
    assert shard["members"][2]["sentinel_port"] == 26380


def test_shards_are_grouped_by_redis_shard_and_two_hosts_are_reported_for_the_check():
    hv = hostvars(
        a1={"redis_shard": "a"},
        b1={"redis_shard": "b"},
        a2={"redis_shard": "a"},
        c1={"redis_shard": "c"},
    )
    shards = layout.redis_shards(["a1", "b1", "a2", "c1"], hv)
    assert [(s["name"], len(s["members"]), s["sentinel"]) for s in shards] == [
        ("a", 2, False),
        ("b", 1, False),
        ("c", 1, False),
    ]


def test_a_plain_shard_on_this_host_is_reached_on_loopback_with_quoted_credentials():
    shards = layout.redis_shards(["data", "other"], hostvars(data={}, other={"redis_shard": "x"}))
    hosts = layout.channel_layer_hosts(
        shards, "data", "channels", "p@ss/word", db=2, options={"max_connections": 9}
    )
    assert hosts == [
        {"address": "redis://channels:p%40ss%2Fword@127.0.0.1:6379/2", "max_connections": 9},
        {"address": "redis://channels:p%40ss%2Fword@10.0.0.2:6379/2", "max_connections": 9},
    ]


def test_a_sentinel_shard_names_its_master_and_every_sentinel():
    shards = layout.redis_shards(["r1", "r2", "r3"], hostvars(r1={}, r2={}, r3={}))
    (host,) = layout.channel_layer_hosts(
        shards, "app", "channels", "pw", sentinel_password="spw", options={"socket_timeout": None}
    )
    assert host["master_name"] == "channels-main"
    assert host["sentinels"] == [["10.0.0.1", 26379], ["10.0.0.2", 26379], ["10.0.0.3", 26379]]
    assert host["sentinel_kwargs"]["password"] == "spw"
    assert (host["username"], host["password"], host["db"]) == ("channels", "pw", 0)
    # The blocking reads of the layer keep no timeout; only Sentinel's queries have one.
    assert host["socket_timeout"] is None
    assert host["sentinel_kwargs"]["socket_timeout"] == 1
    # What the environment file carries must survive JSON, as channels_redis reads it.
    assert json.loads(json.dumps(host)) == host


def test_a_shard_without_members_is_refused():
    with pytest.raises(ValueError, match="no hosts"):
        layout.channel_layer_hosts([{"name": "empty", "members": []}], "app", "u", "p")


def test_channels_redis_builds_a_sentinel_pool_from_the_entry():
    """The entry is what channels_redis 4.3 understands as a Sentinel host."""
    from channels_redis import utils

    shards = layout.redis_shards(["r1", "r2", "r3"], hostvars(r1={}, r2={}, r3={}))
    (host,) = layout.channel_layer_hosts(shards, "app", "channels", "pw", sentinel_password="spw")
    pool = utils.create_pool(host)
    assert type(pool).__name__ == "SentinelConnectionPool"
    assert pool.service_name == "channels-main"
