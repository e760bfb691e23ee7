"""Settings from flags, environment (``IDAAS_EXPORTER_*``) and a YAML file, validated with fixes.

Precedence, highest first: command-line flags, environment variables, the YAML file given with
``--config.file``, defaults. Every setting has all three names: field ``poll_interval_seconds``
is ``IDAAS_EXPORTER_POLL_INTERVAL_SECONDS`` and ``--poll.interval-seconds`` (see
``FLAG_NAMES``), and ``poll_interval_seconds:`` in YAML. In YAML, instances may also be listed
with their own region or endpoint::

    instances:
      - id: idaas_ue2jvisn35ea5lmthk267xxxxx
      - id: idaas_other
        region: ap-southeast-1
    poll_interval_seconds: 60
    state_file: /var/lib/idaas-sync-exporter/state.json

A validation failure becomes one line naming the setting where the operator set it — the YAML
key with its file, line and column, the flag, or the environment variable
(:func:`config_error_line`) — and a YAML syntax error is ``<file>:<line>:<column>: <problem>``;
the CLI prints the line and exits with code 2.

>>> s = Settings(instance_ids="idaas_a, idaas_b", region="cn-beijing")
>>> [(i.id, str(s.endpoint_url(i))) for i in s.all_instances()]
[('idaas_a', 'https://eiam.cn-beijing.aliyuncs.com/'), ('idaas_b', 'https://eiam.cn-beijing.aliyuncs.com/')]
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from exporter.eiam.endpoint import DEFAULT_REGION, EndpointError, resolve_endpoint

__all__ = [
    "DEFAULT_LISTEN_ADDRESS",
    "DEFAULT_PORT",
    "ENV_PREFIX",
    "FLAG_NAMES",
    "ConfigError",
    "InstanceConfig",
    "SettingSources",
    "Settings",
    "config_error_line",
    "default_state_file",
    "load_settings",
    "parse_listen_address",
]

ENV_PREFIX = "IDAAS_EXPORTER_"
DEFAULT_PORT = 10151
"""Outside the 9100-9999 block of the Prometheus default port allocations, on purpose."""
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")

FLAG_NAMES: dict[str, str] = {
    "instance_ids": "--instance-id",
    "region": "--region",
    "endpoint": "--endpoint",
    "poll_interval_seconds": "--poll.interval-seconds",
    "lookback_seconds": "--poll.lookback-seconds",
    "overlap_seconds": "--poll.overlap-seconds",
    "stuck_after_seconds": "--poll.stuck-after-seconds",
    "recheck_interval_seconds": "--poll.recheck-interval-seconds",
    "reconcile_interval_seconds": "--reconcile.interval-seconds",
    "reconcile_window_seconds": "--reconcile.window-seconds",
    "target_names_refresh_seconds": "--targets.refresh-seconds",
    "state_file": "--state.file",
    "api_rate_limit": "--api.rate-limit",
    "api_timeout_seconds": "--api.timeout-seconds",
    "api_max_attempts": "--api.max-attempts",
    "web_listen_address": "--web.listen-address",
    "web_telemetry_path": "--web.telemetry-path",
    "web_config_file": "--web.config.file",
    "log_level": "--log.level",
    "log_format": "--log.format",
    "shard_index": "--shard.index",
    "shard_count": "--shard.count",
}


class ConfigError(ValueError):
    """Configuration that cannot be used. ``str()`` is the one line shown to the operator."""


def default_state_file() -> Path:
    """``$XDG_STATE_HOME/idaas-sync-exporter/state.json`` (``~/.local/state/…``); the
    container image sets ``IDAAS_EXPORTER_STATE_FILE=/var/lib/idaas-sync-exporter/state.json``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "idaas-sync-exporter" / "state.json"


def parse_listen_address(value: str) -> tuple[str, int]:
    """``host:port``, ``:port`` (all interfaces) or ``[v6]:port`` → (host, port).

    Port 0 asks the system for any free port (tests and the demo use it). A well-formed address
    with too large a port says so, rather than that it is not ``host:port``.

    >>> parse_listen_address("127.0.0.1:99999")
    Traceback (most recent call last):
    ValueError: '127.0.0.1:99999': port 99999 is out of range; use 1-65535 (or 0 for any free
    port), for example :10151
    """
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(
            f"{value!r} is not host:port (for example :{DEFAULT_PORT} or 127.0.0.1:8080)"
        )
    port = int(port_text)
    if port > 65535:
        raise ValueError(
            f"{value!r}: port {port} is out of range; use 1-65535 (or 0 for any free port), "
            f"for example :{DEFAULT_PORT}"
        )
    host = host.strip("[]")
    return host or "0.0.0.0", port  # noqa: S104 - ":port" means every interface


