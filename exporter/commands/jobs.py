"""``idaas-sync-exporter jobs``: the recent synchronization jobs, newest first.

The command an operator runs first: it proves credentials, endpoint and InstanceId work and
shows what the exporter will count. ``--output json`` prints the API's own field names (plus
``InstanceId``), so the output can be diffed against the console or piped into ``jq``.

Example (table)::

    START (UTC)          DURATION  STATUS   TRIGGER  DIRECTION  TARGET_TYPE        TARGET_ID
    2026-11-28 10:00:02  42s       success  auto     ingress    identity_provider  idp_corp_ad
    (columns JOB_ID and ERROR follow)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from exporter.commands.common import (
    configured_instance_ids,
    fail,
    settings_from_args,
    setup_logging,
)
from exporter.commands.flags import API_SETTINGS, add_config_file, add_settings
from exporter.config import ConfigError, Settings
from exporter.eiam.client import EiamClient
from exporter.eiam.errors import EiamError
from exporter.eiam.models import IN_PROGRESS_STATUSES, TERMINAL_STATUSES, SynchronizationJob
from exporter.eiam.redaction import redact
from exporter.service.clients import InstanceClients

__all__ = ["JOB_STATUSES", "add_jobs_arguments", "fetch_jobs", "format_table", "run_jobs"]

JOB_STATUSES: tuple[str, ...] = (*sorted(IN_PROGRESS_STATUSES), *sorted(TERMINAL_STATUSES))
"""Every status the exporter knows a job by (the API's, ``suspending`` included): checked
here, so a typo is refused at once with the list, not sent to the API as a filter."""


def _positive_seconds(text: str) -> float:
    """``--since``: a finite number of seconds above zero (a window that ends before it starts
    would list nothing, and say nothing about why)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of seconds, got {text!r} (for example 3600 for 1 h)"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of seconds, got {text!r} (for example 3600 for 1 h)"
        )
    return value


def _status(text: str) -> str:
    """``--status`` is compared with :data:`JOB_STATUSES` as the API spells them (lower case)."""
    return text.strip().lower()


def add_jobs_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, API_SETTINGS)
    add_config_file(parser)
    parser.add_argument(
        "--since",
        type=_positive_seconds,
        default=86400.0,
        metavar="SECONDS",
        help="jobs started within the last SECONDS (default: 86400 = 24 h)",
    )
    parser.add_argument(
        "--status",
        type=_status,
        choices=JOB_STATUSES,
        metavar="STATUS",
        help=f"only jobs with this status: {', '.join(JOB_STATUSES)} (default: all)",
    )
    parser.add_argument("--target-type", help="identity_provider or application (default: both)")
    parser.add_argument("--direction", help="ingress or egress (default: both)")
    parser.add_argument(
        "--output",
        choices=("table", "json"),
        default="table",
        help="table (fixed columns) or json (the API's field names) (default: %(default)s)",
    )


async def fetch_jobs(
    clients: dict[str, EiamClient], args: argparse.Namespace, now_ms: int
) -> list[tuple[str, SynchronizationJob]]:
    """All matching jobs of all instances, each once, newest StartTime first."""
    start_ms = now_ms - int(args.since * 1000)
    found: dict[tuple[str, str], tuple[str, SynchronizationJob]] = {}
    for instance_id, client in clients.items():
        jobs = client.list_synchronization_jobs(
            instance_id,
            start_time=start_ms,
            status=args.status,
            target_type=args.target_type,
            direction=args.direction,
        )
        async for job in jobs:
            found[(instance_id, job.synchronization_job_id)] = (instance_id, job)
    return sorted(found.values(), key=lambda item: item[1].start_time or 0, reverse=True)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(job: SynchronizationJob, now_ms: int) -> str:
    if job.start_time is None:
        return "-"
    seconds = max(0, ((job.end_time or now_ms) - job.start_time) // 1000)
    text = f"{seconds}s" if seconds < 120 else f"{seconds // 60}m{seconds % 60:02d}s"
    return text if job.end_time else f"{text}…"


def format_table(rows: list[tuple[str, SynchronizationJob]], now_ms: int, many: bool) -> str:
    """A fixed-column table; the INSTANCE column appears only with several instances."""
    header = ["START (UTC)", "DURATION", "STATUS", "TRIGGER", "DIRECTION", "TARGET_TYPE"]
    header += ["TARGET_ID", "JOB_ID", "ERROR"]
    if many:
        header.insert(0, "INSTANCE")
    table: list[list[str]] = [header]
    for instance_id, job in rows:
        error = job.result.error_code if job.result and job.result.error_code else ""
        line = [
            _when(job.start_time),
            _duration(job, now_ms),
            job.status or "-",
            job.trigger_type or "-",
            job.direction or "-",
            job.target_type or "-",
            job.target_id or "-",
            job.synchronization_job_id,
            error,
        ]
        table.append([instance_id, *line] if many else line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table
    )


async def _run(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    instance_ids = configured_instance_ids(settings)
    now_ms = int(time.time() * 1000)
    async with InstanceClients(settings) as pool:
        rows = await fetch_jobs(pool.clients, args, now_ms)
    # Job descriptions and error messages are the server's text: masked like any other.
    if args.output == "json":
        payload: list[dict[str, Any]] = [
            {"InstanceId": instance_id, **job.to_api()} for instance_id, job in rows
        ]
        out.write(redact(json.dumps(payload, ensure_ascii=False, indent=2)) + "\n")
    else:
        out.write(redact(format_table(rows, now_ms, many=len(instance_ids) > 1)) + "\n")
    return 0


def run_jobs(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        settings = settings_from_args(args, API_SETTINGS)
        setup_logging(settings)
        return asyncio.run(_run(settings, args, out))
    except ConfigError as exc:
        return fail(str(exc), 2)
    except EiamError as exc:
        return fail(str(exc), 1)
