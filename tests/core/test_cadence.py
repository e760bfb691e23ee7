"""A target's cadence learned from the StartTimes of its latest jobs: window, summary, classes."""

from __future__ import annotations

import random
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.core.cadence import (
    IRREGULAR_SPREAD,
    MIN_JOBS,
    WINDOW,
    RecentJob,
    learn,
    remember,
)

HOUR = 3_600_000

recent_jobs = st.lists(
    st.tuples(st.integers(0, 10**12), st.sampled_from(["auto", "manual", "unknown"])),
    max_size=60,
)


def schedule(start: int, interval: int, count: int, jitter: float, seed: int) -> list[RecentJob]:
    """*count* automatic runs every *interval* ms, each up to *jitter* intervals late."""
    rng = random.Random(seed)
    return [
        (start + k * interval + int(rng.random() * jitter * interval), "auto") for k in range(count)
    ]


# -- the window ----------------------------------------------------------------------------


@settings(max_examples=200)
@given(recent_jobs, st.randoms(use_true_random=False), st.integers(1, 7))
def test_the_window_does_not_depend_on_order_or_batches(
    jobs: list[RecentJob], rng: random.Random, batches: int
) -> None:
    """Jobs arrive in any order and in any batches; the window is always the same."""
    at_once = remember((), jobs)
    shuffled = list(jobs)
    rng.shuffle(shuffled)
    window: tuple[RecentJob, ...] = ()
    for index in range(batches):
        window = remember(window, shuffled[index::batches])
    assert window == at_once


@settings(max_examples=200)
@given(recent_jobs)
def test_the_window_holds_the_latest_distinct_start_times(jobs: list[RecentJob]) -> None:
    window = remember((), jobs)
    starts = [start for start, _trigger in window]
    assert starts == sorted(set(starts))
    assert starts == sorted({start for start, _trigger in jobs})[-WINDOW:]
    # a scheduled run wins over a manual one started at the same millisecond
    for start, trigger in window:
        triggers = {t for s, t in jobs if s == start}
        assert (trigger == "manual") == (triggers == {"manual"})


# -- learning ------------------------------------------------------------------------------


def test_too_few_jobs_are_still_learning() -> None:
    jobs = schedule(0, HOUR, MIN_JOBS - 1, 0.0, 1)
    cadence = learn(remember((), jobs))
    assert cadence.schedule == "learning"
    assert cadence.interval_seconds is None
    assert cadence.last_scheduled_start_ms == jobs[-1][0]
    assert learn(()).last_scheduled_start_ms is None


@settings(max_examples=200)
@given(
    st.integers(0, 10**12),
    st.integers(60_000, 7 * 24 * HOUR),
    st.integers(MIN_JOBS, 3 * WINDOW),
    st.floats(0.0, 0.2),
    st.integers(0, 2**32),
)
def test_a_jittered_schedule_is_regular_at_its_interval(
    start: int, interval: int, count: int, jitter: float, seed: int
) -> None:
    """Runs up to 20 % of an interval late: regular, and the median gap lies within the jitter."""
    cadence = learn(remember((), schedule(start, interval, count, jitter, seed)))
    assert cadence.schedule == "regular"
    assert cadence.interval_seconds is not None
    learned = cadence.interval_seconds * 1000
    assert (1 - jitter) * interval - 1e-3 <= learned <= (1 + jitter) * interval + 1e-3


@settings(max_examples=200)
@given(
    st.integers(60_000, 24 * HOUR),
    st.integers(2 * MIN_JOBS, 3 * WINDOW),
    st.integers(1, 1000),
    st.lists(st.floats(0.05, 0.95), max_size=WINDOW // 2 - 1),
    st.integers(0, 2**32),
)
def test_an_outage_gap_and_manual_re_runs_do_not_move_the_interval(
    interval: int, count: int, outage: int, reruns: list[float], seed: int
) -> None:
    """One long gap (the scheduler was down for *outage* intervals) and manual runs between
    the scheduled ones (fewer than half the window) leave a regular target regular."""
    jobs = schedule(0, interval, count, 0.05, seed)
    late = count // 2
    jobs = jobs[:late] + [(s + outage * interval, t) for s, t in jobs[late:]]
    last = jobs[-1][0]
    jobs += [(last - int((k + fraction) * interval), "manual") for k, fraction in enumerate(reruns)]
    cadence = learn(remember((), jobs))
    assert cadence.schedule == "regular"
    assert cadence.interval_seconds is not None
    assert 0.95 * interval <= cadence.interval_seconds * 1000 <= 1.05 * interval


@settings(max_examples=100)
@given(st.lists(st.integers(0, 10**12), min_size=MIN_JOBS, max_size=40, unique=True))
def test_mostly_manual_jobs_make_a_manual_target_with_no_interval(starts: list[int]) -> None:
    jobs: list[RecentJob] = [(s, "manual") for s in starts]
    jobs[0] = (jobs[0][0], "auto")  # one scheduled run among them changes nothing
    cadence = learn(remember((), jobs))
    assert cadence.schedule == "manual"
    assert cadence.interval_seconds is None


def test_random_gaps_are_irregular() -> None:
    """Automatic runs at random times (an event-driven sync): no rhythm to be overdue on."""
    rng = random.Random(7)
    start, jobs = 0, []
    for _ in range(WINDOW):
        start += int(rng.expovariate(1 / HOUR)) + 1
        jobs.append((start, "auto"))
    cadence = learn(remember((), jobs))
    assert cadence.schedule == "irregular"
    assert cadence.interval_seconds is None


@settings(max_examples=200)
@given(st.lists(st.integers(1, 10**9), min_size=MIN_JOBS - 1, max_size=WINDOW - 1))
def test_the_classes_follow_the_spread_of_the_gaps(gaps: list[int]) -> None:
    """Regular exactly when the interquartile range of the gaps is at most IRREGULAR_SPREAD
    times their median, whatever the gaps; and scaling time scales the interval only."""
    starts = [sum(gaps[:k]) for k in range(len(gaps) + 1)]
    cadence = learn(remember((), [(s, "auto") for s in starts]))
    ordered = sorted(gaps)

    def quantile(q: Fraction) -> Fraction:
        position = q * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    half = Fraction(1, 2)
    spread = (quantile(Fraction(3, 4)) - quantile(Fraction(1, 4))) / quantile(half)
    assert cadence.schedule == ("regular" if spread <= IRREGULAR_SPREAD else "irregular")
    if cadence.schedule == "regular":
        assert cadence.interval_seconds is not None
        assert abs(cadence.interval_seconds * 1000 - float(quantile(half))) < 1e-3
    scaled = learn(remember((), [(3 * s, "auto") for s in starts]))
    assert scaled.schedule == cadence.schedule
    if cadence.interval_seconds is not None:
        assert scaled.interval_seconds is not None
        assert (
            abs(scaled.interval_seconds - 3 * cadence.interval_seconds)
            < 1e-6 * scaled.interval_seconds
        )
