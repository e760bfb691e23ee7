"""Late jobs end to end: the daemon against the simulator with the late faults on.

Jobs the listing shows only hours after their StartTime — chosen by the ``late`` fault, added
alone with ``visible_after_ms``, or shown only once terminal — are below the poll window when
they appear. After one reconciliation sweep every counter equals the ground truth, and
``idaas_exporter_late_jobs_total`` equals the number of late jobs injected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.harness import parse_exposition
from exporter.simulator import ground_truth

from .support import mismatches, wait_until
from .test_daemon import T0, Rig, Running, small_world

pytestmark = pytest.mark.timeout(180)

MINUTE = 60_000
HOUR = 60 * MINUTE
SWEEP = {
    "reconcile_interval_seconds": 1800,  # on the simulated clock, which the daemon reads
    "reconcile_window_seconds": 6 * 3600,
}


@pytest.fixture
async def late_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with small_world(tmp_path) as small:
        yield small


def late_total(series: dict[Any, float], instance_id: str) -> float | None:
    return series.get(("idaas_exporter_late_jobs_total", (("instance_id", instance_id),)))


async def step(running: Running, rig: Rig, ms: int) -> None:
    """Advance the simulated clock, then wait for two more successful polls of every
    instance (so one of them started after the step and saw it)."""
    daemon = running.daemon
    seen = {iid: status.polls.get("success", 0) for iid, status in daemon.status.items()}
    rig.clock.advance(ms)

    async def polled() -> bool:
        return all(daemon.status[i].polls.get("success", 0) >= n + 2 for i, n in seen.items())

    await wait_until(polled, timeout=20, what="two polls after the clock moved")


async def run_late_history(rig: Rig, **overrides: Any) -> tuple[Running, str]:
    """Start the daemon, inject late jobs, move five simulated hours; returns the running
    daemon and the instance with the late jobs."""
    running = await rig.start(**{**SWEEP, **overrides})
    await rig.converge(running)
    instance = rig.world.instances[0]
    iid, target = instance.instance_id, instance.targets[0].target_id
    scrape = parse_exposition(await running.scrape())
    assert late_total(scrape, iid) == 0  # present from the start
    async with httpx.AsyncClient(base_url=rig.simulator.control_url, trust_env=False) as control:
        # jobs of the scenario that start in the next hour: a third listed 3 h late
        response = await control.put("/faults", json={"spec": "late=0.3@0ms-60m,late-delay=3h"})
        assert response.status_code == 200
        chosen = [  # one listed 3 h late; one only when it ends, 2 h later; one found running
            {"visible_after_ms": 3 * HOUR, "duration_ms": 5 * MINUTE},
            {"visible_when_terminal": True, "duration_ms": 2 * HOUR},
            {"visible_after_ms": HOUR, "duration_ms": 4 * HOUR},
        ]
        for extra in chosen:
            body = {"instance_id": iid, "target_id": target, **extra}
            assert (await control.post("/jobs", json=body)).status_code == 201
    for _ in range(30):  # five hours in steps of 10 minutes
        await step(running, rig, 10 * MINUTE)
    return running, iid


async def test_late_jobs_are_found_by_one_sweep_and_counted_once(late_rig: Rig) -> None:
    running, iid = await run_late_history(late_rig)
    try:
        truth = ground_truth(late_rig.world, since_ms=T0 - 24 * HOUR)["instances"][iid]
        assert truth["hidden_jobs"] == 0  # every late job has appeared
        injected = truth["late_jobs"]
        assert injected >= 4  # the three chosen ones and some of the scenario's
        await late_rig.converge(running)  # every counter equals the ground truth
        series = parse_exposition(await running.scrape())
        assert late_total(series, iid) == injected
        for other in late_rig.world.instances[1:]:
            assert late_total(series, other.instance_id) == 0
        sweeps = series[("idaas_exporter_api_requests_by_purpose_total", (("purpose", "sweep"),))]
        assert sweeps >= 9  # a sweep every 30 simulated minutes, a page or more each
        swept_at = series[("idaas_exporter_last_sweep_timestamp_seconds", (("instance_id", iid),))]
        assert swept_at >= (late_rig.clock() - 30 * MINUTE) / 1000
    finally:
        assert await running.shutdown() == 0

    # a restart continues the late count and counts nothing twice
    restarted = await late_rig.start(**SWEEP)
    try:
        late_rig.clock.advance(HOUR)  # two more sweeps over the same jobs
        await late_rig.converge(restarted)
        await step(restarted, late_rig, 31 * MINUTE)
        await late_rig.converge(restarted)
        assert late_total(parse_exposition(await restarted.scrape()), iid) == injected
    finally:
        assert await restarted.shutdown() == 0


async def test_without_the_sweep_late_jobs_are_lost(late_rig: Rig) -> None:
    """The problem the sweep solves, reproduced: with the sweep off the same history ends with
    counters below the ground truth."""
    running, iid = await run_late_history(late_rig, reconcile_window_seconds=0)
    try:
        truth = late_rig.truth()
        problems = mismatches(parse_exposition(await running.scrape()), truth)
        assert any("idaas_sync_jobs_total" in line for line in problems), problems
        assert late_total(parse_exposition(await running.scrape()), iid) == 0
    finally:
        assert await running.shutdown() == 0


class _Committer:
    """The daemon's part, in memory: what a poll starts from and what it ended in."""

    def __init__(self, instance_id: str) -> None:
        from exporter.core.instance import InstanceState

        self.state = InstanceState.initial()
        self.instance_id = instance_id

    def committed_state(self, instance_id: str) -> Any:
        return self.state

    async def commit(self, outcome: Any) -> bool:
        if outcome.error is None:
            self.state = outcome.candidate
        return outcome.error is None


