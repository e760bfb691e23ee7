"""The redactor: every encoding of every registered value is masked; never raises; idempotent;
bounded; and the credential sources register what they hold, rotation included.

Property tests use a registry of their own: random values registered with the process-wide one
would mask random text in every later test.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from fakes.credential_servers import FakeClock, FakeSts, leak_forms, lower_hex, serve
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import SecretStr

from exporter.eiam.credentials import (
    Credential,
    OidcRoleArnCredentialsProvider,
    StsCredentialsError,
)
from exporter.eiam.encoding import canonical_query_string, percent_encode
from exporter.eiam.redaction import (
    MIN_LENGTH,
    CredentialRegistry,
    mask_access_key_id,
    redact,
    registry,
)

# What credentials are made of: base64 (STS tokens), base64url and dots (JWTs), hex, and a
# few characters a user-chosen secret may hold.
CREDENTIAL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_.~%!*@#:"
credentials = st.text(alphabet=CREDENTIAL_ALPHABET, min_size=MIN_LENGTH, max_size=400)
kinds = st.sampled_from(["access-key-secret", "security-token", "oidc-token", "metadata-token"])
# Text around the value: anything but the characters a credential is made of, so that the
# surroundings cannot complete or extend a value by accident.
surroundings = st.text(alphabet=" \n\t\"'<>{}[]()&;,|", max_size=40)


def unmasked(text: str) -> str:
    """*text* without its masks (a value may well be a substring of ``<redacted:…>``)."""
    return re.sub(r"<redacted:[a-z-]+>|\S{0,6}\*\*\*", " ", text)


def encodings(value: str) -> list[str]:
    """Every way the tests below send *value* back, mixed forms included."""
    once = percent_encode(value)
    return sorted(
        leak_forms(value)
        | {
            # the RPC string to sign: the canonical query, percent-encoded once more
            percent_encode(canonical_query_string({"SecurityToken": value})),
            json.dumps({"v": value}).replace("/", "\\/"),
            json.dumps(value, ensure_ascii=True),
            "".join(f"\\u{ord(c):04x}" if not c.isalnum() else c for c in value),
            html.escape(value, quote=True),
            "".join(f"&#{ord(c)};" if not c.isalnum() else c for c in value),
            lower_hex(once),
            lower_hex(quote(once, safe="")),
            repr(value),
        }
    )


@given(value=credentials, kind=kinds, before=surroundings, after=surroundings)
def test_no_encoding_of_a_registered_value_survives(
    value: str, kind: str, before: str, after: str
) -> None:
    assume("***" not in value)  # our own mask syntax: refused, see below
    local = CredentialRegistry()
    local.register(value, kind)  # type: ignore[arg-type]
    for form in encodings(value):
        redacted = local.redact(f"{before}{form}{after}")
        assert f"<redacted:{kind}>" in redacted
        for leaked in leak_forms(value):
            assert leaked not in unmasked(redacted), (form, redacted)


@given(
    values=st.lists(st.tuples(credentials, kinds), min_size=1, max_size=5),
    text=st.text(max_size=300),
    picks=st.lists(st.integers(min_value=0, max_value=4), max_size=6),
)
def test_redaction_is_idempotent_and_catches_every_value_in_mixed_text(
    values: list[tuple[str, str]], text: str, picks: list[int]
) -> None:
    local = CredentialRegistry()
    for value, kind in values:
        local.register(value, kind)  # type: ignore[arg-type]
    pieces = [text]
    for index in picks:
        value = values[index % len(values)][0]
        pieces += [encodings(value)[index % len(encodings(value))], text[: index * 7]]
    mixed = " ".join(pieces)
    once = local.redact(mixed)
    assert local.redact(once) == once
    for value, _ in values:
        if "***" not in value:
            assert value not in unmasked(once)


@given(value=st.text(min_size=MIN_LENGTH, max_size=60), text=st.text(max_size=400))
def test_redaction_never_raises_whatever_it_is_given(value: str, text: str) -> None:
    local = CredentialRegistry()
    local.register(value, "access-key-secret")
    local.register(value[::-1], "access-key-id")
    result = local.redact(text + value + text)
    assert isinstance(result, str)
    if "<redacted:" not in value:
        assert value not in result or value in "<redacted:access-key-secret>"


def test_access_key_id_keeps_a_short_prefix() -> None:
    local = CredentialRegistry()
    local.register("LTAI5tExampleKeyId0001", "access-key-id")
    local.register("STS.NUExampleStsKeyId9", "access-key-id")
    text = "Credential=LTAI5tExampleKeyId0001, then STS.NUExampleStsKeyId9"
    assert local.redact(text) == "Credential=LTAI5t***, then STS.NU***"
    assert mask_access_key_id("abcdefghi") == "abc***"  # never more than a third


def test_short_values_are_not_registered() -> None:
    local = CredentialRegistry()
    local.register("x", "access-key-secret")
    local.register("1234567", "access-key-secret")
    local.register(None, "security-token")
    local.register(SecretStr(""), "security-token")
    assert len(local) == 0
    assert local.redact("x 1234567") == "x 1234567"


def test_values_inside_masks_are_masked_and_masks_stay_whole() -> None:
    local = CredentialRegistry()
    local.register("security", "access-key-secret")
    local.register("LTAI5tExampleKeyId0001", "access-key-id")
    local.register("LTAI5tEx", "oidc-token")
    text = "security LTAI5tExampleKeyId0001 <redacted:security-token>"
    once = local.redact(text)
    assert once == "<redacted:access-key-secret> LTAI5t*** <redacted:security-token>"
    assert local.redact(once) == once


def test_values_holding_the_mask_syntax_are_refused() -> None:
    local = CredentialRegistry()
    local.register("<redacted:security-token>", "security-token")
    local.register("abc***defgh", "access-key-secret")
    assert len(local) == 0


def test_the_registry_is_bounded_and_keeps_the_most_recent_values() -> None:
    local = CredentialRegistry(capacity=6)
    values = [f"rotated-token-{n:04d}-VALUE" for n in range(10)]
    local.register(values[0], "security-token")
    for value in values[1:]:
        local.register(value, "security-token")
        local.register(values[0], "security-token")  # still in use: registered again
    assert len(local) == 6
    text = " ".join(values)
    redacted = local.redact(text)
    assert values[0] not in redacted  # refreshed, so kept
    for value in values[-5:]:
        assert value not in redacted
    for value in values[1:5]:
        assert value in redacted  # the oldest went


def test_overlapping_values_mask_the_longer_one_whole() -> None:
    local = CredentialRegistry()
    local.register("STS.NUExampleKeyId01", "access-key-id")
    local.register("token-STS.NUExampleKeyId01-tail", "security-token")
    assert local.redact("a token-STS.NUExampleKeyId01-tail b") == "a <redacted:security-token> b"


def test_text_without_a_credential_is_returned_as_it_is() -> None:
    local = CredentialRegistry()
    assert local.redact("anything") == "anything"
    for n in range(200):
        local.register(f"some+Token/{n:04d}=Value", "security-token")
    line = '{"event": "eiam request", "action": "ListSynchronizationJobs", "status": 200}' * 10
    assert local.redact(line) is line  # not even copied


def test_forms_the_tests_check_include_the_real_worlds() -> None:
    value = "a+b/c=d"
    forms = encodings(value)
    for expected in (
        "a%2Bb%2Fc%3Dd",
        "a%252Bb%252Fc%253Dd",
        "a+b\\/c=d",
        "a\\u002bb\\u002fc\\u003dd",
    ):
        assert expected in forms
    assert quote_plus(value) in forms


# -- the credential sources register what they hold ------------------------------------------


def test_a_credential_registers_its_values() -> None:
    Credential(
        "LTAI5tRegisteredKeyId7", SecretStr("registered-secret-1"), SecretStr("registered-tok-1")
    )
    assert redact("LTAI5tRegisteredKeyId7 registered-secret-1 registered-tok-1") == (
        "LTAI5t*** <redacted:access-key-secret> <redacted:security-token>"
    )


def _rrsa(token_file: Path, url: str, **options: Any) -> OidcRoleArnCredentialsProvider:
    """An RRSA provider against the fake STS at *url*."""
    return OidcRoleArnCredentialsProvider(
        role_arn="acs:ram::1234567890123456:role/r",
        oidc_provider_arn="acs:ram::1234567890123456:oidc-provider/p",
        oidc_token_file=token_file,
        sts_endpoint=url,
        http_client_factory=lambda: httpx.AsyncClient(trust_env=False),
        **options,
    )


async def test_rotating_credentials_accumulate_in_the_registry(tmp_path: Path) -> None:
    """RRSA refreshes hourly: each new secret and token is masked from the moment it arrives,
    and so is the OIDC token read from the file."""
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    token_file = tmp_path / "token"
    oidc_token = "eyJhbGciOiJSUzI1NiJ9.rotating-registry-test.sig"
    token_file.write_text(oidc_token)
    sts = FakeSts(clock)
    with serve(sts.respond) as url:
        provider = _rrsa(token_file, url, clock=clock)
        for _ in range(3):
            await provider.get()
            clock.advance(minutes=46)
    assert len(sts.issued) == 6
    assert oidc_token in registry
    for value in [*sts.issued, oidc_token]:
        assert value not in redact(f"echo {value} and {quote(value, safe='')}")


async def test_an_sts_echo_cut_by_the_snippet_is_masked_before_the_cut(tmp_path: Path) -> None:
    token = "eyJhbGciOiJSUzI1NiJ9." + "x" * 400 + ".snippet-cut-sig"
    token_file = tmp_path / "token"
    token_file.write_text(token)
    message = "A" * 150 + f" OIDCToken={token}"  # starts inside the 200 characters quoted
    sts = FakeSts(
        error=(400, {"Content-Type": "application/json"},
               json.dumps({"Code": "InvalidParameter.OIDCToken", "Message": message}).encode()),
    )  # fmt: skip
    with serve(sts.respond) as url:
        provider = _rrsa(token_file, url)
        with pytest.raises(StsCredentialsError) as caught:
            await provider.get()
    text = str(caught.value)
    assert "OIDCToken=<redacted:oidc-token>" in text
    assert "x" * 20 not in text  # no half of the token either
