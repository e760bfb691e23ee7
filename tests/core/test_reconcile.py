"""The reconciliation sweep's edges: its schedule, its reach, the cap on retained IDs."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.core.reconcile import SweepFold, plan_sweep
from exporter.core.retained import RetainedIds, fingerprint
from exporter.core.tracker import (
    ListingFold,
    TrackerConfig,
    TrackerState,
    apply_job_check,
    plan_window,
)
from exporter.eiam.models import SynchronizationJob

MINUTE = 60_000
HOUR = 60 * MINUTE
T0 = 1_800_000_000_000
CONFIG = TrackerConfig(
    lookback_ms=24 * HOUR,
    overlap_ms=5 * MINUTE,
    reconcile_interval_ms=HOUR,
    reconcile_window_ms=24 * HOUR,
)


def job(job_id: str, start: int, status: str = "success") -> SynchronizationJob:
    end = start + MINUTE if status != "running" else None
    return SynchronizationJob(
        synchronization_job_id=job_id, start_time=start, end_time=end, status=status
    )


def poll(state: TrackerState, now: int, jobs: list[SynchronizationJob], config: TrackerConfig):
    fold = ListingFold(state, plan_window(state, now, config), now, config)
    for item in jobs:
        fold.add(item)
    return fold.finish()


def sweep(state: TrackerState, now: int, jobs: list[SynchronizationJob], config: TrackerConfig):
    plan = plan_sweep(state, now, config)
    assert plan is not None, "a sweep was due"
    fold = SweepFold(state, plan, now, config)
    for item in jobs:
        fold.add(item)
    return plan, fold.finish()


def test_the_first_sweep_waits_an_interval_and_a_restart_keeps_the_schedule() -> None:
    state = poll(TrackerState.initial(), T0, [job("a", T0 - HOUR)], CONFIG).state
    assert state.next_sweep_ms == T0 + HOUR  # the first listing read what a sweep would
    assert plan_sweep(state, T0 + HOUR - 1, CONFIG) is None
    later = poll(state, T0 + 30 * MINUTE, [], CONFIG).state
    assert later.next_sweep_ms == T0 + HOUR  # not pushed back by polls (or restarts)
    assert plan_sweep(later, T0 + HOUR, CONFIG) is not None
    _plan, outcome = sweep(later, T0 + HOUR, [], CONFIG)
    assert outcome.state.last_sweep_ms == T0 + HOUR
    assert outcome.state.next_sweep_ms == T0 + 2 * HOUR


def test_a_clock_moved_back_or_a_shorter_interval_never_postpones_beyond_one_interval() -> None:
    state = poll(TrackerState.initial(), T0, [], CONFIG).state
    back = poll(state, T0 - 10 * HOUR, [], CONFIG).state  # the local clock jumped back
    assert back.next_sweep_ms == T0 - 9 * HOUR
    shorter = TrackerConfig(reconcile_interval_ms=10 * MINUTE, reconcile_window_ms=HOUR)
    assert poll(state, T0, [], shorter).state.next_sweep_ms == T0 + 10 * MINUTE


def test_the_sweep_is_off_with_a_zero_window_and_keeps_no_ids() -> None:
    off = TrackerConfig(reconcile_window_ms=0)
    state = poll(TrackerState.initial(), T0, [job("a", T0 - HOUR)], off).state
    state = poll(state, T0 + 2 * HOUR, [job("b", T0 + HOUR)], off).state
    assert plan_sweep(state, T0 + 10 * HOUR, off) is None
    assert len(state.retained) == 0 and state.counted.keys() == {"b"}


def test_a_state_from_before_the_sweep_is_never_swept_below_its_window() -> None:
    """A schema-1 state file knows counted IDs only from its window on: the jobs below were
    counted and forgotten. The first sweeps must not count them again."""
    window = T0 - 10 * MINUTE
    old = TrackerState(
        window_start_ms=window,
        watermark_ms=T0 - 5 * MINUTE,
        counted={"recent": T0 - 5 * MINUTE},
        retained=RetainedIds(from_ms=window),  # what the codec gives a schema-1 file
        next_sweep_ms=None,
    )
    state = poll(old, T0, [job("recent", T0 - 5 * MINUTE), job("new", T0 + MINUTE)], CONFIG).state
    plan, outcome = sweep(
        state,
        T0 + HOUR,
        [job("forgotten", T0 - 5 * HOUR), job("recent", T0 - 5 * MINUTE)],
        CONFIG,
    )
    assert plan.from_ms == window and plan.shortened
    assert outcome.newly_terminal == [] and outcome.state.late_jobs == 0


def test_a_sweep_found_running_job_is_rechecked_and_counted_once_as_late() -> None:
    state = poll(TrackerState.initial(), T0, [job("a", T0 - MINUTE)], CONFIG).state
    state = poll(state, T0 + HOUR, [job("b", T0 + HOUR - MINUTE)], CONFIG).state
    hidden = job("hidden", T0 + 10 * MINUTE, "running")
    _plan, outcome = sweep(state, T0 + HOUR, [hidden], CONFIG)
    state = outcome.state
    assert outcome.found == 1 and outcome.late == 0 and state.in_progress["hidden"].late
    assert [p.job.synchronization_job_id for p in state.out_of_window()] == ["hidden"]
    done = job("hidden", T0 + 10 * MINUTE)
    state, counted = apply_job_check(state, "hidden", done, T0 + HOUR + 5 * MINUTE)
    assert counted is not None and state.late_jobs == 1
    # the next sweep lists it again: it is retained, so not counted twice
    state = poll(state, T0 + 2 * HOUR, [], CONFIG).state
    assert state.retained.contains("hidden", T0 + 10 * MINUTE)
    _plan, outcome = sweep(state, T0 + 2 * HOUR, [done], CONFIG)
    assert outcome.newly_terminal == [] and outcome.state.late_jobs == 1


def test_the_cap_drops_the_oldest_ids_and_shortens_the_sweep_never_double_counting() -> None:
    capped = TrackerConfig(
        overlap_ms=MINUTE, reconcile_interval_ms=HOUR, reconcile_window_ms=24 * HOUR,
        retained_cap=10,
    )  # fmt: skip
    jobs = [job(f"j{n:02d}", T0 + n * MINUTE) for n in range(30)]
    state = poll(TrackerState.initial(), T0 + 30 * MINUTE, jobs, capped).state
    state = poll(state, T0 + 40 * MINUTE, [job("next", T0 + 39 * MINUTE)], capped).state
    assert len(state.retained) == 10
    oldest_kept = T0 + 20 * MINUTE  # j20..j29 kept
    assert state.retained.from_ms == oldest_kept
    plan, outcome = sweep(state, T0 + 2 * HOUR, jobs, capped)
    assert plan.from_ms == oldest_kept and plan.shortened
    assert outcome.newly_terminal == []  # j00..j19 are below the sweep's reach, not recounted


def test_retained_ids_prune_by_window_and_survive_bytes() -> None:
    kept = RetainedIds(from_ms=0).with_counted([(f"j{n}", n * 10_000) for n in range(100)])
    assert len(kept) == 100 and len(kept.minutes) == 17  # six IDs a minute
    pruned = kept.pruned(500_000)
    assert pruned.from_ms == 500_000
    assert len(pruned) == 52  # minute 8 (480-539 s) stays whole: vouching needs only >= 500 s
    assert all(pruned.contains(f"j{n}", n * 10_000) for n in range(50, 100))
    assert kept.pruned(400_000).pruned(300_000).from_ms == 400_000  # never lowered
    again = RetainedIds.from_bytes(pruned.from_ms, *pruned.to_bytes())
    assert again == pruned
    minutes, sizes, prints = pruned.to_bytes()
    with pytest.raises(ValueError, match="minutes are not sorted"):
        RetainedIds.from_bytes(500_000, minutes[8:] + minutes[:8], sizes, prints)
    with pytest.raises(ValueError, match="fingerprints are not sorted"):
        RetainedIds.from_bytes(500_000, minutes, sizes, prints[8:] + prints[:8])
    with pytest.raises(ValueError, match="below"):
        RetainedIds.from_bytes(600_000, minutes, sizes, prints)
    with pytest.raises(ValueError, match="pair up"):
        RetainedIds.from_bytes(500_000, minutes, sizes, prints[8:])


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 50), st.integers(0, 200 * MINUTE)), max_size=12),
        max_size=8,
    )
)
def test_retained_ids_hold_exactly_what_was_added_in_any_order(
    batches: list[list[tuple[int, int]]],
) -> None:
    kept = RetainedIds(from_ms=20 * MINUTE)
    offered: set[tuple[str, int]] = set()
    added: set[tuple[str, int]] = set()
    for batch in batches:
        # each job is counted once, ever: a batch holds jobs not offered before
        fresh = dict.fromkeys((f"sync_{n}", start) for n, start in batch)
        items = [item for item in fresh if item not in offered]
        offered |= set(items)
        kept = kept.with_counted(items)
        added |= {item for item in items if item[1] >= 20 * MINUTE}
    held = sorted(
        (minute * MINUTE, value)
        for minute, bucket in zip(kept.minutes, kept.prints, strict=True)
        for value in bucket
    )
    assert held == sorted((s // MINUTE * MINUTE, fingerprint(i)) for i, s in added)
    assert len(kept) == len(added)
    added_minutes = {(i, s // MINUTE) for i, s in added}
    for n in range(51):
        for start in (15 * MINUTE, 20 * MINUTE + 5, 100 * MINUTE, 200 * MINUTE):
            wanted = (f"sync_{n}", start // MINUTE) in added_minutes
            assert kept.contains(f"sync_{n}", start) == wanted
    assert isinstance(kept.minutes, array)
