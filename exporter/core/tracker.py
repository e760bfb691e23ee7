"""Which jobs are new, which are still running, which just finished: exactly-once, no I/O.

The tracker is the algorithm the exporter's correctness rests on, kept pure so it can be
property-tested against random histories, page splits and crashes.

Vocabulary
    *window start*: the StartTime (ms) from which the next ListSynchronizationJobs query
    reads. It is ``min(watermark − overlap, StartTime of the oldest job in progress)`` and
    never moves backwards. Everything the server returns below it is ignored, so pruning
    IDs below it can never cause a double count.

    *watermark*: the highest StartTime seen so far.

    *counted*: IDs of jobs already counted (with their StartTime, for pruning). A job is
    counted exactly once, the first time it is seen terminal. When the window moves past
    them, they move on to *retained* (:class:`~exporter.core.retained.RetainedIds`), compact,
    for the reconciliation sweep (:mod:`exporter.core.reconcile`), which re-lists up to
    ``reconcile_window_ms`` below the window to find *late* jobs: those the listing showed
    only after the window had passed their StartTime.

    *in progress*: jobs seen but not yet terminal. They hold the window open, so the next
    listing sees them again, unless they have been in progress for longer than
    ``stuck_after_ms`` (by the local clock, which is immune to server clock skew): then they
    are *out of window* and re-checked one by one with GetSynchronizationJob, so one stuck
    job never forces re-reading days of history on every poll.

Every operation returns a new :class:`TrackerState`; the poller persists it before anything
counted in it becomes visible, and a crash before that simply means the poll never happened.

>>> config = TrackerConfig(lookback_ms=3_600_000, overlap_ms=60_000, stuck_after_ms=600_000)
>>> state = TrackerState.initial()
>>> window = plan_window(state, now_ms=10_000_000, config=config)
>>> window
6400000
>>> running = SynchronizationJob(synchronization_job_id="a", start_time=9_000_000,
...                              status="running")
>>> fold = ListingFold(state, window, now_ms=10_000_000, config=config)
>>> fold.add(running)                       # one job of a page of the listing
>>> outcome = fold.finish()
>>> outcome.newly_terminal, sorted(outcome.state.in_progress)
([], ['a'])
>>> done = running.model_copy(update={"status": "success", "end_time": 9_500_000})
>>> fold = ListingFold(outcome.state, plan_window(outcome.state, 10_060_000, config),
...                    now_ms=10_060_000, config=config)
>>> fold.add(done)
>>> later = fold.finish()
>>> [j.synchronization_job_id for j in later.newly_terminal], later.state.in_progress
(['a'], {})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from exporter.core.retained import RETAINED_CAP, RetainedIds
from exporter.eiam.models import IN_PROGRESS_STATUSES, TERMINAL_STATUSES, SynchronizationJob

__all__ = [
    "FoldBase",
    "InProgressJob",
    "ListingFold",
    "ListingOutcome",
    "TrackerConfig",
    "TrackerState",
    "apply_job_check",
    "is_terminal",
    "jobs_to_recheck",
    "plan_window",
    "prune",
]


def is_terminal(job: SynchronizationJob) -> bool:
    """Final: a documented final status, or any status other than the known in-progress
    ones once the job has an EndTime (an unknown status without EndTime is in progress)."""
    status = (job.status or "").lower()
    if status in TERMINAL_STATUSES:
        return True
    if status in IN_PROGRESS_STATUSES:
        return False
    return job.end_time is not None


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Tuning of the algorithm; all durations in milliseconds.

    ``reconcile_window_ms`` 0 turns the reconciliation sweep off (and keeps no IDs below the
    window); ``retained_cap`` bounds the IDs kept for it.
    """

    lookback_ms: int = 24 * 3600 * 1000
    overlap_ms: int = 5 * 60 * 1000
    stuck_after_ms: int = 60 * 60 * 1000
    recheck_interval_ms: int = 5 * 60 * 1000
    reconcile_interval_ms: int = 60 * 60 * 1000
    reconcile_window_ms: int = 24 * 3600 * 1000
    retained_cap: int = RETAINED_CAP


@dataclass(frozen=True, slots=True)
class InProgressJob:
    """A job seen pending/running. ``job`` is its latest snapshot (for the in-progress gauges).

    ``late``: found by a reconciliation sweep, never by the listing; counted as late when it
    ends.
    """

    job: SynchronizationJob
    first_seen_ms: int
    last_checked_ms: int
    late: bool = False

    @property
    def start_time_ms(self) -> int:
        return self.job.start_time if self.job.start_time is not None else self.first_seen_ms


