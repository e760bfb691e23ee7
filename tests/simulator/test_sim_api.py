"""The API over real HTTP with the project's own V3 signer: actions, paging, filters, shapes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import Field

from exporter.eiam.models import (
    ApiModel,
    ApiResponse,
    GetSynchronizationJobResponse,
    ListApplicationsResponse,
    ListIdentityProvidersResponse,
    ListSynchronizationJobsResponse,
)
from exporter.simulator import DEMO_STS_KEY, AccessKey, ManualClock, SimulatorServer

from .helpers import api_client, call

pytestmark = pytest.mark.timeout(60)


class Instance(ApiModel):
    """ListInstances is served for the SDK's sake; the exporter never calls it."""

    instance_id: str
    description: str | None = None
    status: str | None = None


class ListInstancesResponse(ApiResponse):
    total_count: int | None = None
    instances: list[Instance] = Field(default_factory=list)


@pytest.fixture
async def client(sim: SimulatorServer) -> Any:
    async with api_client(sim.base_url) as c:
        yield c


def iid(sim: SimulatorServer) -> str:
    return sim.world.instances[0].instance_id


async def page_all(
    client: httpx.AsyncClient, instance_id: str, page_size: int = 100, **filters: Any
) -> tuple[list[dict[str, Any]], list[int]]:
    jobs: list[dict[str, Any]] = []
    totals: list[int] = []
    token = None
    while True:
        status, body, _ = await call(
            client,
            "ListSynchronizationJobs",
            InstanceId=instance_id,
            MaxResults=page_size,
            NextToken=token,
            **filters,
        )
        assert status == 200, body
        ListSynchronizationJobsResponse.model_validate(body)
        jobs.extend(body["SynchronizationJobs"])
        totals.append(body["TotalCount"])
        token = body.get("NextToken")
        if token is None:
            return jobs, totals
        assert len(body["SynchronizationJobs"]) == page_size


