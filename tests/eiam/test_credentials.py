"""The default credential chain, over real HTTP on loopback.

A fake STS and a fake ECS metadata service run as stdlib HTTP servers on 127.0.0.1 (ephemeral
ports, background threads); providers talk to them with real ``httpx`` clients. Time is an
injected clock, so refresh behaviour is tested without sleeping, and concurrency is made
deterministic with a gate the fake STS waits on.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import traceback
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from fakes.credential_servers import (
    IMDS_TOKEN,
    ROLE_ARN,
    FakeClock,
    FakeMetadata,
    FakeSts,
    closed_port_url,
    iso,
    json_reply,
    serve,
)
from pydantic import SecretStr
from structlog.testing import capture_logs

from exporter.eiam.credentials import (
    Credential,
    CredentialsProvider,
    EcsRamRoleCredentialsProvider,
    OidcRoleArnCredentialsProvider,
    ProfileNotFoundError,
    StaticCredentialsProvider,
    StsCredentialsError,
    cli_profile_credentials_provider,
    default_credentials_provider,
    environment_credentials_provider,
    ini_credentials_provider,
    load_cli_profile,
    load_credentials_ini,
    oidc_credentials_provider,
    sts_endpoint_from_environ,
)
from exporter.eiam.errors import CredentialsError

# --------------------------------------------------------------------------------------------
# Fakes: clock, HTTP servers, STS, ECS metadata (shared with the end-to-end tests)
# --------------------------------------------------------------------------------------------

START = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
ENV_SECRET = "env-secret-VALUE-1f9a"
ENV_TOKEN = "env-sts-token-VALUE-77c2"
OIDC_TOKEN_A = "eyJhbGciOiJSUzI1NiJ9.oidc-token-AAAA.sig"
OIDC_TOKEN_B = "eyJhbGciOiJSUzI1NiJ9.oidc-token-BBBB.sig"
CLI_SECRET = "cli-secret-VALUE-0b3c"
CLI_TOKEN = "cli-sts-token-VALUE-9e8d"
INI_SECRET = "ini-secret-VALUE-%4a#x"
PROVIDER_ARN = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1234"


def client_factory() -> httpx.AsyncClient:
    # trust_env=False: a proxy configured in the test environment must not see loopback calls.
    return httpx.AsyncClient(trust_env=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def sts(clock: FakeClock) -> Iterator[FakeSts]:
    fake = FakeSts(clock)
    with serve(fake.respond) as url:
        fake.url = url
        yield fake
    if fake.gate is not None:
        fake.gate.set()


@pytest.fixture
def metadata(clock: FakeClock) -> Iterator[FakeMetadata]:
    fake = FakeMetadata(clock)
    with serve(fake.respond) as url:
        fake.url = url
        yield fake


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "rrsa" / "token"
    path.parent.mkdir()
    path.write_text(OIDC_TOKEN_A + "\n")
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def rrsa_env(token_file: Path, **extra: str) -> dict[str, str]:
    return {
        "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": PROVIDER_ARN,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
        **extra,
    }


def rrsa_provider(
    sts: FakeSts, token_file: Path, clock: FakeClock, **kwargs: Any
) -> OidcRoleArnCredentialsProvider:
    return OidcRoleArnCredentialsProvider(
        role_arn=ROLE_ARN,
        oidc_provider_arn=PROVIDER_ARN,
        oidc_token_file=token_file,
        role_session_name="test-session",
        sts_endpoint=sts.url,
        http_client_factory=client_factory,
        clock=clock,
        **kwargs,
    )


def ecs_provider(
    metadata: FakeMetadata, clock: FakeClock, role_name: str | None = None
) -> EcsRamRoleCredentialsProvider:
    return EcsRamRoleCredentialsProvider(
        role_name,
        metadata_endpoint=metadata.url,
        http_client_factory=client_factory,
        clock=clock,
    )


def write_cli_config(home: Path, config: Mapping[str, Any]) -> Path:
    path = home / ".aliyun" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def write_ini(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CLI_CONFIG = {
    "current": "dev",
    "profiles": [
        {
            "name": "default",
            "mode": "AK",
            "access_key_id": "LTAI5default",
            "access_key_secret": CLI_SECRET,
        },
        {"name": "dev", "mode": "AK", "access_key_id": "LTAI5dev", "access_key_secret": CLI_SECRET},
        {
            "name": "sts",
            "mode": "StsToken",
            "access_key_id": "STS.cli",
            "access_key_secret": CLI_SECRET,
            "sts_token": CLI_TOKEN,
        },
        {
            "name": "role",
            "mode": "RamRoleArn",
            "access_key_id": "LTAI5role",
            "access_key_secret": CLI_SECRET,
            "ram_role_arn": ROLE_ARN,
        },
        {"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "ExporterRole"},
        {"name": "oidc", "mode": "OIDC", "ram_role_arn": ROLE_ARN},
        {"name": "broken", "mode": "AK", "access_key_id": "LTAI5broken"},
    ],
}

INI_TEXT = f"""
[default]
type = access_key
access_key_id = LTAI5ini
access_key_secret = {INI_SECRET}  # an inline comment

