"""Back to one load balancer: ha-lb2 leaves the site for good.

Runs last, after the failover tests. ha-lb2 is stopped and taken out of a
copy of the scenario's inventory, as a user retiring it would; site.yml then
runs for the load balancers with that inventory. With the shared address
still set, ha-lb1 holds it alone (keepalived elects again, as it goes from
unicast to multicast: the gap is printed on a line starting with ``LB
ALONE``); with it emptied, keepalived stops there and the address goes, the
site answering at ha-lb1's own address.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import LBS, VIRTUAL_ADDRESS, holds_address, wait_for_single_holder
from stack_testing import Site, changed_tasks, run_playbook

CONFIG = "/etc/keepalived/keepalived.conf"
STAYING, LEAVING = LBS


def without_host(node: Any, name: str) -> Any:
    """An inventory tree with one host gone from every group."""
    if isinstance(node, dict):
        return {k: without_host(v, name) for k, v in node.items() if k != name}
    return node


@pytest.fixture(scope="module")
def one_lb_inventory(tmp_path_factory) -> Path:
    """The scenario's inventory (its file and group_vars) without the retired load balancer."""
    source = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    target = tmp_path_factory.mktemp("one-lb") / "inventory"
    shutil.copytree(source, target, symlinks=False)
    for path in target.glob("*.yml"):
        tree = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump(without_host(tree, LEAVING)))
    text = "".join(p.read_text() for p in target.glob("*.yml"))
    assert STAYING in text and LEAVING not in text, text
    return target


class AddressWatch:
    """Polls whether a load balancer holds the shared address; the longest time it did not."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        since = None
        while not self._stop.is_set():
            now = time.monotonic()
            if holds_address(self.name):
                since = None
            else:
                since = since or now
                self.longest = max(self.longest, now - since)
            time.sleep(0.1)

    def __enter__(self) -> AddressWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_the_last_load_balancer_holds_the_shared_address_alone(hosts, addresses, one_lb_inventory):
    subprocess.run(["docker", "stop", LEAVING], check=True, capture_output=True)
    wait_for_single_holder(within=30, among=(STAYING,))
    site = Site(80, address=VIRTUAL_ADDRESS)
    room = f"alone-{uuid.uuid4().hex[:8]}"

    async def scenario():
        async with site.ws(f"/ws/chat/{room}/") as ws:
            with AddressWatch(STAYING) as watch:
                run = await asyncio.to_thread(
                    run_playbook,
                    "site",
                    "--tags",
                    "keepalived",
                    inventory=one_lb_inventory,
                    timeout=300,
                )
                assert run.rc == 0, run.output[-3000:]
                await asyncio.to_thread(wait_for_single_holder, 15, (STAYING,))
            # The socket opened before stays open through the election.
            text = f"still here {uuid.uuid4().hex}"
            await ws.send(json.dumps({"message": text}))
            while json.loads(await asyncio.wait_for(ws.recv(), 20)).get("message") != text:
                pass
        return watch.longest

    gap = asyncio.run(scenario())
    print(
        f"\nLB ALONE | {STAYING} left alone with the address: off the host for {gap:.1f} s"
        " while keepalived elected again (unicast to multicast) | an open chat socket kept"
    )
    lb = hosts[STAYING]
    config = lb.file(CONFIG).content_string
    assert f"{VIRTUAL_ADDRESS}/" in config, config
    # No peer left: keepalived refuses unicast without one.
    assert addresses[LEAVING] not in config and "unicast_peer" not in config, config
    assert lb.service("keepalived").is_running
    assert holds_address(STAYING)
    status, _, _ = site.get("/healthz")
    assert status == 200


def test_emptying_the_shared_address_on_the_last_load_balancer_lets_it_go(
    hosts, addresses, one_lb_inventory
):
    leave = {"keepalived_virtual_address": ""}
    run = run_playbook(
        "site", "--tags", "keepalived", inventory=one_lb_inventory, extra_vars=leave, timeout=300
    )
    assert run.rc == 0, run.output[-3000:]
    assert "its shared address went with it" in run.output
    lb = hosts[STAYING]
    service = lb.service("keepalived")
    assert not service.is_running and not service.is_enabled
    assert not lb.file(CONFIG).exists
    assert not holds_address(STAYING)
    status, _, _ = Site(80, address=addresses[STAYING]).get("/healthz")
    assert status == 200
    again = run_playbook(
        "site", "--tags", "keepalived", inventory=one_lb_inventory, extra_vars=leave, timeout=300
    )
    assert again.rc == 0, again.output[-3000:]
    assert changed_tasks(again.output) == []
    assert not service.is_running
