"""The command line as a user runs it: exit codes and one-line errors, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("IDAAS_", "ALIBABA_"))}
    base["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


def test_version_and_help() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("idaas-sync-exporter ")
    helped = run("jobs", "--help")
    assert helped.returncode == 0
    for flag in (
        "--instance-id",
        "--since",
        "--status",
        "--target-type",
        "--direction",
        "--output",
    ):
        assert flag in helped.stdout


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["jobs", "--region", "nowhere"], {}, "IDAAS_EXPORTER_REGION / --region"),
        (["check"], {}, "no IDaaS instance ID given"),
        (
            ["jobs", "--instance-id", "idaas_x", "--endpoint", "http://10.1.2.3"],
            {},
            "plain http://",
        ),
        (["jobs"], {"IDAAS_EXPORTER_INSTANCE_IDS": "not valid!"}, "INSTANCE_IDS"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    result = run(*args, env=env)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_console_script_is_installed() -> None:
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts["idaas-sync-exporter"] == "exporter.cli:main"
