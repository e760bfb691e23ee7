"""The simulated EIAM OpenAPI: request parsing, authentication, faults and the five actions.

Why one handler in front of :mod:`exporter.web.server`: every request goes through the same
steps as on Alibaba Cloud's gateway — faults first (the gateway throttles before anything else),
then parameters from the query string and an ``application/x-www-form-urlencoded`` body, the
signature (V3 or legacy RPC, :mod:`exporter.simulator.auth`), the API version, and finally the
action. Errors come back in the gateway's shape ``{RequestId, HostId, Code, Message, Recommend}``.

Actions (``Version`` 2021-12-01, GET or POST, path ``/``):

``ListSynchronizationJobs``
    ``InstanceId`` (required); paging by ``MaxResults`` (1–100) + ``NextToken``, or by
    ``PageSize`` (1–100) + ``PageNumber`` (≥ 1) — MaxResults/NextToken win when both are given,
    and without either the first page holds 20 jobs; filters ``StartTime``/``EndTime`` (epoch ms,
    inclusive, on the job's StartTime), ``TargetType``, ``TargetIds.N``, ``Direction``,
    ``Status``; ``Filters.N.Key``/``Filters.N.Values.M`` are accepted and ignored (their keys are
    undocumented). Jobs come newest first. ``NextToken`` is a keyset cursor (the last job's sort
    key, bound to the query's filters), so jobs created while a client pages never shift a page:
    each existing job is returned exactly once. It is absent on the last page.
``GetSynchronizationJob``
    ``InstanceId``, ``SynchronizationJobId``; the job without ``Description`` and ``Exported``.
``ListIdentityProviders``, ``ListApplications``, ``ListInstances``
    ``PageNumber``/``PageSize`` (default 1/20, at most 100); ``Direction`` filters identity
    providers, ``ApplicationIds.N``/``Status`` applications, ``InstanceIds.N``/``Status``
    instances.

>>> token = encode_next_token("idaas_x", 12345, 99)
>>> decode_next_token(token, "idaas_x", 99)
12345
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from exporter.eiam.encoding import parse_query_string
from exporter.simulator.apierrors import ApiError
from exporter.simulator.auth import Authenticator
from exporter.simulator.faults import FaultInjector
from exporter.simulator.render import (
    FragmentCache,
    error_body,
    get_job_body,
    json_body,
    list_jobs_body,
)
from exporter.simulator.world import Instance, JobFilter, Target, World
from exporter.web.server import (
    ConnectionAction,
    Request,
    ResetConnection,
    Response,
    TruncatedResponse,
)

__all__ = [
    "API_VERSION",
    "CONTROL_PREFIX",
    "EiamApi",
    "decode_next_token",
    "encode_next_token",
]

_log = structlog.get_logger(__name__)

API_VERSION = "2021-12-01"
CONTROL_PREFIX = "/_sim"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

_TARGET_TYPES = frozenset({"identity_provider", "application", "organizational_unit", "user"})
_DIRECTIONS = frozenset({"ingress", "egress"})
_STATUSES = frozenset({"pending", "running", "failed", "partial_success", "success", "suspending"})
_INDEXED = re.compile(r"^([A-Za-z]+)\.(\d+)(?:\.([A-Za-z]+)(?:\.(\d+))?)?$")
_JSON_HEADERS = "application/json;charset=utf-8"

_SUPPLIERS = {
    "ad": "microsoft:ad",
    "ldap": "unknown:ldap",
    "dingtalk": "alibaba:dingtalk",
    "wecom": "tencent:wecom",
    "feishu": "bytedance:lark",
    "idaas": "alibaba:idaas",
    "oidc": "standard:oidc",
}

ControlHandler = Callable[[Request], Awaitable[Response]]


# -- NextToken -------------------------------------------------------------------------------


def encode_next_token(instance_id: str, key: int, fingerprint: int) -> str:
    """An opaque token: the last job's key, bound to the instance and the query's filters."""
    raw = f"{key:x}.{fingerprint:x}.{zlib.crc32(instance_id.encode()):x}".encode()
    return "NT" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_next_token(token: str, instance_id: str, fingerprint: int) -> int:
    """The key inside *token*; ``ApiError`` (InvalidParameter) unless it continues this query."""
    bad = ApiError.invalid_parameter("NextToken", "the token is malformed or has expired.")
    if not token.startswith("NT"):
        raise bad
    body = token[2:]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
        key_hex, fp_hex, inst_hex = raw.split(".")
        key, fp, inst = int(key_hex, 16), int(fp_hex, 16), int(inst_hex, 16)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise bad from None
    if inst != zlib.crc32(instance_id.encode()):
        raise ApiError.invalid_parameter("NextToken", "the token belongs to another instance.")
    if fp != fingerprint:
        raise ApiError.invalid_parameter(
            "NextToken", "the token belongs to a query with different filters."
        )
    return key


# -- parameters ------------------------------------------------------------------------------


def _int(params: Mapping[str, str], name: str, low: int, high: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise ApiError.invalid_parameter(name, f"{value!r} is not an integer.") from None
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError.invalid_parameter(name, f"{number} is out of range; it must be {bounds}.")
    return number


def _enum(params: Mapping[str, str], name: str, allowed: frozenset[str]) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    value = value.strip()
    if value not in allowed:
        raise ApiError.invalid_parameter(
            name, f"{value!r} is not one of {', '.join(sorted(allowed))}."
        )
    return value


def _required(params: Mapping[str, str], name: str) -> str:
    value = (params.get(name) or "").strip()
    if not value:
        raise ApiError.missing_parameter(name)
    return value


def _list(params: Mapping[str, str], name: str) -> list[str]:
    """A flat array parameter ``Name.1``, ``Name.2``… in index order."""
    items: list[tuple[int, str]] = []
    prefix = name + "."
    for key, value in params.items():
        if key.startswith(prefix) and key[len(prefix) :].isdigit():
            items.append((int(key[len(prefix) :]), value.strip()))
    return [value for _index, value in sorted(items)]


def _check_filters(params: Mapping[str, str]) -> None:
    """Accept ``Filters.N.Key`` / ``Filters.N.Values.M``; reject other shapes of ``Filters``."""
    for key in params:
        if not key.startswith("Filters"):
            continue
        match = _INDEXED.match(key)
        if not match or match.group(1) != "Filters" or match.group(3) not in ("Key", "Values"):
            raise ApiError.invalid_parameter(
                key, "use Filters.N.Key and Filters.N.Values.M (N, M from 1)."
            )
        if match.group(3) == "Values" and match.group(4) is None:
            raise ApiError.invalid_parameter(key, "Values is an array: Filters.N.Values.M.")


def _page(params: Mapping[str, str]) -> tuple[int, int]:
    number = _int(params, "PageNumber", 1) or 1
    size = _int(params, "PageSize", 1, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    return number, size


def _new_request_id() -> str:
    return str(uuid.uuid4()).upper()


# -- the handler -----------------------------------------------------------------------------


class EiamApi:
    """The request handler of the simulator: API on ``/``, control interface under ``/_sim``.

    *control* is the control interface's handler, or ``None`` when it is disabled (its paths then
    answer 404 like any unknown path).
    """

    def __init__(
        self,
        world: World,
        *,
        authenticator: Authenticator,
        faults: FaultInjector,
        control: ControlHandler | None = None,
        fragment_cache: int = 20_000,
    ) -> None:
        self.world = world
        self.authenticator = authenticator
        self.faults = faults
        self.control = control
        self.cache = FragmentCache(fragment_cache)
        self._started = time.monotonic()
        self.requests: Counter[tuple[str, str]] = Counter()
        """(action, Code or ``OK``) → count; faults show up as their code or ``reset``."""
        self._actions: dict[str, Callable[[Mapping[str, str], str], bytes]] = {
            "ListSynchronizationJobs": self.list_synchronization_jobs,
            "GetSynchronizationJob": self.get_synchronization_job,
            "ListIdentityProviders": self.list_identity_providers,
            "ListApplications": self.list_applications,
            "ListInstances": self.list_instances,
        }

    async def __call__(self, request: Request) -> Response | ConnectionAction:
        if request.path == CONTROL_PREFIX or request.path.startswith(CONTROL_PREFIX + "/"):
            if self.control is None:
                return Response.json({"error": "the control interface is disabled"}, 404)
            return await self.control(request)
        return await self.handle_api(request)

    async def handle_api(self, request: Request) -> Response | ConnectionAction:
        decision = self.faults.decide()
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        action = request.headers.get("x-acs-action") or _query_action(request) or "-"
        if decision.action == "reset":
            self.requests[(action, "reset")] += 1
            return ResetConnection()
        request_id = _new_request_id()
        try:
            if decision.action == "throttle":
                raise ApiError.throttled(self.faults.plan.retry_after_ms)
            if decision.action == "5xx":
                raise (
                    ApiError.service_unavailable()
                    if decision.status == 503
                    else ApiError.internal_error()
                )
            action, body = self._process(request, request_id)
            response = Response(
                200,
                (("content-type", _JSON_HEADERS), ("x-acs-request-id", request_id)),
                body,
            )
            self.requests[(action, "OK")] += 1
        except ApiError as err:
            self.requests[(action, err.code)] += 1
            host = request.headers.get("host", "eiam.cn-hangzhou.aliyuncs.com")
            response = Response(
                err.status,
                (
                    ("content-type", _JSON_HEADERS),
                    ("x-acs-request-id", request_id),
                    *err.headers,
                ),
                error_body(request_id, host, err.code, err.message),
            )
        if decision.truncate is not None and response.status == 200:
            return TruncatedResponse(response, int(response.length * decision.truncate))
        return response

    def _process(self, request: Request, request_id: str) -> tuple[str, bytes]:
        if request.method not in ("GET", "POST"):
            raise ApiError(
                405, "UnsupportedHTTPMethod", f"HTTP method {request.method} is not supported."
            )
        query = parse_query_string(request.query)
        params = dict(query)
        content_type = request.headers.get("content-type", "")
        if request.body and content_type.startswith("application/x-www-form-urlencoded"):
            try:
                params.update(parse_query_string(request.body.decode("utf-8")))
            except UnicodeDecodeError:
                raise ApiError.invalid_parameter("body", "the form body is not UTF-8.") from None
        who = self.authenticator.authenticate(request, query, params)
        action = who.action or params.get("Action", "")
        version = who.version or params.get("Version", "")
        if not action:
            raise ApiError.missing_parameter("Action")
        if version != API_VERSION:
            raise ApiError.invalid_version(version)
        if request.path not in ("/", ""):
            raise ApiError.action_not_found(f"{request.method} {request.path}")
        handler = self._actions.get(action)
        if handler is None:
            raise ApiError.action_not_found(action)
        return action, handler(params, request_id)

    def _instance(self, params: Mapping[str, str]) -> Instance:
        instance_id = _required(params, "InstanceId")
        instance = self.world.instance(instance_id)
        if instance is None:
            raise ApiError.instance_not_found(instance_id)
        return instance

    # -- actions ------------------------------------------------------------------------------

    def list_synchronization_jobs(self, params: Mapping[str, str], request_id: str) -> bytes:
        instance_id = _required(params, "InstanceId")
        max_results = _int(params, "MaxResults", 1, MAX_PAGE_SIZE)
        next_token = (params.get("NextToken") or "").strip() or None
        page_number = _int(params, "PageNumber", 1)
        page_size = _int(params, "PageSize", 1, MAX_PAGE_SIZE)
        start = _int(params, "StartTime", 0)
        end = _int(params, "EndTime", 0)
        target_ids = _list(params, "TargetIds")
        _check_filters(params)
        flt = JobFilter(
            start_ms=start,
            end_ms=end,
            target_type=_enum(params, "TargetType", _TARGET_TYPES),
            target_ids=frozenset(target_ids) if target_ids else None,
            direction=_enum(params, "Direction", _DIRECTIONS),
            status=_enum(params, "Status", _STATUSES),
        )
        instance = self._instance(params)
        fingerprint = flt.fingerprint()
        keyset = (
            max_results is not None
            or next_token is not None
            or (page_number is None and page_size is None)
        )
        if keyset:
            limit = max_results or DEFAULT_PAGE_SIZE
            before = decode_next_token(next_token, instance_id, fingerprint) if next_token else None
            page = self.world.list_jobs(instance.instance_id, flt, before_key=before, limit=limit)
        else:
            size = page_size or DEFAULT_PAGE_SIZE
            offset = ((page_number or 1) - 1) * size
            page = self.world.list_jobs(instance.instance_id, flt, offset=offset, limit=size)
        token = None
        if keyset and page.has_more and page.jobs:
            token = encode_next_token(instance_id, page.jobs[-1].key, fingerprint)
        fragments = [self.cache.fragment(job, page.now_ms) for job in page.jobs]
        return list_jobs_body(request_id, page.total, token, fragments)

    def get_synchronization_job(self, params: Mapping[str, str], request_id: str) -> bytes:
        instance = self._instance(params)
        job_id = _required(params, "SynchronizationJobId")
        job = self.world.get_job(instance.instance_id, job_id)
        if job is None:
            raise ApiError(
                404,
                "EntityNotExists.SynchronizationJob",
                f"The specified synchronization job {job_id} does not exist.",
            )
        return get_job_body(request_id, job, self.world.now())

    def list_identity_providers(self, params: Mapping[str, str], request_id: str) -> bytes:
        instance = self._instance(params)
        number, size = _page(params)
        direction = _enum(params, "Direction", _DIRECTIONS)
        idps = [
            t
            for t in instance.targets
            if t.target_type == "identity_provider"
            and (direction is None or direction in t.streams)
        ]
        chosen = idps[(number - 1) * size : number * size]
        return json_body(
            {
                "RequestId": request_id,
                "TotalCount": len(idps),
                "IdentityProviders": [_identity_provider(t) for t in chosen],
            }
        )

    def list_applications(self, params: Mapping[str, str], request_id: str) -> bytes:
        instance = self._instance(params)
        number, size = _page(params)
        wanted = set(_list(params, "ApplicationIds"))
        status = (params.get("Status") or "").strip() or None
        apps = [
            t
            for t in instance.targets
            if t.target_type == "application"
            and (not wanted or t.target_id in wanted)
            and (status is None or t.status == status)
        ]
        chosen = apps[(number - 1) * size : number * size]
        return json_body(
            {
                "RequestId": request_id,
                "TotalCount": len(apps),
                "Applications": [_application(t) for t in chosen],
            }
        )

    def list_instances(self, params: Mapping[str, str], request_id: str) -> bytes:
        number, size = _page(params)
        wanted = set(_list(params, "InstanceIds"))
        status = (params.get("Status") or "").strip() or None
        instances = [
            i
            for i in self.world.instances
            if (not wanted or i.instance_id in wanted) and (status is None or status == "running")
        ]
        chosen = instances[(number - 1) * size : number * size]
        return json_body(
            {
                "RequestId": request_id,
                "TotalCount": len(instances),
                "Instances": [_instance_body(i) for i in chosen],
            }
        )

    def stats(self) -> dict[str, Any]:
        """Request counters by action and outcome, plus the fragment cache's hit rate."""
        by_action: dict[str, dict[str, int]] = {}
        for (action, outcome), count in sorted(self.requests.items()):
            by_action.setdefault(action, {})[outcome] = count
        return {
            "requests": by_action,
            "total": sum(self.requests.values()),
            "fragment_cache": {
                "entries": len(self.cache),
                "hits": self.cache.hits,
                "misses": self.cache.misses,
            },
            "uptime_s": round(time.monotonic() - self._started, 3),
        }