def _check_endpoint(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        resolve_endpoint(DEFAULT_REGION, value)
    except EndpointError as exc:
        raise ValueError(str(exc)) from None
    return value.strip()


def _check_region(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        resolve_endpoint(value)
    except EndpointError as exc:
        raise ValueError(str(exc)) from None
    return value.strip()


def _check_instance_id(value: str) -> str:
    text = value.strip()
    if not _INSTANCE_ID.match(text):
        raise ValueError(
            f"{text!r} is not an IDaaS instance ID (expected letters, digits, _ and -, "
            "like idaas_ue2jvisn35ea5lmthk267xxxxx)"
        )
    return text


class InstanceConfig(BaseModel):
    """One instance in the YAML ``instances`` list; region/endpoint default to the global ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    region: str | None = None
    endpoint: str | None = None

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return _check_instance_id(value)

    @field_validator("region")
    @classmethod
    def _valid_region(cls, value: str | None) -> str | None:
        return _check_region(value)

    @field_validator("endpoint")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        return _check_endpoint(value)


_YAML_DATA: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "yaml", default=None
)


class _YamlSource(PydanticBaseSettingsSource):
    """The ``--config.file`` document, below flags and environment."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_YAML_DATA.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_YAML_DATA.get() or {})


class Settings(BaseSettings):
    """Every setting of the exporter. Environment names are ``IDAAS_EXPORTER_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        populate_by_name=True,
    )

    instance_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="IDaaS instance IDs to watch (idaas_...), comma-separated in the environment",
    )
    instances: list[InstanceConfig] = Field(
        default_factory=list,
        description="YAML only: instances with their own region or endpoint",
    )
    region: str = Field(DEFAULT_REGION, description="Region of the EIAM endpoint")
    endpoint: str | None = Field(
        None, description="Full EIAM base URL; overrides the region (http only for loopback)"
    )
    poll_interval_seconds: float = Field(
        60.0, ge=0.05, le=86400, description="Seconds between polls of an instance"
    )
    # lookback and overlap are independent: lookback only shapes the very first poll (no
    # state), overlap every later one, and the window never moves backwards (plan_window)
    lookback_seconds: float = Field(
        86400.0, gt=0, description="How far back a first start without state looks for jobs"
    )
    overlap_seconds: float = Field(
        300.0,
        ge=0,
        description="Each poll re-reads jobs started this long before the newest seen, so "
        "late-appearing jobs are not missed",
    )
    stuck_after_seconds: float = Field(
        3600.0,
        gt=0,
        description="A job in progress for longer stops holding the listing window and is "
        "re-checked alone with GetSynchronizationJob",
    )
    recheck_interval_seconds: float = Field(
        300.0, gt=0, description="How often such a stuck job is re-checked"
    )
    reconcile_interval_seconds: float = Field(
        3600.0,
        gt=0,
        description="How often the reconciliation sweep re-lists reconcile_window_seconds "
        "below the poll window to count late jobs (listed only after the overlap had passed)",
    )
    reconcile_window_seconds: float = Field(
        86400.0,
        ge=0,
        description="How far below the poll window the sweep reaches (by StartTime); jobs "
        "listed up to about this minus reconcile_interval_seconds late are counted; 0 turns "
        "the sweep off",
    )
    target_names_refresh_seconds: float = Field(
        600.0,
        ge=0,
        description="How often target names are refreshed (ListIdentityProviders, "
        "ListApplications); 0 turns it off",
    )
    state_file: Path | None = Field(
        default_factory=default_state_file,
        description="Where counters and tracked jobs are kept across restarts; empty = in memory",
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
    api_max_attempts: int = Field(5, ge=1, le=20, description="Attempts per API call")
    web_listen_address: str = Field(
        DEFAULT_LISTEN_ADDRESS, description="Address to serve metrics on (host:port)"
    )
    web_telemetry_path: str = Field("/metrics", description="Path of the metrics endpoint")
    web_config_file: Path | None = Field(
        None, description="exporter-toolkit web config (TLS, basic auth)"
    )
    log_level: Literal["debug", "info", "warn", "warning", "error"] = Field(
        "info", description="Log level"
    )
    log_format: Literal["console", "json", "logfmt"] = Field("console", description="Log format")
    shard_index: int | Literal["auto"] = Field(
        0,
        description="This replica's shard (0-based), or auto: the ordinal at the end of the "
        "host name (StatefulSet pod name)",
    )
    shard_count: int = Field(1, ge=1, le=1024, description="Number of shards (replicas)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls)

    @field_validator("instance_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("instance_ids")
    @classmethod
    def _check_ids(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_check_instance_id(item) for item in value))

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        return _check_region(value) or DEFAULT_REGION

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return _check_endpoint(value)

    @field_validator("state_file", "web_config_file", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("web_listen_address")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen_address(value)
        return value.strip()

    @field_validator("web_telemetry_path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith("/") or value in ("/", "/-/healthy", "/-/ready"):
            raise ValueError(
                f"{value!r} must start with / and not be /, /-/healthy or /-/ready (for "
                "example /metrics)"
            )
        return value

    @field_validator("shard_index", mode="before")
    @classmethod
    def _shard_auto(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if isinstance(self.shard_index, int) and not 0 <= self.shard_index < self.shard_count:
            raise ValueError(
                f"shard_index {self.shard_index} must be within 0..{self.shard_count - 1} "
                "(shard_count - 1)"
            )
        return self

    @field_validator("reconcile_window_seconds")
    @classmethod
    def _reconcile_reach(cls, window: float, info: ValidationInfo) -> float:
        interval = info.data.get("reconcile_interval_seconds")
        overlap = info.data.get("overlap_seconds")
        if window and interval is not None and overlap is not None and window <= interval + overlap:
            raise ValueError(
                f"{window:g} s must exceed reconcile_interval_seconds + overlap_seconds "
                f"({interval:g} + {overlap:g} s), or a job listed just after one sweep is below "
                "the next one's reach; raise it (default 86400), shorten the interval, or set 0 "
                "to turn the sweep off"
            )
        return window

    # -- derived ---------------------------------------------------------------------------

    def all_instances(self) -> list[InstanceConfig]:
        """YAML instances, then IDs from ``instance_ids`` not already listed."""
        listed = {i.id for i in self.instances}
        return [
            *self.instances,
            *(InstanceConfig(id=i) for i in self.instance_ids if i not in listed),
        ]

    def endpoint_url(self, instance: InstanceConfig | None = None) -> httpx.URL:
        """The API base URL of *instance*: its endpoint, its region, or the global ones."""
        if instance is not None and instance.endpoint:
            return resolve_endpoint(DEFAULT_REGION, instance.endpoint)
        if instance is not None and instance.region and not self.endpoint:
            return resolve_endpoint(instance.region)
        return resolve_endpoint(self.region, self.endpoint)


@dataclass(frozen=True, slots=True)
class _YamlKey:
    """One top-level key of the YAML file: as written, and the nodes that give its position."""

    written: str
    key: yaml.Node
    value: yaml.Node


@dataclass(frozen=True, slots=True)
class SettingSources:
    """Where the settings of one :func:`load_settings` call came from, to name a bad one the
    way the operator wrote it. Precedence as in loading: flags, environment, YAML file."""

    flags: frozenset[str] = frozenset()
    config_file: Path | None = None
    yaml_keys: Mapping[str, _YamlKey] = field(default_factory=dict)
    environ: Mapping[str, str] | None = None

    def from_environment(self, name: str) -> bool:
        """Whether variable *name* is set; pydantic-settings matches names case-insensitively."""
        environ = os.environ if self.environ is None else self.environ
        wanted = name.lower()
        return any(key.lower() == wanted for key in environ)


def _yaml_position(config_file: Path, mark: yaml.Mark) -> str:
    return f"{config_file}:{mark.line + 1}:{mark.column + 1}"


def _yaml_syntax_line(config_file: Path, text: str, exc: yaml.YAMLError) -> str:
    """``<file>:<line>:<column>: <problem>`` from the error's mark (1-based, as editors count)."""
    where = str(config_file)
    problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            where = _yaml_position(config_file, mark)
        problem = exc.problem or exc.context or problem
    elif isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.position, int):
        # a character YAML does not allow: the reader knows only its offset in the text
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        where = f"{config_file}:{line}:{column}"
    problem = " ".join(problem.split())
    return (
        f"invalid configuration: {where}: {problem} (--config.file is not valid YAML; fix the "
        "syntax there)"
    )


def _read_yaml(config_file: Path) -> tuple[dict[str, Any], dict[str, _YamlKey]]:
    """The settings in the file (keys normalised to field names) and where each key is."""
    try:
        text = config_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"invalid configuration: --config.file {config_file}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"invalid configuration: --config.file {config_file} is not UTF-8 text "
            f"(byte {exc.start}); save it as UTF-8"
        ) from None
    loader: yaml.SafeLoader | None = None
    try:
        # what yaml.safe_load does, keeping the node tree for positions of bad values
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_syntax_line(config_file, text, exc)) from None
    finally:
        if loader is not None:
            loader.dispose()
    if document is None:
        return {}, {}
    if not isinstance(document, dict):
        raise ConfigError(
            f"invalid configuration: --config.file {config_file} must be a YAML mapping of settings"
        )
    data = {_field_name(k): v for k, v in document.items()}
    keys: dict[str, _YamlKey] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                written = str(key_node.value)
                keys[_field_name(written)] = _YamlKey(written, key_node, value_node)
    return data, keys


