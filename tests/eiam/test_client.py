"""The client against a mocked transport: paging, retries, errors, bad input, secrecy."""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from exporter.eiam.client import ClientTimeouts, EiamClient, RequestEvent
from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider
from exporter.eiam.encoding import parse_query_string
from exporter.eiam.errors import (
    ClockSkewError,
    InstanceNotFoundError,
    InvalidAccessKeyError,
    MalformedResponseError,
    PaginationError,
    PermissionDeniedError,
    SecurityTokenExpiredError,
    ServerError,
    SignatureMismatchError,
    ThrottlingError,
    TransportError,
)
from exporter.eiam.ratelimit import RateLimiter
from exporter.eiam.retry import RetryPolicy
from exporter.logs import configure_logging

SECRET = "sup3r-s3cret-value-XYZ"
TOKEN = "sts-token-value-QWE"
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    def __init__(self) -> None:
        self.events: list[RequestEvent] = []
        self.sleeps: list[float] = []

    def on_request(self, event: RequestEvent) -> None:
        self.events.append(event)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    @property
    def codes(self) -> list[str]:
        return [e.code for e in self.events]


class InvalidatingProvider(StaticCredentialsProvider):
    def __init__(self, credential: Credential) -> None:
        super().__init__(credential)
        self.invalidations = 0

    def invalidate(self) -> None:
        self.invalidations += 1


def make_client(
    handler: Handler,
    recorder: Recorder | None = None,
    *,
    retry: RetryPolicy | None = None,
    provider: StaticCredentialsProvider | None = None,
    **kwargs: Any,
) -> EiamClient:
    recorder = recorder or Recorder()
    credential = Credential("testid", SecretStr(SECRET), SecretStr(TOKEN), source="test")
    return EiamClient(
        "https://eiam.cn-hangzhou.aliyuncs.com",
        provider or StaticCredentialsProvider(credential),
        transport=httpx.MockTransport(handler),
        observer=recorder,
        sleep=recorder.sleep,
        rng=random.Random(7),
        retry=retry or RetryPolicy(max_attempts=4),
        **kwargs,
    )


def job(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "SynchronizationJobId": f"sync_{n:05d}",
        "TargetType": "identity_provider",
        "TargetId": "idp_1",
        "Direction": "ingress",
        "StartTime": 1_700_000_000_000 + n,
        "Status": "success",
        **extra,
    }


