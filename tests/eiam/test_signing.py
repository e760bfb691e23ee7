"""Signature and encoding vectors from eiam-api.md, plus property tests of the encoder."""

from __future__ import annotations

import hashlib
import string
from datetime import UTC, datetime
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider
from exporter.eiam.encoding import (
    canonical_query_string,
    flatten_params,
    parse_query_string,
    percent_encode,
)
from exporter.eiam.signing import (
    EMPTY_BODY_SHA256,
    AcsV3Auth,
    canonical_request,
    parse_v3_authorization,
    rpc_signature,
    signed_header_names,
    v3_signature,
)

EIAM_QUERY = {
    "InstanceId": "idaas_ue2jvisn35ea5lmthk267xxxxx",
    "TargetType": "identity_provider",
    "TargetIds.1": "idp_my664lwkhpicbyzirog3xxxxx",
    "Status": "failed",
    "MaxResults": "100",
    "Filters.1.Key": "k 1",
    "Filters.1.Values.1": "v/1*~",
}
EIAM_HEADERS = {
    "host": "eiam.cn-hangzhou.aliyuncs.com",
    "x-acs-action": "ListSynchronizationJobs",
    "x-acs-version": "2021-12-01",
    "x-acs-date": "2025-01-01T00:00:00Z",
    "x-acs-signature-nonce": "0123456789abcdef0123456789abcdef",
    "x-acs-content-sha256": EMPTY_BODY_SHA256,
}


def test_empty_body_hash() -> None:
    assert EMPTY_BODY_SHA256 == ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_published_v3_example() -> None:
    headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-version": "2014-05-26",
        "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
        "x-acs-content-sha256": EMPTY_BODY_SHA256,
    }
    query = {
        "ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
        "RegionId": "cn-shanghai",
    }
    names = signed_header_names(headers)
    assert ";".join(names) == (
        "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
    )
    canonical = canonical_request("POST", "/", query, headers, names, EMPTY_BODY_SHA256)
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    )
    assert v3_signature("YourAccessKeySecret", canonical) == (
        "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )


def test_eiam_vector() -> None:
    assert canonical_query_string(EIAM_QUERY) == (
        "Filters.1.Key=k%201&Filters.1.Values.1=v%2F1%2A~"
        "&InstanceId=idaas_ue2jvisn35ea5lmthk267xxxxx&MaxResults=100&Status=failed"
        "&TargetIds.1=idp_my664lwkhpicbyzirog3xxxxx&TargetType=identity_provider"
    )
    names = signed_header_names(EIAM_HEADERS)
    canonical = canonical_request("POST", "/", EIAM_QUERY, EIAM_HEADERS, names, EMPTY_BODY_SHA256)
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "de395e283bbe8857227b152aa3b70da7744e68a167279757b61c24922fb95410"
    )
    assert v3_signature("testsecret", canonical) == (
        "026aaa1aaf8bce6f8a09474130aba9c8c110b799fcc096c8d488162d0b08a8f4"
    )


def test_eiam_vector_with_sts_token() -> None:
    headers = {**EIAM_HEADERS, "x-acs-security-token": "test-sts-token"}
    names = signed_header_names(headers)
    assert "x-acs-security-token" in names
    canonical = canonical_request("POST", "/", EIAM_QUERY, headers, names, EMPTY_BODY_SHA256)
    assert v3_signature("testsecret", canonical) == (
        "f49fe77fea05c2764f5e1748883547f0fdf462872bbe8b760675aca1b7353e76"
    )


def test_percent_encoding_vector() -> None:
    assert canonical_query_string({"test": " ~/*-+"}) == "test=%20~%2F%2A-%2B"


def test_legacy_rpc_vectors() -> None:
    describe_regions = {
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "Format": "XML",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Timestamp": "2016-02-23T12:46:24Z",
        "Version": "2014-05-26",
    }
    assert rpc_signature("testsecret", "GET", describe_regions) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    eiam = {
        **EIAM_QUERY,
        "Action": "ListSynchronizationJobs",
        "Version": "2021-12-01",
        "Format": "JSON",
        "AccessKeyId": "testid",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": "0123456789abcdef0123456789abcdef",
        "Timestamp": "2025-01-01T00:00:00Z",
    }
    assert rpc_signature("testsecret", "POST", eiam) == "du1UC6VzyzBOUJQKN+nqOUxu94k="


def test_flatten_arrays_and_objects() -> None:
    flat = flatten_params(
        {
            "InstanceId": "idaas_x",
            "TargetIds": ["a", "b"],
            "Filters": [{"Key": "k", "Values": ["v1", "v2"]}, {"Key": "q", "Values": []}],
            "Status": None,
            "Flag": True,
            "MaxResults": 100,
        }
    )
    assert flat == {
        "InstanceId": "idaas_x",
        "TargetIds.1": "a",
        "TargetIds.2": "b",
        "Filters.1.Key": "k",
        "Filters.1.Values.1": "v1",
        "Filters.1.Values.2": "v2",
        "Filters.2.Key": "q",
        "Flag": "true",
        "MaxResults": "100",
    }


