"""Clocks for the simulator: the wall clock by default, a manual one for tests.

Why injectable: every timestamp the simulator returns is real epoch milliseconds, so a Prometheus
server on the same machine never sees a job "in the future"; tests, however, need to step time
deterministically (a job is pending, then running, then terminal) without sleeping.

>>> clock = ManualClock(1_700_000_000_000)
>>> clock()
1700000000000
>>> clock.advance(90_000)
1700000090000
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Clock", "ManualClock", "wall_clock_ms"]

Clock = Callable[[], int]
"""A callable returning the current time in epoch milliseconds."""


def wall_clock_ms() -> int:
    """The system clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that only moves when told to; safe to read and move from different threads.

    Time never goes backwards: the simulated world relies on it (a terminal job stays terminal).
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self._now = wall_clock_ms() if start_ms is None else int(start_ms)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        """Move forward by *ms* milliseconds (``ValueError`` if negative); returns the new time."""
        if ms < 0:
            raise ValueError("a manual clock cannot go backwards")
        with self._lock:
            self._now += int(ms)
            return self._now

    def set(self, now_ms: int) -> int:
        """Jump to *now_ms*, which must not be earlier than the current time."""
        with self._lock:
            if now_ms < self._now:
                raise ValueError("a manual clock cannot go backwards")
            self._now = int(now_ms)
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now})"
