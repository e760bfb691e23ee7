"""When to try a failed request again, and how long to wait first. Pure: no clock, no I/O.

Exponential backoff with *full jitter* (a uniformly random wait in ``[0, min(cap, base·2ⁿ)]``)
spreads the retries of many exporters hitting the same throttled account instead of
synchronising them into waves. A server-sent ``x-acs-retry-after`` wins over the computed wait,
clamped so that a bogus huge value cannot stall a poll. Attempts and total elapsed time are
both bounded, so a dead API costs a poll a known, small amount of time and requests.

>>> import random
>>> policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
>>> [policy.ceiling(n) for n in range(1, 6)]
[1.0, 2.0, 4.0, 8.0, 8.0]
>>> 0.0 <= policy.backoff(3, random.Random(1)) <= 4.0
True
>>> policy.backoff(1, random.Random(1), retry_after=120.0)  # clamped to retry_after_cap
30.0
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds and shape of retries.

    ``max_attempts`` counts the first try; ``max_elapsed`` is the time budget of one call,
    waits included: a retry whose wait would overrun it is not made.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_elapsed: float = 60.0
    retry_after_cap: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.max_elapsed, self.retry_after_cap) < 0:
            raise ValueError("retry delays must not be negative")

    def backoff(
        self, attempt: int, rng: random.Random, *, retry_after: float | None = None
    ) -> float:
        """Seconds to wait after failed attempt number *attempt* (1-based)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.retry_after_cap)
        return float(rng.uniform(0.0, self.ceiling(attempt)))

    def ceiling(self, attempt: int) -> float:
        """The largest jittered wait after failed attempt *attempt*: ``min(cap, base·2ⁿ⁻¹)``."""
        return min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))

    def should_retry(self, attempt: int, elapsed: float, delay: float) -> bool:
        """Whether attempt *attempt* + 1 may be made after waiting *delay* seconds."""
        return attempt < self.max_attempts and elapsed + delay <= self.max_elapsed
