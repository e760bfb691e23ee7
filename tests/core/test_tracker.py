"""The tracking algorithm as a pure unit: exactly-once over random histories and crashes."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.core.reconcile import SweepFold, plan_sweep
from exporter.core.tracker import (
    ListingFold,
    ListingOutcome,
    TrackerConfig,
    TrackerState,
    apply_job_check,
    is_terminal,
    jobs_to_recheck,
    plan_window,
)
from exporter.eiam.models import SynchronizationJob

MINUTE = 60_000
CONFIG = TrackerConfig(
    lookback_ms=24 * 60 * MINUTE,
    overlap_ms=10 * MINUTE,
    stuck_after_ms=60 * MINUTE,
    recheck_interval_ms=5 * MINUTE,
)
T0 = 1_800_000_000_000


@dataclass(frozen=True)
class PlannedJob:
    job_id: str
    start: int
    end: int | None  # None: never finishes within the history (stuck)
    status: str
    visible: int = 0  # listed from then on (a late job: later than its start)

    @property
    def late(self) -> bool:
        return self.visible > self.start

    def at(self, now: int) -> SynchronizationJob | None:
        """The job as the API shows it at *now*, or None if it is not listed yet."""
        if now < max(self.start, self.visible):
            return None
        finished = self.end is not None and now >= self.end
        return SynchronizationJob(
            synchronization_job_id=self.job_id,
            start_time=self.start,
            end_time=self.end if finished else None,
            status=self.status if finished else "running",
            target_id="idp_1",
        )


LATENESS = st.one_of(
    st.just(0),  # most jobs are listed from their StartTime
    st.integers(min_value=1, max_value=5 * 60),  # listed this many minutes after StartTime
    st.just(-1),  # listed only once terminal
)
job_plans = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6 * 60),  # start minute
        st.one_of(st.none(), st.integers(min_value=0, max_value=180)),  # duration minutes
        st.sampled_from(["success", "failed", "partial_success", "weird_new_status"]),
        LATENESS,
    ),
    max_size=60,
)
Plan = tuple[int, int | None, str, int]


def build(plans: list[Plan]) -> list[PlannedJob]:
    jobs = []
    for n, (start_min, duration, status, lateness) in enumerate(plans):
        start = T0 + start_min * MINUTE + n  # distinct starts are not required, but realistic
        end = None if duration is None else start + duration * MINUTE
        if lateness == -1:  # its record is written when it ends (never, when it never ends)
            visible = end if end is not None else 2**62
        else:
            visible = start + lateness * MINUTE
        jobs.append(PlannedJob(f"sync_{n:03d}", start, end, status, visible))
    return jobs


def listing(jobs: list[PlannedJob], window: int, now: int, rng: random.Random) -> list:
    """A listing that may be inconsistent: jobs seen at slightly different moments (a page read
    later shows newer state), duplicates across pages, server order shuffled, and a few jobs
    below the window that an imprecise server filter lets through."""
    shown = []
    for planned in jobs:
        moment = now - rng.choice([0, 0, 0, MINUTE])  # earlier pages were read a bit earlier
        snapshot = planned.at(moment)
        if snapshot is None:
            continue
        if snapshot.start_time is not None and snapshot.start_time < window:
            if rng.random() < 0.1:
                shown.append(planned.at(now))  # imprecise filter leaks an old job
            continue
        shown.append(snapshot)
        if rng.random() < 0.1:
            later = planned.at(now)
            if later is not None:
                shown.append(later)  # the same job again on a later page
    rng.shuffle(shown)
    return [j for j in shown if j is not None]


def sweep_listing(
    jobs: list[PlannedJob], low: int, high: int, now: int, rng: random.Random
) -> list:
    """What a sweep over StartTimes [low, high) reads: like :func:`listing`, with a leaky
    filter at both ends."""
    shown = []
    for planned in jobs:
        snapshot = planned.at(now - rng.choice([0, 0, MINUTE]))
        if snapshot is None:
            continue
        if not low <= planned.start < high and rng.random() >= 0.1:
            continue
        shown.append(snapshot)
    rng.shuffle(shown)
    return shown


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plans=job_plans,
    poll_gaps=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=40),
    crash_rate=st.sampled_from([0.0, 0.2, 0.5]),
    sweep_every=st.sampled_from([7, 20, 60, 180]),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_terminal_job_is_counted_exactly_once(
    plans: list[Plan],
    poll_gaps: list[int],
    crash_rate: float,
    sweep_every: int,
    seed: int,
) -> None:
    """Random histories with late jobs (listed minutes or hours after their StartTime, or only
    once terminal), polls at random intervals, sweeps every *sweep_every* minutes (so at
    random points of the history), and crashes at every step of a poll: every terminal job is
    counted exactly once, and the late count is exactly the jobs only a sweep found."""
    rng = random.Random(seed)
    config = replace(CONFIG, reconcile_interval_ms=sweep_every * MINUTE)
    jobs = build(plans)
    by_id = {j.job_id: j for j in jobs}
    first_poll = T0 - 5 * MINUTE
    state = TrackerState.initial()
    counted: list[str] = []
    late_found: list[str] = []  # counted jobs that the listing never returned in the window
    now = first_poll
    api_calls = 0

    def crashed() -> bool:
        return rng.random() < crash_rate / 3  # at any of the three steps below

    def poll(now: int) -> None:
        nonlocal state, api_calls
        window = plan_window(state, now, config)
        # page by page, terminal jobs taken after every page, exactly as the poller folds
        fold = ListingFold(state, window, now, config)
        found: list[str] = []
        late: list[str] = []
        listed = listing(jobs, window, now, rng)
        while listed:
            size = rng.randint(1, 7)
            for job in listed[:size]:
                fold.add(job)
            listed = listed[size:]
            found += [j.synchronization_job_id for j in fold.take_terminal()]
        outcome = fold.finish()
        candidate = outcome.state
        found += [j.synchronization_job_id for j in outcome.newly_terminal]
        if crashed():
            return  # crashed before the state was persisted: the poll never happened
        plan = plan_sweep(candidate, now, config)
        if plan is not None:
            before = candidate
            sweep = SweepFold(candidate, plan, now, config)
            listed = sweep_listing(jobs, plan.from_ms, plan.until_ms, now, rng)
            while listed:
                size = rng.randint(1, 7)
                for job in listed[:size]:
                    sweep.add(job)
                listed = listed[size:]
                for done in sweep.take_terminal():
                    job_id = done.synchronization_job_id
                    found.append(job_id)
                    known = before.in_progress.get(job_id)
                    if known is None or known.late:
                        late.append(job_id)
            swept = sweep.finish()
            assert not swept.newly_terminal
            assert swept.state.next_sweep_ms == now + config.reconcile_interval_ms
            candidate = swept.state
            if crashed():
                return
        for job_id in jobs_to_recheck(candidate, now, config):
            # only jobs watched in progress for longer than stuck_after are checked alone (the
            # window holds for every other running job: the API budget depends on it) — and
            # jobs a sweep found, which are below the window from the start
            progress = candidate.in_progress[job_id]
            watched = now - progress.first_seen_ms
            assert watched >= config.stuck_after_ms or progress.late
            api_calls += 1
            candidate, done = apply_job_check(candidate, job_id, by_id[job_id].at(now), now)
            if done is not None:
                found.append(done.synchronization_job_id)
                if progress.late:
                    late.append(job_id)
        if crashed():
            return
        assert candidate.late_jobs == state.late_jobs + len(late)
        state = candidate
        counted.extend(found)
        late_found.extend(late)

    # the history, with polls at random intervals, then long enough for everything to finish,
    # appear and be swept
    for gap in poll_gaps:
        now += gap * MINUTE
        poll(now)
    seen_by = [max(j.end or j.start, j.visible) for j in jobs if j.visible < 2**62]
    end_of_history = max(seen_by, default=now)
    settle_until = end_of_history + 2 * max(
        config.recheck_interval_ms, config.reconcile_interval_ms
    )
    while now <= settle_until or (crash_rate and rng.random() < 0.5):
        now += 7 * MINUTE
        poll(now)
    saved, crash_rate = crash_rate, 0.0
    for _ in range(3 + 2 * config.reconcile_interval_ms // (7 * MINUTE)):  # settle, crash-free
        now += 7 * MINUTE
        poll(now)
    crash_rate = saved

    expected = sorted(
        j.job_id
        for j in jobs
        if j.end is not None and j.visible < 2**62 and j.start >= first_poll - config.lookback_ms
    )
    assert sorted(counted) == expected  # each exactly once: no loss, no double count
    stuck = {j.job_id for j in jobs if j.end is None and j.visible < 2**62}
    assert set(state.in_progress) == stuck
    assert state.late_jobs == len(late_found)
    assert set(late_found) <= {j.job_id for j in jobs if j.late}  # only late jobs are late


def test_window_never_moves_backwards_and_holds_for_running_jobs() -> None:
    state = TrackerState.initial()
    now = T0
    window = plan_window(state, now, CONFIG)
    running = SynchronizationJob(
        synchronization_job_id="a", start_time=T0 - MINUTE, status="running"
    )
    newer = SynchronizationJob(
        synchronization_job_id="b",
        start_time=T0 + 30 * MINUTE,
        end_time=T0 + 31 * MINUTE,
        status="success",
    )
    outcome = fold_all(state, window, [running, newer], T0 + 32 * MINUTE, CONFIG)
    assert outcome.state.window_start_ms == T0 - MINUTE  # held by the running job
    assert [j.synchronization_job_id for j in outcome.newly_terminal] == ["b"]


def test_a_stuck_job_leaves_the_window_and_is_rechecked_alone() -> None:
    state = TrackerState.initial()
    now = T0
    stuck = SynchronizationJob(synchronization_job_id="stuck", start_time=T0, status="running")
    outcome = fold_all(state, plan_window(state, now, CONFIG), [stuck], now, CONFIG)
    state = outcome.state
    # many hours later, with newer jobs seen, the window has moved past the stuck job
    later = T0 + 5 * 60 * MINUTE
    fresh = SynchronizationJob(
        synchronization_job_id="fresh",
        start_time=later - MINUTE,
        end_time=later,
        status="success",
    )
    window = plan_window(state, later, CONFIG)
    assert window == T0 - CONFIG.overlap_ms  # nothing newer seen yet
    state = fold_all(state, window, [stuck, fresh], later, CONFIG).state
    assert state.window_start_ms == later - MINUTE - CONFIG.overlap_ms
    assert [p.job.synchronization_job_id for p in state.out_of_window()] == ["stuck"]
    assert jobs_to_recheck(state, later, CONFIG) == []  # just checked by the listing
    due = later + CONFIG.recheck_interval_ms
    assert jobs_to_recheck(state, due, CONFIG) == ["stuck"]
    finished = stuck.model_copy(update={"status": "failed", "end_time": due})
    state, done = apply_job_check(state, "stuck", finished, due)
    assert done is not None and done.status == "failed"
    assert state.in_progress == {}
    state, again = apply_job_check(state, "stuck", finished, due)
    assert again is None  # never counted twice


def test_vanished_job_is_dropped_uncounted() -> None:
    state = TrackerState.initial()
    job = SynchronizationJob(synchronization_job_id="x", start_time=T0, status="pending")
    state = fold_all(state, plan_window(state, T0, CONFIG), [job], T0, CONFIG).state
    state, done = apply_job_check(state, "x", None, T0 + MINUTE)
    assert done is None and state.in_progress == {}


def test_terminal_detection() -> None:
    def make(status: str | None, end: int | None = None) -> SynchronizationJob:
        return SynchronizationJob(synchronization_job_id="j", status=status, end_time=end)

    assert is_terminal(make("success")) and is_terminal(make("partial_success"))
    assert is_terminal(make("FAILED"))
    assert not is_terminal(make("running", end=5))  # documented in-progress status wins
    assert not is_terminal(make("suspending"))
    assert not is_terminal(make("brand_new"))  # unknown without EndTime: in progress
    assert is_terminal(make("brand_new", end=5))  # unknown with EndTime: final
    assert not is_terminal(make(None))


def test_counted_ids_are_pruned_below_the_window() -> None:
    state = TrackerState.initial()
    now = T0
    jobs = [
        SynchronizationJob(
            synchronization_job_id=f"j{n}",
            start_time=T0 + n * 60 * MINUTE,
            end_time=T0 + n * 60 * MINUTE + 1,
            status="success",
        )
        for n in range(48)
    ]
    for hour in range(48):
        now = T0 + hour * 60 * MINUTE + 2
        window = plan_window(state, now, CONFIG)
        visible = [j for j in jobs if j.start_time is not None and window <= j.start_time <= now]
        state = fold_all(state, window, visible, now, CONFIG).state
    assert len(state.counted) <= 2  # memory stays bounded: only IDs inside the window remain


def fold_all(
    state: TrackerState, window: int, jobs: list[SynchronizationJob], now: int, config: Any
) -> ListingOutcome:
    """A whole listing in one page."""
    fold = ListingFold(state, window, now, config)
    for job in jobs:
        fold.add(job)
    return fold.finish()