@dataclass(frozen=True, slots=True)
class TrackerState:
    """Everything the tracker knows about one instance. Immutable; persisted as a whole.

    The sweep's part: ``retained`` (counted IDs below the window), ``next_sweep_ms`` and
    ``last_sweep_ms`` (local clock, like ``first_seen_ms``: the sweep's schedule survives a
    restart), ``late_jobs`` (jobs counted that only a sweep found, ever).
    """

    window_start_ms: int | None
    watermark_ms: int | None
    counted: Mapping[str, int] = field(default_factory=dict)
    in_progress: Mapping[str, InProgressJob] = field(default_factory=dict)
    retained: RetainedIds = field(default_factory=RetainedIds)
    next_sweep_ms: int | None = None
    last_sweep_ms: int | None = None
    late_jobs: int = 0

    @classmethod
    def initial(cls) -> TrackerState:
        return cls(window_start_ms=None, watermark_ms=None)

    def out_of_window(self) -> list[InProgressJob]:
        """In-progress jobs the listing no longer covers (they need GetSynchronizationJob)."""
        start = self.window_start_ms
        if start is None:
            return []
        return [p for p in self.in_progress.values() if p.start_time_ms < start]


@dataclass(frozen=True, slots=True)
class ListingOutcome:
    """The result of applying one listing: the next state and what to count."""

    state: TrackerState
    newly_terminal: list[SynchronizationJob]
    listed: int
    new: int


def plan_window(state: TrackerState, now_ms: int, config: TrackerConfig) -> int:
    """The StartTime (ms) the next listing must start from."""
    if state.window_start_ms is None:
        return max(0, now_ms - config.lookback_ms)
    candidates = [state.window_start_ms]
    if state.watermark_ms is not None:
        candidates.append(state.watermark_ms - config.overlap_ms)
    else:
        # nothing seen yet: keep reading from where we started
        return state.window_start_ms
    holding = [
        p.start_time_ms
        for p in state.in_progress.values()
        if now_ms - p.first_seen_ms < config.stuck_after_ms
        and p.start_time_ms >= state.window_start_ms
    ]
    target = min([candidates[1], *holding])
    return max(state.window_start_ms, target)


class FoldBase:
    """What every fold of a listing into a :class:`TrackerState` shares (:class:`ListingFold`,
    :class:`~exporter.core.reconcile.SweepFold`): the state it starts from, copies of its
    counted and in-progress jobs to fold into, and the jobs made countable, handed out page by
    page in EndTime order (each once, ever)."""

    def __init__(self, state: TrackerState, now_ms: int, config: TrackerConfig) -> None:
        self._state = state
        self._now = now_ms
        self._config = config
        self._counted = dict(state.counted)
        self._in_progress = dict(state.in_progress)
        self._terminal: list[SynchronizationJob] = []
        self.listed = 0

    def add(self, job: SynchronizationJob) -> None:
        """Fold one job of a page of the listing in."""
        raise NotImplementedError

    def take_terminal(self) -> list[SynchronizationJob]:
        """The jobs that became countable since the last call (each once, ever)."""
        done, self._terminal = self._terminal, []
        done.sort(key=lambda j: (j.end_time or 0, j.start_time or 0, j.synchronization_job_id))
        return done


