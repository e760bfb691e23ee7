"""Shared by the end-to-end tests: parse an exposition, turn ground truth into expected series,
compare the two, and wait for conditions with a deadline (never sleep-and-hope)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import SecretStr

from bench.harness import Series
from exporter.config import Settings
from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider
from exporter.simulator import AccessKey

TARGET = ("target_type", "target_id", "direction")
COMPARED = (
    "idaas_sync_jobs_total",
    "idaas_sync_objects_total",
    "idaas_sync_job_errors_total",
    "idaas_sync_last_success_timestamp_seconds",
    "idaas_sync_target_interval_seconds",
    "idaas_sync_target_schedule",
    "idaas_sync_last_scheduled_job_start_timestamp_seconds",
)
SCHEDULES = ("learning", "regular", "irregular", "manual")


def _key(name: str, labels: Mapping[str, str]) -> Series:
    return name, tuple(sorted(labels.items()))


def expected_from_ground_truth(truth: Mapping[str, Any]) -> dict[Series, float]:
    """The series the metric contract says the exporter must show (see simulator.groundtruth)."""
    expected: dict[Series, float] = {}
    for instance_id, data in truth["instances"].items():

        def labels(row: Mapping[str, Any], *extra: str, iid: str = instance_id) -> dict[str, str]:
            return {"instance_id": iid, **{k: str(row[k]) for k in (*TARGET, *extra)}}

        for row in data["jobs"]:
            expected[_key("idaas_sync_jobs_total", labels(row, "trigger_type", "status"))] = row[
                "count"
            ]
        for row in data["objects"]:
            name = "idaas_sync_objects_total"
            expected[_key(name, labels(row, "entity", "action", "result"))] = row["count"]
        for row in data["errors"]:
            name = "idaas_sync_job_errors_total"
            expected[_key(name, labels(row, "error_code"))] = row["count"]
        for row in data["last_success"]:
            name = "idaas_sync_last_success_timestamp_seconds"
            expected[_key(name, labels(row))] = row["end_time_ms"] / 1000.0
        for row in data["cadence"]:
            for schedule in SCHEDULES:
                name = "idaas_sync_target_schedule"
                series = _key(name, {**labels(row), "schedule": schedule})
                expected[series] = 1 if schedule == row["schedule"] else 0
            if row["interval_seconds"] is not None:
                name = "idaas_sync_target_interval_seconds"
                expected[_key(name, labels(row))] = row["interval_seconds"]
            if row["last_scheduled_start_ms"] is not None:
                name = "idaas_sync_last_scheduled_job_start_timestamp_seconds"
                expected[_key(name, labels(row))] = row["last_scheduled_start_ms"] / 1000.0
    return expected


def in_progress_from_ground_truth(truth: Mapping[str, Any]) -> dict[Series, float]:
    counts: dict[Series, float] = {}
    for instance_id, data in truth["instances"].items():
        for row in data["in_progress"]:
            key = _key(
                "idaas_sync_jobs_in_progress",
                {"instance_id": instance_id, **{k: str(row[k]) for k in TARGET}},
            )
            counts[key] = counts.get(key, 0) + 1
    return counts


def mismatches(actual: Mapping[Series, float], truth: Mapping[str, Any]) -> list[str]:
    """Every difference between the exposition and the ground truth, as readable lines."""
    expected = expected_from_ground_truth(truth)
    problems: list[str] = []
    shown = {k: v for k, v in actual.items() if k[0] in COMPARED}
    for key in sorted(set(expected) | set(shown)):
        want, got = expected.get(key), shown.get(key)
        if want is None or got is None or abs(want - got) > 1e-6:
            problems.append(f"{key[0]}{dict(key[1])}: exporter {got}, ground truth {want}")
    running = in_progress_from_ground_truth(truth)
    shown_running = {
        k: v for k, v in actual.items() if k[0] == "idaas_sync_jobs_in_progress" and v > 0
    }
    if running != shown_running:
        problems.append(f"in progress: exporter {shown_running}, ground truth {running}")
    return problems


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, timeout: float, what: str, step: float = 0.05
) -> None:
    """Poll *condition* until true; fail with *what* after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(step)


def daemon_settings(base_url: str, instance_ids: list[str], **overrides: Any) -> Settings:
    """Settings of a test daemon polling the simulator at *base_url*: fast polls, no rate
    limit, an ephemeral port; *overrides* win."""
    values: dict[str, Any] = {
        "instance_ids": instance_ids,
        "endpoint": base_url,
        "poll_interval_seconds": 0.1,
        "web_listen_address": "127.0.0.1:0",
        "api_rate_limit": 0,
        **overrides,
    }
    return Settings(**values)


def simulator_credentials(key: AccessKey) -> StaticCredentialsProvider:
    """A credential provider holding one of the simulator's access keys."""
    return StaticCredentialsProvider(
        Credential(key.access_key_id, SecretStr(key.access_key_secret), source="test")
    )