def _field_name(key: Any) -> str:
    """``poll-interval-seconds`` and ``poll.interval_seconds`` are ``poll_interval_seconds``."""
    return str(key).replace("-", "_").replace(".", "_")


def load_settings(flags: dict[str, Any], config_file: Path | None = None) -> Settings:
    """Flags over environment over the YAML file. Raises :class:`ConfigError` (one line)."""
    data: dict[str, Any] = {}
    keys: dict[str, _YamlKey] = {}
    if config_file is not None:
        data, keys = _read_yaml(config_file)
    given = {k: v for k, v in flags.items() if v is not None}
    token = _YAML_DATA.set(data)
    try:
        return Settings(**given)
    except ValidationError as exc:
        sources = SettingSources(frozenset(given), config_file, keys)
        raise ConfigError(config_error_line(exc, sources=sources)) from None
    finally:
        _YAML_DATA.reset(token)


def _walk(node: yaml.Node, parts: list[Any], *, key: bool) -> tuple[yaml.Node, list[str]]:
    """The node at *parts* below *node* (list indexes, mapping keys) and the parts found;
    with *key*, the last mapping step ends on the key (an unknown key is the problem)."""
    found: list[str] = []
    for n, part in enumerate(parts):
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
        elif isinstance(node, yaml.MappingNode):
            pairs = [
                (k, v)
                for k, v in node.value
                if isinstance(k, yaml.ScalarNode) and str(k.value) == str(part)
            ]
            if not pairs:
                break
            key_node, value_node = pairs[-1]
            node = key_node if key and n == len(parts) - 1 else value_node
        else:
            break
        found.append(str(part))
    return node, found


