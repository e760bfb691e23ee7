"""Late jobs: listed only some time after their StartTime, or only once terminal.

The faults ``late``/``late-delay``/``late-terminal`` choose jobs by a stable draw; the control
interface chooses single jobs (``visible_after_ms``, ``visible_when_terminal``). Either way the
listing, GetSynchronizationJob and the ground truth agree on what can be seen.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from exporter.simulator import (
    FaultPlan,
    FaultSpecError,
    ManualClock,
    SimulatorServer,
    World,
    ground_truth,
    load_scenario,
)
from exporter.simulator.world import JobFilter

from .helpers import T0, api_client, call
from .test_sim_groundtruth import actual, expected_from_listing, listed_jobs

pytestmark = pytest.mark.timeout(120)
MINUTE = 60_000


def test_late_spec_parses_and_round_trips() -> None:
    plan = FaultPlan.parse("late=0.2,late-delay=20m,late-terminal=5%")
    assert plan.rate("late", 0) == 0.2
    assert plan.rate("late-terminal", 0) == 0.05
    assert plan.late_delay_ms == 20 * MINUTE
    assert plan.late_jobs and not plan.request_faults
    assert FaultPlan.parse(plan.to_spec()) == plan
    assert FaultPlan.parse("late=1@10m-20m").to_spec() == "late=1@600000ms-1200000ms"
    with pytest.raises(FaultSpecError, match="between 0 and 1"):
        FaultPlan.parse("late=2")
    with pytest.raises(FaultSpecError, match="invalid duration"):
        FaultPlan.parse("late-delay=soon")


def test_the_draw_is_stable_and_about_the_rate() -> None:
    plan = FaultPlan.parse("late=0.3,late-delay=10m")
    ids = [f"sync_{n:05d}" for n in range(4000)]
    first = [plan.visible_from_ms(i, 0, 5, installed_at_ms=0, seed=1) for i in ids]
    again = [plan.visible_from_ms(i, 0, 5, installed_at_ms=0, seed=1) for i in ids]
    other_seed = [plan.visible_from_ms(i, 0, 5, installed_at_ms=0, seed=2) for i in ids]
    assert first == again
    assert first != other_seed
    assert set(first) == {0, 10 * MINUTE}
    assert 0.25 < first.count(10 * MINUTE) / len(ids) < 0.35
    # a window chooses by StartTime: jobs that start before it are never late
    windowed = FaultPlan.parse("late=1@5m-,late-delay=10m")
    assert windowed.visible_from_ms("a", 4 * MINUTE, 0, installed_at_ms=0, seed=1) == 4 * MINUTE
    assert windowed.visible_from_ms("a", 5 * MINUTE, 0, installed_at_ms=0, seed=1) == 15 * MINUTE


def test_a_chosen_job_is_hidden_from_listing_and_get_until_visible(clock: ManualClock) -> None:
    world = World(load_scenario("small"), seed=7, now_ms=clock)
    instance = world.instances[0]
    target = instance.targets[0].target_id
    job = world.add_job(
        instance.instance_id, target, duration_ms=MINUTE, visible_after_ms=20 * MINUTE
    )
    ended = world.add_job(
        instance.instance_id, target, duration_ms=5 * MINUTE, visible_when_terminal=True
    )
    everything = JobFilter(start_ms=T0 - 3_600_000)

    def listed() -> set[str]:
        page = world.list_jobs(instance.instance_id, everything, limit=100)
        assert page.total == len(page.jobs)
        return {j.job_id for j in page.jobs}

    assert job.job_id not in listed() and ended.job_id not in listed()
    assert world.get_job(instance.instance_id, job.job_id) is None
    truth = ground_truth(world, instance_id=instance.instance_id)["instances"]
    assert truth[instance.instance_id]["hidden_jobs"] == 2
    clock.advance(6 * MINUTE + 2_000)  # the second one has ended: listed, terminal
    assert ended.job_id in listed() and job.job_id not in listed()
    assert world.get_job(instance.instance_id, ended.job_id) is ended
    clock.advance(15 * MINUTE)  # twenty minutes after its start: the first one appears
    assert {job.job_id, ended.job_id} <= listed()
    mine = ground_truth(world, instance_id=instance.instance_id)["instances"][instance.instance_id]
    assert mine["late_jobs"] == 2 and mine["hidden_jobs"] == 0
    # a status filter sees only what is visible too
    page = world.list_jobs(
        instance.instance_id, JobFilter(start_ms=T0 - 1, status="success"), limit=100
    )
    assert {job.job_id, ended.job_id} <= {j.job_id for j in page.jobs}


async def test_the_late_fault_over_the_api(sim: SimulatorServer, clock: ManualClock) -> None:
    """With ``late=1,late-delay=30m`` from now on, a job that starts is invisible for 30
    minutes — to the listing, to GetSynchronizationJob and to the ground truth — then appears
    (and counts as late)."""
    instance = sim.world.instances[0]
    iid = instance.instance_id
    sim.faults.set("late=1@0ms-,late-delay=30m")
    job = sim.world.add_job(iid, instance.targets[0].target_id, duration_ms=2 * MINUTE)
    async with (
        api_client(sim.base_url) as client,
        httpx.AsyncClient(base_url=sim.control_url, trust_env=False) as control,
    ):

        async def state() -> tuple[bool, int, dict[str, Any]]:
            ids = {j["SynchronizationJobId"] for j in await listed_jobs(client, iid)}
            status, _body, _ = await call(
                client, "GetSynchronizationJob", InstanceId=iid, SynchronizationJobId=job.job_id
            )
            truth = (await control.get("/ground-truth", params={"instance_id": iid})).json()
            return job.job_id in ids, status, truth["instances"][iid]

        clock.advance(10 * MINUTE)  # terminal, but not visible yet
        shown, status, truth = await state()
        assert (shown, status) == (False, 404)
        assert truth["hidden_jobs"] >= 1 and truth["late_jobs"] == 0
        assert job.job_id not in {r["synchronization_job_id"] for r in truth["in_progress"]}
        clock.advance(21 * MINUTE)
        shown, status, truth = await state()
        assert (shown, status) == (True, 200)
        assert truth["late_jobs"] >= 1  # this one, and any scenario job that started since
        # the ground truth is what the listing shows, as without faults
        assert actual(truth) == expected_from_listing(await listed_jobs(client, iid))
        faults = (await control.get("/faults")).json()
        assert "late=1" in faults["spec"]
        await control.delete("/faults")  # the job chosen alone, not by the fault as well
        added = (
            await control.post(
                "/jobs",
                json={
                    "instance_id": iid,
                    "target_id": instance.targets[0].target_id,
                    "visible_when_terminal": True,
                    "duration_ms": 60_000,
                },
            )
        ).json()
        assert added["visible_from_ms"] == added["end_time_ms"]


def test_late_faults_leave_requests_alone() -> None:
    from exporter.simulator import FaultInjector

    injector = FaultInjector(FaultPlan.parse("late=1"))
    assert injector.decide().action is None and injector.decide().latency_ms == 0
