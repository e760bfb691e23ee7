"""Settings: environment names, flags winning, and one actionable line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from exporter.config import (
    ConfigError,
    Settings,
    config_error_line,
    load_settings,
    parse_listen_address,
)


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDAAS_EXPORTER_INSTANCE_IDS", " idaas_a ,idaas_b,, idaas_a")
    monkeypatch.setenv("IDAAS_EXPORTER_REGION", "ap-southeast-1")
    monkeypatch.setenv("IDAAS_EXPORTER_API_RATE_LIMIT", "2.5")
    settings = Settings()
    assert settings.instance_ids == ["idaas_a", "idaas_b"]
    assert str(settings.endpoint_url()) == "https://eiam.ap-southeast-1.aliyuncs.com/"
    assert settings.api_rate_limit == 2.5


def test_init_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDAAS_EXPORTER_REGION", "cn-beijing")
    assert Settings(region="cn-shanghai").region == "cn-shanghai"


def test_endpoint_overrides_region() -> None:
    settings = Settings(region="cn-beijing", endpoint="http://127.0.0.1:9000")
    assert str(settings.endpoint_url()) == "http://127.0.0.1:9000/"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"region": "Hangzhou"},
            "IDAAS_EXPORTER_REGION / --region: region 'Hangzhou' is not a region ID",
        ),
        (
            {"endpoint": "http://eiam.example.com"},
            "IDAAS_EXPORTER_ENDPOINT / --endpoint: endpoint http://eiam.example.com uses plain",
        ),
        ({"endpoint": "eiam.example.com"}, "has no scheme"),
        ({"instance_ids": "idaas_ok,bad id!"}, "'bad id!' is not an IDaaS instance ID"),
        ({"api_rate_limit": -1}, "IDAAS_EXPORTER_API_RATE_LIMIT"),
    ],
)
def test_errors_name_the_setting_and_the_fix(kwargs: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**kwargs)  # type: ignore[arg-type]
    line = config_error_line(info.value)
    assert line.startswith("invalid configuration: ")
    assert expected in line
    assert "\n" not in line


def test_yaml_file_below_environment_below_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "instances:\n"
        "  - id: idaas_yaml\n"
        "    region: ap-southeast-1\n"
        "  - id: idaas_local\n"
        "    endpoint: http://127.0.0.1:9000\n"
        "poll_interval_seconds: 30\n"
        "lookback_seconds: 7200\n"
        "region: cn-beijing\n"
    )
    monkeypatch.setenv("IDAAS_EXPORTER_POLL_INTERVAL_SECONDS", "20")
    monkeypatch.setenv("IDAAS_EXPORTER_INSTANCE_IDS", "idaas_env")
    settings = load_settings({"lookback_seconds": 3600.0}, config)
    assert settings.poll_interval_seconds == 20  # environment over file
    assert settings.lookback_seconds == 3600  # flag over file
    endpoints = {i.id: str(settings.endpoint_url(i)) for i in settings.all_instances()}
    assert endpoints == {
        "idaas_yaml": "https://eiam.ap-southeast-1.aliyuncs.com/",
        "idaas_local": "http://127.0.0.1:9000/",
        "idaas_env": "https://eiam.cn-beijing.aliyuncs.com/",
    }


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("poll_interval_seconds: fast\n", "config.yaml:1:24: poll_interval_seconds: Input"),
        ("pol_interval_seconds: 5\n", "unknown setting 'pol_interval_seconds'"),
        ("instances:\n  - id: bad id\n", "config.yaml:2:9: instances.0.id: 'bad id'"),
        ("instances:\n  - {id: idaas_a, regoin: x}\n", "unknown setting 'instances.0.regoin'"),
        ("[1, 2]\n", "must be a YAML mapping"),
        ("a: [\n", "is not valid YAML"),
        ("shard_index: 3\nshard_count: 2\n", "within 0..1"),
        ("web_listen_address: nowhere\n", "is not host:port"),
        ("web_telemetry_path: metrics\n", "must start with /"),
    ],
)
def test_bad_yaml_gives_one_line(tmp_path: Path, document: str, expected: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(document)
    with pytest.raises(ConfigError) as info:
        load_settings({}, config)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_settings({}, tmp_path / "absent.yaml")


def test_listen_address_forms() -> None:
    assert parse_listen_address(":10151") == ("0.0.0.0", 10151)
    assert parse_listen_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen_address("[::1]:9") == ("::1", 9)
    with pytest.raises(ValueError, match="not host:port"):
        parse_listen_address("localhost")


def test_reconcile_settings_defaults_and_reach(tmp_path: Path) -> None:
    settings = Settings()
    assert (settings.reconcile_interval_seconds, settings.reconcile_window_seconds) == (
        3600.0,
        86400.0,
    )
    assert Settings(reconcile_window_seconds=0).reconcile_window_seconds == 0  # off
    config = tmp_path / "config.yaml"
    config.write_text("reconcile_interval_seconds: 600\nreconcile_window_seconds: 700\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, config)
    line = str(info.value)
    assert f"{config}:2:27: reconcile_window_seconds: 700 s must exceed" in line
    assert "(600 + 300 s)" in line and "set 0 to turn the sweep off" in line
    with pytest.raises(ConfigError, match=r"^invalid configuration: --reconcile.interval-seconds"):
        load_settings({"reconcile_interval_seconds": 0})
    with pytest.raises(ValidationError) as error:
        Settings(reconcile_window_seconds=-1)
    assert config_error_line(error.value).startswith(
        "invalid configuration: IDAAS_EXPORTER_RECONCILE_WINDOW_SECONDS / "
        "--reconcile.window-seconds: "
    )