async def test_keyset_paging_returns_every_job_once(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    jobs, totals = await page_all(client, iid(sim), page_size=7)
    ids = [j["SynchronizationJobId"] for j in jobs]
    assert len(ids) == len(set(ids)) == len(sim.world.instances[0].jobs)
    assert set(totals) == {len(ids)}
    starts = [j["StartTime"] for j in jobs]
    assert starts == sorted(starts, reverse=True)


async def test_default_page_has_twenty_jobs_and_a_token(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    status, body, headers = await call(client, "ListSynchronizationJobs", InstanceId=iid(sim))
    assert status == 200
    assert len(body["SynchronizationJobs"]) == 20
    assert body["NextToken"].startswith("NT")
    assert headers["x-acs-request-id"] == body["RequestId"]


async def test_page_number_paging_returns_every_job_once(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    ids: list[str] = []
    number = 1
    while True:
        status, body, _ = await call(
            client, "ListSynchronizationJobs", InstanceId=iid(sim), PageNumber=number, PageSize=9
        )
        assert status == 200
        assert "NextToken" not in body
        page = [j["SynchronizationJobId"] for j in body["SynchronizationJobs"]]
        if not page:
            break
        ids.extend(page)
        number += 1
    assert len(ids) == len(set(ids)) == body["TotalCount"] == len(sim.world.instances[0].jobs)


async def test_next_token_absent_exactly_on_the_last_page(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    total = len(sim.world.instances[0].jobs)
    # A page size that divides the total: the last page is full and still has no NextToken,
    # so no empty trailing page is ever requested.
    size = max(n for n in range(1, 101) if total % n == 0)
    jobs, totals = await page_all(client, iid(sim), page_size=size)
    assert len(jobs) == total
    assert len(totals) == total // size


async def test_paging_is_robust_to_jobs_created_meanwhile(
    sim: SimulatorServer, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    instance = sim.world.instances[0]
    before = {j.job_id for j in instance.jobs}
    seen: list[str] = []
    token = None
    while True:
        status, body, _ = await call(
            client, "ListSynchronizationJobs", InstanceId=instance.instance_id, MaxResults=10,
            NextToken=token,
        )  # fmt: skip
        assert status == 200
        seen.extend(j["SynchronizationJobId"] for j in body["SynchronizationJobs"])
        # New jobs arrive while the client pages: scheduled ones and manual ones.
        clock.advance(20 * 60_000)
        sim.world.add_job(instance.instance_id, instance.targets[0].target_id)
        token = body.get("NextToken")
        if token is None:
            break
    assert len(seen) == len(set(seen))
    assert before <= set(seen)


@pytest.mark.parametrize(
    ("params", "code", "status"),
    [
        ({"MaxResults": 101}, "InvalidParameter", 400),
        ({"MaxResults": 0}, "InvalidParameter", 400),
        ({"MaxResults": "ten"}, "InvalidParameter", 400),
        ({"PageSize": 101, "PageNumber": 1}, "InvalidParameter", 400),
        ({"PageNumber": 0}, "InvalidParameter", 400),
        ({"Status": "exploded"}, "InvalidParameter", 400),
        ({"Direction": "sideways"}, "InvalidParameter", 400),
        ({"TargetType": "printer"}, "InvalidParameter", 400),
        ({"StartTime": "yesterday"}, "InvalidParameter", 400),
        ({"NextToken": "garbage"}, "InvalidParameter", 400),
        ({"Filters.1": "x"}, "InvalidParameter", 400),
        ({"InstanceId": "idaas_doesnotexist"}, "ResourceNotFound.Instance", 404),
        ({"InstanceId": ""}, "MissingParameter.InstanceId", 400),
    ],
)
async def test_invalid_requests(
    sim: SimulatorServer,
    client: httpx.AsyncClient,
    params: dict[str, Any],
    code: str,
    status: int,
) -> None:
    arguments = {"InstanceId": iid(sim), **params}
    got, body, _ = await call(client, "ListSynchronizationJobs", **arguments)
    assert (got, body["Code"]) == (status, code)
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert body["HostId"] == sim.endpoint


async def test_next_token_is_bound_to_its_query(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    _, body, _ = await call(client, "ListSynchronizationJobs", InstanceId=iid(sim), MaxResults=5)
    status, error, _ = await call(
        client, "ListSynchronizationJobs", InstanceId=iid(sim), MaxResults=5,
        NextToken=body["NextToken"], Direction="egress",
    )  # fmt: skip
    assert (status, error["Code"]) == (400, "InvalidParameter")
    assert "different filters" in error["Message"]


async def test_every_filter(sim: SimulatorServer, client: httpx.AsyncClient) -> None:
    everything, _ = await page_all(client, iid(sim))
    instance = sim.world.instances[0]
    dingtalk = next(t for t in instance.targets if t.kind == "dingtalk")
    app = next(t for t in instance.targets if t.target_type == "application")
    middle = everything[len(everything) // 2]["StartTime"]
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"TargetType": "application"}, lambda j: j["TargetType"] == "application"),
        ({"Direction": "egress"}, lambda j: j["Direction"] == "egress"),
        ({"Status": "partial_success"}, lambda j: j["Status"] == "partial_success"),
        ({"Status": "running"}, lambda j: j["Status"] == "running"),
        ({"StartTime": middle}, lambda j: j["StartTime"] >= middle),
        ({"EndTime": middle}, lambda j: j["StartTime"] <= middle),
        ({"StartTime": middle, "EndTime": middle}, lambda j: j["StartTime"] == middle),
        (
            {"TargetIds.1": dingtalk.target_id, "TargetIds.2": app.target_id},
            lambda j: j["TargetId"] in (dingtalk.target_id, app.target_id),
        ),
        (
            {"TargetIds.1": dingtalk.target_id, "Direction": "ingress", "Status": "success"},
            lambda j: (
                j["TargetId"] == dingtalk.target_id
                and j["Direction"] == "ingress"
                and j["Status"] == "success"
            ),
        ),
        (
            {"Filters.1.Key": "qps", "Filters.1.Values.1": "1", "Filters.2.Key": "x"},
            lambda j: True,
        ),
    ]
    for filters, predicate in cases:
        got, totals = await page_all(client, iid(sim), page_size=13, **filters)
        expected = [j for j in everything if predicate(j)]
        assert [j["SynchronizationJobId"] for j in got] == [
            j["SynchronizationJobId"] for j in expected
        ], filters
        assert set(totals) <= {len(expected)}
        assert expected or filters.get("Status") == "running"


async def test_job_shapes_follow_the_reference(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    jobs, _ = await page_all(client, iid(sim))
    in_progress = [j for j in jobs if j["Status"] in ("pending", "running")]
    terminal = [j for j in jobs if j["Status"] not in ("pending", "running")]
    assert in_progress
    assert terminal
    for job in in_progress:
        assert "Result" not in job
        assert "EndTime" not in job
        assert job["Description"]
    for job in terminal:
        assert job["EndTime"] >= job["StartTime"]
        result = job["Result"]
        assert set(result) - {"ErrorCode", "ErrorMessage"} == {
            "UserStatistics", "OrganizationalUnitStatistics", "GroupStatistics",
            "GroupMemberStatistics",
        }  # fmt: skip
        for block in ("UserStatistics", "OrganizationalUnitStatistics"):
            assert "Exported" in result[block]
        for block in ("GroupStatistics", "GroupMemberStatistics"):
            assert "Exported" not in result[block]
            assert set(result[block]) == {
                "Created",
                "Updated",
                "Binded",
                "Deleted",
                "Same",
                "Pushed",
            }
        assert ("ErrorCode" in result) == ("ErrorMessage" in result)
        if job["Status"] == "failed":
            assert result["ErrorCode"]
        if job["Status"] == "success":
            assert "ErrorCode" not in result


async def test_get_synchronization_job(sim: SimulatorServer, client: httpx.AsyncClient) -> None:
    jobs, _ = await page_all(client, iid(sim))
    for listed in (
        next(j for j in jobs if "Result" in j),
        next(j for j in jobs if "Result" not in j),
    ):
        status, body, _ = await call(
            client, "GetSynchronizationJob", InstanceId=iid(sim),
            SynchronizationJobId=listed["SynchronizationJobId"],
        )  # fmt: skip
        assert status == 200
        GetSynchronizationJobResponse.model_validate(body)
        job = body["SynchronizationJob"]
        assert "Description" not in job
        assert "Exported" not in str(job)
        expected = {k: v for k, v in listed.items() if k not in ("Description", "Result")}
        assert {k: v for k, v in job.items() if k != "Result"} == expected
    status, body, _ = await call(
        client, "GetSynchronizationJob", InstanceId=iid(sim), SynchronizationJobId="sync_nope"
    )
    assert (status, body["Code"]) == (404, "EntityNotExists.SynchronizationJob")


async def test_identity_providers_applications_instances(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    instance = sim.world.instances[0]
    status, body, _ = await call(client, "ListIdentityProviders", InstanceId=iid(sim))
    assert status == 200
    parsed = ListIdentityProvidersResponse.model_validate(body)
    idps = [t for t in instance.targets if t.target_type == "identity_provider"]
    assert parsed.total_count == len(idps)
    assert {
        p.identity_provider_id: p.identity_provider_name for p in parsed.identity_providers
    } == {t.target_id: t.name for t in idps}
    _, body, _ = await call(
        client, "ListIdentityProviders", InstanceId=iid(sim), Direction="egress"
    )
    assert body["TotalCount"] == sum(1 for t in idps if "egress" in t.streams)
    _, body, _ = await call(
        client, "ListIdentityProviders", InstanceId=iid(sim), PageSize=1, PageNumber=2
    )
    assert len(body["IdentityProviders"]) == 1
    assert body["IdentityProviders"][0]["IdentityProviderId"] == idps[1].target_id

    status, body, _ = await call(client, "ListApplications", InstanceId=iid(sim))
    parsed_apps = ListApplicationsResponse.model_validate(body)
    assert [a.application_id for a in parsed_apps.applications] == [
        t.target_id for t in instance.targets if t.target_type == "application"
    ]
    assert all(a.status == "enabled" for a in parsed_apps.applications)

    status, body, _ = await call(client, "ListInstances", PageNumber=1, PageSize=10)
    parsed_instances = ListInstancesResponse.model_validate(body)
    assert [i.instance_id for i in parsed_instances.instances] == [
        i.instance_id for i in sim.world.instances
    ]
    status, body, _ = await call(client, "ListIdentityProviders", InstanceId="idaas_nope")
    assert (status, body["Code"]) == (404, "ResourceNotFound.Instance")


async def test_get_and_form_body_are_accepted(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    headers = {"x-acs-action": "ListSynchronizationJobs", "x-acs-version": "2021-12-01"}
    response = await client.get(
        "/", params={"InstanceId": iid(sim), "MaxResults": "3"}, headers=headers
    )
    assert response.status_code == 200
    assert len(response.json()["SynchronizationJobs"]) == 3
    response = await client.post(
        "/", data={"InstanceId": iid(sim), "MaxResults": "4"}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["SynchronizationJobs"]) == 4


async def test_unknown_action_version_and_method(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    status, body, _ = await call(client, "DeleteEverything", InstanceId=iid(sim))
    assert (status, body["Code"]) == (404, "InvalidAction.NotFound")
    response = await client.post(
        "/", params={"InstanceId": iid(sim)},
        headers={"x-acs-action": "ListSynchronizationJobs", "x-acs-version": "2015-01-01"},
    )  # fmt: skip
    assert (response.status_code, response.json()["Code"]) == (400, "InvalidVersion")
    response = await client.put(
        "/", headers={"x-acs-action": "ListSynchronizationJobs", "x-acs-version": "2021-12-01"}
    )
    assert response.status_code == 405


async def test_unsigned_request_is_rejected(sim: SimulatorServer) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url, trust_env=False) as plain:
        response = await plain.post("/", params={"Action": "ListInstances"})
    assert (response.status_code, response.json()["Code"]) == (400, "IncompleteSignature")


async def test_signature_mismatch_body_echoes_the_security_token(sim: SimulatorServer) -> None:
    """Over HTTP, as a client sees it: the error body's Message holds the STS token it sent."""
    sts = DEMO_STS_KEY
    wrong = AccessKey(sts.access_key_id, "not-the-secret", security_token=sts.security_token)
    async with api_client(sim.base_url, wrong) as client:
        status, body, _ = await call(client, "ListInstances")
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert f"x-acs-security-token:{sts.security_token}#" in body["Message"]
    assert set(body) >= {"RequestId", "HostId", "Code", "Message", "Recommend"}
