"""Start-up refusals as an operator sees them: exit code, one line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("IDAAS_", "ALIBABA_"))}
    base.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID="LTAI5tTestOnly",
        ALIBABA_CLOUD_ACCESS_KEY_SECRET="test-only-secret-value",
    )
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert lines, "no message"
    return lines[-1]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{broken", "is corrupt"),
        ('{"schema_version": 7, "exporter_version": "9.9"}', "written by a newer exporter"),
    ],
)
def test_bad_state_file_stops_start_up(tmp_path: Path, content: str, expected: str) -> None:
    state = tmp_path / "state.json"
    state.write_text(content)
    result = run(
        "--instance-id", "idaas_x", "--endpoint", "http://127.0.0.1:9",
        "--state.file", str(state), "--web.listen-address", "127.0.0.1:0",
    )  # fmt: skip
    assert result.returncode == 1
    line = one_line(result)
    assert expected in line
    assert f"mv {state} {state}.bad" in line
    assert state.read_text() == content  # never overwritten


def test_unwritable_state_directory_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    result = run(
        "--instance-id", "idaas_x", "--endpoint", "http://127.0.0.1:9",
        "--state.file", str(blocker / "state.json"), "--web.listen-address", "127.0.0.1:0",
    )  # fmt: skip
    assert result.returncode == 1
    assert "is not writable" in one_line(result)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {}, "no IDaaS instance configured"),
        (["--instance-id", "idaas_x", "--poll.interval-seconds", "0"], {}, "--poll.interval-"),
        (["--instance-id", "idaas_x", "--web.listen-address", "nope"], {}, "is not host:port"),
        (["--instance-id", "idaas_x"], {"IDAAS_EXPORTER_SHARD_COUNT": "0"}, "SHARD_COUNT"),
        (
            ["--instance-id", "idaas_x", "--shard.index", "auto", "--shard.count", "2"],
            {"HOSTNAME": "x"},
            "",
        ),
    ],
)
def test_bad_configuration_exits_2(args: list[str], env: dict[str, str], expected: str) -> None:
    result = run(*args, "--state.file", "", env=env)
    assert result.returncode == 2, result.stderr
    assert expected in one_line(result)


def test_bad_web_config_exits_2(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {prometheus: plain}\n")
    result = run(
        "--instance-id", "idaas_x", "--state.file", "", "--web.config.file", str(web),
        "--web.listen-address", "127.0.0.1:0",
    )  # fmt: skip
    assert result.returncode == 2
    assert "not a bcrypt hash" in one_line(result)


def test_config_check(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("instances:\n  - id: idaas_a\n  - id: idaas_b\npoll_interval_seconds: 30\n")
    result = run("--config.file", str(config), "--config.check")
    assert result.returncode == 0, result.stderr
    assert "configuration OK: 2 instance(s)" in result.stdout
    config.write_text("poll_interval_seconds: -1\n")
    result = run("--config.file", str(config), "--config.check")
    assert result.returncode == 2
    assert "config.yaml:1:24: poll_interval_seconds: " in one_line(result)


def test_busy_port_is_reported(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            "--instance-id", "idaas_x", "--state.file", "",
            "--web.listen-address", f"127.0.0.1:{port}",
        )  # fmt: skip
    assert result.returncode == 1
    assert "cannot listen on" in one_line(result)


def test_shard_selection_is_stable_and_complete() -> None:
    from exporter.service.sharding import ShardError, select_shard

    ids = [f"idaas_{n:04d}" for n in range(200)]
    shards = [select_shard(ids, n, 4) for n in range(4)]
    assert sorted(i for shard in shards for i in shard) == ids  # each on exactly one replica
    assert all(20 < len(shard) < 80 for shard in shards)
    assert select_shard(ids, "auto", 4, hostname="idaas-sync-exporter-2") == shards[2]
    with pytest.raises(ShardError, match="ending in -<ordinal>"):
        select_shard(ids, "auto", 4, hostname="laptop")
    with pytest.raises(ShardError, match=r"outside 0\.\.3"):
        select_shard(ids, "auto", 4, hostname="exporter-7")


def test_half_configured_credentials_are_reported() -> None:
    env = {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "", "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tOnlyId"}
    result = run(
        "--instance-id", "idaas_x", "--state.file", "", "--web.listen-address", "127.0.0.1:0",
        env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in one_line(result)
