"""No credential survives a server that echoes it: every source of the chain, in-process.

Each test takes one credential source of the default chain, lets every server on the way echo
everything it received (STS the OIDC token, the metadata service its session token, the EIAM
gateway the security token of the V3 canonical request, with ``SignatureDoesNotMatch``), logs at
debug level with the exporter's real logging set-up, in every log format, and then looks for
every credential value in every encoding it may come back in: the exception's text, repr,
traceback and attributes, and the log output. The end-to-end sibling (``tests/e2e``) does the
same with the real process, its commands, metrics, landing page and state file.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import structlog
from fakes.credential_servers import (
    FakeMetadata,
    FakeSts,
    Issued,
    echo_html,
    echo_json,
    leaks,
    serve,
    write_cli_sts_profile,
)
from pydantic import SecretStr

from exporter.eiam.client import EiamClient
from exporter.eiam.credentials import Credential, CredentialsProvider, default_credentials_provider
from exporter.eiam.errors import EiamError, SignatureMismatchError
from exporter.eiam.retry import RetryPolicy
from exporter.logs import configure_logging, install_redacting_excepthooks
from exporter.simulator import AccessKey, ManualClock, SimulatorServer, World, load_scenario

pytestmark = pytest.mark.timeout(60)

# Credential-like values with every character that gets encoded on the way back: base64 "+/=".
AK_ID = "STS.NTEchoAccessKeyId7Qx"
LTAI_ID = "LTAI5tEchoIniKeyId8ZrQ"
SECRET = "Echo+Secret/Value=9fT2wQ"
TOKEN = "CAIS" + "+echoSecurityToken/base64=" * 12 + "AAAA=="
OIDC_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.echo-oidc-signature_Z"
IMDS_TOKEN = "AQAE+imds/session=Token+echo/VALUE=="
ISSUED = Issued(AK_ID, SECRET, TOKEN)
ROLE_ARN = "acs:ram::1234567890123456:role/idaas-exporter"
PROVIDER_ARN = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1234"


def values(*extra: tuple[str, str]) -> dict[str, str]:
    return {
        "AccessKey ID": AK_ID,
        "AccessKey secret": SECRET,
        "security token": TOKEN,
        **dict(extra),
    }


@pytest.fixture
async def gateway() -> AsyncIterator[SimulatorServer]:
    """The simulator knows the AccessKey and its token, but with another secret: every signed
    request is refused with ``SignatureDoesNotMatch``, echoing the canonical request."""
    world = World(load_scenario("small"), seed=5, now_ms=ManualClock())
    keys = [
        AccessKey(AK_ID, "the-server-side-secret", security_token=TOKEN),
        AccessKey(LTAI_ID, "the-server-side-secret"),
    ]
    async with SimulatorServer(world, access_keys=keys) as server:
        yield server


@pytest.fixture
def logs() -> Iterator[dict[str, io.StringIO]]:
    """The exporter's logging at debug level; one buffer per format, configured in turn."""
    previous = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hooks = sys.excepthook, threading.excepthook
    buffers = {fmt: io.StringIO() for fmt in ("json", "logfmt", "console")}
    try:
        yield buffers
    finally:
        structlog.configure(**previous)
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.excepthook, threading.excepthook = hooks


def assert_no_leaks(texts: dict[str, str], secrets: dict[str, str]) -> None:
    found = leaks(texts, secrets)
    assert found == [], "\n".join(found)


def client(base_url: str, provider: CredentialsProvider) -> EiamClient:
    return EiamClient(base_url, provider, retry=RetryPolicy(max_attempts=1))


def rendered(error: BaseException) -> dict[str, str]:
    return {
        "str(error)": str(error),
        "repr(error)": repr(error),
        "traceback": "".join(traceback.format_exception(error)),
        "attributes": json.dumps(vars(error), default=str),
    }


async def exercise(
    provider: CredentialsProvider, base_url: str, logs: dict[str, io.StringIO], attempts: int
) -> dict[str, str]:
    """Call the gateway *attempts* times per log format; log every failure like the poller."""
    texts: dict[str, str] = {}
    errors: list[EiamError] = []
    for fmt, buffer in logs.items():
        configure_logging("debug", fmt, stream=buffer)
        log = structlog.get_logger("test")
        async with client(base_url, provider) as api:
            for _ in range(attempts):
                try:
                    await api.get_synchronization_job("idaas_x", "job_x")
                except EiamError as error:
                    errors.append(error)
                    log.error("poll failed", code=error.code, error=str(error))
                    log.debug("poll failed, details", error=error, api_message=vars(error))
                    logging.getLogger("some.library").error("failed: %s", error)
                    try:
                        raise RuntimeError("while polling") from error
                    except RuntimeError:
                        log.exception("unexpected")
        texts[f"{fmt} log"] = buffer.getvalue()
    assert any(isinstance(error, SignatureMismatchError) for error in errors), errors
    for index, error in enumerate(errors):
        for where, text in rendered(error).items():
            texts[f"error {index} ({error.code}) {where}"] = text
    return texts