def ok(body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.Response(200, json={"RequestId": "R-OK", **body}, headers=headers)


def api_error(status: int, code: str, message: str = "boom", **headers: str) -> httpx.Response:
    body = {"RequestId": "R-ERR", "HostId": "eiam", "Code": code, "Message": message}
    return httpx.Response(status, json=body, headers=headers)


def params(request: httpx.Request) -> dict[str, str]:
    return dict(parse_query_string(request.url.query.decode()))


def paged(jobs: list[dict[str, Any]], page_size: int = 100) -> Handler:
    """A server with NextToken = offset."""

    def handler(request: httpx.Request) -> httpx.Response:
        query = params(request)
        assert query["MaxResults"] == "100"
        start = int(query.get("NextToken", "0"))
        chunk = jobs[start : start + page_size]
        body: dict[str, Any] = {"TotalCount": len(jobs), "SynchronizationJobs": chunk}
        if start + page_size < len(jobs):
            body["NextToken"] = str(start + page_size)
        return ok(body)

    return handler


async def collect(client: EiamClient, **filters: Any) -> list[str]:
    async with client:
        return [
            j.synchronization_job_id
            async for j in client.list_synchronization_jobs("idaas_x", **filters)
        ]


# -- pagination ----------------------------------------------------------------------------


async def test_follows_every_page_and_yields_each_job_once() -> None:
    jobs = [job(n) for n in range(250)]
    recorder = Recorder()
    ids = await collect(make_client(paged(jobs), recorder))
    assert ids == [j["SynchronizationJobId"] for j in jobs]
    assert recorder.codes == ["200", "200", "200"]


async def test_empty_listing() -> None:
    assert await collect(make_client(lambda r: ok({"TotalCount": 0}))) == []


async def test_sends_filters_flat() -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(params(request))
        return ok({"TotalCount": 0, "SynchronizationJobs": []})

    from exporter.eiam.client import Filter

    await collect(
        make_client(handler),
        start_time=1,
        end_time=2,
        target_type="application",
        target_ids=["app_1", "app_2"],
        direction="egress",
        status="failed",
        filters=[Filter("k 1", ("v/1*~",))],
    )
    assert seen == [
        {
            "InstanceId": "idaas_x",
            "MaxResults": "100",
            "StartTime": "1",
            "EndTime": "2",
            "TargetType": "application",
            "TargetIds.1": "app_1",
            "TargetIds.2": "app_2",
            "Direction": "egress",
            "Status": "failed",
            "Filters.1.Key": "k 1",
            "Filters.1.Values.1": "v/1*~",
        }
    ]


async def test_repeated_token_stops_the_loop() -> None:
    handler = lambda r: ok({"TotalCount": 500, "SynchronizationJobs": [job(1)], "NextToken": "T"})  # noqa: E731
    with pytest.raises(PaginationError, match="repeated a NextToken"):
        await collect(make_client(handler))


async def test_page_limit_stops_a_runaway_listing() -> None:
    counter = iter(range(10**6))
    handler = lambda r: ok({"SynchronizationJobs": [], "NextToken": f"T{next(counter)}"})  # noqa: E731
    with pytest.raises(PaginationError, match="more than 5 pages"):
        await collect(make_client(handler, max_pages=5))


async def test_missing_next_token_on_a_full_page_is_an_error() -> None:
    jobs = [job(n) for n in range(100)]
    handler = lambda r: ok({"TotalCount": 300, "SynchronizationJobs": jobs})  # noqa: E731
    with pytest.raises(PaginationError, match="without a NextToken after 100 of TotalCount=300"):
        await collect(make_client(handler))


async def test_short_last_page_without_token_is_complete_even_if_total_is_stale() -> None:
    handler = lambda r: ok({"TotalCount": 3, "SynchronizationJobs": [job(1)]})  # noqa: E731
    assert await collect(make_client(handler)) == ["sync_00001"]


@pytest.mark.parametrize("total", [-1, 10**12])
async def test_absurd_total_count(total: int) -> None:
    handler = lambda r: ok({"TotalCount": total, "SynchronizationJobs": []})  # noqa: E731
    with pytest.raises(MalformedResponseError, match="implausible TotalCount"):
        await collect(make_client(handler))


# -- retries -------------------------------------------------------------------------------


async def test_throttle_then_success_with_new_nonce_each_attempt() -> None:
    nonces: list[str] = []
    replies = iter(
        [
            api_error(400, "Throttling.User"),
            api_error(400, "Throttling.User"),
            ok({"TotalCount": 0}),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        nonces.append(request.headers["x-acs-signature-nonce"])
        return next(replies)

    recorder = Recorder()
    assert await collect(make_client(handler, recorder)) == []
    assert recorder.codes == ["Throttling.User", "Throttling.User", "200"]
    assert [e.attempt for e in recorder.events] == [1, 2, 3]
    assert [e.will_retry for e in recorder.events] == [True, True, False]
    assert len(set(nonces)) == 3
    assert len(recorder.sleeps) == 2
    assert all(0 <= s <= 20 for s in recorder.sleeps)


async def test_retries_are_bounded() -> None:
    recorder = Recorder()
    with pytest.raises(ServerError) as info:
        await collect(make_client(lambda r: api_error(503, "ServiceUnavailable"), recorder))
    assert recorder.codes == ["ServiceUnavailable"] * 4
    assert info.value.request_id == "R-ERR"
    assert info.value.http_status == 503


async def test_elapsed_budget_bounds_retries() -> None:
    recorder = Recorder()
    policy = RetryPolicy(max_attempts=10, max_elapsed=1.0, retry_after_cap=30)
    throttled = lambda r: api_error(400, "Throttling", **{"x-acs-retry-after": "5000"})  # noqa: E731
    with pytest.raises(ThrottlingError):
        await collect(make_client(throttled, recorder, retry=policy))
    assert len(recorder.events) == 1  # a 5 s wait would overrun the 1 s budget


async def test_retry_after_is_honoured_and_clamped() -> None:
    recorder = Recorder()
    replies = iter(
        [
            api_error(400, "Throttling.User", **{"x-acs-retry-after": "1500"}),
            api_error(400, "Throttling.User", **{"x-acs-retry-after": "99999999"}),
            ok({"TotalCount": 0}),
        ]
    )
    policy = RetryPolicy(max_attempts=4, retry_after_cap=30, max_elapsed=1000)
    await collect(make_client(lambda r: next(replies), recorder, retry=policy))
    assert recorder.sleeps == [1.5, 30.0]


async def test_transport_errors_are_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("connection refused", request=request)
        if calls == 2:
            raise httpx.ReadTimeout("slow", request=request)
        return ok({"TotalCount": 0})

    recorder = Recorder()
    await collect(make_client(handler, recorder))
    assert recorder.codes == ["ConnectError", "ReadTimeout", "200"]


@pytest.mark.parametrize(
    ("status", "code", "error_type", "hint"),
    [
        (403, "Forbidden.RAM", PermissionDeniedError, "eiam:ListSynchronizationJobs"),
        (403, "Forbidden.RAM", PermissionDeniedError, "AliyunIDaaSEiamReadOnlyAccess"),
        (404, "ResourceNotFound.Instance", InstanceNotFoundError, "InstanceId"),
        (400, "InvalidTimeStamp.Expired", ClockSkewError, "clock"),
        (404, "InvalidAccessKeyId.NotFound", InvalidAccessKeyError, "unknown or deleted"),
        (400, "InvalidAccessKeyId.Inactive", InvalidAccessKeyError, "disabled"),
        (400, "SignatureDoesNotMatch", SignatureMismatchError, "secret"),
        (400, "IncompleteSignature", SignatureMismatchError, "secret"),
    ],
)
async def test_non_retryable_errors_fail_at_once_with_a_hint(
    status: int, code: str, error_type: type[Exception], hint: str
) -> None:
    recorder = Recorder()
    with pytest.raises(error_type) as info:
        await collect(make_client(lambda r: api_error(status, code), recorder))
    assert recorder.codes == [code]
    assert hint in str(info.value)
    assert "R-ERR" in str(info.value)
    assert recorder.sleeps == []


async def test_nonce_reuse_is_retried_with_a_new_nonce() -> None:
    nonces: list[str] = []
    replies = iter([api_error(400, "SignatureNonceUsed"), ok({"TotalCount": 0})])

    def handler(request: httpx.Request) -> httpx.Response:
        nonces.append(request.headers["x-acs-signature-nonce"])
        return next(replies)

    await collect(make_client(handler))
    assert len(nonces) == 2 and nonces[0] != nonces[1]


async def test_expired_sts_token_refreshes_the_credential_once() -> None:
    credential = Credential("STS.id", SecretStr(SECRET), SecretStr(TOKEN), source="test")
    provider = InvalidatingProvider(credential)
    recorder = Recorder()
    expired = lambda r: api_error(400, "InvalidSecurityToken.Expired")  # noqa: E731
    with pytest.raises(SecurityTokenExpiredError, match=r"InvalidSecurityToken\.Expired"):
        await collect(make_client(expired, recorder, provider=provider))
    assert provider.invalidations >= 1
    assert len(recorder.events) == 2  # the first try and one retry with a fresh credential


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            httpx.Response(
                200,
                content=b"<html><body>Gateway login</body></html>",
                headers={"content-type": "text/html"},
            ),
            "HTML page",
        ),
        (httpx.Response(200, content=b"this is not json"), "not JSON"),
        (
            httpx.Response(200, content=b'{"RequestId": "x", "SynchronizationJobs": [{"Sync'),
            "truncated JSON",
        ),
        (httpx.Response(200, content=b""), "empty body"),
        (httpx.Response(200, json={"SynchronizationJobs": "nope"}), "documented shape"),
        (
            httpx.Response(200, json={"SynchronizationJobs": [{"Status": "success"}]}),
            "SynchronizationJobId",
        ),
        (httpx.Response(302, headers={"location": "https://login.example/"}), "redirecting"),
    ],
)
async def test_bad_bodies_become_typed_errors(response: httpx.Response, message: str) -> None:
    recorder = Recorder()
    with pytest.raises(MalformedResponseError, match=message):
        await collect(make_client(lambda r: response, recorder, retry=RetryPolicy(max_attempts=2)))
    assert recorder.codes == ["MalformedResponse", "MalformedResponse"]


