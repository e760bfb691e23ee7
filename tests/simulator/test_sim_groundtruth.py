"""Ground truth agrees with what the API lists, computed independently from the JSON pages."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest

from exporter.simulator import ManualClock, SimulatorServer, World, ground_truth
from exporter.simulator.auth import Authenticator
from exporter.simulator.faults import FaultInjector
from exporter.simulator.jobstats import statistics_from_api
from exporter.simulator.server import EiamApi

from .helpers import T0, api_client, call

pytestmark = pytest.mark.timeout(120)

ENTITIES = {
    "UserStatistics": "user",
    "OrganizationalUnitStatistics": "organizational_unit",
    "GroupStatistics": "group",
    "GroupMemberStatistics": "group_member",
}
TERMINAL = {"success", "failed", "partial_success"}


async def listed_jobs(client: httpx.AsyncClient, instance_id: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    token = None
    while True:
        status, body, _ = await call(
            client, "ListSynchronizationJobs", InstanceId=instance_id, MaxResults=100,
            NextToken=token,
        )  # fmt: skip
        assert status == 200
        jobs.extend(body["SynchronizationJobs"])
        token = body.get("NextToken")
        if token is None:
            return jobs


def expected_from_listing(jobs: list[dict[str, Any]], since: int | None = None) -> dict[str, Any]:
    """The metric contract, applied to API JSON — an implementation independent of the world's."""
    counts: Counter[tuple[str, ...]] = Counter()
    objects: Counter[tuple[str, ...]] = Counter()
    present: set[tuple[str, ...]] = set()
    errors: Counter[tuple[str, ...]] = Counter()
    last_success: dict[tuple[str, ...], int] = {}
    in_progress = []
    for job in jobs:
        if since is not None and job["StartTime"] < since:
            continue
        series = (job["TargetType"], job["TargetId"], job["Direction"])
        if not (job["Status"] in TERMINAL or "EndTime" in job):
            in_progress.append(job["SynchronizationJobId"])
            continue
        counts[(*series, job["TriggerType"], job["Status"])] += 1
        result = job.get("Result") or {}
        if (result.get("ErrorCode") or "").strip():
            errors[(*series, result["ErrorCode"].strip())] += 1
        if job["Status"] == "success":
            last_success[series] = max(last_success.get(series, 0), job["EndTime"])
        for block, entity in ENTITIES.items():
            for action, values in (result.get(block) or {}).items():
                key = (*series, entity, action.lower())
                for name in ("Success", "Failed", "Skipped"):
                    objects[(*key, name.lower())] += values.get(name, 0)
                    present.add((*key, name.lower()))
                unknown = values.get("Total", 0) - sum(
                    values.get(n, 0) for n in ("Success", "Failed", "Skipped")
                )
                if unknown > 0:
                    objects[(*key, "unknown")] += unknown
                    present.add((*key, "unknown"))
    return {
        "jobs": dict(counts),
        "objects": {k: objects[k] for k in present},
        "errors": dict(errors),
        "last_success": last_success,
        "in_progress": sorted(in_progress),
        "terminal_jobs": sum(counts.values()),
    }


def actual(truth: dict[str, Any]) -> dict[str, Any]:
    def series(row: dict[str, Any]) -> tuple[str, str, str]:
        return (row["target_type"], row["target_id"], row["direction"])

    return {
        "jobs": {(*series(r), r["trigger_type"], r["status"]): r["count"] for r in truth["jobs"]},
        "objects": {
            (*series(r), r["entity"], r["action"], r["result"]): r["count"]
            for r in truth["objects"]
        },
        "errors": {(*series(r), r["error_code"]): r["count"] for r in truth["errors"]},
        "last_success": {series(r): r["end_time_ms"] for r in truth["last_success"]},
        "in_progress": sorted(r["synchronization_job_id"] for r in truth["in_progress"]),
        "terminal_jobs": truth["terminal_jobs"],
    }