def _query_action(request: Request) -> str | None:
    marker = "Action="
    at = request.query.find(marker)
    if at < 0 or (at > 0 and request.query[at - 1] != "&"):
        return None
    return request.query[at + len(marker) :].split("&", 1)[0] or None


def _identity_provider(target: Target) -> dict[str, Any]:
    supplier = _SUPPLIERS.get(target.kind, "alibaba:idaas")
    pull = "ingress" in target.streams
    push = "egress" in target.streams
    idp_type = f"urn:alibaba:idaas:idp:{supplier}" + (":pull" if pull else ":push")
    if target.kind == "oidc":
        idp_type = "urn:alibaba:idaas:idp:standard:oidc"
    return {
        "IdentityProviderId": target.target_id,
        "IdentityProviderName": target.name,
        "IdentityProviderType": idp_type,
        "AuthnSourceSupplier": f"urn:alibaba:idaas:idp:{supplier}",
        "AuthnStatus": "enabled",
        "UdPullStatus": "enabled" if pull else "disabled",
        "UdPushStatus": "enabled" if push else "disabled",
        "PeriodicSyncStatus": "enabled",
        "IncrementalCallbackStatus": "disabled",
        "AdvancedStatus": "disabled",
        "LastStatusCheckJobResult": "success",
        "Description": "",
        "InstanceId": target.instance.instance_id,
        "CreateTime": target.created_ms,
        "UpdateTime": target.created_ms,
    }


def _application(target: Target) -> dict[str, Any]:
    return {
        "ApplicationId": target.target_id,
        "ApplicationName": target.name,
        "Status": target.status,
        "ApplicationSourceType": "urn:alibaba:idaas:app:source:template",
        "ApplicationCreationType": "user_custom",
        "ApplicationIdentityType": "application",
        "SsoType": "saml2",
        "ClientId": target.target_id,
        "Features": '["sso","provision"]',
        "Description": "",
        "InstanceId": target.instance.instance_id,
        "ServiceManaged": False,
        "CreateTime": target.created_ms,
        "UpdateTime": target.created_ms,
    }


def _instance_body(instance: Instance) -> dict[str, Any]:
    suffix = instance.instance_id.removeprefix("idaas_")[:12]
    return {
        "InstanceId": instance.instance_id,
        "Description": instance.description,
        "Status": "running",
        "CreateTime": instance.created_ms,
        "DefaultEndpoint": {"Endpoint": f"{suffix}.aliyunidaas.com", "Status": "resolved"},
        "CrossRegionReplication": "disabled",
        "ServiceManaged": False,
    }