[prod]
type = access_key
access_key_id = LTAI5prod
access_key_secret = {INI_SECRET}

[ecs]
type = ecs_ram_role
role_name = ExporterRole
"""


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------


async def test_environment_access_key_pair() -> None:
    provider, source = environment_credentials_provider(
        {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5env", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ENV_SECRET}
    )
    assert provider is not None
    assert source == provider.source == "environment (ALIBABA_CLOUD_ACCESS_KEY_ID)"
    credential = await provider.get()
    assert credential.access_key_id == "LTAI5env"
    assert credential.access_key_secret.get_secret_value() == ENV_SECRET
    assert credential.security_token is None
    assert credential.expiration is None


async def test_environment_with_sts_token_and_whitespace() -> None:
    provider, _ = environment_credentials_provider(
        {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": " STS.env\n",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": f"{ENV_SECRET}\n",
            "ALIBABA_CLOUD_SECURITY_TOKEN": ENV_TOKEN,
        }
    )
    assert provider is not None
    credential = await provider.get()
    assert credential.access_key_id == "STS.env"
    assert credential.access_key_secret.get_secret_value() == ENV_SECRET
    assert credential.security_token is not None
    assert credential.security_token.get_secret_value() == ENV_TOKEN
    assert "ALIBABA_CLOUD_SECURITY_TOKEN" in provider.source


def test_environment_not_configured_blank_counts_as_unset() -> None:
    provider, reason = environment_credentials_provider(
        {"ALIBABA_CLOUD_ACCESS_KEY_ID": "", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "  "}
    )
    assert provider is None
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in reason


@pytest.mark.parametrize(
    ("environ", "missing"),
    [
        ({"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5env"}, "ALIBABA_CLOUD_ACCESS_KEY_SECRET is missing"),
        ({"ALIBABA_CLOUD_ACCESS_KEY_SECRET": ENV_SECRET}, "ALIBABA_CLOUD_ACCESS_KEY_ID is missing"),
        (
            {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5env", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ""},
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET is missing",
        ),
        ({"ALIBABA_CLOUD_SECURITY_TOKEN": ENV_TOKEN}, "ALIBABA_CLOUD_ACCESS_KEY_ID and"),
    ],
)
def test_environment_half_set_is_an_error(environ: dict[str, str], missing: str) -> None:
    with pytest.raises(CredentialsError, match=missing) as caught:
        environment_credentials_provider(environ)
    assert ENV_SECRET not in str(caught.value)
    assert ENV_TOKEN not in str(caught.value)


# --------------------------------------------------------------------------------------------
# RRSA / OIDC
# --------------------------------------------------------------------------------------------


async def test_rrsa_sends_one_unsigned_request_with_the_file_token(
    sts: FakeSts, token_file: Path, clock: FakeClock
) -> None:
    environ = rrsa_env(token_file, ALIBABA_CLOUD_ROLE_SESSION_NAME="exporter-pod-1")
    provider, source = oidc_credentials_provider(
        environ, sts_endpoint=sts.url, http_client_factory=client_factory, clock=clock
    )
    assert provider is not None
    assert source == f"RRSA/OIDC (role {ROLE_ARN} via 127.0.0.1)"
    assert sts.calls == 0, "selection must not call STS"

    credential = await provider.get()

    assert sts.calls == 1
    request = sts.requests[0]
    assert request.method == "POST"
    assert request.path == "/"
    assert request.query == {
        "Action": "AssumeRoleWithOIDC",
        "Format": "JSON",
        "Version": "2015-04-01",
        "Timestamp": iso(clock()),
    }
    assert request.form == {
        "RoleArn": ROLE_ARN,
        "OIDCProviderArn": PROVIDER_ARN,
        "OIDCToken": OIDC_TOKEN_A,
        "RoleSessionName": "exporter-pod-1",
        "DurationSeconds": "3600",
    }
    # Unsigned: no AccessKey, signature or ACS headers of any kind.
    params = sts.params()
    assert not {"AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce"} & set(params)
    assert "authorization" not in request.headers
    assert not [name for name in request.headers if name.startswith("x-acs-")]

    assert credential.access_key_id == "STS.id1"
    assert credential.access_key_secret.get_secret_value() == "sts-secret-1-VALUE"
    assert credential.security_token is not None
    assert credential.security_token.get_secret_value() == "sts-token-1-VALUE"
    assert credential.expiration == clock() + timedelta(hours=1)
    assert credential.source == source


async def test_rrsa_refreshes_before_expiry_and_rereads_the_token_file(
    sts: FakeSts, token_file: Path, clock: FakeClock
) -> None:
    provider = rrsa_provider(sts, token_file, clock)
    first = await provider.get()
    # kubelet rotated the projected token
    await asyncio.to_thread(token_file.write_text, OIDC_TOKEN_B)

    clock.advance(minutes=44, seconds=59)  # 15 min 1 s before expiry: still fresh
    assert await provider.get() is first
    assert sts.calls == 1

    clock.advance(seconds=1)  # exactly 15 min before expiry: refresh
    second = await provider.get()
    assert sts.calls == 2
    assert second.access_key_id == "STS.id2"
    assert sts.params()["OIDCToken"] == OIDC_TOKEN_B
    assert await provider.get() is second


async def test_rrsa_refresh_margin_is_configurable(
    sts: FakeSts, token_file: Path, clock: FakeClock
) -> None:
    provider = rrsa_provider(sts, token_file, clock, refresh_before=timedelta(minutes=5))
    await provider.get()
    clock.advance(minutes=54)
    await provider.get()
    assert sts.calls == 1
    clock.advance(minutes=1)
    await provider.get()
    assert sts.calls == 2


async def test_short_lived_credentials_refresh_at_half_life_not_on_every_call(
    sts: FakeSts, token_file: Path, clock: FakeClock
) -> None:
    sts.lifetime = timedelta(minutes=20)  # shorter than twice the 15-minute margin
    provider = rrsa_provider(sts, token_file, clock)
    await provider.get()
    await provider.get()
    clock.advance(minutes=9)
    await provider.get()
    assert sts.calls == 1
    clock.advance(minutes=1)
    await provider.get()
    assert sts.calls == 2


async def test_concurrent_get_makes_one_sts_request(
    sts: FakeSts, token_file: Path, clock: FakeClock
) -> None:
    sts.gate = threading.Event()
    provider = rrsa_provider(sts, token_file, clock)
    tasks = [asyncio.create_task(provider.get()) for _ in range(20)]
    # Wait (in a thread, bounded) until STS holds the first request, let every task run up to
    # the lock, then release STS.
    assert await asyncio.to_thread(sts.received.wait, 10)
    for _ in range(5):
        await asyncio.sleep(0)
    sts.gate.set()
    results = await asyncio.gather(*tasks)
    assert sts.calls == 1
    assert all(result is results[0] for result in results)


async def test_invalidate_forces_a_new_sts_request(
    sts: FakeSts, token_file: Path, clock: FakeClock
) -> None:
    provider = rrsa_provider(sts, token_file, clock)
    first = await provider.get()
    provider.invalidate()
    second = await provider.get()
    assert sts.calls == 2
    assert second.access_key_id != first.access_key_id


@pytest.mark.parametrize(
    ("code", "hint_part"),
    [
        ("AuthenticationFail.NoPermission", "trust policy"),
        ("EntityNotExist.Role", "ALIBABA_CLOUD_ROLE_ARN"),
        ("AuthenticationFail.OIDCToken.Expired", "token"),
        ("EntityNotExist.OIDCProvider", "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"),
    ],
)
async def test_sts_error_becomes_credentials_error_with_code_and_request_id(
    sts: FakeSts, token_file: Path, clock: FakeClock, code: str, hint_part: str
) -> None:
    sts.error = json_reply(
        400,
        {
            "RequestId": "E1D2-REQ",
            "HostId": "sts.aliyuncs.com",
            "Code": code,
            "Message": f"STS says no to {OIDC_TOKEN_A}",  # even an echoed token must not leak
            "Recommend": "https://api.aliyun.com/troubleshoot",
        },
    )
    provider = rrsa_provider(sts, token_file, clock)
    with pytest.raises(StsCredentialsError) as caught:
        await provider.get()
    error = caught.value
    assert isinstance(error, CredentialsError)
    assert error.sts_code == code
    assert error.request_id == "E1D2-REQ"
    assert error.http_status == 400
    assert not error.retryable
    text = str(error)
    assert code in text
    assert "E1D2-REQ" in text
    assert ROLE_ARN in text
    assert hint_part in text
    assert OIDC_TOKEN_A not in text


async def test_sts_server_error_is_retryable(
    sts: FakeSts, token_file: Path, clock: FakeClock
) -> None:
    sts.error = json_reply(503, {"RequestId": "R", "Code": "ServiceUnavailable", "Message": "x"})
    with pytest.raises(StsCredentialsError) as caught:
        await rrsa_provider(sts, token_file, clock).get()
    assert caught.value.retryable


async def test_sts_non_json_error_body(sts: FakeSts, token_file: Path, clock: FakeClock) -> None:
    page = f"<html><body>Bad gateway while forwarding {OIDC_TOKEN_A}</body></html>"
    sts.error = (502, {"Content-Type": "text/html"}, page.encode())
    with pytest.raises(CredentialsError, match="HTTP 502") as caught:
        await rrsa_provider(sts, token_file, clock).get()
    assert caught.value.retryable
    assert "Bad gateway" in str(caught.value)
    assert OIDC_TOKEN_A not in str(caught.value)


async def test_sts_success_without_credentials_fields(
    sts: FakeSts, token_file: Path, clock: FakeClock
) -> None:
    sts.error = json_reply(200, {"RequestId": "R", "Credentials": {"AccessKeyId": "STS.x"}})
    with pytest.raises(CredentialsError, match="lacks AccessKeySecret"):
        await rrsa_provider(sts, token_file, clock).get()


async def test_failed_refresh_serves_the_still_valid_credential_then_gives_up(
    sts: FakeSts, token_file: Path, clock: FakeClock
) -> None:
    provider = rrsa_provider(sts, token_file, clock)
    first = await provider.get()
    sts.error = json_reply(503, {"RequestId": "R", "Code": "ServiceUnavailable", "Message": "x"})

    clock.advance(minutes=50)  # in the refresh window, 10 minutes left
    with capture_logs() as logs:
        assert await provider.get() is first
    assert [e["event"] for e in logs] == [
        "credentials refresh failed, still using the current credential"
    ]
    assert sts.calls == 2
    clock.advance(seconds=30)  # within the retry interval: no new attempt
    assert await provider.get() is first
    assert sts.calls == 2

    clock.advance(minutes=9)  # 30 s before expiry: too close to serve, the error surfaces
    with pytest.raises(StsCredentialsError):
        await provider.get()

    sts.error = None
    assert (await provider.get()).access_key_id != first.access_key_id


async def test_missing_token_file_is_reported_without_calling_sts(
    sts: FakeSts, tmp_path: Path, clock: FakeClock
) -> None:
    missing = tmp_path / "nope" / "token"
    provider = rrsa_provider(sts, missing, clock)
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_OIDC_TOKEN_FILE") as caught:
        await provider.get()
    assert str(missing) in str(caught.value)
    assert sts.calls == 0


async def test_unreachable_sts_is_a_retryable_credentials_error(
    token_file: Path, clock: FakeClock
) -> None:
    provider = OidcRoleArnCredentialsProvider(
        role_arn=ROLE_ARN,
        oidc_provider_arn=PROVIDER_ARN,
        oidc_token_file=token_file,
        sts_endpoint=closed_port_url(),
        http_client_factory=client_factory,
        clock=clock,
    )
    with pytest.raises(CredentialsError, match="ConnectError") as caught:
        await provider.get()
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("environ", "endpoint"),
    [
        ({}, "https://sts.aliyuncs.com"),
        ({"ALIBABA_CLOUD_STS_REGION": "cn-beijing"}, "https://sts.cn-beijing.aliyuncs.com"),
        (
            {
                "ALIBABA_CLOUD_STS_REGION": "cn-beijing",
                "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "true",
            },
            "https://sts-vpc.cn-beijing.aliyuncs.com",
        ),
        ({"ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "true"}, "https://sts.aliyuncs.com"),
        (  # injected by the RRSA webhook (0.4.0 and later); wins over the region
            {
                "ALIBABA_CLOUD_STS_ENDPOINT": "sts-vpc.cn-beijing.aliyuncs.com",
                "ALIBABA_CLOUD_STS_REGION": "cn-hangzhou",
            },
            "https://sts-vpc.cn-beijing.aliyuncs.com",
        ),
        ({"ALIBABA_CLOUD_STS_ENDPOINT": "http://127.0.0.1:8080/"}, "http://127.0.0.1:8080"),
        ({"ALIBABA_CLOUD_STS_ENDPOINT": " "}, "https://sts.aliyuncs.com"),
    ],
)
def test_sts_endpoint_from_environ(environ: dict[str, str], endpoint: str) -> None:
    assert sts_endpoint_from_environ(environ) == endpoint


def test_rrsa_provider_from_environ_uses_the_derived_endpoint(token_file: Path) -> None:
    environ = rrsa_env(token_file, ALIBABA_CLOUD_STS_REGION="cn-shanghai")
    provider, _ = oidc_credentials_provider(environ)
    assert provider is not None
    assert "sts.cn-shanghai.aliyuncs.com" in provider.source
    assert provider.role_session_name.startswith("idaas-sync-exporter-")


def test_rrsa_partly_configured_is_an_error(token_file: Path) -> None:
    environ = rrsa_env(token_file)
    del environ["ALIBABA_CLOUD_ROLE_ARN"]
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_ROLE_ARN is not set"):
        oidc_credentials_provider(environ)


def test_role_arn_alone_is_not_rrsa() -> None:
    provider, reason = oidc_credentials_provider({"ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN})
    assert provider is None
    assert "RRSA" in reason


# --------------------------------------------------------------------------------------------
# Profile files
# --------------------------------------------------------------------------------------------


def test_cli_profile_current_ak(home: Path) -> None:
    path = write_cli_config(home, CLI_CONFIG)
    provider, source = cli_profile_credentials_provider({}, home)
    assert isinstance(provider, StaticCredentialsProvider)
    assert source == f"CLI profile 'dev' ({path}, mode AK)"
    credential = load_cli_profile(path)
    assert credential.access_key_id == "LTAI5dev"
    assert credential.access_key_secret.get_secret_value() == CLI_SECRET
    assert credential.security_token is None


async def test_cli_profile_selected_by_environment_sts_token(home: Path) -> None:
    write_cli_config(home, CLI_CONFIG)
    provider, _ = cli_profile_credentials_provider({"ALIBABA_CLOUD_PROFILE": "sts"}, home)
    assert provider is not None
    credential = await provider.get()
    assert credential.access_key_id == "STS.cli"
    assert credential.security_token is not None
    assert credential.security_token.get_secret_value() == CLI_TOKEN


def test_cli_profile_blank_current_means_default(home: Path) -> None:
    path = write_cli_config(home, {**CLI_CONFIG, "current": ""})
    assert load_cli_profile(path).access_key_id == "LTAI5default"


@pytest.mark.parametrize(
    ("profile", "advice"),
    [
        ("role", "ALIBABA_CLOUD_ACCESS_KEY_ID"),
        ("ecs", "ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true"),
        ("oidc", "ALIBABA_CLOUD_OIDC_TOKEN_FILE"),
    ],
)
def test_cli_profile_unsupported_mode(home: Path, profile: str, advice: str) -> None:
    write_cli_config(home, CLI_CONFIG)
    with pytest.raises(CredentialsError, match="does not support") as caught:
        cli_profile_credentials_provider({"ALIBABA_CLOUD_PROFILE": profile}, home)
    assert advice in str(caught.value)
    assert CLI_SECRET not in str(caught.value)


def test_cli_profile_missing_field(home: Path) -> None:
    write_cli_config(home, CLI_CONFIG)
    with pytest.raises(CredentialsError, match=r"'broken'.*has no access_key_secret"):
        cli_profile_credentials_provider({"ALIBABA_CLOUD_PROFILE": "broken"}, home)


def test_cli_profile_current_names_a_missing_profile(home: Path) -> None:
    write_cli_config(home, {**CLI_CONFIG, "current": "gone"})
    with pytest.raises(ProfileNotFoundError, match=r"no profile 'gone'.*default, dev, sts"):
        cli_profile_credentials_provider({}, home)


def test_cli_profile_invalid_json_does_not_quote_the_file(home: Path) -> None:
    path = home / ".aliyun" / "config.json"
    path.parent.mkdir()
    path.write_text('{"profiles": [{"access_key_secret": "' + CLI_SECRET + '",,]}')
    with pytest.raises(CredentialsError, match="not valid JSON") as caught:
        cli_profile_credentials_provider({}, home)
    assert CLI_SECRET not in str(caught.value)


def test_cli_profile_disabled_or_absent(home: Path) -> None:
    provider, reason = cli_profile_credentials_provider({}, home)
    assert provider is None
    assert "not found" in reason
    write_cli_config(home, CLI_CONFIG)
    disabled = {"ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true"}
    provider, reason = cli_profile_credentials_provider(disabled, home)
    assert provider is None
    assert "ALIBABA_CLOUD_CLI_PROFILE_DISABLED" in reason


def test_ini_default_section_with_inline_comment_and_percent(home: Path) -> None:
    path = write_ini(home / ".alibabacloud" / "credentials.ini", INI_TEXT)
    provider, source = ini_credentials_provider({}, home)
    assert provider is not None
    assert source == f"credentials file {path} [default]"
    credential = load_credentials_ini(path)
    assert credential.access_key_id == "LTAI5ini"
    assert credential.access_key_secret.get_secret_value() == INI_SECRET


def test_ini_section_and_file_from_environment(home: Path, tmp_path: Path) -> None:
    path = write_ini(tmp_path / "elsewhere.ini", INI_TEXT)
    environ = {"ALIBABA_CLOUD_CREDENTIALS_FILE": str(path), "ALIBABA_CLOUD_PROFILE": "prod"}
    provider, source = ini_credentials_provider(environ, home)
    assert provider is not None
    assert source == f"credentials file {path} [prod]"
    assert load_credentials_ini(path, "prod").access_key_id == "LTAI5prod"


def test_ini_errors(home: Path, tmp_path: Path) -> None:
    path = write_ini(home / ".alibabacloud" / "credentials.ini", INI_TEXT)
    with pytest.raises(CredentialsError, match=r"type 'ecs_ram_role'.*only type = access_key"):
        load_credentials_ini(path, "ecs")
    with pytest.raises(ProfileNotFoundError, match=r"no section \[staging\].*default, prod, ecs"):
        ini_credentials_provider({"ALIBABA_CLOUD_PROFILE": "staging"}, home)
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_CREDENTIALS_FILE names"):
        ini_credentials_provider({"ALIBABA_CLOUD_CREDENTIALS_FILE": str(tmp_path / "x")}, home)


def test_malformed_ini_does_not_quote_the_offending_line(tmp_path: Path) -> None:
    path = write_ini(tmp_path / "bad.ini", f"access_key_secret = {INI_SECRET}\n")
    with pytest.raises(CredentialsError, match="not a valid INI file") as caught:
        load_credentials_ini(path)
    assert INI_SECRET not in str(caught.value)
    path = write_ini(tmp_path / "bad2.ini", f"[default]\ntype = access_key\n{INI_SECRET}\n")
    with pytest.raises(CredentialsError, match="line 3") as caught:
        load_credentials_ini(path)
    assert INI_SECRET not in str(caught.value)


# --------------------------------------------------------------------------------------------
# ECS instance RAM role
# --------------------------------------------------------------------------------------------


async def test_ecs_imdsv2_flow_discovers_the_role(metadata: FakeMetadata, clock: FakeClock) -> None:
    provider = ecs_provider(metadata, clock)
    assert "role discovered" in provider.source
    credential = await provider.get()

    assert metadata.paths() == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/ram/security-credentials/"),
        ("GET", "/latest/meta-data/ram/security-credentials/ExporterRole"),
    ]
    put, *gets = metadata.requests
    assert put.headers["x-aliyun-ecs-metadata-token-ttl-seconds"] == "21600"
    assert all(r.headers["x-aliyun-ecs-metadata-token"] == IMDS_TOKEN for r in gets)
    assert credential.access_key_id == "STS.ecs1"
    assert credential.access_key_secret.get_secret_value() == "ecs-secret-1-VALUE"
    assert credential.security_token is not None
    assert credential.security_token.get_secret_value() == "ecs-token-1-VALUE"
    assert credential.expiration == clock() + timedelta(hours=6)
    assert "role ExporterRole" in provider.source


async def test_ecs_named_role_and_refresh(metadata: FakeMetadata, clock: FakeClock) -> None:
    provider = ecs_provider(metadata, clock, role_name="ExporterRole")
    first = await provider.get()
    assert metadata.paths() == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/ram/security-credentials/ExporterRole"),
    ]
    clock.advance(hours=5, minutes=44)
    assert await provider.get() is first
    assert len(metadata.requests) == 2
    clock.advance(minutes=1)
    second = await provider.get()
    assert second.access_key_id == "STS.ecs2"
    assert len(metadata.requests) == 4
    assert metadata.requests[2].method == "PUT"  # a new session token for every refresh


async def test_ecs_failures(metadata: FakeMetadata, clock: FakeClock) -> None:
    with pytest.raises(CredentialsError, match="'OtherRole' is not attached"):
        await ecs_provider(metadata, clock, role_name="OtherRole").get()
    metadata.code = "Failed"
    with pytest.raises(CredentialsError, match="Code 'Failed'"):
        await ecs_provider(metadata, clock).get()
    metadata.role = None
    with pytest.raises(CredentialsError, match="no RAM role is attached"):
        await ecs_provider(metadata, clock).get()


# --------------------------------------------------------------------------------------------
# The chain
# --------------------------------------------------------------------------------------------


def env_pair() -> dict[str, str]:
    return {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5env",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ENV_SECRET,
    }


def chain(
    environ: Mapping[str, str],
    home: Path,
    clock: FakeClock,
    sts: FakeSts | None = None,
    metadata: FakeMetadata | None = None,
) -> CredentialsProvider:
    return default_credentials_provider(
        environ,
        home=home,
        sts_endpoint=sts.url if sts else None,
        metadata_endpoint=metadata.url if metadata else None,
        http_client_factory=client_factory,
        clock=clock,
    )


async def test_chain_order(
    home: Path, token_file: Path, clock: FakeClock, sts: FakeSts, metadata: FakeMetadata
) -> None:
    write_cli_config(home, CLI_CONFIG)
    write_ini(home / ".alibabacloud" / "credentials.ini", INI_TEXT)
    everything = {**env_pair(), **rrsa_env(token_file)}

    def pick(environ: Mapping[str, str]) -> CredentialsProvider:
        return chain(environ, home, clock, sts, metadata)

    assert pick(everything).source.startswith("environment")
    assert pick(rrsa_env(token_file)).source.startswith("RRSA/OIDC")
    assert pick({}).source.startswith("CLI profile 'dev'")
    assert pick({"ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true"}).source.startswith(
        "credentials file"
    )
    (home / ".aliyun" / "config.json").unlink()
    assert pick({}).source.startswith("credentials file")
    (home / ".alibabacloud" / "credentials.ini").unlink()
    assert pick({}).source.startswith("ECS instance RAM role")
    # Selection is configuration only: no STS or metadata request has been made.
    assert sts.calls == 0
    assert metadata.requests == []


async def test_chain_rrsa_end_to_end(
    home: Path, token_file: Path, clock: FakeClock, sts: FakeSts
) -> None:
    provider = chain(rrsa_env(token_file), home, clock, sts)
    credential = await provider.get()
    assert credential.access_key_id == "STS.id1"
    assert sts.params()["OIDCToken"] == OIDC_TOKEN_A


async def test_chain_falls_back_to_ecs(
    home: Path, clock: FakeClock, metadata: FakeMetadata
) -> None:
    provider = chain({}, home, clock, metadata=metadata)
    credential = await provider.get()
    assert credential.access_key_id == "STS.ecs1"
    assert "role ExporterRole" in provider.source


async def test_chain_ecs_metadata_endpoint_from_environment(
    home: Path, clock: FakeClock, metadata: FakeMetadata
) -> None:
    environ = {"IDAAS_EXPORTER_ECS_METADATA_ENDPOINT": metadata.url}
    provider = default_credentials_provider(
        environ, home=home, http_client_factory=client_factory, clock=clock
    )
    assert metadata.url in provider.source
    assert (await provider.get()).access_key_id == "STS.ecs1"


async def test_chain_rrsa_sts_endpoint_from_environment(
    home: Path, token_file: Path, clock: FakeClock, sts: FakeSts
) -> None:
    environ = rrsa_env(token_file, ALIBABA_CLOUD_STS_ENDPOINT=sts.url)
    provider = default_credentials_provider(
        environ, home=home, http_client_factory=client_factory, clock=clock
    )
    assert (await provider.get()).access_key_id == "STS.id1"
    assert sts.calls == 1


async def test_chain_ecs_role_from_environment(
    home: Path, clock: FakeClock, metadata: FakeMetadata
) -> None:
    provider = chain({"ALIBABA_CLOUD_ECS_METADATA": "ExporterRole"}, home, clock, metadata=metadata)
    await provider.get()
    assert ("GET", "/latest/meta-data/ram/security-credentials/") not in metadata.paths()


async def test_chain_nothing_configured_lists_every_source(home: Path, clock: FakeClock) -> None:
    provider = default_credentials_provider(
        {},
        home=home,
        metadata_endpoint=closed_port_url(),
        http_client_factory=client_factory,
        clock=clock,
    )
    with pytest.raises(CredentialsError) as caught:
        await provider.get()
    text = str(caught.value)
    assert text.startswith("no Alibaba Cloud credentials found; tried, in order: environment:")
    for part in ("RRSA/OIDC", "CLI profile", "credentials file", "ECS instance RAM role"):
        assert part in text
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET" in text
    assert "attach a RAM role" in text


async def test_chain_ecs_failure_after_success_is_reported_as_is(
    home: Path, clock: FakeClock, metadata: FakeMetadata
) -> None:
    provider = chain({}, home, clock, metadata=metadata)
    await provider.get()
    provider.invalidate()
    metadata.code = "Failed"
    with pytest.raises(CredentialsError, match="Code 'Failed'") as caught:
        await provider.get()
    assert "no Alibaba Cloud credentials found" not in str(caught.value)


def test_chain_ecs_disabled_and_nothing_else_fails_at_construction(
    home: Path, clock: FakeClock
) -> None:
    environ = {"ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}
    with pytest.raises(CredentialsError, match="disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED"):
        chain(environ, home, clock)


def test_chain_profile_name_falls_through_from_cli_to_ini(home: Path, clock: FakeClock) -> None:
    write_cli_config(home, CLI_CONFIG)
    write_ini(home / ".alibabacloud" / "credentials.ini", INI_TEXT)
    provider = chain({"ALIBABA_CLOUD_PROFILE": "prod"}, home, clock)
    assert provider.source.endswith("[prod]")


def test_chain_profile_name_found_nowhere_is_an_error(home: Path, clock: FakeClock) -> None:
    write_cli_config(home, CLI_CONFIG)
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_PROFILE=nowhere names a profile"):
        chain({"ALIBABA_CLOUD_PROFILE": "nowhere"}, home, clock)


def test_chain_misconfiguration_is_not_skipped(
    home: Path, token_file: Path, clock: FakeClock
) -> None:
    environ = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5env", **rrsa_env(token_file)}
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_ACCESS_KEY_SECRET is missing"):
        chain(environ, home, clock)


def test_chain_logs_the_selected_source_once(home: Path, clock: FakeClock) -> None:
    with capture_logs() as logs:
        chain(env_pair(), home, clock)
    selected = [entry for entry in logs if entry["event"] == "credentials selected"]
    assert selected == [
        {
            "event": "credentials selected",
            "log_level": "info",
            "source": "environment (ALIBABA_CLOUD_ACCESS_KEY_ID)",
        }
    ]


# --------------------------------------------------------------------------------------------
# Secrecy
# --------------------------------------------------------------------------------------------


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """structlog rendering every event at DEBUG to a buffer, without any redaction processor."""
    buffer = io.StringIO()
    previous = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=repr),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(file=buffer),
        cache_logger_on_first_use=False,
    )
    try:
        yield buffer
    finally:
        structlog.configure(**previous)


def rendered(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


async def test_no_secret_in_logs_reprs_or_errors_at_debug(
    debug_log: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    home: Path,
    token_file: Path,
    clock: FakeClock,
    sts: FakeSts,
    metadata: FakeMetadata,
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger, httpx and httpcore included
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    texts: list[str] = []

    def keep(*objects: object) -> None:
        texts.extend(repr(o) + str(o) for o in objects)

    # Environment, with an STS token.
    environ = {**env_pair(), "ALIBABA_CLOUD_SECURITY_TOKEN": ENV_TOKEN}
    env_provider = chain(environ, home, clock)
    keep(env_provider, await env_provider.get())

    # RRSA: success, a refresh that fails and falls back, an STS error echoing the token.
    rrsa = chain(rrsa_env(token_file), home, clock, sts)
    keep(rrsa, await rrsa.get())
    sts.error = json_reply(403, {"RequestId": "R", "Code": "NoPermission", "Message": OIDC_TOKEN_A})
    clock.advance(minutes=50)
    keep(await rrsa.get())
    rrsa.invalidate()
    with pytest.raises(CredentialsError) as sts_error:
        await rrsa.get()
    texts.append(rendered(sts_error.value))

    # ECS metadata, discovered role.
    ecs = chain({}, home, clock, metadata=metadata)
    keep(ecs, await ecs.get())

    # Profile files: selection and broken files.
    write_cli_config(home, CLI_CONFIG)
    keep(chain({"ALIBABA_CLOUD_PROFILE": "sts"}, home, clock))
    with pytest.raises(CredentialsError) as cli_error:
        chain({"ALIBABA_CLOUD_PROFILE": "role"}, home, clock)
    texts.append(rendered(cli_error.value))
    (home / ".aliyun" / "config.json").unlink()
    write_ini(home / ".alibabacloud" / "credentials.ini", INI_TEXT)
    keep(chain({}, home, clock))

    # Nothing configured, ECS unreachable.
    (home / ".alibabacloud" / "credentials.ini").unlink()
    nothing = default_credentials_provider(
        {}, home=home, metadata_endpoint=closed_port_url(), http_client_factory=client_factory
    )
    with pytest.raises(CredentialsError) as none_error:
        await nothing.get()
    texts.append(rendered(none_error.value))

    log_text = debug_log.getvalue() + caplog.text
    assert "credentials selected" in log_text
    assert "credentials refreshed" in log_text
    assert "credentials refresh failed" in log_text
    secrets = [
        ENV_SECRET,
        ENV_TOKEN,
        OIDC_TOKEN_A,
        IMDS_TOKEN,
        CLI_SECRET,
        CLI_TOKEN,
        INI_SECRET,
        *sts.issued,
        *metadata.issued,
    ]
    assert len(sts.issued) >= 2
    assert len(metadata.issued) >= 2
    haystack = log_text + "\n".join(texts)
    leaked = [secret for secret in secrets if secret in haystack]
    assert leaked == []


def test_credential_repr_hides_secrets() -> None:
    credential = Credential("LTAI5x", SecretStr(ENV_SECRET), SecretStr(ENV_TOKEN), source="t")
    assert ENV_SECRET not in repr(credential) + str(credential)
    assert ENV_TOKEN not in repr(credential) + str(credential)
