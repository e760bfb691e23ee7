"""What the daemon refuses to start with: one judge for the run and for ``--config.check``.

Why one function: ``--config.check`` is there to promise "the daemon starts with this". While it
judged by its own, shorter list, it passed configurations the daemon then refused (no instance
at all: the check exited 0, the daemon 2). Now the run calls :func:`preflight` before it starts
anything and the check calls the same function, so both refuse the same configurations with
the same line and the same exit code. The daemon keeps its own start-up checks as a second line;
they can no longer be reached first.

Checked without side effects (nothing created, bound or sent), in the daemon's order:

1. at least one instance is configured (exit code 2);
2. this replica's shard: ``--shard.index`` within ``--shard.count``, ``auto`` from the host
   name (2);
3. the state file path: not a directory, its directory writable or creatable (1, as the daemon:
   the volume is the environment's, not the settings');
4. the web config file loads: TLS files, bcrypt hashes (2);
5. the credential chain selects a source without network I/O (1); the provider is handed on to
   the daemon, so the chain is chosen once.

Beyond a check without side effects, and so left to the start itself: a port already taken, the
state file's contents (read once, by the daemon), whatever the API answers (``check`` asks it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from exporter.config import Settings
from exporter.eiam.credentials.base import CredentialsProvider
from exporter.eiam.errors import EiamError
from exporter.service.clients import build_credentials
from exporter.service.daemon import StartupError
from exporter.service.sharding import ShardError, select_shard
from exporter.web.config import load_web_config

__all__ = ["NO_INSTANCE", "Preflight", "preflight"]

NO_INSTANCE = (
    "invalid configuration: no IDaaS instance configured; set at least one (idaas_...) with "
    "--instance-id, IDAAS_EXPORTER_INSTANCE_IDS or instances: in the --config.file, or try --demo"
)


@dataclass(frozen=True, slots=True)
class Preflight:
    """A configuration the daemon will start with, and what judging it found out."""

    instances: list[str]
    """Every configured instance ID."""
    active: list[str]
    """The instances this replica polls (its shard)."""
    credentials: CredentialsProvider
    """The selected credential source; the daemon uses this one."""


def preflight(
    settings: Settings,
    *,
    credentials: CredentialsProvider | None = None,
    hostname: str | None = None,
) -> Preflight:
    """Judge *settings* as the daemon's start would. Raises :class:`StartupError` with the one
    line to print and the exit code (2: the settings, 1: the environment).

    *credentials* replaces the default chain (the demo brings the simulator's key); *hostname*
    replaces the host name ``--shard.index=auto`` reads.
    """
    configured = [instance.id for instance in settings.all_instances()]
    if not configured:
        raise StartupError(NO_INSTANCE, exit_code=2)
    try:
        active = select_shard(configured, settings.shard_index, settings.shard_count, hostname)
    except ShardError as exc:
        raise StartupError(f"invalid configuration: {exc}", exit_code=2) from None
    if settings.state_file is not None:
        problem = state_path_problem(Path(settings.state_file))
        if problem is not None:
            raise StartupError(problem, exit_code=1)
    if settings.web_config_file is not None:
        try:
            load_web_config(Path(settings.web_config_file))
        except ValueError as exc:
            raise StartupError(
                f"invalid configuration: --web.config.file: {exc}", exit_code=2
            ) from None
    if credentials is None:
        try:
            credentials = build_credentials()
        except EiamError as exc:  # a half-configured source, or none and no ECS role to ask
            raise StartupError(str(exc), exit_code=1) from None
    return Preflight(configured, active, credentials)


def state_path_problem(path: Path) -> str | None:
    """Why the daemon could not keep its state at *path*, or None. Creates nothing: the
    directory's nearest existing ancestor must be a directory this process may write (the
    daemon creates the rest, and says so)."""
    if path.is_dir():
        return (
            f"state file {path} is a directory; point the state file setting at a file inside "
            f"it, e.g. {path}/state.json"
        )
    directory = path.parent
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        reason = "Not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = "Permission denied"
    elif path.exists() and not os.access(path, os.R_OK):
        return (
            f"cannot read state file {path}: Permission denied; fix its permissions (the "
            "exporter's user must read and write it) or choose another path"
        )
    else:
        return None
    return (
        f"state directory {directory} is not writable ({reason}); mount a writable volume "
        "there, fix its permissions, or choose another state file path"
    )
