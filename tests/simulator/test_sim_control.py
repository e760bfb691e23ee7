"""The control interface: off unless enabled, loopback only, clock, jobs, targets, failures."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from exporter.simulator import ManualClock, SimulatorServer, World, load_scenario
from exporter.web.server import Request

from .helpers import T0, api_client, call


@pytest.fixture
async def control(sim: SimulatorServer) -> Any:
    async with httpx.AsyncClient(base_url=sim.control_url, trust_env=False) as client:
        yield client


async def test_disabled_by_default(small_world: World) -> None:
    async with (
        SimulatorServer(small_world) as sim,
        httpx.AsyncClient(base_url=sim.base_url, trust_env=False) as client,
    ):
        response = await client.get("/_sim/world")
    assert response.status_code == 404


async def test_refused_for_non_loopback_peers(sim: SimulatorServer) -> None:
    for peer in (("10.1.2.3", 5000), ("2001:db8::1", 5000), None):
        request = Request("GET", "/_sim/world", "/_sim/world", "", {"host": "x"}, peer=peer)
        response = await sim.api(request)
        assert getattr(response, "status", None) == 403
    ok = await sim.api(Request("GET", "/_sim/world", "/_sim/world", "", {}, peer=("::1", 1)))
    assert getattr(ok, "status", None) == 200


async def test_index_world_and_unknown_endpoint(control: httpx.AsyncClient) -> None:
    assert (
        "GET /_sim/ground-truth?since=MS&instance_id=ID"
        in (await control.get("")).json()["endpoints"]
    )
    world = (await control.get("/world")).json()
    assert world["scenario"] == "small"
    assert world["instances"][0]["jobs"] > 20
    assert (await control.get("/nope")).status_code == 404
    bad = await control.post("/jobs", content=b"{", headers={"content-type": "application/json"})
    assert bad.status_code == 400


async def test_clock_advance_and_set(control: httpx.AsyncClient, clock: ManualClock) -> None:
    assert (await control.get("/clock")).json() == {
        "now_ms": T0, "start_ms": T0, "speed": 1.0, "manual": True,
    }  # fmt: skip
    assert (await control.post("/clock/advance", json={"ms": 60_000})).json()[
        "now_ms"
    ] == T0 + 60_000
    assert (await control.post("/clock/advance", json={"by": "5m"})).json()[
        "now_ms"
    ] == T0 + 360_000
    assert (await control.post("/clock/advance", params={"ms": "1000"})).json()[
        "now_ms"
    ] == T0 + 361_000
    assert (await control.post("/clock/set", json={"now_ms": T0 + 10**6})).json()[
        "now_ms"
    ] == T0 + 10**6
    assert clock() == T0 + 10**6
    backwards = await control.post("/clock/set", json={"now_ms": T0})
    assert backwards.status_code == 400
    assert (await control.post("/clock/advance", json={})).status_code == 400


async def test_clock_cannot_move_on_the_wall_clock() -> None:
    world = World(load_scenario("small"), seed=1)
    async with (
        SimulatorServer(world, control=True) as sim,
        httpx.AsyncClient(base_url=sim.control_url, trust_env=False) as control,
    ):
        response = await control.post("/clock/advance", json={"ms": 1000})
        assert response.status_code == 409
        assert (await control.get("/clock")).json()["manual"] is False


async def test_add_job_shows_up_in_the_api(
    sim: SimulatorServer, control: httpx.AsyncClient, clock: ManualClock
) -> None:
    instance = sim.world.instances[0]
    target = instance.targets[0]
    response = await control.post(
        "/jobs",
        json={
            "instance_id": instance.instance_id,
            "target_id": target.target_id,
            "status": "partial_success",
            "duration_ms": 30_000,
            "pending_ms": 0,
            "error_code": "MissingParameter.Username",
            "error_message": "The specified parameter Username is required!",
            "result": {
                "UserStatistics": {"Created": {"Total": 3, "Success": 1, "Failed": 1, "Skipped": 1}}
            },
            "description": "triggered by a test",
        },
    )
    assert response.status_code == 201
    job = response.json()
    assert job["status"] == "running"
    assert job["start_time_ms"] == T0
    async with api_client(sim.base_url) as client:
        _, body, _ = await call(
            client, "GetSynchronizationJob", InstanceId=instance.instance_id,
            SynchronizationJobId=job["synchronization_job_id"],
        )  # fmt: skip
        assert body["SynchronizationJob"]["Status"] == "running"
        await control.post("/clock/advance", json={"ms": 30_000})
        _, body, _ = await call(
            client, "ListSynchronizationJobs", InstanceId=instance.instance_id, MaxResults=1
        )
    listed = body["SynchronizationJobs"][0]
    assert listed["SynchronizationJobId"] == job["synchronization_job_id"]
    assert listed["Status"] == "partial_success"
    assert listed["Description"] == "triggered by a test"
    assert listed["Result"] == {
        "UserStatistics": {"Created": {"Total": 3, "Success": 1, "Failed": 1, "Skipped": 1}},
        "ErrorMessage": "The specified parameter Username is required!",
        "ErrorCode": "MissingParameter.Username",
    }


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"target_id": "x"}, 400),
        ({"instance_id": "idaas_nope", "target_id": "x"}, 400),
        ({"instance_id": "INSTANCE", "target_id": "idp_nope"}, 400),
        ({"instance_id": "INSTANCE", "target_id": "TARGET", "start_time_ms": T0 + 1}, 400),
        ({"instance_id": "INSTANCE", "target_id": "TARGET", "result": [1]}, 400),
        ({"instance_id": "INSTANCE", "target_id": "TARGET", "duration_ms": "soon"}, 400),
    ],
)
async def test_add_job_validation(
    sim: SimulatorServer, control: httpx.AsyncClient, payload: dict[str, Any], status: int
) -> None:
    instance = sim.world.instances[0]
    replacements = {"INSTANCE": instance.instance_id, "TARGET": instance.targets[0].target_id}
    body = {k: replacements.get(v, v) if isinstance(v, str) else v for k, v in payload.items()}
    response = await control.post("/jobs", json=body)
    assert response.status_code == status
    assert response.json()["error"]


async def test_stuck_job_never_ends(sim: SimulatorServer, control: httpx.AsyncClient) -> None:
    instance = sim.world.instances[0]
    job = (
        await control.post(
            "/jobs",
            json={
                "instance_id": instance.instance_id,
                "target_id": instance.targets[1].target_id,
                "stuck": True,
            },
        )
    ).json()
    assert job["end_time_ms"] is None
    await control.post("/clock/advance", json={"by": "30d"})
    truth = (await control.get("/ground-truth")).json()["instances"][instance.instance_id]
    assert job["synchronization_job_id"] in {
        r["synchronization_job_id"] for r in truth["in_progress"]
    }


async def test_add_target_then_it_syncs(sim: SimulatorServer, control: httpx.AsyncClient) -> None:
    instance = sim.world.instances[0]
    response = await control.post(
        "/targets",
        json={"instance_id": instance.instance_id, "type": "application", "name": "Payroll",
              "interval": "10m", "duration": "1m", "manual_rate": 0},
    )  # fmt: skip
    assert response.status_code == 201
    target = response.json()
    assert target["directions"] == ["egress"]
    await control.post("/clock/advance", json={"by": "35m"})
    async with api_client(sim.base_url) as client:
        _, apps, _ = await call(client, "ListApplications", InstanceId=instance.instance_id)
        _, jobs, _ = await call(
            client, "ListSynchronizationJobs", InstanceId=instance.instance_id, MaxResults=100,
            **{"TargetIds.1": target["target_id"]},
        )  # fmt: skip
    assert "Payroll" in {a["ApplicationName"] for a in apps["Applications"]}
    assert 3 <= jobs["TotalCount"] <= 4
    bad = await control.post("/targets", json={"instance_id": instance.instance_id, "type": "x"})
    assert bad.status_code == 400


async def test_fail_and_recover_a_target(sim: SimulatorServer, control: httpx.AsyncClient) -> None:
    instance = sim.world.instances[0]
    target = next(t for t in instance.targets if t.kind == "dingtalk")
    response = await control.post(
        f"/targets/{target.target_id}/fail",
        json={"error_code": "OperationFailed.DingTalkApi", "error_message": "errcode 60011"},
    )
    assert response.status_code == 200
    assert response.json()["failures"][-1]["until_ms"] is None
    await control.post("/clock/advance", json={"by": "3h"})
    truth = (await control.get("/ground-truth")).json()["instances"][instance.instance_id]
    errors = {
        (r["target_id"], r["direction"], r["error_code"]): r["count"] for r in truth["errors"]
    }
    assert errors[(target.target_id, "ingress", "OperationFailed.DingTalkApi")] >= 2
    assert errors[(target.target_id, "egress", "OperationFailed.DingTalkApi")] >= 2
    response = await control.post(f"/targets/{target.target_id}/recover")
    assert response.json()["failures"][-1]["until_ms"] is not None
    assert (
        await control.post("/targets/idp_nope/fail", json={"error_code": "X"})
    ).status_code == 400
    assert (await control.post(f"/targets/{target.target_id}/fail", json={})).status_code == 400


async def test_pause_and_resume_a_target(sim: SimulatorServer, control: httpx.AsyncClient) -> None:
    """A paused target's scheduler runs nothing (a disabled periodic sync, the case
    IdaasSyncOverdue pages on) until it is resumed; the other targets go on."""
    instance = sim.world.instances[0]
    target = next(t for t in instance.targets if t.kind == "dingtalk")
    other = next(t for t in instance.targets if t is not target and t.spec.interval <= 3_600_000)

    def starts(of: Any) -> list[int]:
        return sorted(job.start_ms for stream in of.streams.values() for job in stream.jobs)

    response = await control.post(f"/targets/{target.target_id}/pause", json={})
    assert response.status_code == 200
    paused_at = response.json()["paused_from_ms"]
    assert paused_at == sim.world.now()
    others_before = len(starts(other))
    await control.post("/clock/advance", json={"by": "6h"})
    assert [s for s in starts(target) if s >= paused_at] == []
    assert len(starts(other)) > others_before
    response = await control.post(f"/targets/{target.target_id}/resume")
    assert response.json()["paused_from_ms"] is None
    await control.post("/clock/advance", json={"by": "6h"})
    assert [s for s in starts(target) if s >= paused_at + 6 * 3_600_000]
    assert (await control.post("/targets/idp_nope/pause", json={})).status_code == 400
