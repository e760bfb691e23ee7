"""Property tests: paging yields each matching job exactly once, for any page size and filters."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.simulator import ManualClock, World, load_scenario
from exporter.simulator.auth import Authenticator
from exporter.simulator.faults import FaultInjector
from exporter.simulator.server import EiamApi
from exporter.simulator.world import Job

from .helpers import T0

WORLD = World(load_scenario("demo"), seed=3, now_ms=ManualClock(T0), speed=20.0)
API = EiamApi(WORLD, authenticator=Authenticator([]), faults=FaultInjector())
INSTANCE = WORLD.instances[0]
TARGET_IDS = [t.target_id for t in INSTANCE.targets]
STARTS = sorted({j.start_ms for j in INSTANCE.jobs})


@st.composite
def filters(draw: st.DrawFn) -> dict[str, str]:
    chosen: dict[str, str] = {}
    if draw(st.booleans()):
        chosen["TargetType"] = draw(st.sampled_from(["identity_provider", "application"]))
    if draw(st.booleans()):
        ids = draw(st.lists(st.sampled_from([*TARGET_IDS, "idp_unknown"]), min_size=1, max_size=3))
        chosen.update({f"TargetIds.{n}": value for n, value in enumerate(ids, start=1)})
    if draw(st.booleans()):
        chosen["Direction"] = draw(st.sampled_from(["ingress", "egress"]))
    if draw(st.booleans()):
        chosen["Status"] = draw(
            st.sampled_from(["success", "failed", "partial_success", "running", "pending"])
        )
    if draw(st.booleans()):
        chosen["StartTime"] = str(draw(st.sampled_from(STARTS)) + draw(st.integers(-1, 1)))
    if draw(st.booleans()):
        chosen["EndTime"] = str(draw(st.sampled_from(STARTS)) + draw(st.integers(-1, 1)))
    if draw(st.booleans()):
        chosen["Filters.1.Key"] = "anything"
        chosen["Filters.1.Values.1"] = draw(st.text(max_size=5))
    return chosen


def matches(job: Job, params: dict[str, str], now: int) -> bool:
    ids = {v for k, v in params.items() if k.startswith("TargetIds.")}
    return (
        ("TargetType" not in params or job.target_type == params["TargetType"])
        and (not ids or job.target_id in ids)
        and ("Direction" not in params or job.direction == params["Direction"])
        and ("Status" not in params or job.status_at(now) == params["Status"])
        and ("StartTime" not in params or job.start_ms >= int(params["StartTime"]))
        and ("EndTime" not in params or job.start_ms <= int(params["EndTime"]))
    )


def expected_ids(world: World, params: dict[str, str]) -> list[str]:
    now = world.now()
    jobs = [j for j in world.instances[0].jobs if matches(j, params, now)]
    return [j.job_id for j in sorted(jobs, key=lambda j: j.key, reverse=True)]


def list_page(api: EiamApi, params: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(api.list_synchronization_jobs(params, "rid"))
    return body


@settings(max_examples=80, deadline=None)
@given(page_size=st.integers(1, 100), params=filters())
def test_keyset_paging_yields_exactly_the_matching_jobs(
    page_size: int, params: dict[str, str]
) -> None:
    expected = expected_ids(WORLD, params)
    seen: list[str] = []
    token = None
    while True:
        query = {"InstanceId": INSTANCE.instance_id, "MaxResults": str(page_size), **params}
        if token:
            query["NextToken"] = token
        body = list_page(API, query)
        assert body["TotalCount"] == len(expected)
        page = [j["SynchronizationJobId"] for j in body["SynchronizationJobs"]]
        seen.extend(page)
        token = body.get("NextToken")
        if token is None:
            break
        assert len(page) == page_size
    assert seen == expected


@settings(max_examples=60, deadline=None)
@given(page_size=st.integers(1, 100), params=filters())
def test_page_number_paging_yields_exactly_the_matching_jobs(
    page_size: int, params: dict[str, str]
) -> None:
    expected = expected_ids(WORLD, params)
    seen: list[str] = []
    number = 1
    while True:
        query = {
            "InstanceId": INSTANCE.instance_id,
            "PageNumber": str(number),
            "PageSize": str(page_size),
            **params,
        }
        body = list_page(API, query)
        assert "NextToken" not in body
        assert body["TotalCount"] == len(expected)
        page = [j["SynchronizationJobId"] for j in body["SynchronizationJobs"]]
        if not page:
            break
        seen.extend(page)
        number += 1
    assert seen == expected


@settings(max_examples=40, deadline=None)
@given(
    page_size=st.integers(1, 40),
    params=filters(),
    steps=st.lists(st.integers(0, 3 * 3_600_000), min_size=1, max_size=30),
    manual=st.lists(st.booleans(), min_size=1, max_size=30),
)
def test_keyset_paging_survives_jobs_arriving_meanwhile(
    page_size: int, params: dict[str, str], steps: list[int], manual: list[bool]
) -> None:
    params.pop("Status", None)  # statuses change as time moves; the property is about identity
    clock = ManualClock(T0)
    world = World(load_scenario("small"), seed=5, now_ms=clock)
    api = EiamApi(world, authenticator=Authenticator([]), faults=FaultInjector())
    instance = world.instances[0]
    params = {k: v for k, v in params.items() if not k.startswith("TargetIds.")}
    before = set(expected_ids(world, params))
    seen: list[str] = []
    token = None
    page = 0
    while True:
        query = {"InstanceId": instance.instance_id, "MaxResults": str(page_size), **params}
        if token:
            query["NextToken"] = token
        body = list_page(api, query)
        seen.extend(j["SynchronizationJobId"] for j in body["SynchronizationJobs"])
        clock.advance(steps[page % len(steps)])
        if manual[page % len(manual)]:
            world.add_job(instance.instance_id, instance.targets[page % 3].target_id)
        page += 1
        token = body.get("NextToken")
        if token is None:
            break
    assert len(seen) == len(set(seen))
    assert before <= set(seen)
