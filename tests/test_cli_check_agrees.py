"""``--config.check`` and the daemon judge a configuration with one function, so they agree.

Why as processes: the promise is about what an operator sees — the same one line on stderr and
the same exit code from ``idaas-sync-exporter --config.check`` as from ``idaas-sync-exporter``
with the same configuration. ``socket.gethostname`` is replaced in the child (as a StatefulSet
pod name would be) so that ``--shard.index=auto`` does not depend on this machine's name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = (
    "import socket, sys; socket.gethostname = lambda: {hostname!r}; "
    "from exporter.cli import main; sys.exit(main(sys.argv[1:]))"
)
CREDENTIALS = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tTestOnly",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "test-only-secret-value",
}


def environment(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("IDAAS_", "ALIBABA_"))}
    return {**base, **CREDENTIALS, **extra}


def run(
    args: list[str], env: dict[str, str], hostname: str = "laptop"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(hostname=hostname), *args],
        capture_output=True,
        text=True,
        env=environment(env),
        timeout=60,
        check=False,
    )


def refusal(result: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    """(exit code, the one line on stderr); fails on a traceback or several lines."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return result.returncode, lines[0]


def refused_configurations(tmp_path: Path) -> list[tuple[str, list[str], dict[str, str], str, int]]:
    """(name, args, env, hostname, exit code) of configurations the daemon refuses."""
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {prometheus: plain}\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    listen = ["--web.listen-address", "127.0.0.1:0"]
    one = ["--instance-id", "idaas_x", "--endpoint", "http://127.0.0.1:9", *listen]
    return [
        ("no instance", ["--state.file", "", *listen], {}, "laptop", 2),
        (
            "shard auto on a host without an ordinal",
            [*one, "--state.file", "", "--shard.index", "auto", "--shard.count", "2"],
            {},
            "laptop",
            2,
        ),
        (
            "shard auto with an ordinal beyond the count",
            [*one, "--state.file", "", "--shard.index", "auto", "--shard.count", "2"],
            {},
            "exporter-7",
            2,
        ),
        (
            "web config without a bcrypt hash",
            [*one, "--state.file", "", "--web.config.file", str(web)],
            {},
            "laptop",
            2,
        ),
        (
            "state directory below a regular file",
            [*one, "--state.file", str(blocker / "state.json")],
            {},
            "laptop",
            1,
        ),
        (
            "half-configured credentials",
            [*one, "--state.file", ""],
            {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": ""},
            "laptop",
            1,
        ),
    ]


def test_check_refuses_what_the_daemon_refuses(tmp_path: Path) -> None:
    for name, args, env, hostname, code in refused_configurations(tmp_path):
        daemon = refusal(run(args, env, hostname))
        check = refusal(run([*args, "--config.check"], env, hostname))
        assert daemon[0] == code, (name, daemon)
        assert check == daemon, name
        assert daemon[1].startswith("idaas-sync-exporter: "), (name, daemon)


def test_a_good_configuration_passes_both(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("instances:\n  - id: idaas_a\n  - id: idaas_b\n")
    args = [
        "--config.file", str(config), "--endpoint", "http://127.0.0.1:9",
        "--state.file", str(tmp_path / "state" / "state.json"),
        "--web.listen-address", "127.0.0.1:0", "--log.format", "json",
    ]  # fmt: skip
    check = run([*args, "--config.check"], {})
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("configuration OK: 2 instance(s)"), check.stdout

    daemon = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(hostname="laptop"), *args],
        stderr=subprocess.PIPE,
        text=True,
        env=environment({}),
    )
    assert daemon.stderr is not None
    try:
        deadline = time.monotonic() + 30
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = daemon.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "idaas-sync-exporter started" in line:
                break
        assert any("idaas-sync-exporter started" in line for line in seen), "".join(seen)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        daemon.stderr.close()


def test_demo_check_validates_the_demo_configuration() -> None:
    """``--demo`` brings its own instances and credentials: its check must not ask for them."""
    result = run(["--demo", "--state.file", "", "--config.check"], {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("configuration OK: 2 instance(s)"), result.stdout


@pytest.mark.parametrize("flag", ["--config.check", None])
def test_bad_settings_are_refused_alike(flag: str | None) -> None:
    args = ["--instance-id", "idaas_x", "--poll.interval-seconds", "0", "--state.file", ""]
    result = run([*args, *([flag] if flag else [])], {})
    code, line = refusal(result)
    assert code == 2
    assert "--poll.interval-seconds" in line