async def test_ground_truth_matches_the_listing(sim: SimulatorServer, clock: ManualClock) -> None:
    instance = sim.world.instances[0]
    # Some extra variety: a job whose Result leaves objects unaccounted for, with an ErrorCode.
    sim.world.add_job(
        instance.instance_id,
        instance.targets[0].target_id,
        outcome="partial_success",
        start_ms=clock() - 60_000,
        duration_ms=10_000,
        error_code="  MissingParameter.Username ",
        statistics=statistics_from_api(
            {"UserStatistics": {"Created": {"Total": 5, "Success": 2, "Failed": 1, "Skipped": 0}}}
        ),
    )
    clock.advance(2 * 3_600_000 + 17_000)
    async with (
        api_client(sim.base_url) as client,
        httpx.AsyncClient(base_url=sim.control_url, trust_env=False) as control,
    ):
        jobs = await listed_jobs(client, instance.instance_id)
        truth = (await control.get("/ground-truth")).json()
        since = jobs[len(jobs) // 2]["StartTime"]
        truth_since = (
            await control.get(
                "/ground-truth", params={"since": since, "instance_id": instance.instance_id}
            )
        ).json()
        missing = await control.get("/ground-truth", params={"instance_id": "idaas_nope"})
    assert truth["now_ms"] == clock()
    assert set(truth["instances"]) == {i.instance_id for i in sim.world.instances}
    mine = truth["instances"][instance.instance_id]
    assert actual(mine) == expected_from_listing(jobs)
    assert {"entity": "user", "action": "created", "result": "unknown", "count": 2}.items() <= next(
        r for r in mine["objects"]
        if r["result"] == "unknown" and r["target_id"] == instance.targets[0].target_id
    ).items()  # fmt: skip
    assert truth_since["since_ms"] == since
    assert set(truth_since["instances"]) == {instance.instance_id}
    assert actual(truth_since["instances"][instance.instance_id]) == expected_from_listing(
        jobs, since
    )
    assert missing.status_code == 404


def test_ground_truth_of_a_larger_world(clock: ManualClock) -> None:
    world = World(
        __import__("exporter.simulator", fromlist=["load_scenario"]).load_scenario("demo"),
        seed=11,
        now_ms=clock,
        speed=30.0,
    )
    clock.advance(45 * 60_000)

    api = EiamApi(world, authenticator=Authenticator([]), faults=FaultInjector())
    truth = ground_truth(world)
    for instance in world.instances:
        jobs: list[dict[str, Any]] = []
        token = None
        while True:
            params = {"InstanceId": instance.instance_id, "MaxResults": "100"}
            if token:
                params["NextToken"] = token
            body = json.loads(api.list_synchronization_jobs(params, "rid"))
            jobs.extend(body["SynchronizationJobs"])
            token = body.get("NextToken")
            if not token:
                break
        expected = expected_from_listing(jobs)
        assert actual(truth["instances"][instance.instance_id]) == expected
    production = actual(truth["instances"][world.instances[0].instance_id])
    assert production["errors"]  # the failing WeCom target, partial successes
    assert production["in_progress"]  # at least the stuck job
    assert truth["now_ms"] == T0 + 45 * 60_000


def test_the_demo_targets_have_the_cadence_their_schedule_says(clock: ManualClock) -> None:
    """The demo's targets run every 10 minutes, hourly, daily, at random times or only by hand;
    the ground truth's cadence (learned from the jobs, as the exporter must) matches each."""
    world = World(
        __import__("exporter.simulator", fromlist=["load_scenario"]).load_scenario("demo"),
        seed=5,
        now_ms=clock,
    )
    truth = ground_truth(world)
    seen: Counter[str] = Counter()
    for instance in world.instances:
        rows = truth["instances"][instance.instance_id]["cadence"]
        by_series = {(r["target_type"], r["target_id"], r["direction"]): r for r in rows}
        for target in instance.targets:
            for direction, stream in target.streams.items():
                row = by_series[(target.target_type, target.target_id, direction)]
                spec = target.spec
                seen[f"{spec.schedule}/{row['schedule']}"] += 1
                if spec.schedule == "manual":
                    assert row["schedule"] == "manual", target
                    assert row["interval_seconds"] is None
                    assert row["last_scheduled_start_ms"] is None
                    assert row["nominal_interval_seconds"] is None
                elif spec.schedule == "random":
                    assert row["schedule"] == "irregular", target
                    assert row["interval_seconds"] is None
                    assert row["nominal_interval_seconds"] is None
                else:
                    nominal = spec.interval / 1000
                    assert row["nominal_interval_seconds"] == nominal
                    assert row["schedule"] == "regular", target
                    assert abs(row["interval_seconds"] - nominal) <= spec.jitter * nominal
                    assert row["last_scheduled_start_ms"] <= truth["now_ms"]
                assert 8 <= row["jobs"] <= 20
                assert stream.target is target
    # every class the demo is meant to show, at 10 min, 1 h and 1 day among the regular ones
    assert seen["manual/manual"] and seen["random/irregular"] and seen["interval/regular"]
    regular = {
        row["nominal_interval_seconds"]
        for rows in (truth["instances"][i.instance_id]["cadence"] for i in world.instances)
        for row in rows
        if row["schedule"] == "regular"
    }
    assert {600.0, 3600.0, 86400.0} <= regular


def test_cadence_is_learning_until_enough_jobs_are_terminal(clock: ManualClock) -> None:
    """With ``since`` a daily target has too few jobs to judge: learning, no interval."""
    world = World(
        __import__("exporter.simulator", fromlist=["load_scenario"]).load_scenario("demo"),
        seed=5,
        now_ms=clock,
    )
    truth = ground_truth(world, since_ms=T0 - 24 * 3_600_000)
    rows = [r for i in truth["instances"].values() for r in i["cadence"]]
    daily = [r for r in rows if r["nominal_interval_seconds"] == 86400.0]
    assert daily
    for row in daily:
        assert row["jobs"] <= 2
        assert (row["schedule"], row["interval_seconds"]) == ("learning", None)
