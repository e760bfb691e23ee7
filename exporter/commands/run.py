"""The daemon's command line: exporter-toolkit style flags, ``--config.check`` and ``--demo``.

``idaas-sync-exporter`` with no sub-command runs the exporter. Every setting has a flag (see
:data:`exporter.config.FLAG_NAMES`), an environment variable and a YAML key; flags win.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.allocator import tune_allocator
from exporter.commands.common import fail
from exporter.commands.flags import add_config_file, add_settings, setting_values
from exporter.commands.preflight import Preflight, preflight
from exporter.config import FLAG_NAMES, ConfigError, Settings, load_settings
from exporter.eiam.credentials.base import CredentialsProvider
from exporter.fdlimit import raise_fd_limit
from exporter.logs import configure_logging
from exporter.service.daemon import Daemon, StartupError

if TYPE_CHECKING:
    from exporter.simulator.auth import AccessKey

__all__ = ["add_daemon_arguments", "run_daemon"]


def add_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    """Every setting has a flag; then the daemon's own options."""
    group = parser.add_argument_group("exporter (defaults from IDAAS_EXPORTER_* or --config.file)")
    add_settings(group, FLAG_NAMES)
    add_config_file(group)
    group.add_argument(
        "--demo",
        action="store_true",
        help="run against a built-in EIAM simulator with accelerated time (no Alibaba Cloud "
        "account needed); polls every 5 s and keeps state in memory unless told otherwise",
    )
    group.add_argument(
        "--demo.speed",
        dest="demo_speed",
        type=float,
        default=120.0,
        metavar="X",
        help="how much faster than real time the demo's syncs run (default: %(default)g)",
    )
    group.add_argument(
        "--demo.faults",
        dest="demo_faults",
        default="",
        metavar="SPEC",
        help="faults of the demo's simulator, as simulate --faults takes them; e.g. "
        "late=0.2,late-delay=3m,late-terminal=0.1 makes jobs appear late, so the "
        "reconciliation sweep finds them (idaas_exporter_late_jobs_total) (default: none)",
    )
    group.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration (and web config) and exit",
    )


def _check(settings: Settings, plan: Preflight) -> int:
    """``--config.check``: the run's own judgement (:func:`preflight`), then a summary."""
    print(
        f"configuration OK: {len(plan.instances)} instance(s), {len(plan.active)} on this "
        f"shard, polled every {settings.poll_interval_seconds:g} s, metrics on "
        f"{settings.web_listen_address}{settings.web_telemetry_path}, state file "
        f"{settings.state_file or '(in memory)'}, credentials: {plan.credentials.source}"
    )
    return 0


async def _serve(settings: Settings, plan: Preflight) -> int:
    stop = asyncio.Event()
    install_signal_handlers(stop)
    return await Daemon(settings, credentials=plan.credentials).run(stop)


def _demo_settings(
    flags: dict[str, Any], config_file: Path | None, instance_ids: list[str], endpoint: str
) -> Settings:
    """The settings with the demo's instances and endpoint, and its faster defaults."""
    demo = {
        "instance_ids": ",".join(instance_ids),
        "endpoint": endpoint,
        "poll_interval_seconds": flags.get("poll_interval_seconds", 5.0),
        "state_file": flags.get("state_file", ""),
        "target_names_refresh_seconds": flags.get("target_names_refresh_seconds", 60.0),
        "api_rate_limit": flags.get("api_rate_limit", 0.0),
        # the demo's time runs fast: hold the window and re-check stuck jobs accordingly
        "overlap_seconds": flags.get("overlap_seconds", 30.0),
        "stuck_after_seconds": flags.get("stuck_after_seconds", 120.0),
        "recheck_interval_seconds": flags.get("recheck_interval_seconds", 30.0),
        # sweep every minute over the last 20: late jobs show up within the demo's attention
        "reconcile_interval_seconds": flags.get("reconcile_interval_seconds", 60.0),
        "reconcile_window_seconds": flags.get("reconcile_window_seconds", 1200.0),
    }
    return load_settings({**flags, **demo, "instances": []}, config_file)


def _demo_credentials(key: AccessKey) -> CredentialsProvider:
    from pydantic import SecretStr

    from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider

    return StaticCredentialsProvider(
        Credential(
            key.access_key_id, SecretStr(key.access_key_secret), source="built-in simulator (demo)"
        )
    )


def _check_demo(flags: dict[str, Any], config_file: Path | None, speed: float) -> int:
    """``--demo --config.check``: the demo's own configuration, judged like the run's (the
    simulator is not started: its instances come from the same seeded world)."""
    from exporter.simulator import World, load_scenario
    from exporter.simulator.auth import DEMO_ACCESS_KEY

    world = World(load_scenario("demo"), speed=speed)
    ids = [i.instance_id for i in world.instances]
    settings = _demo_settings(flags, config_file, ids, "http://127.0.0.1")
    return _check(settings, preflight(settings, credentials=_demo_credentials(DEMO_ACCESS_KEY)))


def _demo_faults(spec: str) -> Any:
    """The ``--demo.faults`` plan; ConfigError (exit 2, one line) when it does not parse."""
    from exporter.simulator import FaultPlan, FaultSpecError

    try:
        return FaultPlan.parse(spec)
    except FaultSpecError as exc:
        raise ConfigError(f"invalid command line: --demo.faults: {exc}") from None


async def _serve_demo(
    flags: dict[str, Any], config_file: Path | None, speed: float, faults: Any
) -> int:
    """The simulator on an ephemeral loopback port, and the daemon pointed at it."""
    from exporter.simulator import SimulatorServer, World, load_scenario

    world = World(load_scenario("demo"), speed=speed)
    async with SimulatorServer(world, host="127.0.0.1", port=0, faults=faults) as simulator:
        ids = [i.instance_id for i in world.instances]
        settings = _demo_settings(flags, config_file, ids, simulator.base_url)
        plan = preflight(settings, credentials=_demo_credentials(simulator.access_key))
        stop = asyncio.Event()
        install_signal_handlers(stop)
        return await Daemon(settings, credentials=plan.credentials, demo=True).run(stop)


def run_daemon(args: argparse.Namespace) -> int:
    """Load and judge the configuration (:func:`preflight`), then check it or run on it."""
    flags = setting_values(args, FLAG_NAMES)
    try:
        settings = load_settings(flags, args.config_file)
    except ConfigError as exc:
        return fail(str(exc), 2)
    configure_logging(settings.log_level, settings.log_format)
    # SIGHUP reloads the web config once the daemon runs; until then it must not kill it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    tune_allocator()
    raise_fd_limit()
    try:
        if args.demo and args.config_check:
            _demo_faults(args.demo_faults)
            return _check_demo(flags, args.config_file, args.demo_speed)
        if args.config_check:
            return _check(settings, preflight(settings))
        if args.demo:
            faults = _demo_faults(args.demo_faults)
            return asyncio.run(_serve_demo(flags, args.config_file, args.demo_speed, faults))
        plan = preflight(settings)
        return asyncio.run(_serve(settings, plan))
    except StartupError as exc:
        return fail(str(exc), exc.exit_code)
    except ConfigError as exc:
        return fail(str(exc), 2)
    except KeyboardInterrupt:
        return 130


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set *stop* (a second SIGINT still interrupts hard)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
