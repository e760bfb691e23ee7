"""``idaas-sync-exporter simulate``: serve the simulated EIAM API from the command line.

Why a command: nobody can try the exporter without an Alibaba Cloud account, so the package
brings its own counterpart. Point the exporter at the address this prints, with the demo
credentials it shows in ``--help``::

    idaas-sync-exporter simulate --speed 60 --control
    idaas-sync-exporter --endpoint http://127.0.0.1:10152 --instance-id <printed id> ...

Exit status: 0 after a clean stop (SIGINT/SIGTERM), 1 when the address cannot be bound, 2 on a
bad flag (one line on stderr naming it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import ssl
import time
from pathlib import Path

import structlog

from exporter.commands.common import fail
from exporter.commands.flags import add_settings
from exporter.config import parse_listen_address
from exporter.eiam.endpoint import is_loopback_host
from exporter.logs import configure_logging
from exporter.simulator.auth import DEMO_ACCESS_KEY, DEMO_STS_KEY, AccessKey
from exporter.simulator.clock import ManualClock
from exporter.simulator.faults import FaultPlan, FaultSpecError
from exporter.simulator.runner import SimulatorServer
from exporter.simulator.scenarios import BUILTIN_SCENARIOS, ScenarioError, load_scenario
from exporter.simulator.world import World

__all__ = ["DEFAULT_LISTEN", "add_simulate_arguments", "run_simulate"]

DEFAULT_LISTEN = "127.0.0.1:10152"

_log = structlog.get_logger(__name__)


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``simulate``; ``--help`` shows the demo credentials."""
    parser.description = (
        "Serve a simulated Alibaba Cloud IDaaS (EIAM) OpenAPI: seeded identity providers, "
        "applications and synchronization jobs, V3 and legacy RPC signatures, faults on demand."
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "demo credentials (accepted unless --access-key-id is given):\n"
        f"  AccessKey ID      {DEMO_ACCESS_KEY.access_key_id}\n"
        f"  AccessKey secret  {DEMO_ACCESS_KEY.access_key_secret}\n"
        f"  STS key           {DEMO_STS_KEY.access_key_id} / {DEMO_STS_KEY.access_key_secret}"
        f" / token {DEMO_STS_KEY.security_token}\n"
        "\n"
        "fault spec (--faults): comma-separated KIND=VALUE[@START-END], e.g.\n"
        "  throttle=0.3,5xx=0.05,latency=50ms,reset=0.01,truncate=0.01\n"
        "  throttle=1@30s-90s   (kinds: throttle 5xx reset truncate latency retry-after seed)\n"
        "  late=0.1,late-delay=20m,late-terminal=0.05   (late jobs: listed only 20 min after\n"
        "  their StartTime, or only once terminal)\n"
        "\n"
        "control interface (--control, loopback peers only): GET /_sim for the endpoint list,\n"
        "GET /_sim/ground-truth for what the exporter's metrics must show."
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on; port 0 picks a free one (default: {DEFAULT_LISTEN})",
    )
    parser.add_argument("--seed", type=int, default=1, help="world seed (default: 1)")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="divide every schedule interval and duration by X (default: 1, real time)",
    )
    parser.add_argument(
        "--scenario",
        default="demo",
        metavar="NAME|FILE",
        help=f"built-in scenario ({', '.join(BUILTIN_SCENARIOS)}) or a scenario JSON file "
        "(default: demo)",
    )
    parser.add_argument("--access-key-id", metavar="ID", help="accept this AccessKey ID only")
    parser.add_argument("--access-key-secret", metavar="SECRET", help="its secret")
    parser.add_argument(
        "--security-token", metavar="TOKEN", help="STS token required with an STS.* AccessKey ID"
    )
    parser.add_argument(
        "--faults", default="", metavar="SPEC", help="fault plan (see below) (default: none)"
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="enable the control interface under /_sim (loopback peers only)",
    )
    parser.add_argument(
        "--manual-clock",
        action="store_true",
        help="freeze the world's clock; move it with POST /_sim/clock/advance (needs --control)",
    )
    parser.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS: certificate")
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help="serve HTTPS: private key")
    add_settings(parser, ["log_level", "log_format"])


def _access_keys(args: argparse.Namespace) -> list[AccessKey]:
    if args.access_key_id is None and args.access_key_secret is None:
        if args.security_token is not None:
            raise ValueError("--security-token needs --access-key-id and --access-key-secret")
        return [DEMO_ACCESS_KEY, DEMO_STS_KEY]
    if not args.access_key_id or not args.access_key_secret:
        raise ValueError("--access-key-id and --access-key-secret go together")
    if args.access_key_id.startswith("STS.") and not args.security_token:
        raise ValueError("an STS.* AccessKey ID needs --security-token")
    return [AccessKey(args.access_key_id, args.access_key_secret, args.security_token)]


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load --tls-cert/--tls-key: {exc}") from None
    return context


def run_simulate(args: argparse.Namespace) -> int:
    """Build the world, serve it until SIGINT/SIGTERM; see the module docstring for exits."""
    try:
        host, port = parse_listen_address(args.listen)
        if not args.speed > 0:
            raise ValueError("--speed must be positive")
        if args.manual_clock and not args.control:
            raise ValueError("--manual-clock needs --control (the clock moves through /_sim)")
        scenario = load_scenario(args.scenario)
        faults = FaultPlan.parse(args.faults)
        keys = _access_keys(args)
        context = _ssl_context(args)
    except (ValueError, ScenarioError, FaultSpecError) as exc:
        return fail(f"simulate: {exc}", 2)
    configure_logging(args.log_level or "info", args.log_format or "console")

    started = time.perf_counter()
    clock = ManualClock() if args.manual_clock else None
    world = World(scenario, seed=args.seed, now_ms=clock, speed=args.speed)
    # The world's objects live as long as the process: exempt them from full garbage
    # collections, which would otherwise walk every job (a pause of ~0.1 s per 100k jobs).
    gc.collect()
    gc.freeze()
    _log.info(
        "simulated world built",
        scenario=scenario.name,
        seed=args.seed,
        speed=args.speed,
        jobs=world.job_count(),
        seconds=round(time.perf_counter() - started, 3),
    )
    server = SimulatorServer(
        world,
        host=host,
        port=port,
        access_keys=keys,
        faults=faults,
        control=args.control,
        ssl_context=context,
    )
    try:
        asyncio.run(_serve(server))
    except OSError as exc:
        _log.error("simulator cannot listen", listen=args.listen, error=str(exc))
        return 1
    return 0


async def _serve(server: SimulatorServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await server.start()
    world = server.world
    if not is_loopback_host(server.host):
        _log.warning(
            "simulator listens beyond loopback; it accepts published demo credentials",
            host=server.host,
        )
    _log.info(
        "simulator listening",
        url=server.base_url,
        endpoint=server.endpoint,
        instances=[i.instance_id for i in world.instances],
        access_key_id=server.access_key.access_key_id,
        control=server.control is not None,
        faults=server.faults.plan.to_spec(),
    )
    for instance in world.instances:
        _log.info(
            "simulated instance",
            instance_id=instance.instance_id,
            description=instance.description,
            targets=len(instance.targets),
            jobs=len(instance.jobs),
        )
    try:
        await stop.wait()
    finally:
        _log.info("simulator stopping")
        await server.stop()
