"""The ECS instance RAM role, read from the instance metadata service in hardened mode (IMDSv2).

Why: on an ECS instance (or an ACK node without RRSA) with a RAM role attached, the metadata
service hands out STS credentials for that role, so no AccessKey needs to exist anywhere. It is
the last link of the default chain: when nothing else is configured, this is where the official
SDKs look.

The flow (``eiam-api.md`` §7), each step with a 1-second timeout because the metadata service is
link-local and either answers at once or is not there at all:

1. ``PUT /latest/api/token`` with ``X-aliyun-ecs-metadata-token-ttl-seconds: 21600`` returns a
   session token, sent as ``X-aliyun-ecs-metadata-token`` on the next two requests;
2. ``GET /latest/meta-data/ram/security-credentials/`` names the attached role (skipped when
   ``ALIBABA_CLOUD_ECS_METADATA`` names it);
3. ``GET /latest/meta-data/ram/security-credentials/<role>`` returns
   ``{"Code": "Success", "AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}``.

Only hardened mode is used: no fallback to token-less IMDSv1 requests. The credential is cached
and refreshed before it expires by
:class:`~exporter.eiam.credentials.oidc.RefreshingCredentialsProvider`. The default HTTP client
ignores proxy environment variables: the metadata address is link-local and must never be sent to a
proxy.

Example::

    provider = EcsRamRoleCredentialsProvider()            # role discovered from metadata
    provider = EcsRamRoleCredentialsProvider("ExporterRole")
    credential = await provider.get()
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from exporter.eiam.credentials.base import Credential
from exporter.eiam.credentials.environment import env_flag, env_value
from exporter.eiam.credentials.refreshing import (
    DEFAULT_REFRESH_BEFORE,
    DEFAULT_RETRY_INTERVAL,
    Clock,
    HttpClientFactory,
    RefreshingCredentialsProvider,
    parse_expiration,
)
from exporter.eiam.errors import CredentialsError
from exporter.eiam.redaction import redact, register

__all__ = [
    "DEFAULT_METADATA_ENDPOINT",
    "ECS_METADATA_DISABLED_ENV",
    "ECS_METADATA_ENDPOINT_ENV",
    "ECS_METADATA_ENV",
    "METADATA_TIMEOUT",
    "EcsRamRoleCredentialsProvider",
    "ecs_metadata_disabled",
    "ecs_metadata_endpoint_from_environ",
    "ecs_role_name_from_environ",
]

ECS_METADATA_ENV = "ALIBABA_CLOUD_ECS_METADATA"
ECS_METADATA_DISABLED_ENV = "ALIBABA_CLOUD_ECS_METADATA_DISABLED"
#: Not an Alibaba Cloud variable (their libraries have none): this exporter's own, like the AWS
#: SDKs' ``AWS_EC2_METADATA_SERVICE_ENDPOINT``, for a metadata proxy and for tests.
ECS_METADATA_ENDPOINT_ENV = "IDAAS_EXPORTER_ECS_METADATA_ENDPOINT"

DEFAULT_METADATA_ENDPOINT = "http://100.100.100.200"
METADATA_TIMEOUT = httpx.Timeout(1.0)
TOKEN_PATH = "/latest/api/token"  # noqa: S105 - a URL path
CREDENTIALS_PATH = "/latest/meta-data/ram/security-credentials/"
TOKEN_TTL_HEADER = "X-aliyun-ecs-metadata-token-ttl-seconds"  # noqa: S105 - a header name
TOKEN_HEADER = "X-aliyun-ecs-metadata-token"  # noqa: S105 - a header name
TOKEN_TTL_SECONDS = 21600

_WHAT = "ECS metadata"
_NOT_ON_ECS_HINT = (
    "The exporter does not seem to run on an ECS instance with a RAM role, or the metadata "
    f"service is blocked; set {ECS_METADATA_DISABLED_ENV}=true off ECS"
)


def ecs_metadata_disabled(environ: Mapping[str, str]) -> bool:
    """True when ``ALIBABA_CLOUD_ECS_METADATA_DISABLED`` is true: never ask the metadata service.

    >>> ecs_metadata_disabled({"ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"})
    True
    """
    return env_flag(environ, ECS_METADATA_DISABLED_ENV)


def ecs_role_name_from_environ(environ: Mapping[str, str]) -> str | None:
    """The role named by ``ALIBABA_CLOUD_ECS_METADATA``, or ``None`` to discover it.

    >>> ecs_role_name_from_environ({"ALIBABA_CLOUD_ECS_METADATA": "ExporterRole"})
    'ExporterRole'
    """
    return env_value(environ, ECS_METADATA_ENV)


def ecs_metadata_endpoint_from_environ(environ: Mapping[str, str]) -> str:
    """The metadata service's base URL: ``IDAAS_EXPORTER_ECS_METADATA_ENDPOINT``, else the
    link-local ``http://100.100.100.200`` every ECS instance has.

    >>> ecs_metadata_endpoint_from_environ({})
    'http://100.100.100.200'
    >>> ecs_metadata_endpoint_from_environ(
    ...     {"IDAAS_EXPORTER_ECS_METADATA_ENDPOINT": "127.0.0.1:8080/"})
    'http://127.0.0.1:8080'
    """
    explicit = env_value(environ, ECS_METADATA_ENDPOINT_ENV)
    if explicit is None:
        return DEFAULT_METADATA_ENDPOINT
    explicit = explicit.rstrip("/")
    return explicit if "://" in explicit else f"http://{explicit}"


def _said(response: httpx.Response, limit: int = 200) -> str:
    """``: <what the service said>`` for an error message, or nothing for an empty body.

    The service may echo the session token (and a proxy in front of it the whole request), so
    the text is redacted before it is truncated.
    """
    text = " ".join(redact(response.text[: limit + 16_384]).split())
    if not text:
        return ""
    return f": {text[:limit]!r}" + ("…" if len(text) > limit else "")


def _metadata_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=METADATA_TIMEOUT, trust_env=False)


class EcsRamRoleCredentialsProvider(RefreshingCredentialsProvider):
    """STS credentials of the RAM role attached to this ECS instance (IMDSv2).

    *role_name* skips discovery. *metadata_endpoint* is a base URL, injectable for tests.
    Every refresh fetches a new metadata token and, without *role_name*, discovers the role
    again, so detaching and attaching another role needs no restart.
    """

    def __init__(
        self,
        role_name: str | None = None,
        *,
        metadata_endpoint: str = DEFAULT_METADATA_ENDPOINT,
        http_client_factory: HttpClientFactory | None = None,
        timeout: httpx.Timeout = METADATA_TIMEOUT,
        refresh_before: timedelta = DEFAULT_REFRESH_BEFORE,
        retry_interval: timedelta = DEFAULT_RETRY_INTERVAL,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(refresh_before=refresh_before, retry_interval=retry_interval, clock=clock)
        self._role_name = role_name or None
        self._endpoint = metadata_endpoint.rstrip("/")
        self._client_factory = http_client_factory or _metadata_client
        self._timeout = timeout
        self._discovered_role: str | None = None

    @property
    def source(self) -> str:
        role = self._role_name or self._discovered_role
        named = f"role {role}" if role else "role discovered"
        return f"ECS instance RAM role ({named} via {self._endpoint})"

    def __repr__(self) -> str:
        return (
            f"EcsRamRoleCredentialsProvider(role_name={self._role_name!r}, "
            f"endpoint={self._endpoint!r})"
        )

    async def _request(
        self, client: httpx.AsyncClient, method: str, path: str, headers: Mapping[str, str]
    ) -> httpx.Response:
        try:
            return await client.request(
                method, f"{self._endpoint}{path}", headers=dict(headers), timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise CredentialsError(
                f"the ECS metadata service at {self._endpoint} did not answer {method} {path}: "
                f"{type(exc).__name__}",
                hint=_NOT_ON_ECS_HINT,
            ) from None

    async def _metadata_token(self, client: httpx.AsyncClient) -> str:
        response = await self._request(
            client, "PUT", TOKEN_PATH, {TOKEN_TTL_HEADER: str(TOKEN_TTL_SECONDS)}
        )
        token = response.text.strip() if response.status_code == 200 else ""
        register(token, "metadata-token")  # echoed by the service (and proxies) on errors
        if not token:
            raise CredentialsError(
                f"the ECS metadata service refused a session token (PUT {TOKEN_PATH}: "
                f"HTTP {response.status_code}{_said(response)})",
                hint="The instance metadata service must allow hardened mode (IMDSv2) requests",
            )
        return token

    async def _discover_role(self, client: httpx.AsyncClient, token: str) -> str:
        response = await self._request(client, "GET", CREDENTIALS_PATH, {TOKEN_HEADER: token})
        roles = response.text.split() if response.status_code == 200 else []
        if not roles:
            raise CredentialsError(
                f"no RAM role is attached to this ECS instance (GET {CREDENTIALS_PATH}: "
                f"HTTP {response.status_code})",
                hint="Attach a RAM role to the instance in the ECS console, or configure "
                "another credential source",
            )
        return roles[0]

    async def _fetch(self) -> Credential:
        async with self._client_factory() as client:
            token = await self._metadata_token(client)
            role = self._role_name
            if role is None:
                role = await self._discover_role(client, token)
                self._discovered_role = role
            path = f"{CREDENTIALS_PATH}{quote(role, safe='')}"
            response = await self._request(client, "GET", path, {TOKEN_HEADER: token})
        if response.status_code == 404:
            raise CredentialsError(
                f"the RAM role {role!r} is not attached to this ECS instance "
                f"(GET {path}: HTTP 404)",
                hint=f"Check {ECS_METADATA_ENV}, or unset it to use the attached role",
            )
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            err = CredentialsError(
                f"the ECS metadata service answered GET {path} with HTTP {response.status_code} "
                f"and no credentials{_said(response)}",
                hint="Check the RAM role attached to this instance in the ECS console (a 5xx "
                "is the metadata service's own trouble, and retried)",
            )
            err.retryable = response.status_code >= 500
            raise err
        if body.get("Code") != "Success":
            code = redact(str(body.get("Code")))[:64]
            raise CredentialsError(
                f"the ECS metadata service returned Code {code!r} instead of 'Success' for "
                f"role {role!r}",
                hint="Check the RAM role's state in the RAM console",
            )
        return Credential(
            access_key_id=_required(body, "AccessKeyId"),
            access_key_secret=SecretStr(_required(body, "AccessKeySecret")),
            security_token=SecretStr(_required(body, "SecurityToken")),
            expiration=parse_expiration(body.get("Expiration"), what=_WHAT),
            source=self.source,
        )


def _required(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise CredentialsError(f"{_WHAT} response lacks {key}")
    return value
