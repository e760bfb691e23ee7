"""``lookback_seconds`` and ``overlap_seconds`` are independent: any pair of positive values works.

Lookback only shapes the very first poll (no state): it reads from ``now - lookback``. Overlap
shapes every later poll: it re-reads from ``watermark - overlap``. The tracker never moves the
window backwards (``plan_window`` takes the larger of the two), so a lookback shorter than the
overlap just means the window stays at the first poll's start until the watermark has moved past
it by the overlap.
"""

from __future__ import annotations

from exporter.config import load_settings
from exporter.core.tracker import ListingFold, TrackerConfig, TrackerState, plan_window
from exporter.eiam.models import SynchronizationJob


def test_lookback_smaller_than_overlap_is_accepted() -> None:
    settings = load_settings({"lookback_seconds": 60.0, "overlap_seconds": 300.0})
    assert (settings.lookback_seconds, settings.overlap_seconds) == (60.0, 300.0)
    settings = load_settings({"lookback_seconds": 300.0, "overlap_seconds": 300.0})
    assert settings.lookback_seconds == settings.overlap_seconds


def job(job_id: str, start: int, status: str, end: int | None = None) -> SynchronizationJob:
    return SynchronizationJob(
        synchronization_job_id=job_id, start_time=start, status=status, end_time=end
    )


def test_first_polls_with_lookback_smaller_than_overlap_count_each_job_once() -> None:
    config = TrackerConfig(lookback_ms=60_000, overlap_ms=300_000, stuck_after_ms=3_600_000)
    now = 10_000_000
    state = TrackerState.initial()
    window = plan_window(state, now, config)
    assert window == now - 60_000  # the first poll reads exactly the lookback

    listing = [
        job("old", now - 120_000, "success", now - 110_000),  # before the lookback: ignored
        job("done", now - 30_000, "success", now - 20_000),
        job("running", now - 10_000, "running"),
    ]
    fold = ListingFold(state, window, now_ms=now, config=config)
    for item in listing:
        fold.add(item)
    first = fold.finish()
    assert [j.synchronization_job_id for j in first.newly_terminal] == ["done"]
    # watermark - overlap lies before the first window: the window holds, never moves back
    assert first.state.window_start_ms == window

    later = now + 60_000
    second_window = plan_window(first.state, later, config)
    assert second_window == window
    fold = ListingFold(first.state, second_window, now_ms=later, config=config)
    for item in [*listing[:2], job("running", now - 10_000, "failed", later - 1_000)]:
        fold.add(item)
    second = fold.finish()
    assert [j.synchronization_job_id for j in second.newly_terminal] == ["running"]
    assert second.state.in_progress == {}
    assert second.state.window_start_ms is not None
    assert second.state.window_start_ms >= window
