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
>>> handler(loop, {"message": "Exception in callback <Handle at 0x7f01>",
...                "exception": ValueError()})
>>> handler(loop, {"message": "Exception in callback <Handle at 0x7f99>",
...                "exception": ValueError()})
>>> len(seen), seen[0][1]["exception"], seen[1][1]["exception"]
(2, 'OSError', 'ValueError')
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["LoopErrorLog", "install"]

_log = structlog.get_logger(__name__)
_VARYING = re.compile(r"0x[0-9a-fA-F]+|\d+")
_KINDS = 256
"""Kinds remembered at most: the memory of this handler is bounded too."""


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
        # "Exception in callback <Handle ... at 0x7f...>" differs per call: the kind is the
        # message without addresses and numbers, and what raised
        shape = _VARYING.sub("#", message)[:80]
        kind = (shape, type(exception).__name__ if exception is not None else "")
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        if kind not in self._last and len(self._last) >= _KINDS:
            self._last.pop(next(iter(self._last)))  # the oldest kind makes room
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
