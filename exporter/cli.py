"""The ``idaas-sync-exporter`` command line: one entry point, one sub-command per job.

    idaas-sync-exporter [flags]   run the exporter (see --help for every flag)
    idaas-sync-exporter jobs      recent synchronization jobs (table or JSON)
    idaas-sync-exporter check     verify access to every configured instance
    idaas-sync-exporter simulate  run the built-in EIAM simulator

Every command exits 0 on success, 1 when the API or the environment failed, and 2 on bad
configuration, with one line on stderr that names the setting and the fix, never a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from exporter import __version__

__all__ = ["build_parser", "main"]


def _simulate_arguments(parser: argparse.ArgumentParser) -> None:
    from exporter.commands.simulate import add_simulate_arguments

    add_simulate_arguments(parser)


def _run_simulate(args: argparse.Namespace) -> int:
    from exporter.commands.simulate import run_simulate

    return run_simulate(args)


def build_parser() -> argparse.ArgumentParser:
    from exporter.commands.check import add_check_arguments, run_check
    from exporter.commands.flags import OneLineParser
    from exporter.commands.jobs import add_jobs_arguments, run_jobs
    from exporter.commands.run import add_daemon_arguments, run_daemon

    parser = OneLineParser(
        prog="idaas-sync-exporter",
        description="Prometheus exporter for Alibaba Cloud IDaaS (EIAM) synchronization jobs. "
        "Without a command it runs the exporter.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_daemon_arguments(parser)
    parser.set_defaults(handler=run_daemon)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    table: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[..., int]]] = [
        ("jobs", "list recent synchronization jobs, newest first", add_jobs_arguments, run_jobs),
        ("check", "check API access for every configured instance", add_check_arguments, run_check),
        ("simulate", "run the built-in EIAM API simulator", _simulate_arguments, _run_simulate),
    ]
    for name, summary, add_arguments, handler in table:
        sub = commands.add_parser(name, help=summary, description=summary)
        add_arguments(sub)
        sub.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130
