"""No credential in any output of the real process, even when every server echoes it back.

The sibling of ``test_secrets.py`` for a world less tidy than the simulator used to be: for each
source of the credential chain (environment AccessKey + STS token, RRSA/OIDC, a CLI profile, the
ECS instance RAM role) every server on the way echoes what it received. STS quotes the OIDC
token, the metadata service its session token, and the EIAM gateway refuses the signature with
its canonical request, ``x-acs-security-token`` included. The daemon runs at debug level, then
``jobs`` and ``check`` do; every output (stderr logs, stdout, ``/metrics``, the landing page,
the state file) is searched for every credential value in every encoding it may come back in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fakes.credential_servers import (
    FakeMetadata,
    FakeSts,
    Issued,
    Responder,
    echo_html,
    echo_json,
    leaks,
    serve,
    write_cli_sts_profile,
)

from exporter.simulator import AccessKey, ManualClock, World, load_scenario, run_in_thread
from exporter.simulator.runner import ThreadedSimulator

from .processes import ExporterProcess
from .support import wait_until

pytestmark = pytest.mark.timeout(90)

AK_ID = "STS.NUEchoE2eAccessKeyId3Jw"
SECRET = "E2e+Echo/Secret=Value7Kp"
TOKEN = "CAIS" + "+e2eEchoSecurityToken/base64=" * 16 + "Ag=="
OIDC_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2E6bW9uIn0.e2e-echo-oidc-sig_Q"
IMDS_TOKEN = "AQAE+e2e/imds=SessionToken+echo/Value=="
ROLE_ARN = "acs:ram::1234567890123456:role/idaas-exporter"
PROVIDER_ARN = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1234"
ISSUED = Issued(AK_ID, SECRET, TOKEN)
SECOND_INSTANCE = "idaas_second_instance_echo"


@dataclass
class Source:
    """One credential source: the environment that selects it and what it must never show."""

    env: dict[str, str]
    secrets: dict[str, str]
    sees: list[str] = field(default_factory=list)
    """Evidence in the daemon's logs that each echo of the fake STS or metadata service came."""
    commands_see: list[str] = field(default_factory=list)
    """The same for the commands (their runs get the non-retryable refusal only)."""
    masked: list[str] = field(default_factory=lambda: ["<redacted:security-token>"])
    """Masks that must show up in the outputs: proof that the echo did come back."""
    before_commands: list[Callable[[], None]] = field(default_factory=list)
    """Each command run is preceded by one of these (the fake's script for that run)."""


def credential_values(**extra: str) -> dict[str, str]:
    return {"AccessKey ID": AK_ID, "AccessKey secret": SECRET, "security token": TOKEN, **extra}


@contextmanager
def environment_source(tmp_path: Path) -> Iterator[Source]:
    yield Source(
        env={
            "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
            "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN,
        },
        secrets=credential_values(),
    )


@contextmanager
def rrsa_source(tmp_path: Path) -> Iterator[Source]:
    token_file = tmp_path / "rrsa-token"
    token_file.write_text(OIDC_TOKEN + "\n")
    refuse: Responder = echo_json(400, "AuthenticationFail.OIDCToken.Invalid", "OIDCToken")
    sts = FakeSts(script=[refuse, echo_html(502, "OIDCToken"), None], issue=lambda n: ISSUED)
    with serve(sts.respond) as url:
        yield Source(
            env={
                "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": PROVIDER_ARN,
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
                "ALIBABA_CLOUD_STS_ENDPOINT": url,
            },
            secrets=credential_values(**{"OIDC token": OIDC_TOKEN}),
            sees=["AuthenticationFail.OIDCToken.Invalid", "HTTP 502"],
            commands_see=["AuthenticationFail.OIDCToken.Invalid"],
            masked=["<redacted:security-token>", "<redacted:oidc-token>", "STS.NU***"],
            before_commands=[
                lambda: sts.restart([refuse]),  # jobs: STS refuses, echoing the OIDC token
                lambda: sts.restart([refuse, None]),  # check: one refusal, then credentials
                lambda: sts.restart([None]),  # jobs: credentials, then the gateway's echo
            ],
        )
    assert any(r.form.get("OIDCToken") == OIDC_TOKEN for r in sts.requests)


@contextmanager
def profile_source(tmp_path: Path) -> Iterator[Source]:
    config = tmp_path / "home" / ".aliyun" / "config.json"
    write_cli_sts_profile(config, AK_ID, SECRET, TOKEN)
    yield Source(env={}, secrets=credential_values())


