"""Counted job IDs kept below the listing window, for the reconciliation sweep. Pure, compact.

Why it exists: the regular poll forgets a counted ID once the window has moved past its
StartTime (no listing from the window on can return it). The reconciliation sweep
(:mod:`exporter.core.reconcile`) re-lists up to a day below the window, so it must know which
of the jobs there were counted already — for every job counted in that day. A plain
``dict[str, int]`` costs about 150 bytes a job (10 MB for 66,000 jobs a day); this keeps about
8: an 8-byte fingerprint of the ID (BLAKE2b, stable across processes), in one sorted array per
minute of StartTime. A lookup is two bisections (the minute, then the fingerprint); a poll that
counts jobs copies only the arrays of their minutes, so the committed value and the poll's
candidate share everything else (one copy in memory, not two).

*Complete from* ``from_ms``: every job counted with a StartTime from ``from_ms`` up to the
window is here (or still in the tracker's ``counted``). The sweep never lists below it, so a
job it cannot vouch for is never counted a second time. ``from_ms`` only rises: as the window
moves (``pruned``), and when the cap is reached — the oldest minutes go, the sweep's reach
shrinks, and nothing is ever counted twice. A 64-bit fingerprint collision within one minute
would make the sweep skip one late job, never count one twice.

Values are immutable by convention: every method returns a new :class:`RetainedIds` and never
changes the arrays of an existing one.

>>> kept = RetainedIds(from_ms=1_000).with_counted([("sync_b", 62_000), ("sync_a", 1_500)])
>>> len(kept), kept.contains("sync_a", 1_500), kept.contains("sync_a", 61_500)
(2, True, False)
>>> kept.with_counted([("sync_old", 900)]) == kept  # below from_ms: not vouched for, not kept
True
>>> later = kept.pruned(60_000, cap=10)
>>> later.from_ms, len(later), later.contains("sync_b", 62_000)
(60000, 1, True)
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from bisect import bisect_left, insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise

__all__ = ["MINUTE_MS", "RETAINED_CAP", "RetainedIds", "fingerprint"]

RETAINED_CAP = 500_000
"""At most about this many IDs are kept (4 MB in memory and in the state file); beyond it the
oldest go and the sweep reaches back less far (see the module docstring)."""
MINUTE_MS = 60_000


def fingerprint(job_id: str) -> int:
    """A signed 64-bit digest of a job ID, the same in every process.

    >>> fingerprint("sync_a") == fingerprint("sync_a"), -(2**63) <= fingerprint("x") < 2**63
    (True, True)
    """
    digest = hashlib.blake2b(job_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _minutes() -> array[int]:
    return array("q")


@dataclass(frozen=True, slots=True)
class RetainedIds:
    """Fingerprints of counted jobs from ``from_ms`` on, by minute of StartTime (see the
    module). ``minutes[i]`` is ``StartTime // 60000`` of the jobs in ``prints[i]``, sorted."""

    from_ms: int | None = None
    """None: nothing is vouched for yet (a fresh tracker before its first listing)."""
    minutes: array[int] = field(default_factory=_minutes)
    prints: tuple[array[int], ...] = ()
    count: int = 0

    def __len__(self) -> int:
        return self.count

    def contains(self, job_id: str, start_ms: int) -> bool:
        """Whether the job with this ID and StartTime was counted (and is kept here)."""
        minute = start_ms // MINUTE_MS
        at = bisect_left(self.minutes, minute)
        if at == len(self.minutes) or self.minutes[at] != minute:
            return False
        bucket = self.prints[at]
        wanted = fingerprint(job_id)
        found = bisect_left(bucket, wanted)
        return found < len(bucket) and bucket[found] == wanted

    def starting_at(self, from_ms: int) -> RetainedIds:
        """This value vouching from *from_ms* on, when it did not vouch for anything yet."""
        if self.from_ms is not None:
            return self
        return RetainedIds(from_ms, self.minutes, self.prints, self.count)

    def with_counted(self, counted: Iterable[tuple[str, int]]) -> RetainedIds:
        """A copy holding these (ID, StartTime) too; those below ``from_ms`` are not kept."""
        floor = self.from_ms
        if floor is None:
            return self
        added: dict[int, list[int]] = {}
        for job_id, start in counted:
            if start >= floor:
                added.setdefault(start // MINUTE_MS, []).append(fingerprint(job_id))
        if not added:
            return self
        minutes, prints = list(self.minutes), list(self.prints)
        for minute, new in sorted(added.items()):
            at = bisect_left(minutes, minute)
            if at < len(minutes) and minutes[at] == minute:
                bucket = array("q", prints[at])  # copy: the old value keeps its own
                for value in new:
                    insort(bucket, value)
                prints[at] = bucket
            else:
                minutes.insert(at, minute)
                prints.insert(at, array("q", sorted(new)))
        count = self.count + sum(len(new) for new in added.values())
        return RetainedIds(floor, array("q", minutes), tuple(prints), count)

    def pruned(self, floor_ms: int, cap: int = RETAINED_CAP) -> RetainedIds:
        """Vouch only from *floor_ms* on (never lower than before) and keep at most about
        *cap* IDs: when there are more, the oldest minutes go and ``from_ms`` rises past them."""
        from_ms = floor_ms if self.from_ms is None else max(self.from_ms, floor_ms)
        minutes, prints, count = self.minutes, self.prints, self.count
        cut = bisect_left(minutes, from_ms // MINUTE_MS)  # minutes wholly below from_ms
        count -= sum(len(bucket) for bucket in prints[:cut])
        while count > cap and cut < len(prints):
            count -= len(prints[cut])
            cut += 1
            from_ms = max(from_ms, minutes[cut - 1] * MINUTE_MS + MINUTE_MS)
        if from_ms == self.from_ms and cut == 0:
            return self
        return RetainedIds(from_ms, minutes[cut:], prints[cut:], count)

    # -- the state file's form ---------------------------------------------------------------

    def to_bytes(self) -> tuple[bytes, bytes, bytes]:
        """(minutes, IDs per minute, fingerprints) as little-endian 64-bit integers."""
        sizes = array("q", (len(bucket) for bucket in self.prints))
        flat = array("q")
        for bucket in self.prints:
            flat.extend(bucket)
        minutes = array("q", self.minutes)
        if sys.byteorder != "little":  # pragma: no cover - big-endian machines
            for values in (minutes, sizes, flat):
                values.byteswap()
        return minutes.tobytes(), sizes.tobytes(), flat.tobytes()

    @classmethod
    def from_bytes(
        cls, from_ms: int | None, minutes: bytes, sizes: bytes, prints: bytes
    ) -> RetainedIds:
        """The inverse of :meth:`to_bytes`; ``ValueError`` for arrays that do not fit."""
        arrays = []
        for data in (minutes, sizes, prints):
            if len(data) % 8:
                raise ValueError("retained IDs: not a whole number of 64-bit integers")
            values = array("q")
            values.frombytes(data)
            if sys.byteorder != "little":  # pragma: no cover - big-endian machines
                values.byteswap()
            arrays.append(values)
        minute_array, size_array, flat = arrays
        if len(minute_array) != len(size_array) or sum(size_array) != len(flat):
            raise ValueError("retained IDs: minutes, sizes and fingerprints do not pair up")
        if any(n < 1 for n in size_array) or any(a >= b for a, b in pairwise(minute_array)):
            raise ValueError("retained IDs: minutes are not sorted")
        if minute_array and (from_ms is None or (minute_array[0] + 1) * MINUTE_MS <= from_ms):
            raise ValueError("retained IDs start below their from_ms")
        buckets, at = [], 0
        for size in size_array:
            bucket = flat[at : at + size]
            if any(a > b for a, b in pairwise(bucket)):
                raise ValueError("retained IDs: fingerprints are not sorted")
            buckets.append(bucket)
            at += size
        return cls(from_ms, minute_array, tuple(buckets), len(flat))
