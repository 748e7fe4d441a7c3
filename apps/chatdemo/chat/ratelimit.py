"""A token bucket: `rate` tokens a second, holding at most `burst`; each frame takes one."""

from collections.abc import Callable
from time import monotonic


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock or monotonic
        self.tokens = float(burst)
        self.updated = self.clock()

    def take(self) -> bool:
        """Take a token if there is one: True when the frame is within the limit."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
