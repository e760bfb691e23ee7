"""``idaas-sync-exporter check``: can the exporter read every configured instance? Exit 0 if so.

One cheap call per instance (ListSynchronizationJobs, one result, last minute): exactly the
permission the daemon needs, so a green check means the daemon will work. Each line is OK or
the actionable error (which RAM action, which clock, which InstanceId)::

    OK    idaas_ue2jvisn35ea5lmthk267xxxxx  https://eiam.cn-hangzhou.aliyuncs.com/
          credentials: environment  112 ms                      (one line in reality)
    FAIL  idaas_wrong  ListSynchronizationJobs failed: ResourceNotFound.Instance (HTTP 404):
          ... Check the InstanceId ...
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TextIO

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
from exporter.eiam.redaction import redact
from exporter.service.clients import InstanceClients

__all__ = ["add_check_arguments", "check_instance", "run_check"]


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, API_SETTINGS)
    add_config_file(parser)


async def check_instance(client: EiamClient, instance_id: str) -> str | None:
    """None when the instance answers, else the error message."""
    start = int(time.time() * 1000) - 60_000
    try:
        pages = client.list_synchronization_job_pages(instance_id, start_time=start, max_results=1)
        async for _ in pages:
            break
    except EiamError as exc:
        return str(exc)
    return None


async def _run(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    configured_instance_ids(settings)  # none at all is a configuration error
    failures = 0
    async with InstanceClients(settings) as pool:
        source = pool.credentials.source
        for instance_id, client in pool.clients.items():
            started = time.perf_counter()
            error = await check_instance(client, instance_id)
            elapsed_ms = (time.perf_counter() - started) * 1000
            # Masked again on the way out: the error quotes what the server said.
            if error is None:
                out.write(
                    redact(
                        f"OK    {instance_id}  {client.endpoint}  credentials: {source}  "
                        f"{elapsed_ms:.0f} ms\n"
                    )
                )
            else:
                failures += 1
                out.write(redact(f"FAIL  {instance_id}  {error}\n"))
    return 0 if failures == 0 else 1


def run_check(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        settings = settings_from_args(args, API_SETTINGS)
        setup_logging(settings)
        return asyncio.run(_run(settings, args, out))
    except ConfigError as exc:
        return fail(str(exc), 2)
    except EiamError as exc:  # e.g. no credentials at all
        return fail(str(exc), 1)
