"""Request authentication exactly like Alibaba Cloud's API gateway: V3 and the legacy RPC signature.

Why reuse :mod:`exporter.eiam.signing`: the verifier rebuilds the canonical request with the very
functions the client signs with, so a canonicalisation bug cannot hide behind a matching bug in a
second implementation. The official SDK is the independent check (``tests/simulator``).

Checks, in the gateway's order: the signature parts are present (``IncompleteSignature``), the
AccessKey exists and is enabled (``InvalidAccessKeyId.NotFound``/``.Inactive``), an STS key comes
with its token (``MissingSecurityToken``, ``InvalidSecurityToken.Mismatch``/``.Expired``), the
timestamp is within 15 minutes of the server clock (``InvalidTimeStamp.Expired``), the signature
matches (``SignatureDoesNotMatch``, whose message shows the server's string to sign and, for V3,
its canonical request, as a gateway that echoes what it received does: every parameter and every
signed header, the security token included) and, last, the nonce was not seen in the last 30
minutes (``SignatureNonceUsed``). A request that fails the signature does not burn its nonce.

>>> keys = [AccessKey("testid", "testsecret")]
>>> auth = Authenticator(keys)
>>> auth.key("testid").access_key_id, auth.key("nope")
('testid', None)
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from exporter.eiam.signing import (
    V3_ALGORITHM,
    canonical_request,
    format_acs_date,
    parse_v3_authorization,
    rpc_signature,
    rpc_string_to_sign,
    v3_signature,
)
from exporter.simulator.apierrors import ApiError
from exporter.simulator.clock import Clock, wall_clock_ms
from exporter.web.server import Request

__all__ = [
    "DEMO_ACCESS_KEY",
    "DEMO_STS_KEY",
    "AccessKey",
    "Authenticated",
    "Authenticator",
    "NonceCache",
]

MAX_SKEW_MS = 15 * 60_000
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
_V3_REQUIRED_HEADERS = (
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
)
_RPC_REQUIRED = (
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Signature",
)


@dataclass(frozen=True, slots=True)
class AccessKey:
    """A credential the simulator accepts. An ``STS.`` key requires *security_token*."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    expires_ms: int | None = None
    """When the STS token expires (epoch ms of the auth clock); ``None`` for never."""
    enabled: bool = True

    @property
    def is_sts(self) -> bool:
        return self.security_token is not None or self.access_key_id.startswith("STS.")


