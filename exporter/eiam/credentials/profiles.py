"""Credentials from profile files: the ``aliyun`` CLI's ``config.json`` and ``credentials.ini``.

Why: on a workstation the operator has usually run ``aliyun configure`` already, and a second way
to say "this AccessKey" should not be needed. The default chain consults, after the environment
and RRSA:

* ``~/.aliyun/config.json`` (skipped when ``ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true``): the profile
  named by ``ALIBABA_CLOUD_PROFILE``, else the file's ``current``, else ``default``. Modes ``AK``
  and ``StsToken`` are supported; other modes (RamRoleArn, EcsRamRole, OIDC, CloudSSO, OAuth, …)
  need machinery this exporter leaves to the environment and RRSA, and are reported with the
  variables to use instead.
* ``~/.alibabacloud/credentials.ini``, or the file ``ALIBABA_CLOUD_CREDENTIALS_FILE`` names: the
  section ``ALIBABA_CLOUD_PROFILE`` (default ``default``) with ``type = access_key``,
  ``access_key_id`` and ``access_key_secret``.

Files are read once, when the chain is built, so a broken file fails at start-up rather than at
the first scrape; change the file and restart to rotate a key. Neither file's contents ever reach
a log line or an error message: errors name the file, the profile and the field only.

>>> import json, pathlib, tempfile
>>> home = pathlib.Path(tempfile.mkdtemp())
>>> (home / ".aliyun").mkdir()
>>> _ = (home / ".aliyun" / "config.json").write_text(json.dumps({"current": "dev", "profiles": [
...     {"name": "dev", "mode": "AK", "access_key_id": "LTAI5dev", "access_key_secret": "x"}]}))
>>> provider, source = cli_profile_credentials_provider({}, home)
>>> source.startswith("CLI profile 'dev'")
True
"""

from __future__ import annotations

import configparser
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider
from exporter.eiam.credentials.environment import (
    ACCESS_KEY_ID_ENV,
    ACCESS_KEY_SECRET_ENV,
    SECURITY_TOKEN_ENV,
    env_flag,
    env_value,
)
from exporter.eiam.credentials.oidc import (
    OIDC_PROVIDER_ARN_ENV,
    OIDC_TOKEN_FILE_ENV,
    ROLE_ARN_ENV,
)
from exporter.eiam.errors import CredentialsError

__all__ = [
    "CLI_CONFIG_PATH",
    "CLI_PROFILE_DISABLED_ENV",
    "CREDENTIALS_FILE_ENV",
    "CREDENTIALS_INI_PATH",
    "PROFILE_ENV",
    "ProfileNotFoundError",
    "cli_profile_credentials_provider",
    "ini_credentials_provider",
    "load_cli_profile",
    "load_credentials_ini",
]

PROFILE_ENV = "ALIBABA_CLOUD_PROFILE"
CLI_PROFILE_DISABLED_ENV = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED"
CREDENTIALS_FILE_ENV = "ALIBABA_CLOUD_CREDENTIALS_FILE"
#: Relative to the home directory.
CLI_CONFIG_PATH = Path(".aliyun") / "config.json"
#: Relative to the home directory.
CREDENTIALS_INI_PATH = Path(".alibabacloud") / "credentials.ini"

_RRSA_VARS = ", ".join((ROLE_ARN_ENV, OIDC_PROVIDER_ARN_ENV, OIDC_TOKEN_FILE_ENV))
_USE_ENV = (
    f"set {ACCESS_KEY_ID_ENV} and {ACCESS_KEY_SECRET_ENV} (plus {SECURITY_TOKEN_ENV} for an STS "
    "token) instead"
)


class ProfileNotFoundError(CredentialsError):
    """The requested profile or section does not exist in the file (its names are listed)."""


def _reason(exc: Exception) -> str:
    # Never str(exc): a decoding error quotes the bytes it could not decode.
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = _reason(exc)
        raise CredentialsError(f"cannot read the {what} {path}: {reason}") from None


def _field(profile: Mapping[str, Any], key: str, where: str) -> str:
    value = profile.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CredentialsError(f"{where} has no {key}")
    return value.strip()


def _cli_mode_hint(mode: str, profile: Mapping[str, Any]) -> str:
    if mode == "EcsRamRole":
        role = profile.get("ram_role_name")
        named = f" (ALIBABA_CLOUD_ECS_METADATA={role} names the role)" if role else ""
        return (
            f"Set {CLI_PROFILE_DISABLED_ENV}=true so that the exporter uses the ECS instance RAM "
            f"role directly{named}"
        )
    if mode == "OIDC":
        return f"Use RRSA instead: set {_RRSA_VARS}"
    return (
        f"{_USE_ENV[0].upper()}{_USE_ENV[1:]}, or select an AK or StsToken profile with "
        f"{PROFILE_ENV}, or set {CLI_PROFILE_DISABLED_ENV}=true"
    )


