"""``idaas-sync-exporter simulate``: flags, errors, and a real process serving and stopping."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from exporter.commands.simulate import (
    DEFAULT_LISTEN,
    _access_keys,
    add_simulate_arguments,
    run_simulate,
)
from exporter.simulator import DEMO_ACCESS_KEY, DEMO_STS_KEY, AccessKey

from .helpers import v3_auth

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="simulate")
    add_simulate_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_loopback_and_demo() -> None:
    args = parse()
    assert args.listen == DEFAULT_LISTEN
    assert DEFAULT_LISTEN.startswith("127.0.0.1:")
    assert (args.seed, args.speed, args.scenario, args.faults) == (1, 1.0, "demo", "")
    assert args.control is False
    assert _access_keys(args) == [DEMO_ACCESS_KEY, DEMO_STS_KEY]


def test_help_shows_the_demo_credentials() -> None:
    parser = argparse.ArgumentParser(prog="simulate")
    add_simulate_arguments(parser)
    text = parser.format_help()
    assert DEMO_ACCESS_KEY.access_key_id in text
    assert DEMO_ACCESS_KEY.access_key_secret in text
    assert "throttle=0.3,5xx=0.05" in text


def test_custom_credentials_replace_the_demo_ones() -> None:
    args = parse("--access-key-id", "LTAIcustom", "--access-key-secret", "s3cret")
    assert _access_keys(args) == [AccessKey("LTAIcustom", "s3cret")]
    sts = parse("--access-key-id", "STS.x", "--access-key-secret", "s", "--security-token", "t")
    assert _access_keys(sts)[0].security_token == "t"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--scenario", "nope"], "unknown scenario"),
        (["--faults", "explode=1"], "unknown fault"),
        (["--listen", "localhost"], "host:port"),
        (["--speed", "0"], "--speed"),
        (["--manual-clock"], "--control"),
        (["--access-key-id", "LTAIx"], "go together"),
        (["--access-key-id", "STS.x", "--access-key-secret", "s"], "--security-token"),
        (["--tls-cert", "/nonexistent.pem"], "go together"),
        (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], "cannot load"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_simulate(parse(*argv)) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1


def start(*argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_PROXY": "*"}
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", "simulate", "--log.format", "json", *argv],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def wait_for_event(stream: IO[str], event: str, deadline: float) -> dict[str, Any]:
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == event:
            return dict(record)
    raise AssertionError(f"no {event!r} log line")


def test_the_command_serves_and_stops_cleanly() -> None:
    process = start("--listen", "127.0.0.1:0", "--seed", "3", "--speed", "60", "--control")
    try:
        assert process.stderr is not None
        listening = wait_for_event(process.stderr, "simulator listening", time.monotonic() + 60)
        url = listening["url"]
        assert url.startswith("http://127.0.0.1:")
        assert all(i.startswith("idaas_") for i in listening["instances"])
        headers = {"x-acs-action": "ListInstances", "x-acs-version": "2021-12-01"}
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
            world = client.get("/_sim/world").json()
        assert [i["instance_id"] for i in world["instances"]] == listening["instances"]
        assert world["speed"] == 60.0

        # The project's V3 signer is async-only, so sign through an AsyncClient.
        async def instances() -> list[str]:
            async with httpx.AsyncClient(base_url=url, auth=v3_auth(), trust_env=False) as c:
                body = (await c.post("/", headers=headers)).json()
            return [i["InstanceId"] for i in body["Instances"]]

        assert asyncio.run(instances()) == listening["instances"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_an_address_in_use_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start("--listen", f"127.0.0.1:{port}")
        try:
            assert process.wait(timeout=60) == 1
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