class ListingFold(FoldBase):
    """Folds one listing into a state job by job, holding only the jobs still in progress.

    Why incremental: a first start or a catch-up can list tens of thousands of jobs; folding
    page by page (and handing finished jobs to the ledger as they come, :meth:`take_terminal`)
    keeps memory at one page instead of the whole listing. A job seen twice in one listing
    (pages read at different moments) is handled like any later sighting: counted the first
    time it is seen terminal, never again.

    >>> config = TrackerConfig()
    >>> fold = ListingFold(TrackerState.initial(), 0, now_ms=10, config=config)
    >>> fold.add(SynchronizationJob(synchronization_job_id="a", start_time=5, status="running"))
    >>> fold.add(SynchronizationJob(synchronization_job_id="a", start_time=5, status="success"))
    >>> [j.synchronization_job_id for j in fold.take_terminal()], fold.new
    (['a'], 1)
    """

    def __init__(
        self, state: TrackerState, window_start_ms: int, now_ms: int, config: TrackerConfig
    ) -> None:
        super().__init__(state, now_ms, config)
        self._window = window_start_ms
        self._watermark = state.watermark_ms
        self.new = 0
        self.counted = 0

    def add(self, job: SynchronizationJob) -> None:
        self.listed += 1
        start = job.start_time
        if start is not None:
            if start < self._window:
                return  # the server's filter is imprecise; the window is authoritative
            watermark = self._watermark
            self._watermark = start if watermark is None else max(watermark, start)
        job_id = job.synchronization_job_id
        if job_id in self._counted:
            return
        known = self._in_progress.get(job_id)
        if known is None:
            self.new += 1
        if is_terminal(job):
            self._terminal.append(job)
            self.counted += 1
            self._counted[job_id] = start if start is not None else self._now
            if known is not None:
                del self._in_progress[job_id]
        else:
            first_seen = known.first_seen_ms if known else self._now
            late = known.late if known else False
            self._in_progress[job_id] = InProgressJob(job, first_seen, self._now, late)

    def finish(self) -> ListingOutcome:
        """The next state (window moved, old IDs pruned) and any jobs not yet taken."""
        config, now = self._config, self._now
        state = replace(
            self._state,
            window_start_ms=self._window,
            watermark_ms=self._watermark,
            counted=self._counted,
            in_progress=self._in_progress,
            retained=self._state.retained.starting_at(self._window),
        )
        state = replace(state, window_start_ms=plan_window(state, now, config))
        # the sweep's clock starts with the first listing (which read everything the first
        # sweep would) and never waits longer than one interval, whatever the clock did
        due = state.next_sweep_ms
        if due is None or due - now > config.reconcile_interval_ms:
            state = replace(state, next_sweep_ms=now + config.reconcile_interval_ms)
        return ListingOutcome(prune(state, config), self.take_terminal(), self.listed, self.new)


def prune(state: TrackerState, config: TrackerConfig) -> TrackerState:
    """Move counted IDs below the window to ``retained`` (no listing from the window on can
    return them any more), and forget retained ones below the reconcile window.

    >>> config = TrackerConfig(reconcile_window_ms=300_000)
    >>> state = TrackerState(600_000, 660_000,
    ...                      counted={"a": 450_000, "b": 180_000, "c": 650_000},
    ...                      retained=RetainedIds(from_ms=120_000))
    >>> state = prune(state, config)
    >>> sorted(state.counted), len(state.retained), state.retained.from_ms
    (['c'], 1, 300000)
    """
    start = state.window_start_ms
    if start is None:
        return state
    below = [(job_id, ts) for job_id, ts in state.counted.items() if ts < start]
    retained = state.retained.starting_at(start)
    if config.reconcile_window_ms > 0:
        retained = retained.with_counted(below).pruned(
            start - config.reconcile_window_ms, config.retained_cap
        )
    elif len(retained) or retained.from_ms != start:
        retained = RetainedIds(from_ms=start)  # the sweep is off: nothing kept below the window
    if not below and retained is state.retained:
        return state
    counted = {job_id: ts for job_id, ts in state.counted.items() if ts >= start}
    return replace(state, counted=counted, retained=retained)


def jobs_to_recheck(state: TrackerState, now_ms: int, config: TrackerConfig) -> list[str]:
    """Out-of-window jobs due for a GetSynchronizationJob, oldest check first."""
    due = [
        p for p in state.out_of_window() if now_ms - p.last_checked_ms >= config.recheck_interval_ms
    ]
    due.sort(key=lambda p: p.last_checked_ms)
    return [p.job.synchronization_job_id for p in due]


def apply_job_check(
    state: TrackerState, job_id: str, job: SynchronizationJob | None, now_ms: int
) -> tuple[TrackerState, SynchronizationJob | None]:
    """Fold one GetSynchronizationJob answer in; returns the job to count, if it finished.

    ``job=None`` means the server no longer knows the job: it is dropped uncounted (there is
    nothing to count), and the caller logs it.
    """
    known = state.in_progress.get(job_id)
    if known is None:
        return state, None
    in_progress = dict(state.in_progress)
    if job is None:
        del in_progress[job_id]
        return replace(state, in_progress=in_progress), None
    if is_terminal(job):
        del in_progress[job_id]
        counted = dict(state.counted)
        counted[job_id] = job.start_time if job.start_time is not None else now_ms
        late = state.late_jobs + known.late
        return replace(state, in_progress=in_progress, counted=counted, late_jobs=late), job
    in_progress[job_id] = InProgressJob(job, known.first_seen_ms, now_ms, known.late)
    return replace(state, in_progress=in_progress), None
