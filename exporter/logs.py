"""structlog set-up: one JSON object or one readable line per event, on stderr.

Why here and not in every module: log format and level are operator choices (``--log.format``,
``--log.level``); modules only ask ``structlog.get_logger(__name__)`` and log events with
key-value context. Secrets never reach a log call (they are ``SecretStr``), and as a second line
of defence :func:`redact_secrets` masks values of keys that look like secrets.

>>> redact_secrets(None, "info", {"event": "x", "access_key_secret": "abc", "n": 1})
{'event': 'x', 'access_key_secret': '**********', 'n': 1}
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "configure_logging", "redact_secrets"]

LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
LOG_FORMATS = ("console", "json", "logfmt")

_SECRET_MARKERS = ("secret", "password", "token", "authorization", "signature")


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask the value of any key that names a secret, whatever its type."""
    for key in list(event_dict):
        if key != "event" and any(marker in key.lower() for marker in _SECRET_MARKERS):
            event_dict[key] = "**********"
    return event_dict


def configure_logging(
    level: str = "info",
    fmt: Literal["console", "json", "logfmt"] | str = "console",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog (and the stdlib root logger that libraries use) once per process."""
    name = "warning" if level.lower() == "warn" else level.lower()
    numeric = logging.getLevelNamesMapping()[name.upper()]
    out = stream or sys.stderr
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any
    if fmt == "json":
        processors.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    elif fmt == "logfmt":
        processors.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.LogfmtRenderer(key_order=["timestamp", "level", "event"])
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.INFO), stream=out, force=True)
    # httpx logs every request at INFO with the full URL; the client reports requests itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
