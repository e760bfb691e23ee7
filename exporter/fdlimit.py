"""Raise the process's file-descriptor limit to what the system allows, as Go programs do.

Why: every connection to the exporter costs a descriptor, and the common default soft limit
(1,024) is far below the hard limit (often 524,288 or more in containers). Go's runtime raises
the soft limit to the hard one at start-up (since Go 1.19), so node_exporter and every other Go
exporter get it for free; a Python process has to ask. The HTTP server derives its connection
cap from the limit in force (see :class:`exporter.web.server.Limits`), so whatever the limit
ends up being, the process never runs out of descriptors for its own API calls and files.

>>> soft, hard = raise_fd_limit()
>>> soft <= hard or hard == resource.RLIM_INFINITY
True
"""

from __future__ import annotations

import resource

__all__ = ["CEILING", "raise_fd_limit"]

CEILING = 1 << 16
"""Never more than this: a bigger table only costs memory, and the cap has to stop somewhere."""


def raise_fd_limit() -> tuple[int, int]:
    """Set the soft ``RLIMIT_NOFILE`` to the hard one (at most :data:`CEILING`); returns the
    (soft, hard) limits in force afterwards. Never lowers a limit and never fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CEILING if hard == resource.RLIM_INFINITY else min(hard, CEILING)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft, hard
        soft = wanted
    return soft, hard