async def test_html_error_page_from_a_proxy() -> None:
    page = httpx.Response(502, content=b"<html><h1>502 Bad Gateway</h1></html>")
    with pytest.raises(ServerError, match="HTML error page"):
        await collect(make_client(lambda r: page, retry=RetryPolicy(max_attempts=1)))


async def test_http_200_carrying_an_error_code() -> None:
    body = {"RequestId": "R-200", "Code": "InvalidAccessKeyId.NotFound", "Message": "no such key"}
    with pytest.raises(InvalidAccessKeyError, match="R-200"):
        await collect(make_client(lambda r: httpx.Response(200, json=body)))


async def test_tolerant_models() -> None:
    odd = {
        "SynchronizationJobId": " sync_1\n",
        "TargetId": "idp_1\n",
        "Status": "suspending",
        "TargetType": "user",
        "NewField": {"x": 1},
        "Result": {"UserStatistics": {"Created": {"Total": 1, "Success": 1}}},
    }
    pending = {"SynchronizationJobId": "sync_2", "Status": "pending"}

    async with make_client(lambda r: ok({"SynchronizationJobs": [odd, pending]})) as client:
        jobs = [j async for j in client.list_synchronization_jobs("idaas_x")]
    assert jobs[0].synchronization_job_id == "sync_1"
    assert jobs[0].target_id == "idp_1"
    assert jobs[0].status == "suspending"
    assert jobs[0].result is not None and jobs[0].result.user_statistics is not None
    assert jobs[1].result is None and jobs[1].end_time is None