async def test_environment_access_key_and_sts_token(
    gateway: SimulatorServer, logs: dict[str, io.StringIO], tmp_path: Path
) -> None:
    provider = default_credentials_provider(
        {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
            "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN,
        },
        home=tmp_path,
    )
    texts = await exercise(provider, gateway.base_url, logs, attempts=1)
    assert "x-acs-security-token:" in texts["json log"]  # the gateway did echo the header
    assert_no_leaks(texts, values())


async def test_rrsa_with_an_sts_that_echoes_the_oidc_token(
    gateway: SimulatorServer, logs: dict[str, io.StringIO], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(OIDC_TOKEN + "\n")
    # Each get() of a fresh provider: an echoing JSON refusal, an echoing HTML page, credentials.
    sts = FakeSts(
        script=[echo_json(400, "AuthenticationFail.OIDCToken.Invalid"), echo_html(502), None],
        issue=lambda n: ISSUED,
    )
    with serve(sts.respond) as url:
        provider = default_credentials_provider(
            {
                "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": PROVIDER_ARN,
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
            },
            home=tmp_path,
            sts_endpoint=url,
        )
        texts = await exercise(provider, gateway.base_url, logs, attempts=3)
    assert sts.calls == 3
    assert any(OIDC_TOKEN in str(r.form) for r in sts.requests)
    codes = " ".join(texts.values())
    assert "AuthenticationFail.OIDCToken.Invalid" in codes
    assert "HTTP 502" in codes
    assert_no_leaks(texts, values(("OIDC token", OIDC_TOKEN)))


@pytest.mark.parametrize("kind", ["cli-sts-profile", "credentials-ini"])
async def test_profile_files(
    gateway: SimulatorServer, logs: dict[str, io.StringIO], tmp_path: Path, kind: str
) -> None:
    if kind == "cli-sts-profile":
        path = tmp_path / ".aliyun" / "config.json"
        write_cli_sts_profile(path, AK_ID, SECRET, TOKEN)
        secrets = values()
    else:
        path = tmp_path / ".alibabacloud" / "credentials.ini"
        path.parent.mkdir()
        path.write_text(
            f"[default]\ntype = access_key\naccess_key_id = {LTAI_ID}\n"
            f"access_key_secret = {SECRET}\n"
        )
        secrets = {"AccessKey ID": LTAI_ID, "AccessKey secret": SECRET}
    provider = default_credentials_provider({}, home=tmp_path)
    texts = await exercise(provider, gateway.base_url, logs, attempts=1)
    assert_no_leaks(texts, secrets)


async def test_ecs_role_with_a_metadata_service_that_echoes_its_token(
    gateway: SimulatorServer, logs: dict[str, io.StringIO], tmp_path: Path
) -> None:
    metadata = FakeMetadata(
        token=IMDS_TOKEN,
        script=[echo_html(500), echo_json(500, "InternalError"), None],
        issue=lambda n: ISSUED,
    )
    with serve(metadata.respond) as url:
        provider = default_credentials_provider({}, home=tmp_path, metadata_endpoint=url)
        texts = await exercise(provider, gateway.base_url, logs, attempts=3)
    assert any(
        r.headers.get("x-aliyun-ecs-metadata-token") == IMDS_TOKEN for r in metadata.requests
    )
    assert_no_leaks(texts, values(("metadata token", IMDS_TOKEN)))


def test_values_are_what_a_real_world_credential_looks_like() -> None:
    """The fixtures carry the characters that get encoded (a value without them would make the
    encoding checks vacuous)."""
    for value in (SECRET, TOKEN, IMDS_TOKEN):
        assert {"+", "/", "="} <= set(value)


def test_uncaught_exceptions_are_printed_masked(logs: dict[str, io.StringIO]) -> None:
    """The interpreter prints an uncaught exception past every log processor: the hooks that
    configure_logging installs mask it too, in the main thread and in others."""
    Credential(AK_ID, SecretStr(SECRET), SecretStr(TOKEN))
    stream = io.StringIO()
    install_redacting_excepthooks(stream)
    try:
        raise RuntimeError(f"gateway said: x-acs-security-token:{TOKEN}")
    except RuntimeError as error:
        sys.excepthook(type(error), error, error.__traceback__)

    def crash() -> None:
        raise ValueError(f"echo {quote(SECRET, safe='')} from {AK_ID}")

    thread = threading.Thread(target=crash)
    thread.start()
    thread.join()
    printed = stream.getvalue()
    assert "RuntimeError: gateway said" in printed
    assert "ValueError: echo <redacted:access-key-secret> from STS.NT***" in printed
    assert_no_leaks({"stderr": printed}, values())
