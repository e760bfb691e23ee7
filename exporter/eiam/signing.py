"""Request signatures of Alibaba Cloud APIs: V3 ``ACS3-HMAC-SHA256`` and the legacy RPC HMAC-SHA1.

The client signs with V3 (:class:`AcsV3Auth`, an ``httpx.Auth``). The simulator verifies both V3
and the legacy signature the official SDKs still send, with the very same functions, so a
signing bug cannot hide behind a matching verification bug written twice.

Canonical request (V3)::

    POST
    /
    InstanceId=idaas_x&MaxResults=100
    host:eiam.cn-hangzhou.aliyuncs.com
    x-acs-action:ListSynchronizationJobs
    ...
    host;x-acs-action;...
    e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

>>> rpc_signature("testsecret", "GET", {"AccessKeyId": "testid", "Action": "DescribeRegions",
...     "Format": "XML", "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
...     "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
...     "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26"})
'OLeaidS1JvxuMvnyHOwuJ+uX5qY='
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # type-only: importing the credentials package here would be circular
    from exporter.eiam.credentials.base import Credential, CredentialsProvider

from exporter.eiam.encoding import canonical_query_string, parse_query_string, percent_encode

__all__ = [
    "EMPTY_BODY_SHA256",
    "V3_ALGORITHM",
    "AcsV3Auth",
    "V3Authorization",
    "canonical_request",
    "format_acs_date",
    "new_nonce",
    "parse_v3_authorization",
    "rpc_signature",
    "rpc_string_to_sign",
    "sign_v3_string",
    "signed_header_names",
    "v3_signature",
]

V3_ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def format_acs_date(moment: datetime) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SSZ``, the format of ``x-acs-date`` and the RPC ``Timestamp``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_nonce() -> str:
    """A fresh random nonce (32 hex characters); one per attempt, retries included."""
    return secrets.token_hex(16)


def signed_header_names(headers: Iterable[str]) -> list[str]:
    """The header names V3 signs: ``host``, ``content-type`` and every ``x-acs-*``, sorted."""
    names = {h.lower() for h in headers}
    return sorted(n for n in names if n in ("host", "content-type") or n.startswith("x-acs-"))


def canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str] | Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: Iterable[str],
    body_sha256: str,
) -> str:
    """Build the V3 canonical request. *headers* keys must be lowercase."""
    names = list(signed_headers)
    canonical_headers = "".join(f"{n}:{headers.get(n, '').strip()}\n" for n in names)
    return "\n".join(
        [
            method.upper(),
            path or "/",
            canonical_query_string(query),
            canonical_headers,
            ";".join(names),
            body_sha256,
        ]
    )


def sign_v3_string(secret: str, string_to_sign: str) -> str:
    """Hex HMAC-SHA256 of *string_to_sign* keyed by the AccessKey secret."""
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def v3_signature(secret: str, canonical: str) -> str:
    """The V3 signature of a canonical request."""
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return sign_v3_string(secret, f"{V3_ALGORITHM}\n{digest}")


@dataclass(frozen=True, slots=True)
class V3Authorization:
    """The parts of an ``Authorization: ACS3-HMAC-SHA256 ...`` header."""

    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str

    def header_value(self) -> str:
        return (
            f"{V3_ALGORITHM} Credential={self.access_key_id},"
            f"SignedHeaders={';'.join(self.signed_headers)},Signature={self.signature}"
        )


def parse_v3_authorization(value: str) -> V3Authorization:
    """Parse an Authorization header; ``ValueError`` names the missing or malformed part."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != V3_ALGORITHM:
        raise ValueError(f"unsupported signature algorithm {algorithm!r}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key] = val
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise ValueError(f"Authorization lacks {', '.join(missing)}")
    return V3Authorization(
        access_key_id=fields["Credential"],
        signed_headers=tuple(fields["SignedHeaders"].split(";")),
        signature=fields["Signature"],
    )


def rpc_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """Legacy RPC: ``METHOD&%2F&pct(CanonicalQuery)`` over every parameter except Signature."""
    query = canonical_query_string((k, v) for k, v in params.items() if k != "Signature")
    return f"{method.upper()}&%2F&{percent_encode(query)}"


def rpc_signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    """Legacy RPC signature: ``base64(HMAC-SHA1(secret + "&", StringToSign))``."""
    mac = hmac.new(f"{secret}&".encode(), rpc_string_to_sign(method, params).encode(), "sha1")
    return base64.b64encode(mac.digest()).decode()


class AcsV3Auth(httpx.Auth):
    """Sign each outgoing request with ``ACS3-HMAC-SHA256``.

    Runs once per attempt, so every retry gets a fresh ``x-acs-date`` and nonce. The query
    string is rewritten into its canonical form before signing: the bytes on the wire are
    exactly the bytes that were signed, whatever encoding the caller used.
    """

    requires_request_body = True

    def __init__(
        self,
        credentials: CredentialsProvider,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        nonce: Callable[[], str] = new_nonce,
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._nonce = nonce

    def sign(self, request: httpx.Request, credential: Credential) -> None:
        """Add date, nonce, body hash, token and Authorization headers to *request* in place."""
        query = canonical_query_string(parse_query_string(request.url.query.decode("ascii")))
        request.url = request.url.copy_with(query=query.encode("ascii") or None)
        body_sha256 = hashlib.sha256(request.content).hexdigest()
        request.headers["x-acs-date"] = format_acs_date(self._clock())
        request.headers["x-acs-signature-nonce"] = self._nonce()
        request.headers["x-acs-content-sha256"] = body_sha256
        if credential.security_token is not None:
            request.headers["x-acs-security-token"] = credential.security_token.get_secret_value()
        else:
            request.headers.pop("x-acs-security-token", None)
        headers = {k.lower(): v for k, v in request.headers.items()}
        names = signed_header_names(headers)
        canonical = canonical_request(
            request.method,
            request.url.path,
            parse_query_string(query),
            headers,
            names,
            body_sha256,
        )
        signature = v3_signature(credential.access_key_secret.get_secret_value(), canonical)
        request.headers["authorization"] = V3Authorization(
            credential.access_key_id, tuple(names), signature
        ).header_value()

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self.sign(request, await self._credentials.get())
        yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("AcsV3Auth signs asynchronously; use httpx.AsyncClient")
        yield request  # pragma: no cover - makes this a generator
