"""Each target's rhythm, learned from the StartTimes of its latest jobs. Pure: numbers in and out.

Why the exporter learns it: IDaaS targets run every 10 minutes, hourly, daily or only when
someone presses "sync", and a single "overdue" threshold fits none of them. The exporter sees
every job with its StartTime, so it can tell each target's interval from the jobs it counted,
from its first poll on and across restarts (the window is kept in the state file), without
Prometheus having watched a week of history.

The rules, one place:

- **Window**: the latest :data:`WINDOW` (20) distinct StartTimes among the target's counted jobs,
  each with its trigger type. Jobs arrive in any order; the window keeps the largest StartTimes,
  so the same jobs always give the same window. Two jobs started in the same millisecond are
  one entry (a scheduled one wins over a manual one).
- **Scheduled jobs** are those whose TriggerType is not ``manual`` (``auto``, or missing): the
  scheduler's rhythm is theirs; manual re-runs neither shorten nor disturb it.
- **Schedule class**, in this order: ``learning`` while the window holds fewer than
  :data:`MIN_JOBS` (8) jobs; ``manual`` when more than half of the window was triggered by hand;
  ``learning`` while fewer than 8 of them were scheduled; ``irregular`` when the gaps between
  consecutive scheduled StartTimes are too dispersed — their interquartile range exceeds
  :data:`IRREGULAR_SPREAD` (0.5) times their median; else ``regular``.
- **Interval** (``regular`` only): the median of those gaps. The median, not the mean nor a high
  quantile: one long outage gap or a late run moves it by at most one rank, and a high
  quantile would loosen the overdue threshold of every regular target by its worst gap.

Why 8 jobs: with 7 gaps, a target whose automatic runs come at random (an event-driven sync)
looks regular about 5 % of the time, against 18 % with 5 gaps; and anything syncing every 3 h or
more often is learnt from the 24 h a first start reads. Why 0.5: runs up to 20 % of an interval
late keep the spread below 0.5 (at most 0.4 / 0.8), while random gaps (exponential) have a
spread of about 1.6.

>>> every_10_min = [(k * 600_000 + (k % 3) * 5_000, "auto") for k in range(30)]  # ≤ 10 s late
>>> jobs = every_10_min + [(1_000, "manual")]
>>> cadence = learn(remember((), jobs))
>>> cadence.schedule, cadence.interval_seconds, cadence.last_scheduled_start_ms
('regular', 605.0, 17410000)
>>> learn(remember((), [(k * 3_600_000, "manual") for k in (1, 2, 5, 6, 7, 19, 30, 31)])).schedule
'manual'
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "IRREGULAR_SPREAD",
    "MANUAL",
    "MIN_JOBS",
    "SCHEDULES",
    "WINDOW",
    "Cadence",
    "RecentJob",
    "learn",
    "remember",
]

WINDOW = 20
"""How many of a target's latest distinct StartTimes the cadence is learned from."""
MIN_JOBS = 8
"""Jobs (and scheduled jobs) needed before a target's schedule is judged: 7 gaps."""
IRREGULAR_SPREAD = Fraction(1, 2)
"""Interquartile range of the gaps over their median above which a schedule is irregular."""
MANUAL = "manual"
"""The TriggerType of a job started by hand (the API's other documented value is ``auto``)."""
SCHEDULES = ("learning", "regular", "irregular", "manual")
"""Every schedule class, in the order the state-set gauge lists them."""

RecentJob = tuple[int, str]
"""(StartTime ms, trigger type label) of one counted job."""


@dataclass(frozen=True, slots=True)
class Cadence:
    """What the window says: the class, the interval (regular only), the latest scheduled run."""

    schedule: str
    interval_seconds: float | None
    last_scheduled_start_ms: int | None


def _preferred(a: RecentJob, b: RecentJob) -> RecentJob:
    """Of two jobs started in the same millisecond, the one the window keeps: a scheduled run
    over a manual one, then the smaller label (any order of arrival gives the same choice)."""
    return min(a, b, key=lambda job: (job[1] == MANUAL, job[1]))


def remember(window: tuple[RecentJob, ...], jobs: Iterable[RecentJob]) -> tuple[RecentJob, ...]:
    """The window with *jobs* added: the latest :data:`WINDOW` distinct StartTimes, ascending.

    >>> remember(((5, "auto"),), [(9, "manual"), (1, "auto"), (9, "auto")])
    ((1, 'auto'), (5, 'auto'), (9, 'auto'))
    """
    by_start = dict(window)
    for start, trigger in jobs:
        known = by_start.get(start)
        by_start[start] = (
            trigger if known is None else _preferred((start, known), (start, trigger))[1]
        )
    latest = sorted(by_start)[-WINDOW:]
    return tuple((start, by_start[start]) for start in latest)


def _quantile(ordered: list[int], q: Fraction) -> Fraction:
    """Linear interpolation between closest ranks (numpy's default), in exact arithmetic."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def learn(window: tuple[RecentJob, ...]) -> Cadence:
    """The target's cadence from its window (see the module's rules).

    >>> learn(((0, "auto"), (3_600_000, "auto"))).schedule
    'learning'
    """
    scheduled = [start for start, trigger in window if trigger != MANUAL]
    last = scheduled[-1] if scheduled else None
    manual = len(window) - len(scheduled)
    if len(window) < MIN_JOBS:
        return Cadence("learning", None, last)
    if 2 * manual > len(window):
        return Cadence("manual", None, last)
    if len(scheduled) < MIN_JOBS:
        return Cadence("learning", None, last)
    gaps = sorted(b - a for a, b in itertools.pairwise(scheduled))
    median = _quantile(gaps, Fraction(1, 2))
    spread = _quantile(gaps, Fraction(3, 4)) - _quantile(gaps, Fraction(1, 4))
    if spread > IRREGULAR_SPREAD * median:
        return Cadence("irregular", None, last)
    return Cadence("regular", float(median) / 1000.0, last)
