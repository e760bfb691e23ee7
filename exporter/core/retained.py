"""Counted job IDs kept below the listing window, for the reconciliation sweep. Pure, compact.

Why it exists: the regular poll forgets a counted ID once the window has moved past its
StartTime (no listing from the window on can return it). The reconciliation sweep
(:mod:`exporter.core.reconcile`) re-lists up to a day below the window, so it must know which
of the jobs there were counted already — for every job counted in that day. A plain
``dict[str, int]`` costs about 150 bytes a job (10 MB for 66,000 jobs a day); this keeps 16:
an 8-byte fingerprint of the ID (BLAKE2b, stable across processes) and the StartTime, in two
parallel arrays sorted by (StartTime, fingerprint). A lookup is a bisection on the StartTime,
which the sweep reads from the job it checks.

*Complete from* ``from_ms``: every job counted with a StartTime from ``from_ms`` up to the
window is here (or still in the tracker's ``counted``). The sweep never lists below it, so a
job it cannot vouch for is never counted a second time. ``from_ms`` only rises: as the window
moves (``pruned``), and when the cap is reached — the oldest IDs go, the sweep's reach shrinks,
and nothing is ever counted twice. A 64-bit fingerprint collision (odds about 1e-10 for a
day of 66,000 jobs) would make the sweep skip one late job, never count one twice.

Values are immutable by convention: every method returns a new :class:`RetainedIds` and never
changes the arrays of an existing one.

>>> kept = RetainedIds(from_ms=1_000).with_counted([("sync_b", 2_000), ("sync_a", 1_500)])
>>> len(kept), kept.contains("sync_a", 1_500), kept.contains("sync_a", 1_501)
(2, True, False)
>>> kept.with_counted([("sync_old", 900)]) == kept  # below from_ms: not vouched for, not kept
True
>>> later = kept.pruned(1_600, cap=10)
>>> later.from_ms, len(later), later.contains("sync_b", 2_000)
(1600, 1, True)
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["RETAINED_CAP", "RetainedIds", "fingerprint"]

RETAINED_CAP = 500_000
"""At most this many IDs are kept (8 MB in memory, about 11 MB in the state file); beyond it the
oldest go and the sweep reaches back less far (see the module docstring)."""


def fingerprint(job_id: str) -> int:
    """A signed 64-bit digest of a job ID, the same in every process.

    >>> fingerprint("sync_a") == fingerprint("sync_a"), -(2**63) <= fingerprint("x") < 2**63
    (True, True)
    """
    digest = hashlib.blake2b(job_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _empty() -> array[int]:
    return array("q")


@dataclass(frozen=True, slots=True)
class RetainedIds:
    """Fingerprints and StartTimes of counted jobs from ``from_ms`` on (see the module)."""

    from_ms: int | None = None
    """None: nothing is vouched for yet (a fresh tracker before its first listing)."""
    starts: array[int] = field(default_factory=_empty)
    prints: array[int] = field(default_factory=_empty)

    def __len__(self) -> int:
        return len(self.starts)

    def contains(self, job_id: str, start_ms: int) -> bool:
        """Whether the job with this ID and StartTime was counted (and is kept here)."""
        starts = self.starts
        lo = bisect_left(starts, start_ms)
        hi = bisect_right(starts, start_ms, lo)
        if lo == hi:
            return False
        wanted = fingerprint(job_id)
        return any(self.prints[i] == wanted for i in range(lo, hi))

    def starting_at(self, from_ms: int) -> RetainedIds:
        """This value vouching from *from_ms* on, when it did not vouch for anything yet."""
        if self.from_ms is not None:
            return self
        return RetainedIds(from_ms, self.starts, self.prints)

    def with_counted(self, counted: Iterable[tuple[str, int]]) -> RetainedIds:
        """A copy holding these (ID, StartTime) too; those below ``from_ms`` are not kept."""
        floor = self.from_ms
        new = sorted(
            (start, fingerprint(job_id))
            for job_id, start in counted
            if floor is not None and start >= floor
        )
        if not new:
            return self
        starts, prints = array("q", self.starts), array("q", self.prints)
        last = (starts[-1], prints[-1]) if starts else None
        if last is None or new[0] >= last:  # the usual case: IDs leave the window in order
            starts.extend(s for s, _ in new)
            prints.extend(p for _, p in new)
        else:  # a re-checked or swept job from further back: insert in place
            for start, print_ in new:
                at = bisect_left(starts, start)
                end = bisect_right(starts, start, at)
                while at < end and prints[at] < print_:
                    at += 1
                starts.insert(at, start)
                prints.insert(at, print_)
        return RetainedIds(floor, starts, prints)

    def pruned(self, floor_ms: int, cap: int = RETAINED_CAP) -> RetainedIds:
        """Vouch only from *floor_ms* on (never lower than before) and keep at most about
        *cap* IDs: when there are more, the oldest go and ``from_ms`` rises past them."""
        from_ms = floor_ms if self.from_ms is None else max(self.from_ms, floor_ms)
        starts = self.starts
        if len(starts) - bisect_left(starts, from_ms) > cap:
            from_ms = starts[len(starts) - cap]
        cut = bisect_left(starts, from_ms)
        if from_ms == self.from_ms and cut == 0:
            return self
        return RetainedIds(from_ms, starts[cut:], self.prints[cut:])

    # -- the state file's form ---------------------------------------------------------------

    def to_bytes(self) -> tuple[bytes, bytes]:
        """(StartTimes, fingerprints) as little-endian 64-bit integers."""
        starts, prints = self.starts, self.prints
        if sys.byteorder != "little":  # pragma: no cover - big-endian machines
            starts, prints = array("q", starts), array("q", prints)
            starts.byteswap()
            prints.byteswap()
        return starts.tobytes(), prints.tobytes()

    @classmethod
    def from_bytes(cls, from_ms: int | None, starts: bytes, prints: bytes) -> RetainedIds:
        """The inverse of :meth:`to_bytes`; ``ValueError`` for arrays that do not fit."""
        if len(starts) != len(prints) or len(starts) % 8:
            raise ValueError("retained IDs: StartTimes and fingerprints do not pair up")
        start_array, print_array = array("q"), array("q")
        start_array.frombytes(starts)
        print_array.frombytes(prints)
        if sys.byteorder != "little":  # pragma: no cover - big-endian machines
            start_array.byteswap()
            print_array.byteswap()
        previous: tuple[int, int] | None = None
        for pair in zip(start_array, print_array, strict=True):  # one pair alive at a time
            if previous is not None and pair < previous:
                raise ValueError("retained IDs are not sorted")
            previous = pair
        if start_array and (from_ms is None or start_array[0] < from_ms):
            raise ValueError("retained IDs start below their from_ms")
        return cls(from_ms, start_array, print_array)