async def test_a_server_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.Event().wait()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    recorder = Recorder()
    client = EiamClient(
        f"http://127.0.0.1:{port}",
        StaticCredentialsProvider(Credential("id", SecretStr(SECRET), source="test")),
        timeouts=ClientTimeouts(connect=1, read=0.2, total=0.5),
        retry=RetryPolicy(max_attempts=2),
        observer=recorder,
        sleep=recorder.sleep,
    )
    try:
        with pytest.raises(TransportError, match="ReadTimeout"):
            await collect(client)
    finally:
        server.close()
    assert recorder.codes == ["ReadTimeout", "ReadTimeout"]


# -- other actions -------------------------------------------------------------------------


async def test_get_synchronization_job() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-acs-action"] == "GetSynchronizationJob"
        assert params(request) == {"InstanceId": "idaas_x", "SynchronizationJobId": "sync_7"}
        return ok({"SynchronizationJob": job(7, Status="running")})

    async with make_client(handler) as client:
        found = await client.get_synchronization_job("idaas_x", "sync_7")
    assert found.status == "running"

    async with make_client(lambda r: ok({})) as client:
        with pytest.raises(MalformedResponseError, match="no SynchronizationJob"):
            await client.get_synchronization_job("idaas_x", "sync_7")


async def test_list_identity_providers_and_applications_page_by_number() -> None:
    idps = [
        {"IdentityProviderId": f"idp_{n}", "IdentityProviderName": f"IdP {n}"} for n in range(130)
    ]
    apps = [{"ApplicationId": "app_1", "ApplicationName": "HR"}]
    pages: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        query = params(request)
        pages.append(f"{request.headers['x-acs-action']}:{query['PageNumber']}")
        assert query["PageSize"] == "100"
        number = int(query["PageNumber"])
        if request.headers["x-acs-action"] == "ListIdentityProviders":
            chunk = idps[(number - 1) * 100 : number * 100]
            return ok({"TotalCount": len(idps), "IdentityProviders": chunk})
        return ok({"TotalCount": 1, "Applications": apps})

    async with make_client(handler) as client:
        found_idps = await client.list_identity_providers("idaas_x")
        found_apps = await client.list_applications("idaas_x")
    assert [i.identity_provider_id for i in found_idps] == [f"idp_{n}" for n in range(130)]
    assert [a.application_name for a in found_apps] == ["HR"]
    assert pages == ["ListIdentityProviders:1", "ListIdentityProviders:2", "ListApplications:1"]


# -- rate limit ---------------------------------------------------------------------------


async def test_rate_limiter_is_shared_and_enforced() -> None:
    now = 0.0
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        nonlocal now
        waits.append(seconds)
        now += seconds

    limiter = RateLimiter(rate=2.0, burst=1, clock=lambda: now, sleep=fake_sleep)
    first = make_client(lambda r: ok({"TotalCount": 0}), rate_limiter=limiter)
    second = make_client(lambda r: ok({"TotalCount": 0}), rate_limiter=limiter)
    async with first, second:
        for _ in range(3):
            for client in (first, second):
                assert [j async for j in client.list_synchronization_jobs("idaas_x")] == []
    assert limiter.acquired == 6
    assert now == pytest.approx(2.5)  # 6 requests at 2/s with a burst of 1: 5 waits of 0.5 s


# -- secrecy ------------------------------------------------------------------------------


async def test_no_secret_in_logs_reprs_or_errors_at_debug_level() -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    replies = iter([api_error(400, "Throttling.User"), ok({"TotalCount": 0})])
    client = make_client(lambda r: next(replies))
    await collect(client)
    failing = make_client(lambda r: api_error(400, "SignatureDoesNotMatch"))
    with pytest.raises(SignatureMismatchError) as info:
        await collect(failing)
    texts = [
        stream.getvalue(),
        repr(client),
        str(client.credentials),
        str(info.value),
        repr(info.value),
    ]
    texts.append(json.dumps(info.value.__dict__, default=str))
    for text in texts:
        assert SECRET not in text
        assert TOKEN not in text
    assert "eiam request" in stream.getvalue()