def load_cli_profile(path: Path, profile_name: str | None = None) -> Credential:
    """Read one ``AK`` or ``StsToken`` profile from an ``aliyun`` CLI ``config.json``.

    *profile_name* ``None`` means the file's ``current`` profile, or ``default`` when that is blank.
    Raises :class:`ProfileNotFoundError` when the profile does not exist, and
    :class:`CredentialsError` when the file is unreadable, not JSON, the mode is unsupported or a
    field is missing.
    """
    text = _read_text(path, "CLI config")
    try:
        config: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CredentialsError(
            f"the CLI config {path} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(config, dict):
        raise CredentialsError(f"the CLI config {path} is not a JSON object")
    current = config.get("current")
    name = profile_name or (current.strip() if isinstance(current, str) else "") or "default"
    raw_profiles = config.get("profiles")
    if not isinstance(raw_profiles, list):
        raw_profiles = []
    profiles = [p for p in raw_profiles if isinstance(p, dict)]
    profile = next((p for p in profiles if p.get("name") == name), None)
    if profile is None:
        names = ", ".join(str(p.get("name")) for p in profiles) or "none"
        raise ProfileNotFoundError(
            f"the CLI config {path} has no profile {name!r} (profiles: {names})",
            hint=f"Select an existing profile with {PROFILE_ENV}",
        )
    where = f"profile {name!r} in {path}"
    mode = profile.get("mode")
    mode = mode if isinstance(mode, str) and mode else "AK"
    if mode not in ("AK", "StsToken"):
        raise CredentialsError(
            f"{where} uses mode {mode!r}, which this exporter does not support "
            "(supported: AK, StsToken)",
            hint=_cli_mode_hint(mode, profile),
        )
    token = _field(profile, "sts_token", where) if mode == "StsToken" else None
    return Credential(
        access_key_id=_field(profile, "access_key_id", where),
        access_key_secret=SecretStr(_field(profile, "access_key_secret", where)),
        security_token=SecretStr(token) if token is not None else None,
        source=f"CLI profile {name!r} ({path}, mode {mode})",
    )


def _ini_error_position(exc: configparser.Error) -> str:
    # ParsingError and friends quote the offending line, which may hold a secret: keep numbers only.
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return " at line " + ", ".join(str(item[0]) for item in errors)
    lineno = getattr(exc, "lineno", None)
    return f" at line {lineno}" if isinstance(lineno, int) else ""


def load_credentials_ini(path: Path, section: str = "default") -> Credential:
    """Read one ``type = access_key`` section of a ``credentials.ini``.

    Inline comments (`` # …`` or `` ; …`` after whitespace) are stripped; ``%`` is taken
    literally. Raises :class:`ProfileNotFoundError` when the section is missing, and
    :class:`CredentialsError` for an unreadable or malformed file, another ``type`` or a missing
    key.
    """
    text = _read_text(path, "credentials file")
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise CredentialsError(
            f"the credentials file {path} is not a valid INI file "
            f"({type(exc).__name__}{_ini_error_position(exc)})"
        ) from None
    if not parser.has_section(section):
        names = ", ".join(parser.sections()) or "none"
        raise ProfileNotFoundError(
            f"the credentials file {path} has no section [{section}] (sections: {names})",
            hint=f"Select an existing section with {PROFILE_ENV}",
        )
    values = dict(parser.items(section))
    where = f"section [{section}] of {path}"
    kind = values.get("type", "").strip()
    if kind != "access_key":
        described = f"type {kind!r}" if kind else "no type"
        hint = f"{_USE_ENV[0].upper()}{_USE_ENV[1:]}"
        if kind == "oidc_role_arn":
            hint = f"Use RRSA instead: set {_RRSA_VARS}"
        elif kind == "ecs_ram_role":
            hint = "Remove the file (or this section) to fall back to the ECS instance RAM role"
        raise CredentialsError(
            f"{where} has {described}; this exporter supports only type = access_key", hint=hint
        )
    return Credential(
        access_key_id=_field(values, "access_key_id", where),
        access_key_secret=SecretStr(_field(values, "access_key_secret", where)),
        source=f"credentials file {path} [{section}]",
    )


def cli_profile_credentials_provider(
    environ: Mapping[str, str], home: Path
) -> tuple[StaticCredentialsProvider | None, str]:
    """The ``aliyun`` CLI profile as a provider, or ``None`` and why it is not configured.

    Not configured: ``ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true``, no ``~/.aliyun/config.json``, or
    ``ALIBABA_CLOUD_PROFILE`` names a profile the file lacks (that variable selects the
    ``credentials.ini`` section too, so the chain goes on looking there). Anything else wrong with
    a present file raises :class:`CredentialsError`.
    """
    if env_flag(environ, CLI_PROFILE_DISABLED_ENV):
        return None, f"CLI profile: disabled by {CLI_PROFILE_DISABLED_ENV}=true"
    path = home / CLI_CONFIG_PATH
    if not path.is_file():
        return None, f"CLI profile: {path} not found"
    requested = env_value(environ, PROFILE_ENV)
    try:
        credential = load_cli_profile(path, requested)
    except ProfileNotFoundError as exc:
        if requested is None:
            raise
        return None, f"CLI profile: {exc.message}"
    return StaticCredentialsProvider(credential), credential.source


def ini_credentials_provider(
    environ: Mapping[str, str], home: Path
) -> tuple[StaticCredentialsProvider | None, str]:
    """The ``credentials.ini`` section as a provider, or ``None`` when there is no file.

    ``ALIBABA_CLOUD_CREDENTIALS_FILE`` pointing at a missing file is an error, not "not configured":
    the operator asked for that file. A present file without the section raises
    :class:`ProfileNotFoundError`.
    """
    explicit = env_value(environ, CREDENTIALS_FILE_ENV)
    path = Path(explicit).expanduser() if explicit else home / CREDENTIALS_INI_PATH
    if not path.is_file():
        if explicit:
            raise CredentialsError(
                f"{CREDENTIALS_FILE_ENV} names {path}, which does not exist or is not a file",
                hint=f"Fix the path or unset {CREDENTIALS_FILE_ENV}",
            )
        return None, f"credentials file: {path} not found"
    section = env_value(environ, PROFILE_ENV) or "default"
    credential = load_credentials_ini(path, section)
    return StaticCredentialsProvider(credential), credential.source
