"""A client-side request budget: an asyncio token bucket shared by every client of a process.

Why: EIAM publishes no rate limit, throttling is per account, and an exporter must never be
the reason a tenant's own automation gets throttled. One bucket is created per process and
handed to every :class:`~exporter.eiam.client.EiamClient`, so N instances polled concurrently
still stay within ``rate`` requests per second together (retries included: every HTTP request
takes a token).

>>> import asyncio
>>> async def demo():
...     bucket = RateLimiter(rate=1000.0, burst=2)
...     for _ in range(3):
...         await bucket.acquire()
...     return bucket.acquired
>>> asyncio.run(demo())
3
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token bucket: ``rate`` tokens per second, at most ``burst`` saved up.

    Waiters are served in arrival order (one lock), so no caller starves. ``rate`` of ``None``
    or ``0`` disables limiting (benchmarks). ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate: float | None,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate is not None and rate < 0:
            raise ValueError("rate must be positive (requests per second) or 0 for unlimited")
        self.rate = rate or None
        self.burst = max(1, burst if burst is not None else int(rate or 1))
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._updated = clock()
        self._lock = asyncio.Lock()
        self.acquired = 0

    async def acquire(self) -> None:
        """Wait until a request may be sent, then take a token."""
        self.acquired += 1
        if self.rate is None:
            return
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                wait = (1.0 - self._tokens) / self.rate
                await self._sleep(wait)
