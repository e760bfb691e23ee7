"""Tune glibc's allocator so a long-running exporter gives memory back after each poll.

Why: every poll renders the exposition (tens of MiB of short-lived strings for 15,000 series)
and may fold large listings. glibc serves such mid-sized blocks from its heap and keeps freed
space mapped, so RSS ratchets up to the high-water mark of the worst poll. Serving blocks of
128 KiB and more with ``mmap`` (returned to the system on ``free``) and trimming the heap
eagerly keeps RSS near the working set: about 20 MB less in steady state at 100 targets
(measured with the memory benchmark when the tuning was introduced). Setting
``MALLOC_MMAP_THRESHOLD_`` in the environment does the same; an explicit environment setting
wins over this.

>>> tune_allocator(environ={"MALLOC_MMAP_THRESHOLD_": "65536"})
False
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024
TRIM_THRESHOLD = 256 * 1024


def tune_allocator(environ: Mapping[str, str] = os.environ) -> bool:
    """Apply the thresholds with ``mallopt``; False when not glibc or the user chose already."""
    if "MALLOC_MMAP_THRESHOLD_" in environ or "MALLOC_TRIM_THRESHOLD_" in environ:
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap_ok: bool = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    trim_ok: bool = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return mmap_ok and trim_ok
