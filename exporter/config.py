"""Settings: environment (``IDAAS_EXPORTER_*``) and command-line flags, validated with fixes.

Why pydantic-settings: one declaration gives the environment names, types, defaults and
validation; :func:`config_error_line` turns a validation failure into the single line an
operator needs ("which setting, what was wrong, what to do"), and the CLI exits with code 2.

>>> s = Settings(instance_ids="idaas_a, idaas_b", region="cn-beijing")
>>> s.instance_ids, str(s.endpoint_url())
(['idaas_a', 'idaas_b'], 'https://eiam.cn-beijing.aliyuncs.com/')
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import httpx
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from exporter.eiam.endpoint import DEFAULT_REGION, EndpointError, resolve_endpoint

__all__ = ["ENV_PREFIX", "ConfigError", "Settings", "config_error_line"]

ENV_PREFIX = "IDAAS_EXPORTER_"
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


class ConfigError(ValueError):
    """Configuration that cannot be used. ``str()`` is the one line shown to the operator."""


class Settings(BaseSettings):
    """What the API commands need. Environment names are ``IDAAS_EXPORTER_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        validate_default=True,
        populate_by_name=True,
    )

    instance_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="IDaaS instance IDs to watch (idaas_...), comma-separated in the environment",
    )
    region: str = Field(DEFAULT_REGION, description="Region of the EIAM endpoint")
    endpoint: str | None = Field(
        None, description="Full EIAM base URL; overrides the region (http only for loopback)"
    )
    api_rate_limit: float = Field(
        5.0,
        ge=0,
        description="Client-side limit on API requests per second for the whole process "
        "(0 = unlimited)",
    )
    api_timeout_seconds: float = Field(
        30.0, gt=0, description="Overall deadline of one API request attempt"
    )
    api_max_attempts: int = Field(
        5, ge=1, le=20, description="Attempts per API call, the first included"
    )

    @field_validator("instance_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("instance_ids")
    @classmethod
    def _check_ids(cls, value: list[str]) -> list[str]:
        cleaned: list[str] = []
        for item in value:
            text = item.strip()
            if not _INSTANCE_ID.match(text):
                raise ValueError(
                    f"{text!r} is not an IDaaS instance ID (expected letters, digits, _ and -, "
                    "like idaas_ue2jvisn35ea5lmthk267xxxxx)"
                )
            if text not in cleaned:
                cleaned.append(text)
        return cleaned

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        try:
            resolve_endpoint(value)
        except EndpointError as exc:
            raise ValueError(str(exc)) from None
        return value.strip()

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            resolve_endpoint(DEFAULT_REGION, value)
        except EndpointError as exc:
            raise ValueError(str(exc)) from None
        return value.strip()

    def endpoint_url(self) -> httpx.URL:
        """The API base URL from ``endpoint`` or ``region``."""
        return resolve_endpoint(self.region, self.endpoint)


def config_error_line(exc: ValidationError, flags: dict[str, str] | None = None) -> str:
    """One line naming the first bad setting (as env variable and flag) and the fix."""
    first = exc.errors(include_url=False)[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    env = ENV_PREFIX + field.upper()
    flag = (flags or {}).get(field)
    where = f"{env}" + (f" / {flag}" if flag else "")
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"invalid configuration: {where}: {message}"