UNRESERVED = set(string.ascii_letters + string.digits + "-_.~")


@given(st.text())
def test_percent_encode_is_rfc3986(value: str) -> None:
    encoded = percent_encode(value)
    assert unquote(encoded) == value
    i = 0
    while i < len(encoded):
        char = encoded[i]
        if char == "%":
            hex_digits = encoded[i + 1 : i + 3]
            assert hex_digits == hex_digits.upper()
            assert all(c in "0123456789ABCDEF" for c in hex_digits)
            i += 3
        else:
            assert char in UNRESERVED
            i += 1


@given(st.dictionaries(st.text(min_size=1), st.text(), max_size=8))
def test_canonical_query_round_trips(params: dict[str, str]) -> None:
    query = canonical_query_string(params)
    assert dict(parse_query_string(query)) == params
    # canonical form is a fixed point: re-canonicalising what was parsed changes nothing
    assert canonical_query_string(parse_query_string(query)) == query


def _auth(token: str | None = None, ak: str = "testid") -> AcsV3Auth:
    credential = Credential(
        ak, SecretStr("testsecret"), SecretStr(token) if token else None, source="test"
    )
    return AcsV3Auth(
        StaticCredentialsProvider(credential),
        clock=lambda: datetime(2025, 1, 1, tzinfo=UTC),
        nonce=lambda: "0123456789abcdef0123456789abcdef",
    )


def _signed(auth: AcsV3Auth, url: str) -> httpx.Request:
    request = httpx.Request(
        "POST",
        url,
        headers={"x-acs-action": "ListSynchronizationJobs", "x-acs-version": "2021-12-01"},
    )
    credential = Credential("testid", SecretStr("testsecret"), source="test")
    auth.sign(request, credential)
    return request


def test_auth_reproduces_eiam_vector_on_the_wire() -> None:
    # a query deliberately encoded differently ("+" for space, lowercase hex, bare "*")
    url = (
        "https://eiam.cn-hangzhou.aliyuncs.com/?InstanceId=idaas_ue2jvisn35ea5lmthk267xxxxx"
        "&TargetType=identity_provider&TargetIds.1=idp_my664lwkhpicbyzirog3xxxxx&Status=failed"
        "&MaxResults=100&Filters.1.Key=k+1&Filters.1.Values.1=v%2f1*~"
    )
    request = _signed(_auth(), url)
    assert request.url.query.decode() == canonical_query_string(EIAM_QUERY)
    parsed = parse_v3_authorization(request.headers["authorization"])
    assert parsed.access_key_id == "testid"
    assert parsed.signature == "026aaa1aaf8bce6f8a09474130aba9c8c110b799fcc096c8d488162d0b08a8f4"


async def test_auth_flow_adds_sts_token_and_matches_vector() -> None:
    auth = _auth(token="test-sts-token", ak="STS.testid")
    request = httpx.Request(
        "POST",
        "https://eiam.cn-hangzhou.aliyuncs.com/?" + canonical_query_string(EIAM_QUERY),
        headers={"x-acs-action": "ListSynchronizationJobs", "x-acs-version": "2021-12-01"},
    )
    flow = auth.async_auth_flow(request)
    signed = await flow.__anext__()
    assert signed.headers["x-acs-security-token"] == "test-sts-token"
    parsed = parse_v3_authorization(signed.headers["authorization"])
    assert parsed.access_key_id == "STS.testid"
    assert parsed.signature == "f49fe77fea05c2764f5e1748883547f0fdf462872bbe8b760675aca1b7353e76"


def test_each_signing_gets_a_fresh_nonce_and_date() -> None:
    auth = AcsV3Auth(
        StaticCredentialsProvider(Credential("id", SecretStr("secret"), source="test"))
    )
    first = _signed(auth, "https://eiam.cn-hangzhou.aliyuncs.com/?A=1")
    second = _signed(auth, "https://eiam.cn-hangzhou.aliyuncs.com/?A=1")
    assert first.headers["x-acs-signature-nonce"] != second.headers["x-acs-signature-nonce"]
    assert first.headers["x-acs-date"].endswith("Z")


@pytest.mark.parametrize(
    "header",
    ["", "HMAC-SHA1 Credential=a", "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host"],
)
def test_parse_authorization_rejects_malformed(header: str) -> None:
    with pytest.raises(ValueError, match=r"unsupported|lacks"):
        parse_v3_authorization(header)
