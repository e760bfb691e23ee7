"""The async EIAM OpenAPI client: signed, rate-limited, retrying, paginating, typed.

One :class:`EiamClient` talks to one endpoint over one pooled ``httpx.AsyncClient`` and serves
any number of IDaaS instances (the InstanceId is a per-call parameter). Each HTTP attempt:

1. takes a token from the shared :class:`~exporter.eiam.ratelimit.RateLimiter`;
2. is signed afresh by :class:`~exporter.eiam.signing.AcsV3Auth` (new date and nonce);
3. runs under connect/read/write timeouts *and* an overall deadline, so a server that trickles
   bytes forever cannot hang a poll;
4. is classified into a typed :mod:`~exporter.eiam.errors` error or a typed model;
5. is reported to the :class:`RequestObserver` (action, outcome code, duration, attempt).

Retries follow :class:`~exporter.eiam.retry.RetryPolicy`: throttling, 5xx, timeouts,
transport errors and malformed bodies are retried with full-jitter backoff (``x-acs-retry-after``
honoured, read as milliseconds like the official SDK does); everything else fails at once.

Example::

    async with EiamClient(resolve_endpoint("cn-hangzhou"), provider) as client:
        async for job in client.list_synchronization_jobs("idaas_x", start_time=since_ms):
            print(job.synchronization_job_id, job.status)
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
import pydantic
import structlog

from exporter import __version__
from exporter.eiam.credentials.base import CredentialsProvider
from exporter.eiam.encoding import canonical_query_string, flatten_params
from exporter.eiam.errors import (
    ApiError,
    EiamError,
    MalformedResponseError,
    PaginationError,
    SecurityTokenExpiredError,
    TransportError,
    classify_api_error,
)
from exporter.eiam.models import (
    ApiResponse,
    Application,
    GetSynchronizationJobResponse,
    IdentityProvider,
    ListApplicationsResponse,
    ListIdentityProvidersResponse,
    ListSynchronizationJobsResponse,
    SynchronizationJob,
)
from exporter.eiam.ratelimit import RateLimiter
from exporter.eiam.redaction import redact
from exporter.eiam.retry import RetryPolicy
from exporter.eiam.signing import AcsV3Auth

__all__ = [
    "API_VERSION",
    "MAX_PAGE_SIZE",
    "ClientTimeouts",
    "EiamClient",
    "Filter",
    "RequestEvent",
    "RequestObserver",
    "request_purpose",
]

API_VERSION = "2021-12-01"
MAX_PAGE_SIZE = 100
MAX_PLAUSIBLE_TOTAL = 100_000_000
"""A TotalCount above this (or below 0) is not a real listing but a broken response."""

request_purpose: contextvars.ContextVar[str] = contextvars.ContextVar("request_purpose", default="")
"""Why the caller sends its requests (``poll``, ``sweep``…): set it around a batch of calls and
every :class:`RequestEvent` of the task carries it, so costs can be split by purpose without
a client per purpose. Empty when nobody said.

>>> token = request_purpose.set("sweep"); request_purpose.get()
'sweep'
>>> request_purpose.reset(token)
"""

_SUCCESS_CODES = frozenset({"", "200", "OK", "Success", "success"})
_log = structlog.get_logger(__name__)

ResponseT = TypeVar("ResponseT", bound=ApiResponse)


@dataclass(frozen=True, slots=True)
class ClientTimeouts:
    """Per-attempt limits in seconds. ``total`` bounds one attempt end to end."""

    connect: float = 5.0
    read: float = 15.0
    write: float = 10.0
    pool: float = 10.0
    total: float = 30.0

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One HTTP attempt, as reported to the observer.

    ``code`` is the HTTP status for a success (``"200"``), the API error Code for an API error
    (``"Throttling.User"``), or the kind of failure otherwise (``"ReadTimeout"``,
    ``"MalformedResponse"``). ``attempt`` is 1-based; ``will_retry`` says another follows.
    """

    action: str
    code: str
    duration_seconds: float
    attempt: int
    will_retry: bool
    request_id: str | None = None
    purpose: str = ""
    """:data:`request_purpose` when the request was sent."""


