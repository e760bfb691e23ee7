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
        (["jobs", "--region", "nowhere"], {}, "invalid configuration: --region: region 'nowhere'"),
        (
            ["jobs", "--instance-id", "idaas_x"],
            {"IDAAS_EXPORTER_API_MAX_ATTEMPTS": "0"},
            "invalid configuration: IDAAS_EXPORTER_API_MAX_ATTEMPTS: ",
        ),
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


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--poll.interval", "30"], "unrecognized arguments: --poll.interval"),  # no prefixes
        (["--poll.interval-seconds", "soon"], "--poll.interval-seconds: invalid float value"),
        (["--nope"], "unrecognized arguments: --nope"),
        (["jobs", "--output", "xml"], "--output: invalid choice: 'xml'"),
        (["check", "--instance"], "unrecognized arguments: --instance"),
        (["simulate", "--sped", "2"], "unrecognized arguments: --sped"),
    ],
)
def test_command_line_errors_are_one_line_with_exit_code_2(args: list[str], expected: str) -> None:
    result = run(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert lines[0].startswith("idaas-sync-exporter: invalid command line: ")


def test_every_command_takes_its_settings_from_the_one_flag_table() -> None:
    from exporter.cli import build_parser
    from exporter.commands.flags import API_SETTINGS
    from exporter.config import FLAG_NAMES

    parser = build_parser()
    daemon_flags = set(parser._option_string_actions)
    assert set(FLAG_NAMES.values()) <= daemon_flags
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("jobs", "check"):
        flags = set(subcommands[name]._option_string_actions)
        assert {FLAG_NAMES[field] for field in API_SETTINGS} <= flags
        assert "--config.file" in flags


def test_the_daemon_does_not_import_httpx_command_line_client() -> None:
    """httpx's optional CLI (click, pygments) is 1.5 MB of RSS the exporter never uses."""
    code = (
        "import sys, exporter.commands.run, httpx; "
        "print(sorted(m for m in ('click', 'pygments', 'rich') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
