"""Settings: environment names, flags winning, and one actionable line per mistake."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from exporter.config import Settings, config_error_line


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
        ({"region": "Hangzhou"}, "IDAAS_EXPORTER_REGION: region 'Hangzhou' is not a region ID"),
        (
            {"endpoint": "http://eiam.example.com"},
            "IDAAS_EXPORTER_ENDPOINT: endpoint http://eiam.example.com uses plain http://",
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
    assert expected in line
    assert "\n" not in line
