"""The reconciliation sweep: find late jobs below the listing window and count each once. Pure.

Why: a poll lists jobs by StartTime from ``watermark − overlap``. A job the listing shows only
later than that (an eventually consistent listing, a record written when the job ends, a
lagging server clock) is below the window by the time it appears, and the poll never sees it.
Every ``reconcile_interval_ms`` (local clock) a sweep re-lists the StartTimes from
``window − reconcile_window_ms`` up to the window, and for each job there:

- counted already (``counted`` or ``retained``): nothing to do;
- in progress and known: count it if it has ended (it is late only if a sweep found it);
- unknown and terminal: count it once, as *late*;
- unknown and in progress: track it as in progress, marked late: being below the window it is
  re-checked alone with GetSynchronizationJob (the tracker's out-of-window path) and counted,
  as late, when it ends.

The sweep never lists below ``retained.from_ms``: there it could not tell a counted job from a
late one (a state file from before the sweep existed, a fresh start, the cap). Its outcome is a
new :class:`~exporter.core.tracker.TrackerState`, committed with the poll like everything else:
a crash before the commit means the sweep never happened.

>>> from exporter.core.tracker import TrackerConfig, TrackerState
>>> from exporter.core.retained import RetainedIds
>>> config = TrackerConfig(reconcile_interval_ms=100, reconcile_window_ms=10_000)
>>> state = TrackerState(20_000, 25_000, counted={"seen": 21_000},
...                      retained=RetainedIds(from_ms=5_000).with_counted([("old", 15_000)]),
...                      next_sweep_ms=1_000)
>>> plan = plan_sweep(state, now_ms=1_000, config=config)
>>> plan.from_ms, plan.until_ms
(10000, 20000)
>>> fold = SweepFold(state, plan, now_ms=1_000, config=config)
>>> for job_id, status in [("old", "success"), ("late", "success"), ("late_run", "running")]:
...     fold.add(SynchronizationJob(synchronization_job_id=job_id, start_time=15_000,
...                                 status=status))
>>> outcome = fold.finish()
>>> [j.synchronization_job_id for j in outcome.newly_terminal], outcome.state.late_jobs
(['late'], 1)
>>> outcome.state.in_progress["late_run"].late, outcome.state.next_sweep_ms
(True, 1100)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from exporter.core.tracker import (
    FoldBase,
    InProgressJob,
    TrackerConfig,
    TrackerState,
    is_terminal,
    prune,
)
from exporter.eiam.models import SynchronizationJob

__all__ = ["SweepFold", "SweepOutcome", "SweepPlan", "plan_sweep", "sweep_failed"]


@dataclass(frozen=True, slots=True)
class SweepPlan:
    """The StartTimes a sweep lists: ``from_ms`` inclusive to ``until_ms`` exclusive.

    ``wanted_from_ms`` is where the whole reconcile window would begin; ``from_ms`` is higher
    when the retained IDs do not reach back that far (a fresh start or an older state file for
    the first day, the cap on retained IDs).
    """

    from_ms: int
    until_ms: int
    wanted_from_ms: int

    @property
    def empty(self) -> bool:
        return self.from_ms >= self.until_ms

    @property
    def shortened(self) -> bool:
        return self.from_ms > self.wanted_from_ms


def plan_sweep(state: TrackerState, now_ms: int, config: TrackerConfig) -> SweepPlan | None:
    """The sweep due at *now_ms*, or None (off, not due yet, or no listing so far)."""
    window = state.window_start_ms
    due = state.next_sweep_ms
    if config.reconcile_window_ms <= 0 or window is None or due is None or now_ms < due:
        return None
    wanted = window - config.reconcile_window_ms
    floor = state.retained.from_ms
    start = wanted if floor is None else max(wanted, floor)
    return SweepPlan(from_ms=start, until_ms=window, wanted_from_ms=wanted)


def sweep_failed(state: TrackerState, now_ms: int, config: TrackerConfig) -> TrackerState:
    """The state after a sweep that failed: nothing of it counted, the next attempt a tenth of
    the interval later (a transient error is retried soon, a lasting one does not re-read the
    window at every poll).

    >>> from exporter.core.tracker import TrackerConfig, TrackerState
    >>> config = TrackerConfig(reconcile_interval_ms=3_600_000)
    >>> sweep_failed(TrackerState(0, 0, next_sweep_ms=5), 1_000, config).next_sweep_ms
    361000
    """
    return replace(state, next_sweep_ms=now_ms + max(1, config.reconcile_interval_ms // 10))


@dataclass(frozen=True, slots=True)
class SweepOutcome:
    """The result of one sweep: the next state and what to count (``late`` of them new)."""

    state: TrackerState
    newly_terminal: list[SynchronizationJob]
    listed: int
    found: int
    """Jobs the exporter did not know of (terminal or in progress)."""
    late: int
    """Jobs counted now that only a sweep found (also added to ``state.late_jobs``)."""


class SweepFold(FoldBase):
    """Folds one sweep listing into a state, page by page, like
    :class:`~exporter.core.tracker.ListingFold` (finished jobs taken per page keep memory at
    one page)."""

    def __init__(
        self, state: TrackerState, plan: SweepPlan, now_ms: int, config: TrackerConfig
    ) -> None:
        super().__init__(state, now_ms, config)
        self._plan = plan
        self.found = 0
        self.late = 0

    def add(self, job: SynchronizationJob) -> None:
        self.listed += 1
        start = job.start_time
        plan = self._plan
        if start is None or not plan.from_ms <= start < plan.until_ms:
            return  # outside what the sweep vouches for: the poll's window, or unknowable
        job_id = job.synchronization_job_id
        if job_id in self._counted or self._state.retained.contains(job_id, start):
            return
        known = self._in_progress.get(job_id)
        if known is None:
            self.found += 1
        if is_terminal(job):
            late = known is None or known.late
            self._terminal.append(job)
            self._counted[job_id] = start
            self.late += late
            if known is not None:
                del self._in_progress[job_id]
        elif known is None:
            self._in_progress[job_id] = InProgressJob(job, self._now, self._now, late=True)
        else:  # newer snapshot; its GetSynchronizationJob cadence is the recheck interval's
            self._in_progress[job_id] = replace(known, job=job)

    def finish(self) -> SweepOutcome:
        """The next state: the sweep done (next one an interval from now), IDs settled."""
        state = replace(
            self._state,
            counted=self._counted,
            in_progress=self._in_progress,
            late_jobs=self._state.late_jobs + self.late,
            last_sweep_ms=self._now,
            next_sweep_ms=self._now + self._config.reconcile_interval_ms,
        )
        return SweepOutcome(
            prune(state, self._config), self.take_terminal(), self.listed, self.found, self.late
        )
