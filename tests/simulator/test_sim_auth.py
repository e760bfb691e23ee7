"""Signature verification against the documented vectors and every gateway error."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from exporter.eiam.encoding import canonical_query_string, parse_query_string
from exporter.eiam.signing import EMPTY_BODY_SHA256, rpc_signature
from exporter.simulator.apierrors import ApiError
from exporter.simulator.auth import AccessKey, Authenticated, Authenticator, NonceCache
from exporter.web.server import Request

from .helpers import T0, v3_request

VECTOR_QUERY = (
    "Filters.1.Key=k%201&Filters.1.Values.1=v%2F1%2A~&InstanceId=idaas_ue2jvisn35ea5lmthk267xxxxx"
    "&MaxResults=100&Status=failed&TargetIds.1=idp_my664lwkhpicbyzirog3xxxxx"
    "&TargetType=identity_provider"
)
VECTOR_HEADERS = {
    "host": "eiam.cn-hangzhou.aliyuncs.com",
    "x-acs-action": "ListSynchronizationJobs",
    "x-acs-version": "2021-12-01",
    "x-acs-date": "2025-01-01T00:00:00Z",
    "x-acs-signature-nonce": "0123456789abcdef0123456789abcdef",
    "x-acs-content-sha256": EMPTY_BODY_SHA256,
}
SIGNED = "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
KEYS = [
    AccessKey("testid", "testsecret"),
    AccessKey("STS.testid", "testsecret", security_token="test-sts-token"),
    AccessKey("LTAIdisabled", "secret", enabled=False),
    AccessKey("STS.expired", "secret", security_token="t", expires_ms=T0 - 1),
]


def authenticator(now_ms: int = T0) -> Authenticator:
    return Authenticator(KEYS, clock_ms=lambda: now_ms)


def authenticate(auth: Authenticator, request: Request) -> Authenticated:
    query = parse_query_string(request.query)
    params = dict(query)
    if request.body:
        params.update(parse_query_string(request.body.decode()))
    return auth.authenticate(request, query, params)


def vector_request(headers: dict[str, str]) -> Request:
    return Request("POST", "/?" + VECTOR_QUERY, "/", VECTOR_QUERY, headers)


def test_documented_v3_vector_is_accepted() -> None:
    headers = dict(VECTOR_HEADERS)
    headers["authorization"] = (
        f"ACS3-HMAC-SHA256 Credential=testid,SignedHeaders={SIGNED},"
        "Signature=026aaa1aaf8bce6f8a09474130aba9c8c110b799fcc096c8d488162d0b08a8f4"
    )
    who = authenticate(authenticator(), vector_request(headers))
    assert who == Authenticated("testid", "v3", "ListSynchronizationJobs", "2021-12-01")


def test_documented_v3_sts_vector_is_accepted() -> None:
    headers = dict(VECTOR_HEADERS, **{"x-acs-security-token": "test-sts-token"})
    signed = SIGNED.replace("x-acs-date;", "x-acs-date;x-acs-security-token;")
    headers["authorization"] = (
        f"ACS3-HMAC-SHA256 Credential=STS.testid,SignedHeaders={signed},"
        "Signature=f49fe77fea05c2764f5e1748883547f0fdf462872bbe8b760675aca1b7353e76"
    )
    authenticate(authenticator(), vector_request(headers))


def rpc_params(**overrides: str) -> dict[str, str]:
    params = dict(parse_query_string(VECTOR_QUERY))
    params.update(
        Action="ListSynchronizationJobs",
        Version="2021-12-01",
        Format="JSON",
        AccessKeyId="testid",
        SignatureMethod="HMAC-SHA1",
        SignatureVersion="1.0",
        SignatureNonce="0123456789abcdef0123456789abcdef",
        Timestamp="2025-01-01T00:00:00Z",
    )
    params.update(overrides)
    return params


def rpc_request(params: dict[str, str], method: str = "POST") -> Request:
    query = canonical_query_string(params)
    return Request(method, "/?" + query, "/", query, {"host": "eiam.cn-hangzhou.aliyuncs.com"})


def test_documented_rpc_vector_is_accepted() -> None:
    params = rpc_params(Signature="du1UC6VzyzBOUJQKN+nqOUxu94k=")
    who = authenticate(authenticator(), rpc_request(params))
    assert who == Authenticated("testid", "rpc", "ListSynchronizationJobs", "2021-12-01")


def test_rpc_parameters_in_a_form_body_are_signed_too() -> None:
    params = rpc_params()
    params["Signature"] = rpc_signature("testsecret", "POST", params)
    body = canonical_query_string(params).encode()
    request = Request(
        "POST", "/", "/", "", {"content-type": "application/x-www-form-urlencoded"}, body
    )
    authenticate(authenticator(), request)


def expect(
    code: str, request: Request, auth: Authenticator | None = None, status: int = 400
) -> ApiError:
    with pytest.raises(ApiError) as info:
        authenticate(auth or Authenticator(KEYS, clock_ms=lambda: now_ms()), request)
    assert info.value.code == code, info.value.message
    assert info.value.status == status
    return info.value


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def signed(**kwargs: Any) -> Request:
    return v3_request(
        {"InstanceId": "idaas_x"}, access_key_id="testid", secret="testsecret", **kwargs
    )


def test_tampered_signature_is_rejected_with_the_server_string_to_sign() -> None:
    request = signed()
    request.headers["authorization"] = request.headers["authorization"][:-4] + "0000"
    error = expect("SignatureDoesNotMatch", request)
    assert "Server string to sign is:ACS3-HMAC-SHA256#" in error.message


# A gateway echoes what it received: every credential the client sent comes back in the message.
ECHO_TOKEN = "CAIS+echo/STS=token+with/base64=="
ECHO_KEYS = [AccessKey("STS.NEchoKeyId", "right-secret", security_token=ECHO_TOKEN)]


def test_v3_mismatch_echoes_the_canonical_request_with_the_security_token() -> None:
    request = v3_request(
        {"InstanceId": "idaas_x"},
        access_key_id="STS.NEchoKeyId",
        secret="wrong-secret",
        security_token=ECHO_TOKEN,
    )
    error = expect("SignatureDoesNotMatch", request, Authenticator(ECHO_KEYS, clock_ms=now_ms))
    string_to_sign, canonical = error.message.split(". Server canonical request is:")
    assert "Server string to sign is:ACS3-HMAC-SHA256#" in string_to_sign
    lines = canonical.split("#")
    assert lines[:3] == ["POST", "/", "InstanceId=idaas_x"]
    assert f"x-acs-security-token:{ECHO_TOKEN}" in lines
    signed_headers = next(line for line in lines if line.startswith("host;"))
    assert "x-acs-security-token" in signed_headers.split(";")


def test_rpc_mismatch_echoes_every_parameter_security_token_double_encoded() -> None:
    params = rpc_params(AccessKeyId="STS.NEchoKeyId", SecurityToken=ECHO_TOKEN)
    params["Signature"] = rpc_signature("wrong-secret", "POST", params)
    auth = Authenticator(ECHO_KEYS, clock_ms=lambda: T0)
    error = expect("SignatureDoesNotMatch", rpc_request(params), auth)
    shown = error.message.split("Server string to sign is:")[1]
    assert shown.startswith("POST&%2F&")
    # the query is percent-encoded, then the whole string once more: "+" -> %2B -> %252B
    double = ECHO_TOKEN.replace("+", "%252B").replace("/", "%252F").replace("=", "%253D")
    assert f"SecurityToken%3D{double}" in shown
    assert "AccessKeyId%3DSTS.NEchoKeyId" in shown
    assert "Signature%3D" not in shown  # the signature itself is not part of what is signed


def test_tampered_query_is_rejected() -> None:
    request = signed()
    request.query = request.query.replace("idaas_x", "idaas_y")
    expect("SignatureDoesNotMatch", request)


def test_tampered_body_is_rejected() -> None:
    request = signed(body=b"a=1", content_type="application/x-www-form-urlencoded")
    request.body = b"a=2"
    expect("SignatureDoesNotMatch", request)


def test_wrong_secret_is_rejected() -> None:
    request = v3_request({"InstanceId": "x"}, access_key_id="testid", secret="wrong")
    expect("SignatureDoesNotMatch", request)


def test_unknown_access_key() -> None:
    request = v3_request({"InstanceId": "x"}, access_key_id="LTAInope", secret="x")
    expect("InvalidAccessKeyId.NotFound", request, status=404)


def test_disabled_access_key() -> None:
    request = v3_request({"InstanceId": "x"}, access_key_id="LTAIdisabled", secret="secret")
    expect("InvalidAccessKeyId.Inactive", request, status=403)


@pytest.mark.parametrize("minutes", [16, -16])
def test_skewed_timestamp_is_expired(minutes: int) -> None:
    request = signed(date=datetime.now(UTC) + timedelta(minutes=minutes))
    error = expect("InvalidTimeStamp.Expired", request)
    assert "15 minutes" in error.message


def test_skew_within_fifteen_minutes_is_accepted() -> None:
    authenticate(
        Authenticator(KEYS, clock_ms=now_ms), signed(date=datetime.now(UTC) - timedelta(minutes=14))
    )


def test_malformed_timestamp() -> None:
    request = signed()
    request.headers["x-acs-date"] = "Wed, 01 Jan 2025 00:00:00 GMT"
    expect("InvalidTimeStamp.Format", request)


def test_reused_nonce_is_rejected_but_a_bad_signature_does_not_burn_it() -> None:
    auth = Authenticator(KEYS, clock_ms=now_ms)
    bad = signed(nonce="n-1")
    bad.headers["authorization"] = bad.headers["authorization"][:-4] + "0000"
    expect("SignatureDoesNotMatch", bad, auth)
    authenticate(auth, signed(nonce="n-1"))  # first valid use
    expect("SignatureNonceUsed", signed(nonce="n-1"), auth)
    authenticate(auth, signed(nonce="n-2"))


def test_nonce_cache_expires_and_is_bounded() -> None:
    cache = NonceCache(ttl_ms=1000, max_entries=3)
    assert cache.add("k", "a", 0)
    assert not cache.add("k", "a", 500)
    assert cache.add("k", "a", 1001)  # expired: accepted again
    for nonce in "bcde":
        cache.add("k", nonce, 1001)
    assert len(cache) <= 3


def test_sts_requires_its_token() -> None:
    missing = v3_request({"InstanceId": "x"}, access_key_id="STS.testid", secret="testsecret")
    expect("MissingSecurityToken", missing)
    wrong = v3_request(
        {"InstanceId": "x"}, access_key_id="STS.testid", secret="testsecret", security_token="nope"
    )
    expect("InvalidSecurityToken.Mismatch", wrong)
    good = v3_request(
        {"InstanceId": "x"},
        access_key_id="STS.testid",
        secret="testsecret",
        security_token="test-sts-token",
    )
    authenticate(Authenticator(KEYS, clock_ms=now_ms), good)
    expired = v3_request(
        {"InstanceId": "x"}, access_key_id="STS.expired", secret="secret", security_token="t"
    )
    expect("InvalidSecurityToken.Expired", expired)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.headers.pop("x-acs-signature-nonce"),
        lambda r: r.headers.pop("x-acs-date"),
        lambda r: r.headers.pop("x-acs-content-sha256"),
        lambda r: r.headers.__setitem__("authorization", "ACS3-HMAC-SHA256 Credential=testid"),
        lambda r: r.headers.__setitem__(
            "authorization",
            r.headers["authorization"].replace("x-acs-signature-nonce;", ""),
        ),
        lambda r: r.headers.__setitem__("authorization", "Bearer abc"),
        lambda r: r.headers.pop("authorization"),
    ],
    ids=["no-nonce", "no-date", "no-sha", "no-signature", "nonce-unsigned", "bearer", "none"],
)
def test_incomplete_signature(mutate: Callable[[Request], object]) -> None:
    request = signed()
    mutate(request)
    expect("IncompleteSignature", request)


def test_rpc_errors() -> None:
    auth = authenticator()
    no_signature = rpc_params()
    expect("IncompleteSignature", rpc_request(no_signature), auth)
    sha256 = rpc_params(SignatureMethod="HMAC-SHA256", Signature="x")
    expect("IncompleteSignature", rpc_request(sha256), auth)
    wrong = rpc_params(Signature="du1UC6VzyzBOUJQKN+nqOUxu94k=")
    wrong["Status"] = "success"
    expect("SignatureDoesNotMatch", rpc_request(wrong), auth)
    late = rpc_params(Signature="du1UC6VzyzBOUJQKN+nqOUxu94k=")
    expect("InvalidTimeStamp.Expired", rpc_request(late), authenticator(T0 + 16 * 60_000))
    reused = rpc_params(Signature="du1UC6VzyzBOUJQKN+nqOUxu94k=")
    authenticate(auth, rpc_request(reused))
    expect("SignatureNonceUsed", rpc_request(reused), auth)
