"""The state file on disk: read it, check its directory is writable, write it atomically.

Why atomic: a crash at any instant must leave either the old or the new document, never a mix
(temporary file in the same directory, ``fsync``, ``rename``, ``fsync`` of the directory). The
format itself is :mod:`exporter.core.statecodec`; this is only the I/O edge around it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import structlog

from exporter.core.instance import InstanceState
from exporter.core.statecodec import StateFileError, decode_state, encode_state

__all__ = ["StateStore"]

_log = structlog.get_logger(__name__)


class StateStore:
    """Reads and atomically writes the state file at ``path``.

    ``check_writable()`` is called at start-up so that an unwritable directory is reported
    at once, not after the first poll.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, InstanceState] | None:
        """The saved instances, or ``None`` when there is no file yet (a first start)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise StateFileError(
                f"state file {self.path} is a directory; point the state file setting at a "
                f"file inside it, e.g. {self.path}/state.json"
            ) from None
        except OSError as exc:
            raise StateFileError(
                f"cannot read state file {self.path}: {exc.strerror}; fix its permissions "
                "(the exporter's user must read and write it) or choose another path"
            ) from None
        return decode_state(data, str(self.path))

    def check_writable(self) -> None:
        """Create the directory if needed and prove a file can be made in it.

        A missing directory is created, but loudly (WARNING): it usually means a first start,
        yet a typo in the path looks exactly the same and silently restarts every counter.
        """
        directory = self.path.parent
        created = not directory.exists()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-", delete=True):
                pass
        except OSError as exc:
            raise StateFileError(
                f"state directory {directory} is not writable ({exc.strerror}); mount a "
                "writable volume there, fix its permissions, or choose another state file path"
            ) from None
        if created:
            _log.warning(
                "state directory did not exist and was created: counting starts from scratch "
                "and the first poll reads lookback_seconds of history; if the state file path "
                "has a typo, stop the exporter and fix it",
                path=str(self.path),
                directory=str(directory),
            )

    def save(self, instances: Mapping[str, InstanceState]) -> int:
        """Write atomically; returns the number of bytes written. Raises ``OSError``."""
        data = encode_state(instances)
        directory = self.path.parent
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _fsync_directory(directory)
        return len(data)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
