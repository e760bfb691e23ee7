"""Options shared by the commands that talk to the API, and their translation into Settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from exporter.config import ConfigError, Settings, load_settings
from exporter.eiam.redaction import redact
from exporter.logs import LOG_FORMATS, LOG_LEVELS, configure_logging

__all__ = [
    "API_FIELDS",
    "add_api_arguments",
    "add_log_arguments",
    "configured_instance_ids",
    "fail",
    "settings_from_args",
    "setup_logging",
]

API_FIELDS = ("instance_ids", "region", "endpoint", "api_rate_limit")


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log.level", dest="log_level", choices=LOG_LEVELS, default="info", help="log level"
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        choices=LOG_FORMATS,
        default="console",
        help="log format (logs go to stderr)",
    )


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--instance-id",
        dest="instance_ids",
        action="append",
        metavar="ID",
        help="IDaaS instance ID (repeatable; default: IDAAS_EXPORTER_INSTANCE_IDS)",
    )
    parser.add_argument(
        "--region", help="EIAM region (default: IDAAS_EXPORTER_REGION, cn-hangzhou)"
    )
    parser.add_argument("--endpoint", help="EIAM base URL, overrides --region")
    parser.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        metavar="FILE",
        help="YAML configuration file (instances, region, ...); flags and environment win",
    )
    parser.add_argument(
        "--api.rate-limit",
        dest="api_rate_limit",
        type=float,
        metavar="RPS",
        help="API requests per second, at most (default 5)",
    )
    add_log_arguments(parser)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment first, flags win. Raises :class:`ConfigError` with one actionable line."""
    overrides: dict[str, Any] = {}
    for field in API_FIELDS:
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = ",".join(value) if isinstance(value, list) else value
    return load_settings(overrides, getattr(args, "config_file", None))


def configured_instance_ids(settings: Settings) -> list[str]:
    """The instance IDs to work on; none at all is a configuration error."""
    instance_ids = [instance.id for instance in settings.all_instances()]
    if not instance_ids:
        raise ConfigError(
            "invalid configuration: IDAAS_EXPORTER_INSTANCE_IDS / --instance-id: no IDaaS "
            "instance ID given; set one (idaas_...)"
        )
    return instance_ids


def setup_logging(args: argparse.Namespace) -> None:
    configure_logging(getattr(args, "log_level", "info"), getattr(args, "log_format", "console"))


def fail(message: str, code: int = 1) -> int:
    """Print one line to stderr, credentials masked, and return *code* (``return fail(...)``)."""
    print(redact(f"idaas-sync-exporter: {message}"), file=sys.stderr)
    return code
