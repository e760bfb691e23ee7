"""structlog set-up: one JSON object or one readable line per event, on stderr.

Why here and not in every module: log format and level are operator choices (``--log.format``,
``--log.level``); modules only ask ``structlog.get_logger(__name__)`` and log events with
key-value context. Secrets never reach a log call (they are ``SecretStr``), and behind that:

* :func:`redact_secrets` masks values of keys that look like secrets;
* every rendered line, whatever the format and level, tracebacks included, goes through
  :func:`~exporter.eiam.redaction.redact`, which masks every credential value the process holds
  (a server's error message quoting our security token arrives under a harmless key like
  ``error``);
* so do the lines of the standard library's loggers and the traceback of an uncaught exception.

>>> redact_secrets(None, "info", {"event": "x", "access_key_secret": "abc", "n": 1})
{'event': 'x', 'access_key_secret': '**********', 'n': 1}
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any, Literal, TextIO

import structlog

from exporter.eiam.redaction import redact

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "RedactingFormatter",
    "RedactingRenderer",
    "configure_logging",
    "install_redacting_excepthooks",
    "redact_secrets",
]

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


class RedactingRenderer:
    """Wrap a structlog renderer so that the line it renders has every credential masked.

    Why the rendered line and not the event dict: it is the last point before the stream and
    it sees everything, nested values, reprs and the traceback a renderer formats itself.

    >>> from exporter.eiam.redaction import register
    >>> register("Rendered+Token/Example=", "security-token")
    >>> render = RedactingRenderer(structlog.processors.JSONRenderer())
    >>> render(None, "error", {"event": "poll failed", "error": "echo Rendered+Token/Example="})
    '{"event": "poll failed", "error": "echo <redacted:security-token>"}'
    """

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
        rendered = self._renderer(logger, method, event_dict)
        if isinstance(rendered, str):
            return redact(rendered)
        if isinstance(rendered, bytes):
            return redact(rendered.decode("utf-8", "replace")).encode()
        return rendered


class RedactingFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose output (message and traceback) is redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def install_redacting_excepthooks(stream: TextIO | None = None) -> None:
    """Print uncaught exceptions (main thread and others) with credentials masked.

    The interpreter's default hook writes the traceback straight to stderr, past every log
    processor: an exception whose message quotes a server's echo would leak there.
    """

    def write(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        out = stream or sys.stderr
        try:
            out.write(redact("".join(traceback.format_exception(kind, value, tb))))
            out.flush()
        except Exception:  # noqa: S110 - nowhere left to report a failing stderr
            pass

    def excepthook(
        kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        write(kind, value, tb)

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        value = args.exc_value if args.exc_value is not None else args.exc_type()
        write(args.exc_type, value, args.exc_traceback)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


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
        processors=[*processors, RedactingRenderer(renderer)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.INFO), stream=out, force=True)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter(logging.BASIC_FORMAT))
    install_redacting_excepthooks()
    # httpx logs every request at INFO with the full URL; the client reports requests itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
