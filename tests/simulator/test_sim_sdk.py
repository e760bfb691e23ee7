"""The official Alibaba Cloud SDK against the simulator: it must not tell it from the real API.

``alibabacloud_eiam20211201`` signs with V3 by default; ``signature_algorithm="v2"`` in the
tea-openapi ``Config`` switches it to the legacy RPC signature (HMAC-SHA1, ``Signature=``
parameter). The SDK is synchronous, so the simulator serves from a thread.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

pytest.importorskip("alibabacloud_eiam20211201")

from alibabacloud_eiam20211201 import models as sdk_models
from alibabacloud_eiam20211201.client import Client
from alibabacloud_tea_openapi import exceptions as sdk_errors
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_tea_openapi.utils_models import Config

from exporter.simulator import (
    DEMO_ACCESS_KEY,
    DEMO_STS_KEY,
    AccessKey,
    ManualClock,
    ThreadedSimulator,
    World,
    run_in_thread,
    wall_clock_ms,
)

pytestmark = pytest.mark.timeout(120)

SIGNATURES = {"v3": None, "rpc": "v2"}
KEYS = {"ak": DEMO_ACCESS_KEY, "sts": DEMO_STS_KEY}


def sdk(
    sim: ThreadedSimulator,
    key: AccessKey = DEMO_ACCESS_KEY,
    signature: str = "v3",
    *,
    secret: str | None = None,
    access_key_id: str | None = None,
) -> Client:
    config = Config(
        access_key_id=access_key_id or key.access_key_id,
        access_key_secret=secret or key.access_key_secret,
        security_token=key.security_token,
        endpoint=sim.endpoint,
        protocol="http",
        region_id="cn-hangzhou",
        signature_algorithm=SIGNATURES[signature],
        read_timeout=10_000,
        connect_timeout=5_000,
    )
    return Client(config)


def list_all_keyset(client: Client, instance_id: str, size: int, **filters: Any) -> list[Any]:
    jobs: list[Any] = []
    token = None
    while True:
        request = sdk_models.ListSynchronizationJobsRequest(
            instance_id=instance_id, max_results=size, next_token=token, **filters
        )
        body = client.list_synchronization_jobs(request).body
        jobs.extend(body.synchronization_jobs)
        token = body.next_token
        if not token:
            return jobs


@pytest.fixture(params=[(s, k) for s in SIGNATURES for k in KEYS], ids=lambda p: f"{p[0]}-{p[1]}")
def client(request: pytest.FixtureRequest, threaded_sim: ThreadedSimulator) -> Client:
    signature, key = request.param
    return sdk(threaded_sim, KEYS[key], signature)


def test_every_action_parses(client: Client, threaded_sim: ThreadedSimulator) -> None:
    world = threaded_sim.world
    instance = world.instances[0]
    listed = client.list_synchronization_jobs(
        sdk_models.ListSynchronizationJobsRequest(instance_id=instance.instance_id, max_results=100)
    )
    assert listed.status_code == 200
    body = listed.body
    assert body.total_count == len(instance.jobs)
    assert body.request_id
    jobs = body.synchronization_jobs
    terminal = next(j for j in jobs if j.result is not None and j.status == "success")
    assert terminal.result.user_statistics.same.total > 0
    assert terminal.result.user_statistics.exported is not None
    assert terminal.result.group_statistics.pushed is not None
    assert terminal.description
    running = [j for j in jobs if j.status in ("pending", "running")]
    assert running
    assert all(j.result is None and j.end_time is None for j in running)
    failed = [j for j in jobs if j.status == "failed"]
    assert all(j.result.error_code and j.result.error_message for j in failed)

    got = client.get_synchronization_job(
        sdk_models.GetSynchronizationJobRequest(
            instance_id=instance.instance_id,
            synchronization_job_id=terminal.synchronization_job_id,
        )
    ).body.synchronization_job
    assert got.synchronization_job_id == terminal.synchronization_job_id
    assert got.end_time == terminal.end_time
    assert got.result.user_statistics.same.total == terminal.result.user_statistics.same.total
    assert got.to_map().get("Description") is None

    idps = client.list_identity_providers(
        sdk_models.ListIdentityProvidersRequest(instance_id=instance.instance_id, page_size=100)
    ).body
    assert {p.identity_provider_id for p in idps.identity_providers} == {
        t.target_id for t in instance.targets if t.target_type == "identity_provider"
    }
    assert all(
        p.identity_provider_type.startswith("urn:alibaba:idaas:idp:")
        for p in idps.identity_providers
    )
    apps = client.list_applications(
        sdk_models.ListApplicationsRequest(instance_id=instance.instance_id)
    ).body
    assert apps.total_count == sum(1 for t in instance.targets if t.target_type == "application")
    assert all(a.application_name for a in apps.applications)
    instances = client.list_instances(sdk_models.ListInstancesRequest(page_size=10)).body
    assert [i.instance_id for i in instances.instances] == [i.instance_id for i in world.instances]
    assert instances.instances[0].default_endpoint.endpoint.endswith(".aliyunidaas.com")


def test_paging_both_methods_yields_each_job_once(
    client: Client, threaded_sim: ThreadedSimulator
) -> None:
    instance = threaded_sim.world.instances[0]
    expected = {j.job_id for j in instance.jobs}
    keyset = list_all_keyset(client, instance.instance_id, 11)
    ids = [j.synchronization_job_id for j in keyset]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    numbered: list[str] = []
    page = 1
    while True:
        body = client.list_synchronization_jobs(
            sdk_models.ListSynchronizationJobsRequest(
                instance_id=instance.instance_id, page_number=page, page_size=17
            )
        ).body
        if not body.synchronization_jobs:
            break
        numbered.extend(j.synchronization_job_id for j in body.synchronization_jobs)
        page += 1
    assert sorted(numbered) == sorted(expected)


def test_flat_array_filters_from_the_sdk(threaded_sim: ThreadedSimulator) -> None:
    instance = threaded_sim.world.instances[0]
    dingtalk = next(t for t in instance.targets if t.kind == "dingtalk")
    for signature in SIGNATURES:
        client = sdk(threaded_sim, signature=signature)
        jobs = list_all_keyset(
            client,
            instance.instance_id,
            100,
            target_ids=[dingtalk.target_id],
            direction="egress",
            filters=[sdk_models.ListSynchronizationJobsRequestFilters(key="k 1", values=["v/1*~"])],
        )
        assert jobs
        assert {(j.target_id, j.direction) for j in jobs} == {(dingtalk.target_id, "egress")}


@pytest.mark.parametrize("signature", list(SIGNATURES))
def test_tampered_signature_is_rejected(threaded_sim: ThreadedSimulator, signature: str) -> None:
    client = sdk(threaded_sim, signature=signature, secret="not-the-secret")
    with pytest.raises(sdk_errors.ClientException) as info:
        client.list_instances(sdk_models.ListInstancesRequest())
    assert info.value.code == "SignatureDoesNotMatch"
    assert info.value.status_code == 400


@pytest.mark.parametrize("signature", list(SIGNATURES))
def test_wrong_access_key_is_not_found(threaded_sim: ThreadedSimulator, signature: str) -> None:
    client = sdk(threaded_sim, signature=signature, access_key_id="LTAI5tUnknownKey")
    with pytest.raises(sdk_errors.ClientException) as info:
        client.list_instances(sdk_models.ListInstancesRequest())
    assert info.value.code == "InvalidAccessKeyId.NotFound"
    assert info.value.status_code == 404


@pytest.mark.parametrize("signature", list(SIGNATURES))
def test_skewed_timestamp_is_expired(small_world: World, signature: str) -> None:
    twenty_minutes_ahead = lambda: wall_clock_ms() + 20 * 60_000  # noqa: E731
    with (
        run_in_thread(small_world, auth_clock_ms=twenty_minutes_ahead) as sim,
        pytest.raises(sdk_errors.ClientException) as info,
    ):
        sdk(sim, signature=signature).list_instances(sdk_models.ListInstancesRequest())
    assert info.value.code == "InvalidTimeStamp.Expired"


@pytest.fixture
def fixed_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Utils, "get_nonce", staticmethod(lambda: "0123456789abcdef" * 2))


@pytest.mark.parametrize("signature", list(SIGNATURES))
def test_reused_nonce_is_rejected(
    threaded_sim: ThreadedSimulator, fixed_nonce: None, signature: str
) -> None:
    client = sdk(threaded_sim, signature=signature)
    assert client.list_instances(sdk_models.ListInstancesRequest()).status_code == 200
    with pytest.raises(sdk_errors.ClientException) as info:
        client.list_instances(sdk_models.ListInstancesRequest())
    assert info.value.code == "SignatureNonceUsed"


def test_api_errors_reach_the_sdk_as_typed_exceptions(threaded_sim: ThreadedSimulator) -> None:
    client = sdk(threaded_sim)
    instance_id = threaded_sim.world.instances[0].instance_id
    with pytest.raises(sdk_errors.ClientException) as info:
        client.list_synchronization_jobs(
            sdk_models.ListSynchronizationJobsRequest(instance_id=instance_id, max_results=101)
        )
    assert info.value.code == "InvalidParameter"
    with pytest.raises(sdk_errors.ClientException) as info:
        client.list_synchronization_jobs(
            sdk_models.ListSynchronizationJobsRequest(instance_id="idaas_missing", max_results=10)
        )
    assert (info.value.status_code, info.value.code) == (404, "ResourceNotFound.Instance")
    threaded_sim.faults.set("throttle=1,retry-after=1500ms")
    with pytest.raises(sdk_errors.ThrottlingException) as throttled:
        client.list_instances(sdk_models.ListInstancesRequest())
    assert throttled.value.code == "Throttling.User"
    assert throttled.value.retry_after == 1500
    threaded_sim.faults.set("5xx=1")
    with pytest.raises(sdk_errors.ServerException) as server:
        client.list_instances(sdk_models.ListInstancesRequest())
    assert server.value.code in ("ServiceUnavailable", "InternalError")
    threaded_sim.faults.clear()


def test_the_sdk_sees_time_move(threaded_sim: ThreadedSimulator, clock: ManualClock) -> None:
    client = sdk(threaded_sim)
    instance_id = threaded_sim.world.instances[0].instance_id
    before = client.list_synchronization_jobs(
        sdk_models.ListSynchronizationJobsRequest(instance_id=instance_id, max_results=1)
    ).body.total_count
    clock.advance(3 * 3_600_000)
    deadline = time.monotonic() + 5
    after = before
    while after == before and time.monotonic() < deadline:
        after = client.list_synchronization_jobs(
            sdk_models.ListSynchronizationJobsRequest(instance_id=instance_id, max_results=1)
        ).body.total_count
    assert after > before
