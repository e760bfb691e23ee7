"""A bad setting is reported where the operator wrote it: YAML key and position, flag, or variable.

Why: the same setting has three names (``poll_interval_seconds:`` in YAML,
``--poll.interval-seconds``, ``IDAAS_EXPORTER_POLL_INTERVAL_SECONDS``); naming the wrong one
sends the operator looking for a variable nobody set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ConfigError, load_settings, parse_listen_address


def refusal(document: str, tmp_path: Path, flags: dict[str, object] | None = None) -> str:
    config = tmp_path / "config.yaml"
    config.write_text(document)
    with pytest.raises(ConfigError) as info:
        load_settings(dict(flags or {}), config)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith("invalid configuration: ")
    return line


@pytest.mark.parametrize(
    ("document", "position", "problem"),
    [
        ("a: [\n", "2:1", "expected the node content, but found '<stream end>'"),
        ("poll_interval_seconds: 5\n  region: x\n", "2:9", "mapping values are not allowed here"),
        ("instances:\n  - id: idaas_a\n - id: idaas_b\n", "3:2", "expected <block end>"),
        ('region: "cn-hangzhou\n', "2:1", "found unexpected end of stream"),
        ("region: cn\x00\n", "1:11", "unacceptable character #x0000"),
    ],
)
def test_yaml_syntax_errors_name_file_line_and_column(
    tmp_path: Path, document: str, position: str, problem: str
) -> None:
    line = refusal(document, tmp_path)
    assert f"{tmp_path / 'config.yaml'}:{position}: {problem}" in line


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("poll_interval_seconds: fast\n", "config.yaml:1:24: poll_interval_seconds: Input should"),
        (
            "region: cn-beijing\npoll-interval-seconds: 0\n",
            "config.yaml:2:24: poll-interval-seconds: Input should be greater than or equal",
        ),
        ("instances:\n  - id: bad id\n", "config.yaml:2:9: instances.0.id: 'bad id' is not"),
        ("web_listen_address: nowhere\n", "config.yaml:1:21: web_listen_address: 'nowhere' is"),
        ("pol_interval_seconds: 5\n", "config.yaml:1:1: unknown setting 'pol_interval_seconds'"),
    ],
)
def test_a_bad_yaml_value_is_reported_under_its_yaml_key(
    tmp_path: Path, document: str, expected: str
) -> None:
    line = refusal(document, tmp_path)
    assert f"{tmp_path}/{expected}" in line
    assert "IDAAS_EXPORTER_" not in line
    assert "--poll" not in line


def test_a_bad_flag_is_reported_under_the_flag(tmp_path: Path) -> None:
    line = refusal("poll_interval_seconds: 30\n", tmp_path, {"poll_interval_seconds": 0.0})
    assert line.startswith("invalid configuration: --poll.interval-seconds: ")
    assert "IDAAS_EXPORTER_" not in line
    assert "config.yaml" not in line


def test_a_bad_environment_value_is_reported_under_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDAAS_EXPORTER_POLL_INTERVAL_SECONDS", "fast")
    line = refusal("poll_interval_seconds: 30\n", tmp_path)
    assert line.startswith("invalid configuration: IDAAS_EXPORTER_POLL_INTERVAL_SECONDS: ")
    assert "--poll" not in line
    assert "config.yaml" not in line


def test_listen_port_out_of_range_says_so() -> None:
    for address in ("127.0.0.1:99999", ":65536"):
        with pytest.raises(ValueError, match="out of range") as info:
            parse_listen_address(address)
        message = str(info.value)
        assert "out of range" in message
        assert "1-65535" in message
        assert "not host:port" not in message
    assert parse_listen_address("127.0.0.1:0") == ("127.0.0.1", 0)  # ephemeral, as before
    assert parse_listen_address(":65535") == ("0.0.0.0", 65535)


def test_listen_port_out_of_range_from_a_flag() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"web_listen_address": "127.0.0.1:99999"})
    assert str(info.value).startswith("invalid configuration: --web.listen-address: ")
    assert "port 99999 is out of range" in str(info.value)