class RequestObserver(Protocol):
    """Receives every :class:`RequestEvent` (the daemon turns them into metrics)."""

    def on_request(self, event: RequestEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class Filter:
    """A ``Filters.N`` entry of ListSynchronizationJobs (valid keys are undocumented)."""

    key: str
    values: tuple[str, ...] = ()


class EiamClient:
    """Async client of the EIAM 2021-12-01 actions the exporter needs. See the module docs."""

    def __init__(
        self,
        endpoint: httpx.URL | str,
        credentials: CredentialsProvider,
        *,
        timeouts: ClientTimeouts | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        observer: RequestObserver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        method: str = "POST",
        max_pages: int = 10_000,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        verify: Any = True,
        max_connections: int = 10,
    ) -> None:
        self.endpoint = httpx.URL(str(endpoint)).copy_with(path="/", query=None)
        self.credentials = credentials
        self.timeouts = timeouts or ClientTimeouts()
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter or RateLimiter(None)
        self.observer = observer
        self.method = method.upper()
        self.max_pages = max_pages
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._sleep = sleep
        self._auth = AcsV3Auth(credentials)
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=self.timeouts.httpx(),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={
                "user-agent": f"idaas-sync-exporter/{__version__}",
                "accept": "application/json",
            },
            follow_redirects=False,
            verify=verify,
            trust_env=False,
        )

    def __repr__(self) -> str:
        return (
            f"EiamClient(endpoint={str(self.endpoint)!r}, credentials={self.credentials.source!r})"
        )

    async def __aenter__(self) -> EiamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- one call, with retries -------------------------------------------------------------

    async def call(
        self, action: str, params: Mapping[str, Any], model: type[ResponseT]
    ) -> ResponseT:
        """Call *action* with *params* (nested values are flattened) and parse into *model*."""
        query = canonical_query_string(flatten_params(params))
        started = time.monotonic()
        attempt = 0
        refreshed_credentials = False
        while True:
            attempt += 1
            await self.rate_limiter.acquire()
            sent = time.perf_counter()
            try:
                result, status = await self._attempt(action, query, model)
            except EiamError as error:
                duration = time.perf_counter() - sent
                retry = error.retryable
                if isinstance(error, SecurityTokenExpiredError):
                    retry = not refreshed_credentials
                    refreshed_credentials = True
                    self.credentials.invalidate()
                retry_after = error.retry_after if isinstance(error, ApiError) else None
                delay = self.retry.backoff(attempt, self._rng, retry_after=retry_after)
                elapsed = time.monotonic() - started
                retry = retry and self.retry.should_retry(attempt, elapsed, delay)
                request_id = getattr(error, "request_id", None)
                self._report(
                    RequestEvent(
                        action,
                        error.code,
                        duration,
                        attempt,
                        retry,
                        request_id,
                        request_purpose.get(),
                    )
                )
                if not retry:
                    raise
                _log.warning(
                    "eiam request failed, retrying",
                    action=action,
                    code=error.code,
                    request_id=request_id,
                    attempt=attempt,
                    delay_seconds=round(delay, 3),
                    error=str(error),  # credentials already masked when the error was built
                )
                await self._sleep(delay)
                continue
            duration = time.perf_counter() - sent
            self._report(
                RequestEvent(
                    action,
                    str(status),
                    duration,
                    attempt,
                    False,
                    result.request_id,
                    request_purpose.get(),
                )
            )
            _log.debug(
                "eiam request",
                action=action,
                status=status,
                request_id=result.request_id,
                attempt=attempt,
                duration_seconds=round(duration, 4),
            )
            return result

    def _report(self, event: RequestEvent) -> None:
        if self.observer is not None:
            try:
                self.observer.on_request(event)
            except Exception:  # an observer bug must never break the API call
                _log.exception("request observer failed", action=event.action)

    async def _attempt(
        self, action: str, query: str, model: type[ResponseT]
    ) -> tuple[ResponseT, int]:
        """One signed HTTP request; transport failures become :class:`TransportError`."""
        request = self._http.build_request(
            self.method,
            self.endpoint.copy_with(query=query.encode("ascii") or None),
            headers={"x-acs-action": action, "x-acs-version": API_VERSION},
        )
        host = self.endpoint.host
        try:
            async with asyncio.timeout(self.timeouts.total):
                response = await self._http.send(request, auth=self._auth)
        except TimeoutError:
            raise TransportError(
                f"no complete answer from {host} within {self.timeouts.total:g} s "
                "(overall deadline)",
                kind="Timeout",
                action=action,
            ) from None
        except httpx.TimeoutException as exc:
            raise TransportError(
                f"{type(exc).__name__} talking to {host} "
                f"(connect {self.timeouts.connect:g} s, read {self.timeouts.read:g} s)",
                kind=type(exc).__name__,
                action=action,
            ) from None
        except httpx.RemoteProtocolError as exc:
            text = str(exc)
            truncated = "incomplete" in text.lower() or "complete message body" in text
            raise TransportError(
                "the connection closed before the whole response body arrived "
                f"(truncated by the server or a proxy): {text}"
                if truncated
                else f"HTTP protocol error from {host}: {text}",
                kind="TruncatedBody" if truncated else "ProtocolError",
                action=action,
            ) from None
        except httpx.TransportError as exc:
            raise TransportError(
                f"{type(exc).__name__} talking to {host}: {exc or 'no detail'}",
                kind=type(exc).__name__,
                action=action,
            ) from None
        return parse_response(action, response, model), response.status_code

    # -- actions ----------------------------------------------------------------------------

    async def list_synchronization_job_pages(
        self,
        instance_id: str,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
        target_type: str | None = None,
        target_ids: Sequence[str] | None = None,
        direction: str | None = None,
        status: str | None = None,
        filters: Sequence[Filter] | None = None,
        max_results: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[ListSynchronizationJobsResponse]:
        """Yield every page of ListSynchronizationJobs (MaxResults + NextToken).

        StartTime/EndTime are epoch milliseconds on the job's start time. Paging stops on the
        first page without NextToken; a repeated token or more than ``max_pages`` pages raise
        :class:`~exporter.eiam.errors.PaginationError` instead of looping forever.
        """
        if not 1 <= max_results <= MAX_PAGE_SIZE:
            raise ValueError(f"max_results must be within 1..{MAX_PAGE_SIZE}")
        base: dict[str, Any] = {
            "InstanceId": instance_id,
            "MaxResults": max_results,
            "StartTime": start_time,
            "EndTime": end_time,
            "TargetType": target_type,
            "TargetIds": list(target_ids) if target_ids else None,
            "Direction": direction,
            "Status": status,
            "Filters": [{"Key": f.key, "Values": list(f.values)} for f in filters]
            if filters
            else None,
        }
        action = "ListSynchronizationJobs"
        token: str | None = None
        seen_tokens: set[str] = set()
        received = 0
        lowest_total: int | None = None
        for page_number in range(1, self.max_pages + 1):
            page = await self.call(
                action, {**base, "NextToken": token}, ListSynchronizationJobsResponse
            )
            total = page.total_count
            if total is not None and not 0 <= total <= MAX_PLAUSIBLE_TOTAL:
                raise MalformedResponseError(
                    f"implausible TotalCount {total} on page {page_number}",
                    action=action,
                    request_id=page.request_id,
                )
            if total is not None:
                lowest_total = total if lowest_total is None else min(lowest_total, total)
            count = len(page.synchronization_jobs)
            received += count
            raw_token = page.next_token
            yield page
            # Drop our reference before the next request: a page is ~1,000 tracked objects, and
            # keeping it alive while the next one is parsed doubles the garbage collector's work.
            del page
            token = (raw_token or "").strip() or None
            if token is None:
                # Jobs that start while we page raise TotalCount without entering this
                # listing (they sort before the cursor; the next poll reads them): only a
                # shortfall against the lowest TotalCount seen means the server dropped some.
                if lowest_total is not None and received < lowest_total and count >= max_results:
                    raise PaginationError(
                        f"the listing stopped without a NextToken after {received} of "
                        f"TotalCount={lowest_total} jobs on a full page; refusing to treat it as "
                        "complete (jobs would be missed). It is retried on the next poll",
                        action=action,
                    )
                return
            if token in seen_tokens:
                raise PaginationError(
                    f"the server repeated a NextToken on page {page_number}; stopping a "
                    "paging loop that would never end",
                    action=action,
                )
            seen_tokens.add(token)
        raise PaginationError(
            f"more than {self.max_pages} pages; narrow the time window (lookback) or raise "
            "the page limit",
            action=action,
        )

    async def list_synchronization_jobs(
        self, instance_id: str, **filters: Any
    ) -> AsyncIterator[SynchronizationJob]:
        """Every job of every page, in server order. Same filters as the pages variant."""
        async for page in self.list_synchronization_job_pages(instance_id, **filters):
            jobs = page.synchronization_jobs
            del page  # see list_synchronization_job_pages: release it before the next fetch
            for job in jobs:
                yield job
            del jobs

    async def get_synchronization_job(self, instance_id: str, job_id: str) -> SynchronizationJob:
        """One job by ID (GetSynchronizationJob): no Description and no Exported statistics."""
        action = "GetSynchronizationJob"
        response = await self.call(
            action,
            {"InstanceId": instance_id, "SynchronizationJobId": job_id},
            GetSynchronizationJobResponse,
        )
        if response.synchronization_job is None:
            raise MalformedResponseError(
                "the response has no SynchronizationJob object",
                action=action,
                request_id=response.request_id,
            )
        return response.synchronization_job

    async def list_identity_providers(self, instance_id: str) -> list[IdentityProvider]:
        """All identity providers of an instance (PageNumber/PageSize paging)."""
        pages = self._numbered_pages(
            "ListIdentityProviders", instance_id, ListIdentityProvidersResponse
        )
        return [idp async for page in pages for idp in page.identity_providers]

    async def list_applications(self, instance_id: str) -> list[Application]:
        """All applications of an instance (PageNumber/PageSize paging)."""
        pages = self._numbered_pages("ListApplications", instance_id, ListApplicationsResponse)
        return [app async for page in pages for app in page.applications]

    async def _numbered_pages(
        self,
        action: str,
        instance_id: str,
        model: type[ListIdentityProvidersResponse] | type[ListApplicationsResponse],
    ) -> AsyncIterator[Any]:
        received = 0
        for number in range(1, self.max_pages + 1):
            page = await self.call(
                action,
                {"InstanceId": instance_id, "PageNumber": number, "PageSize": MAX_PAGE_SIZE},
                model,
            )
            items = (
                page.identity_providers
                if isinstance(page, ListIdentityProvidersResponse)
                else page.applications
            )
            received += len(items)
            yield page
            total = page.total_count
            if not items or len(items) < MAX_PAGE_SIZE or (total is not None and received >= total):
                return
        raise PaginationError(f"more than {self.max_pages} pages", action=action)


def parse_response(action: str, response: httpx.Response, model: type[ResponseT]) -> ResponseT:
    """Turn an HTTP response into *model*, or raise the typed error that says what happened."""
    status = response.status_code
    body = response.content
    content_type = response.headers.get("content-type", "").lower()
    header_request_id = response.headers.get("x-acs-request-id")
    if status >= 400:
        raise _error_from_body(action, response, header_request_id)
    if status >= 300 or status < 200:
        where = response.headers.get("location")
        raise MalformedResponseError(
            f"unexpected HTTP {status}"
            + (f" redirecting to {where}: check the endpoint setting" if where else ""),
            action=action,
            http_status=status,
            request_id=header_request_id,
        )
    if "html" in content_type or body.lstrip()[:1] == b"<":
        raise MalformedResponseError(
            f"expected JSON but got an HTML page (HTTP {status}, content-type "
            f"{content_type or 'none'}): a proxy, firewall or captive portal is answering "
            f"instead of the API; first bytes: {_snippet(body)}",
            action=action,
            http_status=status,
            request_id=header_request_id,
        )
    try:
        parsed = _validate_json(model, body)
    except pydantic.ValidationError as exc:
        raise _malformed(action, exc, body, response, header_request_id) from None
    code = (parsed.code or "").strip()
    if code not in _SUCCESS_CODES:
        raise classify_api_error(
            status,
            code,
            parsed.message,
            parsed.request_id or header_request_id,
            action=action,
            retry_after=_retry_after(response),
        )
    return parsed


def _validate_json(model: type[ResponseT], body: bytes) -> ResponseT:
    """``model_validate_json`` with the cyclic garbage collector paused.

    A page's ~1,000 tracked objects are all alive and acyclic while being built, so the
    collections their allocation triggers free nothing and cost a third of the parse time.
    Synchronous (no ``await`` inside), so nothing else runs meanwhile; a disabled collector
    stays disabled.
    """
    if not gc.isenabled():
        return model.model_validate_json(body)
    gc.disable()
    try:
        return model.model_validate_json(body)
    finally:
        gc.enable()


def _error_from_body(
    action: str, response: httpx.Response, header_request_id: str | None
) -> ApiError:
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        kind = "an HTML error page" if b"<" in response.content[:64] else "a non-JSON body"
        return classify_api_error(
            status,
            None,
            f"{kind} instead of an API error (a proxy or load balancer answered?): "
            f"{_snippet(response.content)}",
            header_request_id,
            action=action,
            retry_after=_retry_after(response),
        )
    return classify_api_error(
        status,
        str(data.get("Code") or ""),
        str(data.get("Message") or ""),
        str(data.get("RequestId") or "") or header_request_id,
        action=action,
        retry_after=_retry_after(response),
    )


def _malformed(
    action: str,
    exc: pydantic.ValidationError,
    body: bytes,
    response: httpx.Response,
    request_id: str | None,
) -> MalformedResponseError:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        detail = str(first.get("ctx", {}).get("error", first["msg"]))
        if not body.strip():
            what = "an empty body"
        elif "EOF" in detail or "eof" in detail:
            declared = response.headers.get("content-length")
            what = (
                f"truncated JSON ({len(body)} bytes"
                + (f" of a declared {declared}" if declared else "")
                + ")"
            )
        else:
            what = f"a body that is not JSON ({detail}); first bytes: {_snippet(body)}"
        message = f"the server returned {what}"
    else:
        location = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = (
            f"the response does not have the documented shape: {location}: {first['msg']} "
            f"({exc.error_count()} problem(s))"
        )
    return MalformedResponseError(
        message, action=action, http_status=response.status_code, request_id=request_id
    )


def _retry_after(response: httpx.Response) -> float | None:
    """``x-acs-retry-after`` in seconds. The unit is undocumented; the official SDK reads ms."""
    raw = response.headers.get("x-acs-retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value / 1000.0 if value >= 0 else None


_SNIPPET_CONTEXT = 16_384
"""Bytes decoded around a snippet, so a credential that starts inside it is masked whole."""


def _snippet(body: bytes, limit: int = 80) -> str:
    """The first *limit* characters of an unexpected body, credentials masked first.

    Redact, then truncate: a token cut in half is no longer recognisable as the token.

    >>> from exporter.eiam.redaction import register
    >>> register("CAIS" + "+long/token=" * 20, "security-token")
    >>> _snippet(b"<html>Bad request with x-acs-security-token: CAIS" + b"+long/token=" * 20)
    "'<html>Bad request with x-acs-security-token: <redacted:security-token>'"
    """
    text = redact(body[: limit + _SNIPPET_CONTEXT].decode("utf-8", "replace"))
    text = " ".join(text.split())
    cut = len(text) > limit or len(body) > limit + _SNIPPET_CONTEXT
    return repr(text[:limit] + ("…" if cut else ""))
