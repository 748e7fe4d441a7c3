"""A channel layer for tests of Redis outages: the in-memory layer with an outage switch."""

import asyncio

from channels.layers import InMemoryChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError

REFUSED = "Error 111 connecting to 127.0.0.1:6379. Connection refused."


class FlakyChannelLayer(InMemoryChannelLayer):
    """While down, every call raises what redis-py raises when Redis is unreachable.

    A receive already waiting fails too, as channels-redis's does when its connection to
    Redis drops. Back up, the same layer object works again, as channels-redis does once
    redis-py reconnects.
    """

    down = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.outage = asyncio.Event()

    def go_down(self, receivers_fail=True):
        """From now on every call fails, and (receivers_fail) so do the receives waiting."""
        self.down = True
        if receivers_fail:
            self.outage.set()

    def come_back(self):
        self.down = False
        self.outage.clear()

    def check(self):
        if self.down:
            raise RedisConnectionError(REFUSED)

    async def send(self, channel, message):
        self.check()
        await super().send(channel, message)

    async def group_add(self, group, channel):
        self.check()
        await super().group_add(group, channel)

    async def group_discard(self, group, channel):
        self.check()
        await super().group_discard(group, channel)

    async def group_send(self, group, message):
        self.check()
        await super().group_send(group, message)

    async def receive(self, channel):
        self.check()
        outage = asyncio.ensure_future(self.outage.wait())
        message = asyncio.ensure_future(super().receive(channel))
        try:
            await asyncio.wait([outage, message], return_when=asyncio.FIRST_COMPLETED)
        finally:
            outage.cancel()
            message.cancel()  # does nothing when it is done
        if message.done() and not message.cancelled():
            return message.result()
        raise RedisConnectionError(REFUSED)
