"""The project's own client against the simulator, with faults switched on."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from exporter.eiam.client import EiamClient
from exporter.eiam.credentials import Credential, StaticCredentialsProvider
from exporter.eiam.retry import RetryPolicy
from exporter.simulator import DEMO_STS_KEY, SimulatorServer

pytestmark = pytest.mark.timeout(120)


async def no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


def client_for(sim: SimulatorServer, *, sts: bool = False) -> EiamClient:
    key = DEMO_STS_KEY if sts else sim.access_key
    token = SecretStr(key.security_token) if key.security_token else None
    credential = Credential(key.access_key_id, SecretStr(key.access_key_secret), token)
    return EiamClient(
        sim.base_url,
        StaticCredentialsProvider(credential),
        retry=RetryPolicy(max_attempts=30, base_delay=0.001, max_delay=0.002, max_elapsed=60),
        sleep=no_wait,
    )


@pytest.mark.parametrize("sts", [False, True], ids=["access-key", "sts"])
async def test_every_job_exactly_once_through_faults(sim: SimulatorServer, sts: bool) -> None:
    instance = sim.world.instances[0]
    sim.faults.set("throttle=0.2,5xx=0.1,reset=0.1,truncate=0.2,retry-after=1ms,seed=4")
    async with client_for(sim, sts=sts) as client:
        ids = [
            job.synchronization_job_id
            async for job in client.list_synchronization_jobs(instance.instance_id, max_results=5)
        ]
        providers = await client.list_identity_providers(instance.instance_id)
        applications = await client.list_applications(instance.instance_id)
        job = await client.get_synchronization_job(instance.instance_id, ids[0])
    assert len(ids) == len(set(ids)) == len(instance.jobs)
    assert {p.identity_provider_id for p in providers} | {
        a.application_id for a in applications
    } == {t.target_id for t in instance.targets}
    assert job.synchronization_job_id == ids[0]
    injected = sim.faults.snapshot()["injected"]
    assert {"throttle", "5xx", "reset", "truncate"} <= set(injected)