def config_error_line(
    exc: ValidationError,
    flags: Mapping[str, str] | None = None,
    *,
    sources: SettingSources | None = None,
) -> str:
    """One line naming the first bad setting and the fix.

    With *sources*, the setting is named where its value came from: the YAML key with the
    file, line and column of the value; the flag; or the environment variable. Without (or for
    a default), by its environment and flag names.
    """
    names = flags or FLAG_NAMES
    first = exc.errors(include_url=False)[0]
    parts = list(first["loc"])
    location = [str(part) for part in parts]
    message = str(first["msg"]).removeprefix("Value error, ")
    if not location:
        return f"invalid configuration: {message}"
    name = location[0]
    unknown = first["type"] == "extra_forbidden"
    rest = " (" + ".".join(location[1:]) + ")" if len(location) > 1 else ""
    flag = names.get(name)
    env = ENV_PREFIX + name.upper()
    if sources is not None and name in sources.flags and flag and not unknown:
        return f"invalid configuration: {flag}{rest}: {message}"
    if sources is not None and not unknown and sources.from_environment(env):
        return f"invalid configuration: {env}{rest}: {message}"
    yaml_key = sources.yaml_keys.get(name) if sources is not None else None
    if sources is not None and yaml_key is not None and sources.config_file is not None:
        start = yaml_key.key if unknown and len(parts) == 1 else yaml_key.value
        node, found = _walk(start, parts[1:], key=unknown)
        where = _yaml_position(sources.config_file, node.start_mark)
        if unknown:
            dotted = ".".join([yaml_key.written, *location[1:]])
            return (
                f"invalid configuration: {where}: unknown setting {dotted!r} (a typo? see the "
                "configuration reference in README.md)"
            )
        return f"invalid configuration: {where}: {'.'.join([yaml_key.written, *found])}: {message}"
    if unknown:
        return (
            f"invalid configuration: unknown setting {'.'.join(location)!r} (a typo? see the "
            "configuration reference in README.md)"
        )
    where = env + (f" / {flag}" if flag else "") + rest
    return f"invalid configuration: {where}: {message}"
