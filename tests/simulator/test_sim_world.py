"""The simulated world: determinism, lifecycle on a manual clock, realism, queries, control."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from exporter.eiam.models import TERMINAL_STATUSES
from exporter.simulator import JobFilter, ManualClock, World, load_scenario
from exporter.simulator.jobstats import statistics_from_api
from exporter.simulator.world import NEVER, WorldError

from .helpers import T0


def snapshot(world: World) -> list[tuple[object, ...]]:
    return [
        (j.instance_id, j.job_id, j.target_id, j.direction, j.trigger, j.start_ms, j.end_ms,
         j.status_at(world.now()), j.error, j.statistics())
        for instance in world.instances
        for j in instance.jobs
    ]  # fmt: skip


def test_same_seed_same_world_regardless_of_how_often_it_is_looked_at() -> None:
    first_clock, second_clock = ManualClock(T0), ManualClock(T0)
    first = World(load_scenario("demo"), seed=42, now_ms=first_clock)
    second = World(load_scenario("demo"), seed=42, now_ms=second_clock)
    # One world advances in many small steps, the other in one jump: same jobs, same IDs.
    for _ in range(60):
        first_clock.advance(60_000)
        first.advance()
    second_clock.advance(3_600_000)
    second.advance()
    assert snapshot(first) == snapshot(second)
    assert [i.instance_id for i in first.instances] == [i.instance_id for i in second.instances]


def test_different_seed_different_world() -> None:
    one = World(load_scenario("small"), seed=1, now_ms=ManualClock(T0))
    two = World(load_scenario("small"), seed=2, now_ms=ManualClock(T0))
    assert one.instances[0].instance_id != two.instances[0].instance_id
    assert snapshot(one) != snapshot(two)


def test_history_gives_dozens_of_jobs_per_instance(demo_world: World) -> None:
    for instance in demo_world.instances:
        assert len(instance.jobs) >= 24
        assert all(job.start_ms <= T0 for job in instance.jobs)
    production = demo_world.instances[0]
    finals = Counter(job.final for job in production.jobs)
    assert finals["success"] > finals["partial_success"] > 0
    assert finals["failed"] > 0
    triggers = Counter(job.trigger for job in production.jobs)
    assert triggers["auto"] > triggers["manual"] > 0


def test_targets_have_company_like_names_and_kinds(demo_world: World) -> None:
    production = demo_world.instances[0]
    kinds = {t.kind for t in production.targets}
    assert {"ad", "ldap", "dingtalk", "wecom", "feishu", "application"} <= kinds
    assert any("Active Directory" in t.name or " AD " in t.name for t in production.targets)
    assert {t.target_type for t in production.targets} == {"identity_provider", "application"}
    assert all(t.target_id.startswith(("idp_", "app_")) for t in production.targets)
    assert production.instance_id.startswith("idaas_")


def test_lifecycle_pending_running_terminal(small_world: World, clock: ManualClock) -> None:
    instance = small_world.instances[0]
    before = len(instance.jobs)
    # Move in half-second steps until a new job starts (pending lasts at least a second), then
    # watch it through its life.
    while len(instance.jobs) == before:
        clock.advance(500)
        small_world.advance()
    job = instance.jobs[-1]
    assert job.status_at(small_world.advance()) == "pending"
    clock.set(job.running_ms)
    assert job.status_at(small_world.advance()) == "running"
    assert not job.terminal_at(small_world.now())
    clock.set(job.end_ms)
    now = small_world.advance()
    assert job.terminal_at(now)
    assert job.status_at(now) in TERMINAL_STATUSES
    assert job.start_ms < job.running_ms < job.end_ms


def test_one_job_is_stuck_running_forever(small_world: World, clock: ManualClock) -> None:
    stuck = [j for j in small_world.instances[0].jobs if j.end_ms == NEVER]
    assert len(stuck) == 1
    clock.advance(30 * 86_400_000)
    assert stuck[0].status_at(small_world.advance()) == "running"
    assert stuck[0] in small_world.in_progress(small_world.instances[0].instance_id)


def test_a_target_starts_failing_with_a_realistic_error(clock: ManualClock) -> None:
    world = World(load_scenario("demo"), seed=1, now_ms=clock, speed=60.0)
    wecom = next(t for t in world.instances[0].targets if t.kind == "wecom")
    stream = wecom.streams["ingress"]
    assert all(job.final != "failed" or job.error for job in stream.jobs)
    clock.advance(3_600_000)  # one hour = 60 h of schedule time at speed 60
    world.advance()
    failing = [job for job in stream.jobs if job.start_ms >= T0 + 10 * 60_000 // 60]
    assert failing
    assert all(job.final == "failed" for job in failing)
    assert {job.error for job in failing} == {
        (
            "OperationFailed.WeComApi",
            "WeCom API error 60020: not allow to access from your ip, from ip: 47.96.152.38",
        )
    }


def test_speed_compresses_the_schedule_not_the_timestamps(clock: ManualClock) -> None:
    slow = World(load_scenario("small"), seed=3, now_ms=ManualClock(T0))
    fast = World(load_scenario("small"), seed=3, now_ms=clock, speed=60.0)
    assert len(fast.instances[0].jobs) == len(slow.instances[0].jobs)  # same history in jobs
    span = T0 - min(j.start_ms for j in fast.instances[0].jobs)
    assert span <= 12 * 3_600_000 // 60 + 60_000
    clock.advance(60_000)  # one real minute = one schedule hour
    fast.advance()
    assert max(j.start_ms for j in fast.instances[0].jobs) > T0
    assert max(j.start_ms for j in fast.instances[0].jobs) <= clock()


def test_jobs_never_start_in_the_future(small_world: World, clock: ManualClock) -> None:
    for _ in range(50):
        clock.advance(97_000)
        now = small_world.advance()
        assert all(j.start_ms <= now for j in small_world.instances[0].jobs)


def test_list_jobs_newest_first_and_filters(small_world: World) -> None:
    instance = small_world.instances[0]
    everything = small_world.list_jobs(instance.instance_id, JobFilter(), limit=100_000)
    assert everything.total == len(instance.jobs) == len(everything.jobs)
    keys = [j.key for j in everything.jobs]
    assert keys == sorted(keys, reverse=True)
    now = small_world.now()
    dingtalk = next(t for t in instance.targets if t.kind == "dingtalk")
    cases = [
        (JobFilter(direction="egress"), lambda j: j.direction == "egress"),
        (JobFilter(target_type="application"), lambda j: j.target_type == "application"),
        (
            JobFilter(target_ids=frozenset({dingtalk.target_id})),
            lambda j: j.stream.target is dingtalk,
        ),
        (JobFilter(status="failed"), lambda j: j.status_at(now) == "failed"),
        (JobFilter(start_ms=T0 - 3_600_000), lambda j: j.start_ms >= T0 - 3_600_000),
        (JobFilter(end_ms=T0 - 3_600_000), lambda j: j.start_ms <= T0 - 3_600_000),
    ]
    for flt, predicate in cases:
        page = small_world.list_jobs(instance.instance_id, flt, limit=100_000)
        expected = [j for j in everything.jobs if predicate(j)]
        assert page.jobs == expected, flt
        assert page.total == len(expected)


def test_add_job_fail_and_recover_target(small_world: World, clock: ManualClock) -> None:
    instance = small_world.instances[0]
    target = instance.targets[0]
    job = small_world.add_job(
        instance.instance_id,
        target.target_id,
        outcome="partial_success",
        duration_ms=5_000,
        error_code="MissingParameter.Username",
        error_message="The specified parameter Username is required!",
        statistics=statistics_from_api(
            {"UserStatistics": {"Created": {"Total": 3, "Success": 2, "Failed": 1}}}
        ),
    )
    assert small_world.get_job(instance.instance_id, job.job_id) is job
    assert job.status_at(small_world.now()) == "pending"
    clock.advance(6_001)
    assert job.status_at(small_world.advance()) == "partial_success"
    assert job.statistics()[0] is not None
    assert job.statistics()[0][0] == (3, 2, 1, 0)
    with pytest.raises(WorldError):
        small_world.add_job(instance.instance_id, target.target_id, start_ms=clock() + 1)
    with pytest.raises(WorldError):
        small_world.add_job(instance.instance_id, "idp_nope")

    small_world.fail_target(target.target_id, error_code="Boom.Code", error_message="boom")
    clock.advance(6 * 3_600_000)
    small_world.advance()
    failing_since = clock() - 6 * 3_600_000
    new = [j for j in target.streams["ingress"].jobs if j.start_ms >= failing_since]
    assert new
    assert all(j.error == ("Boom.Code", "boom") and j.final == "failed" for j in new)
    small_world.recover_target(target.target_id)
    recovered_at = clock()
    clock.advance(6 * 3_600_000)
    small_world.advance()
    after = [j for j in target.streams["ingress"].jobs if j.start_ms >= recovered_at]
    assert after
    assert not any(j.error == ("Boom.Code", "boom") for j in after)


def test_bench_scenario_builds_100k_jobs_fast() -> None:
    started = time.perf_counter()
    world = World(load_scenario("bench-100k"), seed=1, now_ms=ManualClock(T0))
    elapsed = time.perf_counter() - started
    assert world.job_count() == 100_000
    assert elapsed < 15  # the target is < 5 s; the benchmark reports the real figure
