"""Freshness: a job's completion (its EndTime) to its visibility on ``/metrics``, per job.

How: a simulator process on the wall clock at ``--speed 60`` (50 targets ending a job every
fraction of a second; timestamps stay real epoch milliseconds) and the real daemon polling every
2 s (±10 % jitter, as shipped; overlap 10 min, stuck after 1 h, re-check every 5 min, all divided
by 60 too; default rate limit), each on its own CPU, the driver on the simulator's. The driver
scrapes ``/metrics`` every 50 ms, keeping every ``idaas_sync_jobs_total`` series, then lists the
jobs through the API. A series counts its jobs in the order they end, so the *k*-th (by EndTime)
became visible at the first scrape whose counter reached *k*: freshness = that scrape's arrival
− EndTime.

Why fair: the shipped daemon, unmodified; 50 ms resolution; a job owed visibility but never
seen is reported as missing, not left out.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from typing import Any

from bench.harness import (
    daemon,
    demo_client,
    estate_scenario,
    percentile,
    pin,
    row,
    running,
    simulator,
    total,
)
from exporter.logs import configure_logging

TITLE = "Freshness: job completion (EndTime) to visibility on /metrics"
SERIES, SPEED, POLL, SCRAPE = "idaas_sync_jobs_total", 60.0, 2.0, 0.05
LABELS = ("target_type", "target_id", "direction", "trigger_type", "status")  # + instance_id
Key = tuple[tuple[str, str], ...]


def labels(text: str) -> Key:
    """``a="1",b="2"`` → ``(("a", "1"), ("b", "2"))``."""
    pairs = (part.partition('="') for part in text.split('",'))
    return tuple(sorted((name, value.rstrip('"')) for name, _, value in pairs))


async def list_jobs(url: str, instance_ids: list[str], since_ms: int) -> list[dict[str, Any]]:
    """Every terminal job started since *since_ms*: its ID, times and series key."""
    jobs = []
    async with demo_client(url) as client:
        for iid in instance_ids:
            async for job in client.list_synchronization_jobs(iid, start_time=since_ms):
                if job.end_time is None:
                    continue
                pairs = [(name, getattr(job, name) or "unknown") for name in LABELS]
                key = tuple(sorted([("instance_id", iid), *pairs]))
                jobs.append({"id": job.synchronization_job_id, "end_ms": job.end_time,
                             "start_ms": job.start_time or 0, "key": key})  # fmt: skip
    return jobs


def match(
    scrapes: list[tuple[float, dict[Key, float]]], jobs: list[dict[str, Any]], due_ms: float
) -> tuple[list[float], list[str]]:
    """(freshness seconds per job seen, IDs of jobs ended by *due_ms* but never seen).

    *jobs* holds every terminal job the daemon may have counted, so that the *k*-th of a series
    by EndTime is the one that takes its counter to *k* + 1.

    >>> key = (("status", "success"),)
    >>> scrapes = [(10.0, {key: 3.0}), (11.0, {key: 3.0}), (12.5, {key: 5.0})]
    >>> jobs = [{"id": i, "end_ms": e, "start_ms": 0, "key": key}
    ...         for i, e in (("a", 9000), ("b", 9500), ("c", 9900), ("d", 10500), ("e", 11800))]
    >>> [round(s, 1) for s in match(scrapes, jobs, due_ms=12_000)[0]]
    [2.0, 0.7]
    """
    by_series: dict[Key, list[dict[str, Any]]] = {}
    for job in jobs:
        by_series.setdefault(job["key"], []).append(job)
    seen: list[float] = []
    missing: list[str] = []
    for key, series in by_series.items():
        series.sort(key=lambda j: (j["end_ms"], j["start_ms"], j["id"]))
        values = [(moment, sample.get(key, 0.0)) for moment, sample in scrapes]
        cursor = 0
        for index in range(int(values[0][1]), len(series)):  # those before: counted already
            while cursor < len(values) and values[cursor][1] < index + 1:
                cursor += 1
            job = series[index]
            if cursor < len(values):
                seen.append(values[cursor][0] - job["end_ms"] / 1000)
            elif job["end_ms"] <= due_ms:
                missing.append(job["id"])
    return seen, missing


def run(quick: bool) -> dict[str, Any]:
    configure_logging("error")  # the driver's own client would log every page
    measure, warmup, min_jobs = (15.0, 3.0, 20) if quick else (75.0, 4.0, 200)
    scenario = estate_scenario(50, interval="10m", duration="1m", history="1h")
    scrapes: list[tuple[float, dict[Key, float]]] = []
    with simulator({**scenario, "name": "bench-freshness"}, speed=SPEED) as (sim, work, cpu):
        pin(0, sim.cpu)
        times = {"poll_interval": POLL, "overlap": 10, "stuck_after": 60, "recheck_interval": 5}
        settings = {f"{name}_seconds": value for name, value in times.items()}
        exporter = daemon(sim, work / "daemon.log", cpu, **settings)
        with running(exporter):
            exporter.start()
            exporter.wait_all_polled(60)
            time.sleep(warmup)
            start, next_at, deadline = time.time(), time.monotonic(), time.monotonic() + measure
            while time.monotonic() < deadline:
                found = exporter.sample([SERIES])[SERIES]
                scrapes.append((time.time(), {labels(k): v for k, v in found}))
                next_at += SCRAPE
                time.sleep(max(0.0, next_at - time.monotonic()))
            found = exporter.sample(["idaas_exporter_polls_total"])
            polls, failed = (
                int(total(found, "idaas_exporter_polls_total", c)) for c in ("", "error")
            )
        jobs = asyncio.run(list_jobs(sim.url, sim.instances, int((start - 3600) * 1000)))
    due_ms = (scrapes[-1][0] - POLL - 1.5) * 1000  # ended interval + 1 s (+ jitter) before
    seen, missing = match(scrapes, jobs, due_ms)
    if not seen:
        raise RuntimeError(f"no job seen: {len(jobs)} listed, {len(missing)} missing")
    seen.sort()
    n, allowance = len(seen), POLL + 1.0
    p50, p90, p99 = (round(percentile(seen, q), 3) for q in (0.5, 0.9, 0.99))
    rows = [
        row("jobs measured (ended during the run, matched to a scrape)", n, "jobs",
            f"≥ {min_jobs}", n >= min_jobs),
        row("freshness mean / p50 / p90 / p99",
            f"{statistics.fmean(seen):.3f} / {p50} / {p90} / {p99}", "s"),
        row("freshness max", round(seen[-1], 3), "s",
            f"≤ poll interval + 1 s = {allowance:g} s", seen[-1] <= allowance),
        row("jobs owed visibility but never seen", len(missing), "jobs", "0", not missing),
        row("scrape period / daemon poll interval (±10 %) / polls (failed)",
            f"{SCRAPE * 1000:g} ms / {POLL:g} s / {polls} ({failed})"),
    ]  # fmt: skip
    bins = Counter(max(0, int(s * 10)) for s in seen)  # 0.1 s wide
    histogram = [[(b + 0.5) / 10, bins[b]] for b in range(max(bins) + 1)]
    return {
        "rows": rows,
        "figures": {"seconds": [round(s, 4) for s in seen], "missing": missing,
                    "scrapes": len(scrapes), "jobs_listed": len(jobs), "cpus": [cpu, sim.cpu]},
        "plots": [{"name": "distribution", "x": "seconds from EndTime to the first scrape "
                   "counting the job (0.1 s bins)", "y": "jobs", "series": {"jobs": histogram},
                   "title": f"Job completion → visible on /metrics ({n} jobs, poll every "
                   f"{POLL:g} s; target {allowance:g} s)"}],
    }  # fmt: skip
