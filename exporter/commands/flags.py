"""Every command's parser, generated from one table: the settings' flags and their types.

Why one table: a flag is a setting (``--poll.interval-seconds`` is ``poll_interval_seconds``,
``IDAAS_EXPORTER_POLL_INTERVAL_SECONDS`` and a YAML key), so its name comes from
:data:`exporter.config.FLAG_NAMES`, its help text from the setting's description and its type
from the setting's annotation — never restated. A command takes the settings it needs
(:data:`API_SETTINGS` for ``jobs`` and ``check``, all of them for the daemon) plus its own
options, declared with the same :func:`add_settings`.

Parsers are :class:`OneLineParser`: no prefix matching (``--poll.interval 30`` is an unknown
flag, not a silent abbreviation), and every command-line error is the one line every other
error is, exit code 2::

    idaas-sync-exporter: invalid command line: unrecognized arguments: --poll.interval 30 (see
    idaas-sync-exporter --help)

>>> parser = OneLineParser(prog="x")
>>> add_settings(parser, ["poll_interval_seconds", "instance_ids"])
>>> args = parser.parse_args(["--poll.interval-seconds", "30", "--instance-id", "idaas_a"])
>>> setting_values(args, ["poll_interval_seconds", "instance_ids", "region"])
{'poll_interval_seconds': 30.0, 'instance_ids': 'idaas_a'}
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

from pydantic import SecretBytes, SecretStr

from exporter.config import ENV_PREFIX, FLAG_NAMES, Settings

__all__ = [
    "API_SETTINGS",
    "OneLineParser",
    "add_config_file",
    "add_settings",
    "default_text",
    "setting_values",
]

API_SETTINGS = (
    "instance_ids",
    "region",
    "endpoint",
    "api_rate_limit",
    "api_timeout_seconds",
    "api_max_attempts",
    "log_level",
    "log_format",
)
"""The settings of the commands that only talk to the API (``jobs``, ``check``)."""

_REPEATED = {"instance_ids"}

_DEFAULT_SHOWN = {
    # computed from the environment at start-up: show the rule, not this machine's path
    "state_file": "$XDG_STATE_HOME/idaas-sync-exporter/state.json, "
    "~/.local/state/idaas-sync-exporter/state.json if XDG_STATE_HOME is unset",
}
_SECRET_WORDS = ("secret", "password", "token", "credential")


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` with exact flag names only and one-line errors (exit code 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        command = self.prog
        if "invalid choice" in message and "COMMAND" in message:
            # "--poll.interval 30": the unknown flag is skipped and its value taken for a
            # command name; the flag is what the user needs to hear about
            unknown = [
                token.split("=", 1)[0]
                for token in getattr(self, "_given", [])
                if token.startswith("--")
                and token.split("=", 1)[0] not in self._option_string_actions
            ]
            if unknown:
                message = f"unrecognized arguments: {' '.join(unknown)}"
        print(
            f"idaas-sync-exporter: invalid command line: {message} (see {command} --help)",
            file=sys.stderr,
        )
        raise SystemExit(2)


def _type_of(field: str) -> Callable[[str], Any]:
    """The setting's annotation as an argparse ``type``: float or int when it is a number, else
    text that the settings model validates and converts (``--shard.index auto``, and
    ``--state.file ""``, which means "no state file" and must not become ``Path(".")``)."""
    annotation = Settings.model_fields[field].annotation
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    if annotation in (float, int):
        return annotation
    if float in options and int not in options:
        return float
    return str


def _is_secret(field: str) -> bool:
    """A setting whose value must never be printed, not even its default in ``--help``."""
    annotation = Settings.model_fields[field].annotation
    kinds = {annotation, *typing.get_args(annotation)}
    return bool(kinds & {SecretStr, SecretBytes}) or any(w in field for w in _SECRET_WORDS)


def default_text(field: str) -> str | None:
    """The setting's built-in default as ``--help`` shows it; None when it has none to show
    (no default, an empty list) or when it is a secret.

    >>> default_text("poll_interval_seconds"), default_text("web_listen_address")
    ('60', ':10151')
    >>> default_text("instance_ids") is None
    True
    """
    if _is_secret(field):
        return None
    if field in _DEFAULT_SHOWN:
        return _DEFAULT_SHOWN[field]
    value = Settings.model_fields[field].get_default(call_default_factory=True)
    if value is None or value == [] or value == "":
        return None
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _help(description: str, field: str, suffix: str = "") -> str:
    """Description, built-in default and environment variable; ``%`` escaped for argparse."""
    default = default_text(field)
    shown = f" (default: {default})" if default is not None else ""
    text = f"{description}{suffix}{shown} [{ENV_PREFIX}{field.upper()}]"
    return text.replace("%", "%%")


def add_settings(parser: argparse._ActionsContainer, fields: Iterable[str]) -> None:
    """A flag for each setting in *fields*. Defaults stay ``None``: a flag given wins over
    the environment and the YAML file, a flag not given changes nothing. ``--help`` shows the
    setting's built-in default (what applies when neither the environment nor the YAML file
    sets it), never a secret's."""
    for field in fields:
        description = Settings.model_fields[field].description or ""
        if field in _REPEATED:
            parser.add_argument(
                FLAG_NAMES[field],
                dest=field,
                action="append",
                metavar="ID",
                help=_help(description, field, " (repeatable)"),
            )
        else:
            parser.add_argument(
                FLAG_NAMES[field],
                dest=field,
                type=_type_of(field),
                help=_help(description, field),
            )


def add_config_file(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        metavar="FILE",
        help="YAML settings file (the same keys as the settings); flags and environment win",
    )


def setting_values(args: argparse.Namespace, fields: Iterable[str]) -> dict[str, Any]:
    """The settings given on the command line (repeated flags joined with commas)."""
    values: dict[str, Any] = {}
    for field in fields:
        value = getattr(args, field, None)
        if value is not None:
            values[field] = ",".join(value) if isinstance(value, list) else value
    return values
