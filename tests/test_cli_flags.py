"""Flags as ``--help`` shows them and as the parser checks them, before any API call.

In-process: the parser is what is tested, and ``OneLineParser`` exits with code 2 after one
line on stderr, which ``capsys`` sees.
"""

from __future__ import annotations

import argparse

import pytest

from exporter.cli import build_parser
from exporter.config import FLAG_NAMES, Settings
from exporter.eiam.models import IN_PROGRESS_STATUSES, TERMINAL_STATUSES


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    choices: dict[str, argparse.ArgumentParser] = action.choices  # type: ignore[assignment]
    return choices[name]


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def flat(text: str) -> str:
    """Help text with argparse's line wrapping undone."""
    return " ".join(text.split())


@pytest.mark.parametrize("since", ["-5", "0", "-0.5", "nan", "inf"])
def test_jobs_since_must_be_a_positive_number_of_seconds(
    since: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(["jobs", "--instance-id", "idaas_x", f"--since={since}"], capsys)
    assert "--since" in line
    assert "positive number of seconds" in line


def test_jobs_since_accepts_a_positive_number() -> None:
    args = build_parser().parse_args(["jobs", "--since", "3600"])
    assert args.since == 3600.0


def test_jobs_status_is_one_of_the_api_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(["jobs", "--status", "done"], capsys)
    assert "--status" in line
    assert "'done'" in line
    for status in IN_PROGRESS_STATUSES | TERMINAL_STATUSES:
        assert status in line
    for status in IN_PROGRESS_STATUSES | TERMINAL_STATUSES:
        assert build_parser().parse_args(["jobs", "--status", status]).status == status
    assert build_parser().parse_args(["jobs", "--status", "Running"]).status == "running"


def test_jobs_help_lists_every_status_including_suspending() -> None:
    help_text = flat(subcommand("jobs").format_help())
    for status in IN_PROGRESS_STATUSES | TERMINAL_STATUSES:
        assert status in help_text
    assert "suspending" in help_text


def setting_default(field: str) -> object:
    info = Settings.model_fields[field]
    return info.get_default(call_default_factory=True)


def test_daemon_help_shows_every_setting_default() -> None:
    help_text = flat(build_parser().format_help())
    shown = {
        "poll_interval_seconds": "(default: 60)",
        "lookback_seconds": "(default: 86400)",
        "overlap_seconds": "(default: 300)",
        "web_listen_address": "(default: :10151)",
        "web_telemetry_path": "(default: /metrics)",
        "log_level": "(default: info)",
        "region": "(default: cn-hangzhou)",
        "shard_index": "(default: 0)",
        "state_file": "(default: $XDG_STATE_HOME/idaas-sync-exporter/state.json",
    }
    for field, text in shown.items():
        assert text in help_text, field
    listing = help_text.split("exporter (defaults from", 1)[1]  # below the usage lines
    for field, flag in FLAG_NAMES.items():
        default = setting_default(field)
        if default is None or default == []:
            continue
        assert f"{flag} " in listing, flag
        segment = listing.split(f"{flag} ", 1)[1].split(" --", 1)[0]
        assert "(default: " in segment, (flag, segment)
    assert "(default: 120)" in help_text  # --demo.speed


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("jobs", ["(default: 86400", "(default: table)", "(default: cn-hangzhou)"]),
        ("check", ["(default: cn-hangzhou)", "(default: 5)", "(default: 30)"]),
        ("simulate", ["(default: 127.0.0.1:10152", "(default: 1)", "(default: demo)"]),
    ],
)
def test_command_help_shows_defaults(command: str, expected: list[str]) -> None:
    help_text = flat(subcommand(command).format_help())
    for text in expected:
        assert text in help_text, (command, text)


def test_help_never_shows_a_secret_value() -> None:
    parser = subcommand("simulate")
    for action in parser._actions:
        if {"--access-key-secret", "--security-token"} & set(action.option_strings):
            assert "(default" not in (action.help or "")
            assert action.default is None