async def test_a_failed_sweep_is_dropped_whole_and_tried_again_later(
    late_rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API error on a sweep page fails the sweep, not the poll: nothing of the sweep is
    counted, the poll's own work is committed, and the sweep is tried a tenth of the interval
    later (not at every poll); then it counts the late job once."""
    from bench.harness import demo_client
    from exporter.core.tracker import TrackerConfig
    from exporter.eiam.client import EiamClient
    from exporter.eiam.errors import ApiError
    from exporter.service.poller import InstancePoller

    world, clock = late_rig.world, late_rig.clock
    instance = world.instances[0]
    iid = instance.instance_id
    config = TrackerConfig(reconcile_interval_ms=HOUR, reconcile_window_ms=6 * HOUR)
    committer = _Committer(iid)
    client = demo_client(late_rig.simulator.base_url)
    poller = InstancePoller(
        iid, client, tracker_config=config, interval=60, names_refresh=0,
        committer=committer, clock_ms=clock,
    )  # fmt: skip
    real_pages = EiamClient.list_synchronization_job_pages
    failing = {"on": True}

    def pages(self: EiamClient, instance_id: str, **options: Any) -> Any:
        if failing["on"] and options.get("end_time") is not None:  # only the sweep's listing
            raise ApiError(
                api_code="ServiceUnavailable",
                api_message="down for the test",
                request_id=None,
                http_status=503,
            )
        return real_pages(self, instance_id, **options)

    monkeypatch.setattr(EiamClient, "list_synchronization_job_pages", pages)
    try:
        assert await poller.poll_and_commit()
        world.add_job(
            iid, instance.targets[0].target_id, start_ms=clock() - 2 * HOUR, duration_ms=MINUTE
        )  # a job that appears two hours after its StartTime: below the window
        clock.advance(HOUR)
        assert await poller.poll_and_commit()  # the sweep fails; the poll does not
        tracker = committer.state.tracker
        assert tracker.last_sweep_ms is None and tracker.late_jobs == 0
        assert tracker.next_sweep_ms == clock() + HOUR // 10
        clock.advance(MINUTE)
        assert await poller.poll_and_commit()  # not retried at every poll
        assert committer.state.tracker.next_sweep_ms == clock() - MINUTE + HOUR // 10
        failing["on"] = False
        clock.advance(HOUR // 10)
        assert await poller.poll_and_commit()
        tracker = committer.state.tracker
        assert tracker.last_sweep_ms == clock() and tracker.late_jobs == 1
    finally:
        await client.aclose()
