"""What the commands share: settings from their flags, logging, the one-line failure."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from exporter.commands.flags import setting_values
from exporter.config import ConfigError, Settings, load_settings
from exporter.eiam.redaction import redact
from exporter.logs import configure_logging

__all__ = [
    "configured_instance_ids",
    "fail",
    "settings_from_args",
    "setup_logging",
]


def settings_from_args(args: argparse.Namespace, fields: Iterable[str]) -> Settings:
    """Environment and ``--config.file`` first, the flags of *fields* win. Raises
    :class:`ConfigError` with one actionable line."""
    return load_settings(setting_values(args, fields), getattr(args, "config_file", None))


def configured_instance_ids(settings: Settings) -> list[str]:
    """The instance IDs to work on; none at all is a configuration error."""
    instance_ids = [instance.id for instance in settings.all_instances()]
    if not instance_ids:
        raise ConfigError(
            "invalid configuration: IDAAS_EXPORTER_INSTANCE_IDS / --instance-id: no IDaaS "
            "instance ID given; set one (idaas_...)"
        )
    return instance_ids


def setup_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)


def fail(message: str, code: int = 1) -> int:
    """Print one line to stderr, credentials masked, and return *code* (``return fail(...)``)."""
    print(redact(f"idaas-sync-exporter: {message}"), file=sys.stderr)
    return code
