"""The event loop's own error reports, logged once a minute at most per kind, never as a flood.

Why: asyncio reports what goes wrong outside any task — a transport's fatal error, an accept
that failed, a callback that raised — through ``loop.call_exception_handler``, whose default
handler logs a full traceback every time. Under a flood of broken clients that is one
traceback per connection (340,000 lines, 144 MB in 40 s were measured before the HTTP server
took over its accept loop). An operator needs to know that it happens and how often, not
every instance: this handler logs the first report of each kind (message and exception type),
then counts the repeats and reports their number with the next line of that kind, one minute
later at the earliest.

>>> import asyncio
>>> seen = []
>>> handler = LoopErrorLog(log=lambda event, **kw: seen.append((event, kw)), clock=lambda: 0.0)
>>> loop = asyncio.new_event_loop()
>>> for _ in range(3):
...     handler(loop, {"message": "socket.accept() out of system resource",
...                    "exception": OSError(24, "Too many open files")})
>>> loop.close()
>>> len(seen), seen[0][1]["exception"]
(1, 'OSError')
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["LoopErrorLog", "install"]

_log = structlog.get_logger(__name__)


class LoopErrorLog:
    """An ``asyncio`` exception handler: one line per kind per ``interval`` seconds."""

    def __init__(
        self,
        *,
        interval: float = 60.0,
        log: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._log = log or _log.error
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message") or "event loop error")
        exception = context.get("exception")
        kind = (message, type(exception).__name__ if exception is not None else "")
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        repeats = self._suppressed.pop(kind, 0)
        self._log(
            "event loop error",
            message=message,
            exception=kind[1] or None,
            detail=str(exception)[:300] if exception is not None else None,
            repeats_since_last_line=repeats,
        )


def install(loop: asyncio.AbstractEventLoop | None = None) -> LoopErrorLog:
    """Make a :class:`LoopErrorLog` the running (or given) loop's exception handler."""
    handler = LoopErrorLog()
    (loop or asyncio.get_running_loop()).set_exception_handler(handler)
    return handler
