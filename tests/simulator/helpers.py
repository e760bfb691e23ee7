"""Helpers shared by the simulator's tests: V3-signed requests and signing HTTP clients."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from exporter.eiam.credentials import Credential, StaticCredentialsProvider
from exporter.eiam.encoding import canonical_query_string, parse_query_string
from exporter.eiam.signing import (
    EMPTY_BODY_SHA256,
    AcsV3Auth,
    V3Authorization,
    canonical_request,
    format_acs_date,
    new_nonce,
    signed_header_names,
    v3_signature,
)
from exporter.simulator import DEMO_ACCESS_KEY, AccessKey
from exporter.web.server import Request

T0 = 1_735_689_600_000
"""2025-01-01T00:00:00Z: the manual clock's start in every test."""


def v3_request(
    params: Mapping[str, str],
    *,
    action: str = "ListSynchronizationJobs",
    access_key_id: str = DEMO_ACCESS_KEY.access_key_id,
    secret: str = DEMO_ACCESS_KEY.access_key_secret,
    security_token: str | None = None,
    method: str = "POST",
    date: datetime | None = None,
    nonce: str | None = None,
    version: str = "2021-12-01",
    host: str = "127.0.0.1:1",
    body: bytes = b"",
    content_type: str | None = None,
    peer: tuple[str, int] = ("127.0.0.1", 50000),
) -> Request:
    """A V3-signed :class:`Request` for calling the API handler directly (no socket)."""
    query = canonical_query_string(params)
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": format_acs_date(date or datetime.now(UTC)),
        "x-acs-signature-nonce": nonce or new_nonce(),
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256,
    }
    if content_type is not None:
        headers["content-type"] = content_type
    if security_token is not None:
        headers["x-acs-security-token"] = security_token
    names = signed_header_names(headers)
    canonical = canonical_request(
        method, "/", parse_query_string(query), headers, names, headers["x-acs-content-sha256"]
    )
    signature = v3_signature(secret, canonical)
    authorization = V3Authorization(access_key_id, tuple(names), signature)
    headers["authorization"] = authorization.header_value()
    return Request(
        method=method,
        target="/?" + query if query else "/",
        path="/",
        query=query,
        headers=headers,
        body=body,
        peer=peer,
    )


def v3_auth(key: AccessKey = DEMO_ACCESS_KEY) -> AcsV3Auth:
    """The project's own V3 signer (``httpx.Auth``) for *key*."""
    token = SecretStr(key.security_token) if key.security_token else None
    credential = Credential(key.access_key_id, SecretStr(key.access_key_secret), token)
    return AcsV3Auth(StaticCredentialsProvider(credential))


def api_client(base_url: str, key: AccessKey = DEMO_ACCESS_KEY) -> httpx.AsyncClient:
    """An httpx client that signs every request with V3, like the exporter does."""
    return httpx.AsyncClient(base_url=base_url, auth=v3_auth(key), timeout=10.0, trust_env=False)


async def call(
    client: httpx.AsyncClient, action: str, **params: Any
) -> tuple[int, dict[str, Any], httpx.Headers]:
    """POST *action* with *params* in the query string, as the official SDK does."""
    query = {k: str(v) for k, v in params.items() if v is not None}
    response = await client.post(
        "/", params=query, headers={"x-acs-action": action, "x-acs-version": "2021-12-01"}
    )
    return response.status_code, response.json(), response.headers
