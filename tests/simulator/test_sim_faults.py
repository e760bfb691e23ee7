"""Faults: the spec syntax, rates, schedules, run-time switching, and what clients really see."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from exporter.simulator import (
    FaultInjector,
    FaultPlan,
    FaultSpecError,
    ManualClock,
    SimulatorServer,
)

from .helpers import T0, api_client, call, v3_request


def test_spec_examples_parse() -> None:
    plan = FaultPlan.parse("throttle=0.3,5xx=0.05,latency=50ms,reset=0.01,truncate=0.01")
    assert plan.rate("throttle", 0) == 0.3
    assert plan.rate("5xx", 0) == 0.05
    assert plan.rate("reset", 0) == 0.01
    assert plan.rate("truncate", 0) == 0.01
    assert plan.latency_range_ms(0) == (50, 50)
    assert FaultPlan.parse("throttle=30%").rate("throttle", 0) == 0.3
    assert FaultPlan.parse("latency=10ms-200ms").latency_range_ms(0) == (10, 200)
    assert FaultPlan.parse("retry-after=2s").retry_after_ms == 2000
    assert FaultPlan.parse("off").empty
    assert FaultPlan.parse("").empty


@pytest.mark.parametrize(
    "spec",
    [
        "throttle=0.3,5xx=0.05,latency=50ms,reset=0.01,truncate=0.01",
        "throttle=1@30s-90s,latency=10ms-200ms",
        "5xx=0.5@1m-,retry-after=250ms,seed=9",
        "off",
    ],
)
def test_spec_round_trip(spec: str) -> None:
    plan = FaultPlan.parse(spec)
    assert FaultPlan.parse(plan.to_spec()) == plan


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("throttle", "KIND=VALUE"),
        ("throttle=1.5", "between 0 and 1"),
        ("throttle=lots", "not a rate"),
        ("explode=0.1", "unknown fault"),
        ("latency=fast", "invalid duration"),
        ("latency=100ms-10ms", "MIN-MAX"),
        ("throttle=1@90s-30s", "ends before"),
        ("throttle=1@soon", "a window is"),
        ("seed=x", "integer"),
    ],
)
def test_bad_specs_name_the_item(spec: str, needle: str) -> None:
    with pytest.raises(FaultSpecError, match=needle):
        FaultPlan.parse(spec)


def test_rates_are_respected_and_reproducible() -> None:
    always = FaultInjector(FaultPlan.parse("throttle=1"))
    assert all(always.decide().action == "throttle" for _ in range(200))
    never = FaultInjector(FaultPlan.parse("throttle=0,latency=0ms"))
    assert all(never.decide().action is None for _ in range(200))
    first = FaultInjector(FaultPlan.parse("throttle=0.3,truncate=0.2,seed=5"))
    second = FaultInjector(FaultPlan.parse("throttle=0.3,truncate=0.2,seed=5"))
    decisions = [first.decide() for _ in range(4000)]
    assert decisions == [second.decide() for _ in range(4000)]
    throttled = sum(d.action == "throttle" for d in decisions) / len(decisions)
    assert 0.26 < throttled < 0.34
    truncated = [d for d in decisions if d.truncate is not None]
    assert all(d.action is None and 0 <= d.truncate < 1 for d in truncated)  # type: ignore[operator]
    assert first.snapshot()["injected"]["throttle"] == sum(
        d.action == "throttle" for d in decisions
    )


def test_windows_follow_the_world_clock() -> None:
    clock = ManualClock(T0)
    injector = FaultInjector(FaultPlan.parse("throttle=1@1m-2m,latency=5ms"), clock=clock)
    assert injector.decide().action is None
    clock.advance(90_000)
    assert injector.decide().action == "throttle"
    clock.advance(60_000)
    assert injector.decide().action is None
    assert injector.decide().latency_ms == 5
    injector.set("5xx=1@0s-1s")  # a new plan restarts its windows now
    assert injector.decide().action == "5xx"


async def test_throttling_and_5xx_responses(sim: SimulatorServer) -> None:
    async with api_client(sim.base_url) as client:
        sim.faults.set("throttle=1,retry-after=750ms")
        status, body, headers = await call(client, "ListInstances")
        assert (status, body["Code"]) == (400, "Throttling.User")
        assert headers["x-acs-retry-after"] == "750"
        assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
        sim.faults.set("5xx=1")
        codes = set()
        for _ in range(30):
            status, body, _ = await call(client, "ListInstances")
            codes.add((status, body["Code"]))
        assert codes == {(503, "ServiceUnavailable"), (500, "InternalError")}
        sim.faults.clear()
        status, _, _ = await call(client, "ListInstances")
        assert status == 200


async def test_latency_delays_responses(sim: SimulatorServer) -> None:
    sim.faults.set("latency=150ms")
    async with api_client(sim.base_url) as client:
        started = time.monotonic()
        status, _, _ = await call(client, "ListInstances")
        elapsed = time.monotonic() - started
    assert status == 200
    assert elapsed >= 0.15


async def test_a_reset_really_resets(sim: SimulatorServer) -> None:
    sim.faults.set("reset=1")
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(5):
            await reader.read(100)
    writer.close()
    async with api_client(sim.base_url) as client:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await call(client, "ListInstances")


async def test_a_truncated_body_really_is_truncated(sim: SimulatorServer) -> None:
    sim.faults.set("truncate=1")
    instance_id = sim.world.instances[0].instance_id
    headers = {"x-acs-action": "ListSynchronizationJobs", "x-acs-version": "2021-12-01"}
    async with api_client(sim.base_url) as client:
        request = client.build_request(
            "POST", "/", params={"InstanceId": instance_id, "MaxResults": "50"}, headers=headers
        )
        with pytest.raises(httpx.RemoteProtocolError):
            await client.send(request)
    # On the wire: the full length is announced, fewer bytes arrive, the connection closes.
    signed = v3_request({"InstanceId": instance_id, "MaxResults": "50"}, host=sim.endpoint)
    lines = [f"POST /?{signed.query} HTTP/1.1", *(f"{k}: {v}" for k, v in signed.headers.items())]
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    writer.write(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode())
    async with asyncio.timeout(5):
        raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    announced = int(fields[b"content-length"])
    assert 0 <= len(body) < announced


async def test_faults_switch_at_run_time_through_control(sim: SimulatorServer) -> None:
    async with (
        api_client(sim.base_url) as client,
        httpx.AsyncClient(base_url=sim.control_url, trust_env=False) as control,
    ):
        response = await control.put("/faults", json={"spec": "throttle=1"})
        assert response.json()["spec"] == "throttle=1"
        status, body, _ = await call(client, "ListInstances")
        assert body["Code"] == "Throttling.User"
        assert (await control.get("/world")).status_code == 200  # control is never faulted
        response = await control.put(
            "/faults", content=b"5xx=1", headers={"content-type": "text/plain"}
        )
        assert response.json()["spec"] == "5xx=1"
        status, body, _ = await call(client, "ListInstances")
        assert status in (500, 503)
        response = await control.delete("/faults")
        assert response.json()["spec"] == "off"
        status, _, _ = await call(client, "ListInstances")
        assert status == 200
        injected = (await control.get("/faults")).json()["injected"]
        assert injected["throttle"] == 1
        assert injected["5xx"] == 1
        stats = (await control.get("/stats")).json()
        assert stats["requests"]["ListInstances"]["Throttling.User"] == 1
        assert stats["requests"]["ListInstances"]["OK"] == 1
        bad = await control.put("/faults", json={"spec": "explode=1"})
        assert bad.status_code == 400
        assert "unknown fault" in bad.json()["error"]