DEMO_ACCESS_KEY = AccessKey("LTAI5tSimulatorDemoKey", "SimulatorDemoSecret-NotForProduction")
"""Accepted by default; printed by ``simulate --help``. Never a real credential."""
DEMO_STS_KEY = AccessKey(
    "STS.NSimulatorDemoStsKey",
    "SimulatorDemoStsSecret",
    security_token="SimulatorDemoSecurityToken",  # noqa: S106 - a published demo token
)
"""An STS credential accepted by default, to exercise the token path."""


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Who called, how, and which action: the result of a successful verification."""

    access_key_id: str
    style: str
    """``v3`` or ``rpc``."""
    action: str
    version: str


class NonceCache:
    """Nonces seen within *ttl_ms*, per AccessKey; bounded by *max_entries* (oldest dropped)."""

    def __init__(self, ttl_ms: int = 2 * MAX_SKEW_MS, max_entries: int = 1_000_000) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self._seen: dict[tuple[str, str], int] = {}

    def add(self, access_key_id: str, nonce: str, now_ms: int) -> bool:
        """Record the nonce; ``False`` if it was already used (and has not expired)."""
        seen = self._seen
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > now_ms and len(seen) < self.max_entries:
                break
            del seen[oldest]
        key = (access_key_id, nonce)
        expiry = seen.get(key)
        if expiry is not None and expiry > now_ms:
            return False
        seen[key] = now_ms + self.ttl_ms
        return True

    def __len__(self) -> int:
        return len(self._seen)


class Authenticator:
    """Verify V3 (``Authorization: ACS3-HMAC-SHA256 …``) and RPC (``Signature=`` parameter)."""

    def __init__(
        self,
        keys: Iterable[AccessKey],
        *,
        clock_ms: Clock = wall_clock_ms,
        max_skew_ms: int = MAX_SKEW_MS,
        nonces: NonceCache | None = None,
    ) -> None:
        self._keys = {k.access_key_id: k for k in keys}
        self.clock_ms = clock_ms
        self.max_skew_ms = max_skew_ms
        self.nonces = nonces or NonceCache(ttl_ms=2 * max_skew_ms)

    def key(self, access_key_id: str) -> AccessKey | None:
        return self._keys.get(access_key_id)

    def add_key(self, key: AccessKey) -> None:
        self._keys[key.access_key_id] = key

    @property
    def keys(self) -> list[AccessKey]:
        return list(self._keys.values())

    def authenticate(
        self,
        request: Request,
        query: Sequence[tuple[str, str]],
        params: Mapping[str, str],
    ) -> Authenticated:
        """Verify *request*; *query* are its decoded query pairs, *params* query plus form body.

        Raises :class:`ApiError` with the gateway's code on any failure.
        """
        authorization = request.headers.get("authorization")
        if authorization is not None and authorization.lstrip().startswith("ACS3-"):
            return self._v3(request, query, authorization)
        if "Signature" in params or "AccessKeyId" in params:
            return self._rpc(request, params)
        if authorization is not None:
            raise ApiError.incomplete_signature(
                f"Unsupported Authorization scheme {authorization.split(' ', 1)[0]!r}; "
                f"use {V3_ALGORITHM}."
            )
        raise ApiError.incomplete_signature(
            "The request carries neither an Authorization header nor a Signature parameter."
        )

    # -- V3 -----------------------------------------------------------------------------------

    def _v3(
        self, request: Request, query: Sequence[tuple[str, str]], authorization: str
    ) -> Authenticated:
        try:
            parsed = parse_v3_authorization(authorization)
        except ValueError as exc:
            raise ApiError.incomplete_signature(str(exc)) from None
        headers = request.headers
        missing = [name for name in _V3_REQUIRED_HEADERS if not headers.get(name)]
        if missing:
            raise ApiError.incomplete_signature(f"Missing header(s): {', '.join(missing)}.")
        signed = parsed.signed_headers
        required = [*_V3_REQUIRED_HEADERS]
        if "x-acs-security-token" in headers:
            required.append("x-acs-security-token")
        unsigned = [name for name in required if name not in signed]
        if unsigned:
            raise ApiError.incomplete_signature(
                f"SignedHeaders must include {', '.join(unsigned)}."
            )
        key = self._lookup(parsed.access_key_id, headers.get("x-acs-security-token"))
        self._check_time(headers["x-acs-date"])
        body_sha256 = hashlib.sha256(request.body).hexdigest()
        if not hmac.compare_digest(headers["x-acs-content-sha256"].lower(), body_sha256):
            raise ApiError(
                400,
                "SignatureDoesNotMatch",
                "The x-acs-content-sha256 header does not match the SHA-256 of the request body.",
            )
        canonical = canonical_request(
            request.method, request.path or "/", query, headers, signed, body_sha256
        )
        expected = v3_signature(key.access_key_secret, canonical)
        if not hmac.compare_digest(expected, parsed.signature.lower()):
            digest = hashlib.sha256(canonical.encode()).hexdigest()
            raise ApiError.signature_mismatch(
                f"{V3_ALGORITHM}\n{digest}", canonical_request=canonical
            )
        self._check_nonce(key.access_key_id, headers["x-acs-signature-nonce"])
        return Authenticated(
            key.access_key_id, "v3", headers["x-acs-action"], headers["x-acs-version"]
        )

    # -- RPC ----------------------------------------------------------------------------------

    def _rpc(self, request: Request, params: Mapping[str, str]) -> Authenticated:
        missing = [name for name in _RPC_REQUIRED if not params.get(name)]
        if missing:
            raise ApiError.incomplete_signature(f"Missing parameter(s): {', '.join(missing)}.")
        if params["SignatureMethod"] != "HMAC-SHA1":
            raise ApiError.incomplete_signature(
                f"SignatureMethod {params['SignatureMethod']!r} is not supported; use HMAC-SHA1."
            )
        if params["SignatureVersion"] != "1.0":
            raise ApiError.incomplete_signature(
                f"SignatureVersion {params['SignatureVersion']!r} is not supported; use 1.0."
            )
        key = self._lookup(params["AccessKeyId"], params.get("SecurityToken"))
        self._check_time(params["Timestamp"])
        expected = rpc_signature(key.access_key_secret, request.method, params)
        if not hmac.compare_digest(expected, params["Signature"]):
            raise ApiError.signature_mismatch(rpc_string_to_sign(request.method, params))
        self._check_nonce(key.access_key_id, params["SignatureNonce"])
        action = params.get("Action", "")
        version = params.get("Version", "")
        return Authenticated(key.access_key_id, "rpc", action, version)

    # -- shared -------------------------------------------------------------------------------

    def _lookup(self, access_key_id: str, token: str | None) -> AccessKey:
        key = self._keys.get(access_key_id)
        if key is None:
            raise ApiError.access_key_not_found()
        if not key.enabled:
            raise ApiError.access_key_inactive()
        if key.is_sts:
            if not token:
                raise ApiError.missing_security_token()
            if key.security_token is None or not hmac.compare_digest(token, key.security_token):
                raise ApiError.invalid_security_token()
            if key.expires_ms is not None and self.clock_ms() >= key.expires_ms:
                raise ApiError.security_token_expired()
        return key

    def _check_time(self, value: str) -> None:
        if not _DATE.match(value):
            raise ApiError.timestamp_format(value)
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ApiError.timestamp_format(value) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        now = self.clock_ms()
        if abs(int(moment.timestamp() * 1000) - now) > self.max_skew_ms:
            server = format_acs_date(datetime.fromtimestamp(now / 1000, UTC))
            raise ApiError.timestamp_expired(value, server)

    def _check_nonce(self, access_key_id: str, nonce: str) -> None:
        if not self.nonces.add(access_key_id, nonce, self.clock_ms()):
            raise ApiError.nonce_used()