@contextmanager
def ecs_source(tmp_path: Path) -> Iterator[Source]:
    header = "X-aliyun-ecs-metadata-token"
    refuse = echo_json(403, "Forbidden.RAM", header)
    metadata = FakeMetadata(
        token=IMDS_TOKEN, script=[refuse, echo_html(500, header), None], issue=lambda n: ISSUED
    )
    with serve(metadata.respond) as url:
        yield Source(
            env={"IDAAS_EXPORTER_ECS_METADATA_ENDPOINT": url},
            secrets=credential_values(**{"metadata token": IMDS_TOKEN}),
            sees=["HTTP 403", "HTTP 500"],
            commands_see=["HTTP 403"],
            masked=["<redacted:security-token>", "<redacted:metadata-token>", "STS.NU***"],
            before_commands=[
                lambda: metadata.restart([refuse]),
                lambda: metadata.restart([refuse, None]),
                lambda: metadata.restart([None]),
            ],
        )
    assert any(
        r.headers.get("x-aliyun-ecs-metadata-token") == IMDS_TOKEN for r in metadata.requests
    )


SOURCES = {
    "environment": environment_source,
    "rrsa-oidc": rrsa_source,
    "cli-profile": profile_source,
    "ecs-role": ecs_source,
}


def base_environment(tmp_path: Path, source: Source) -> dict[str, str]:
    """This process's environment without any exporter or Alibaba Cloud variable, an empty
    home (no profile of the machine's), no proxy for loopback, and *source*'s variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDAAS_", "ALIBABA_"))}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.update(source.env)
    return env


async def run_daemon(
    simulator: ThreadedSimulator, source: Source, tmp_path: Path, instance_ids: list[str]
) -> dict[str, str]:
    exporter = ExporterProcess(simulator, instance_ids, tmp_path / "state.json")
    # ExporterProcess sets the simulator's own AccessKey; a blank value counts as unset.
    exporter.extra_env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "",
        **base_environment(tmp_path, source),
    }
    exporter.extra_args = ["--log.level", "debug"]
    await exporter.start()
    pages: dict[str, str] = {}
    try:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            url = exporter.url

            async def echoed_everywhere() -> bool:
                for path in ("/metrics", "/", "/-/ready", "/-/healthy"):
                    response = await client.get(f"{url}{path}")
                    pages[path] = pages.get(path, "") + response.text
                logs = "\n".join(exporter.logs)
                return all(evidence in logs for evidence in ["SignatureDoesNotMatch", *source.sees])

            try:
                await wait_until(echoed_everywhere, timeout=30, what="the echoes", step=0.1)
            except AssertionError as timeout:
                tail = "\n".join(exporter.logs[-30:])
                raise AssertionError(f"{timeout}; the daemon logged, last:\n{tail}") from None
    finally:
        assert await exporter.terminate() == 0
    logs = "\n".join(exporter.logs)
    assert '"level": "debug"' in logs  # debug logging was on
    assert "x-acs-security-token" in logs  # the gateway echoed the header (redacted or not)
    texts = {f"daemon {path}": text for path, text in pages.items()}
    texts["daemon stderr"] = logs
    state = tmp_path / "state.json"
    if state.exists():
        texts["state file"] = state.read_text()
    return texts


def run_commands(
    simulator: ThreadedSimulator, source: Source, tmp_path: Path, instance_ids: list[str]
) -> dict[str, str]:
    env = {
        **base_environment(tmp_path, source),
        "IDAAS_EXPORTER_ENDPOINT": simulator.server.base_url,
        "IDAAS_EXPORTER_INSTANCE_IDS": ",".join(instance_ids),
    }
    commands = [["jobs"], ["check"], ["jobs", "--output", "json"]]
    texts: dict[str, str] = {}
    for index, command in enumerate(commands):
        if source.before_commands:
            source.before_commands[index]()
        result = subprocess.run(
            [sys.executable, "-m", "exporter", *command, "--log.level", "debug"],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        name = " ".join(command)
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        texts[f"{name} stdout"] = result.stdout
        texts[f"{name} stderr"] = result.stderr
    everything = "\n".join(texts.values())
    assert "SignatureDoesNotMatch" in everything
    for evidence in source.commands_see:
        assert evidence in everything, evidence
    return texts


@pytest.mark.parametrize("name", list(SOURCES))
async def test_no_credential_survives_servers_that_echo_it(tmp_path: Path, name: str) -> None:
    world = World(load_scenario("small"), seed=4, now_ms=ManualClock())
    instance_ids = [world.instances[0].instance_id, SECOND_INSTANCE]
    # The gateway knows the AccessKey and its token but not this secret: every request is
    # refused with SignatureDoesNotMatch, echoing the canonical request.
    key = AccessKey(AK_ID, "the-gateway-side-secret", security_token=TOKEN)
    with ExitStack() as stack:
        source = stack.enter_context(SOURCES[name](tmp_path))
        simulator = stack.enter_context(run_in_thread(world, access_keys=[key]))
        texts = await run_daemon(simulator, source, tmp_path, instance_ids)
        texts |= run_commands(simulator, source, tmp_path, instance_ids)
    found = leaks(texts, source.secrets)
    assert found == [], "\n".join(found)
    # Not merely absent: echoed, and masked where they came back.
    everything = "\n".join(texts.values())
    for marker in source.masked:
        assert marker in everything, marker
