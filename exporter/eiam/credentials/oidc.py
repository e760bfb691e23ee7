"""RRSA on Kubernetes: trade the pod's OIDC token for STS credentials with ``AssumeRoleWithOIDC``.

Why: on ACK, RRSA (RAM Roles for Service Accounts) is the way to give a pod cloud permissions
without a long-lived AccessKey. The RRSA webhook injects ``ALIBABA_CLOUD_ROLE_ARN``,
``ALIBABA_CLOUD_OIDC_PROVIDER_ARN`` and ``ALIBABA_CLOUD_OIDC_TOKEN_FILE``; the exporter exchanges
the projected service-account token for a temporary AccessKey pair plus security token.

How, precisely (``eiam-api.md`` §7):

* one **unsigned** HTTPS ``POST`` to STS (``sts.aliyuncs.com``, ``sts.<region>.aliyuncs.com`` or
  ``sts-vpc.<region>.aliyuncs.com``). ``Action``, ``Format``, ``Version`` and ``Timestamp`` travel
  in the query string; ``RoleArn``, ``OIDCProviderArn``, ``OIDCToken``, ``RoleSessionName`` and
  ``DurationSeconds`` in the form body, the way the official Go credentials library sends them.
  The official Python library puts everything in a GET query string instead; STS accepts
  both, and the body keeps the OIDC token out of URLs, which proxies and ``httpx``'s INFO log
  record verbatim;
* the token file is re-read on every refresh, because kubelet rotates it;
* the result is cached and refreshed 15 minutes before ``Expiration`` (configurable), under an
  :class:`asyncio.Lock` so that a burst of concurrent ``get()`` calls makes one STS request.

:class:`RefreshingCredentialsProvider`, the cache-and-refresh machinery, lives here and is shared
with the ECS instance-role provider in :mod:`exporter.eiam.credentials.ecs`.

Example (the chain builds this for you from the environment)::

    provider = OidcRoleArnCredentialsProvider(
        role_arn="acs:ram::1234567890123456:role/idaas-exporter",
        oidc_provider_arn="acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1234",
        oidc_token_file="/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token",
        sts_endpoint="https://sts-vpc.cn-hangzhou.aliyuncs.com",
    )
    credential = await provider.get()   # one STS call, then cached for ~45 minutes
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog
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
from exporter.eiam.signing import format_acs_date

__all__ = [
    "DEFAULT_STS_ENDPOINT",
    "OIDC_PROVIDER_ARN_ENV",
    "OIDC_TOKEN_FILE_ENV",
    "ROLE_ARN_ENV",
    "ROLE_SESSION_NAME_ENV",
    "STS_ENDPOINT_ENV",
    "STS_REGION_ENV",
    "STS_TIMEOUT",
    "VPC_ENDPOINT_ENABLED_ENV",
    "OidcRoleArnCredentialsProvider",
    "StsCredentialsError",
    "oidc_credentials_provider",
    "sts_endpoint_from_environ",
]

ROLE_ARN_ENV = "ALIBABA_CLOUD_ROLE_ARN"
OIDC_PROVIDER_ARN_ENV = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"
OIDC_TOKEN_FILE_ENV = "ALIBABA_CLOUD_OIDC_TOKEN_FILE"  # noqa: S105 - a variable name
ROLE_SESSION_NAME_ENV = "ALIBABA_CLOUD_ROLE_SESSION_NAME"
STS_REGION_ENV = "ALIBABA_CLOUD_STS_REGION"
STS_ENDPOINT_ENV = "ALIBABA_CLOUD_STS_ENDPOINT"
VPC_ENDPOINT_ENABLED_ENV = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"

DEFAULT_STS_ENDPOINT = "https://sts.aliyuncs.com"
#: The official library's timeouts: 5 s to connect, 10 s to read.
STS_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_DEFAULT_DURATION_SECONDS = 3600
_MIN_DURATION_SECONDS = 900

_log = structlog.get_logger(__name__)


def _reason(exc: Exception) -> str:
    """``strerror`` of an OS error ("No such file or directory"), else the exception's type name.

    Never ``str(exc)``: a decoding error quotes the bytes it could not decode.
    """
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _require_str(mapping: Mapping[str, Any], key: str, *, what: str) -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value:
        raise CredentialsError(f"{what} response lacks {key}")
    return value


def default_http_client(*, trust_env: bool = True) -> httpx.AsyncClient:
    """A plain client; timeouts are also passed on every request, so any factory is safe."""
    return httpx.AsyncClient(timeout=STS_TIMEOUT, trust_env=trust_env)


class StsCredentialsError(CredentialsError):
    """STS refused ``AssumeRoleWithOIDC``: carries STS's ``Code``, ``RequestId`` and HTTP status.

    ``code`` stays ``CredentialsError`` (a bounded label value); the STS code is ``sts_code``.
    """

    def __init__(
        self,
        message: str,
        *,
        sts_code: str,
        request_id: str | None,
        http_status: int,
        hint: str | None = None,
    ) -> None:
        self.sts_code = redact(sts_code)  # the server's words, like the message
        self.request_id = redact(request_id) if request_id else request_id
        self.http_status = http_status
        super().__init__(message, hint=hint)


def _sts_hint(code: str, token_file: Path) -> str:
    lowered = code.lower()
    checks = (
        f"check the role ARN ({ROLE_ARN_ENV}), the OIDC provider ARN ({OIDC_PROVIDER_ARN_ENV}), "
        f"the token file {token_file} ({OIDC_TOKEN_FILE_ENV}) and the role's trust policy"
    )
    if "oidctoken" in lowered or "token" in lowered:
        first = (
            f"The OIDC token in {token_file} was rejected: it must be a current service-account "
            "token whose issuer is the cluster's OIDC provider and whose audience is "
            "sts.aliyuncs.com (is the RRSA webhook enabled for this pod?)"
        )
    elif "oidcprovider" in lowered or "provider" in lowered:
        first = (
            f"Check {OIDC_PROVIDER_ARN_ENV}: the OIDC provider must exist in RAM and belong to "
            "this cluster"
        )
    elif "sessionname" in lowered:
        first = f"Check {ROLE_SESSION_NAME_ENV}: 2 to 64 characters of letters, digits and . @ - _"
    elif "nopermission" in lowered or "notauthorized" in lowered or "forbidden" in lowered:
        first = (
            "The role's trust policy does not let this identity assume it: allow the OIDC "
            "provider and this service account (oidc:sub system:serviceaccount:<ns>:<name>)"
        )
    elif "role" in lowered:
        first = f"Check {ROLE_ARN_ENV}: the RAM role must exist (acs:ram::<uid>:role/<name>)"
    else:
        return checks[0].upper() + checks[1:]
    return f"{first}; also {checks}"


def _snippet(text: str, limit: int = 200) -> str:
    """Some of what STS said, credentials masked first (then truncated, never the reverse:
    half a token no longer looks like the token). STS may quote the OIDC token it refused."""
    cleaned = " ".join(redact(text).split())
    return cleaned[:limit] + ("…" if len(cleaned) > limit else "")


class OidcRoleArnCredentialsProvider(RefreshingCredentialsProvider):
    """STS credentials for a RAM role, obtained with the pod's OIDC token (RRSA).

    *sts_endpoint* is a base URL (``https://sts.cn-hangzhou.aliyuncs.com``; a bare host gets
    ``https://``); tests point it at a loopback fake. The token file is read anew on every
    refresh. ``DurationSeconds`` defaults to 3600 (STS accepts 900 up to the role's maximum).
    """

    def __init__(
        self,
        *,
        role_arn: str,
        oidc_provider_arn: str,
        oidc_token_file: str | Path,
        role_session_name: str | None = None,
        duration_seconds: int = _DEFAULT_DURATION_SECONDS,
        policy: str | None = None,
        sts_endpoint: str = DEFAULT_STS_ENDPOINT,
        http_client_factory: HttpClientFactory | None = None,
        timeout: httpx.Timeout = STS_TIMEOUT,
        refresh_before: timedelta = DEFAULT_REFRESH_BEFORE,
        retry_interval: timedelta = DEFAULT_RETRY_INTERVAL,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(refresh_before=refresh_before, retry_interval=retry_interval, clock=clock)
        if not role_arn or not oidc_provider_arn or not str(oidc_token_file):
            raise ValueError("role_arn, oidc_provider_arn and oidc_token_file are required")
        if duration_seconds < _MIN_DURATION_SECONDS:
            raise ValueError(f"duration_seconds must be at least {_MIN_DURATION_SECONDS}")
        self._role_arn = role_arn
        self._oidc_provider_arn = oidc_provider_arn
        self._token_file = Path(oidc_token_file)
        self._session_name = role_session_name or f"idaas-sync-exporter-{int(time.time())}"
        self._duration_seconds = duration_seconds
        self._policy = policy
        endpoint = sts_endpoint.rstrip("/")
        self._endpoint = endpoint if "://" in endpoint else f"https://{endpoint}"
        self._client_factory = http_client_factory or default_http_client
        self._timeout = timeout

    @property
    def source(self) -> str:
        host = httpx.URL(self._endpoint).host
        return f"RRSA/OIDC (role {self._role_arn} via {host})"

    @property
    def role_session_name(self) -> str:
        """The ``RoleSessionName`` sent to STS; it shows up in ActionTrail."""
        return self._session_name

    def __repr__(self) -> str:
        return (
            f"OidcRoleArnCredentialsProvider(role_arn={self._role_arn!r}, "
            f"oidc_provider_arn={self._oidc_provider_arn!r}, token_file={str(self._token_file)!r}, "
            f"endpoint={self._endpoint!r})"
        )

    async def _read_token(self) -> str:
        try:
            token = await asyncio.to_thread(self._token_file.read_text, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = _reason(exc)
            raise CredentialsError(
                f"cannot read the OIDC token file {self._token_file} ({OIDC_TOKEN_FILE_ENV}): "
                f"{reason}",
                hint="On ACK the RRSA webhook mounts this file into pods whose namespace or pod "
                "has RRSA enabled (pod-identity.alibabacloud.com/injection: 'on'); check the "
                "volume mount and the path",
            ) from None
        token = token.strip()
        register(token, "oidc-token")  # STS may quote it back when it refuses it
        if not token:
            raise CredentialsError(
                f"the OIDC token file {self._token_file} ({OIDC_TOKEN_FILE_ENV}) is empty",
                hint="kubelet writes the projected service-account token there; check the "
                "projected volume",
            )
        return token

    async def _fetch(self) -> Credential:
        token = await self._read_token()
        query = {
            "Action": "AssumeRoleWithOIDC",
            "Format": "JSON",
            "Version": "2015-04-01",
            "Timestamp": format_acs_date(self._clock()),
        }
        form = {
            "RoleArn": self._role_arn,
            "OIDCProviderArn": self._oidc_provider_arn,
            "OIDCToken": token,
            "RoleSessionName": self._session_name,
            "DurationSeconds": str(self._duration_seconds),
        }
        if self._policy:
            form["Policy"] = self._policy
        url = f"{self._endpoint}/"
        try:
            async with self._client_factory() as client:
                response = await client.post(
                    url,
                    params=query,
                    data=form,
                    headers={"Accept": "application/json"},
                    timeout=self._timeout,
                )
        except httpx.HTTPError as exc:
            err = CredentialsError(
                f"STS AssumeRoleWithOIDC at {self._endpoint} failed: {type(exc).__name__}",
                hint="Check that this pod can reach STS over HTTPS; inside a VPC without "
                f"internet access set {VPC_ENDPOINT_ENABLED_ENV}=true and {STS_REGION_ENV}",
            )
            err.retryable = True
            raise err from None
        return self._parse(response)

    def _parse(self, response: httpx.Response) -> Credential:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict) or "Credentials" not in body:
            raise self._error(response, body)
        creds = body["Credentials"]
        what = "STS AssumeRoleWithOIDC"
        if not isinstance(creds, dict):
            raise CredentialsError(f"{what} response has malformed Credentials")
        return Credential(
            access_key_id=_require_str(creds, "AccessKeyId", what=what),
            access_key_secret=SecretStr(_require_str(creds, "AccessKeySecret", what=what)),
            security_token=SecretStr(_require_str(creds, "SecurityToken", what=what)),
            expiration=parse_expiration(creds.get("Expiration"), what=what),
            source=self.source,
        )

    def _error(self, response: httpx.Response, body: Any) -> CredentialsError:
        status = response.status_code
        if isinstance(body, dict) and isinstance(body.get("Code"), str):
            code = body["Code"]
            message = _snippet(str(body.get("Message") or "no message"))
            request_id = body.get("RequestId") if isinstance(body.get("RequestId"), str) else None
            rid = f" [RequestId {request_id}]" if request_id else ""
            sts_err = StsCredentialsError(
                f"STS AssumeRoleWithOIDC for role {self._role_arn} failed: {code} "
                f"(HTTP {status}): {message}{rid}",
                sts_code=code,
                request_id=request_id,
                http_status=status,
                hint=_sts_hint(code, self._token_file),
            )
            sts_err.retryable = status >= 500 or code.lower().startswith("throttling")
            return sts_err
        kind = response.headers.get("content-type", "no content type")
        err = CredentialsError(
            f"STS AssumeRoleWithOIDC at {self._endpoint} answered HTTP {status} with an "
            f"unexpected body ({kind}): {_snippet(response.text)!r}",
            hint="A proxy or firewall may be intercepting the request; check the STS endpoint",
        )
        err.retryable = status >= 500
        return err


def sts_endpoint_from_environ(environ: Mapping[str, str]) -> str:
    """The STS base URL the official libraries derive from the environment.

    ``ALIBABA_CLOUD_STS_ENDPOINT`` names it outright (a host, or a URL with its scheme); the
    RRSA webhook injects it from version 0.4.0 on, and the official Go libraries honour it.
    Otherwise ``ALIBABA_CLOUD_STS_REGION`` selects ``sts.<region>.aliyuncs.com``, and with
    ``ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true`` the VPC host ``sts-vpc.<region>.aliyuncs.com``.
    Without either it is the global ``sts.aliyuncs.com`` (there is no global VPC host).

    >>> sts_endpoint_from_environ({"ALIBABA_CLOUD_STS_REGION": "cn-hangzhou",
    ...                            "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "true"})
    'https://sts-vpc.cn-hangzhou.aliyuncs.com'
    >>> sts_endpoint_from_environ({"ALIBABA_CLOUD_STS_ENDPOINT": "sts-vpc.cn-beijing.aliyuncs.com",
    ...                            "ALIBABA_CLOUD_STS_REGION": "cn-hangzhou"})
    'https://sts-vpc.cn-beijing.aliyuncs.com'
    >>> sts_endpoint_from_environ({})
    'https://sts.aliyuncs.com'
    """
    explicit = env_value(environ, STS_ENDPOINT_ENV)
    if explicit is not None:
        explicit = explicit.rstrip("/")
        return explicit if "://" in explicit else f"https://{explicit}"
    region = env_value(environ, STS_REGION_ENV)
    if region is None:
        return DEFAULT_STS_ENDPOINT
    prefix = "sts-vpc" if env_flag(environ, VPC_ENDPOINT_ENABLED_ENV) else "sts"
    return f"https://{prefix}.{region}.aliyuncs.com"


def oidc_credentials_provider(
    environ: Mapping[str, str],
    *,
    sts_endpoint: str | None = None,
    http_client_factory: HttpClientFactory | None = None,
    clock: Clock | None = None,
) -> tuple[OidcRoleArnCredentialsProvider | None, str]:
    """The RRSA provider when the environment configures it, else ``None`` and why not.

    Needs all of ``ALIBABA_CLOUD_ROLE_ARN``, ``ALIBABA_CLOUD_OIDC_PROVIDER_ARN`` and
    ``ALIBABA_CLOUD_OIDC_TOKEN_FILE``. A role ARN alone is not RRSA (other tools use it too) and is
    skipped; an OIDC provider ARN or token file without the rest is a half-finished RRSA set-up and
    raises :class:`CredentialsError` naming what is missing. No I/O happens here: the token file is
    read and STS called on the first ``get()``. *sts_endpoint* overrides the derived endpoint.
    """
    names = (ROLE_ARN_ENV, OIDC_PROVIDER_ARN_ENV, OIDC_TOKEN_FILE_ENV)
    values = {name: env_value(environ, name) for name in names}
    missing = [name for name in names if values[name] is None]
    if missing:
        if values[OIDC_PROVIDER_ARN_ENV] is None and values[OIDC_TOKEN_FILE_ENV] is None:
            return None, f"RRSA/OIDC: {', '.join(names)} are not all set"
        raise CredentialsError(
            f"RRSA is partly configured: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set",
            hint=f"RRSA needs {', '.join(names)}; on ACK the RRSA webhook injects all three "
            "into pods with RRSA enabled",
        )
    provider = OidcRoleArnCredentialsProvider(
        role_arn=values[ROLE_ARN_ENV] or "",
        oidc_provider_arn=values[OIDC_PROVIDER_ARN_ENV] or "",
        oidc_token_file=values[OIDC_TOKEN_FILE_ENV] or "",
        role_session_name=env_value(environ, ROLE_SESSION_NAME_ENV),
        sts_endpoint=sts_endpoint or sts_endpoint_from_environ(environ),
        http_client_factory=http_client_factory,
        clock=clock,
    )
    return provider, provider.source
