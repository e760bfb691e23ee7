"""Freshness: time from a job's completion to its visibility on ``/metrics``.

Issue 4, "Benchmarks": a job's completion is visible on ``/metrics`` within poll interval + 1 s.
Issue 6: "freshness: time from a job's completion to its visibility, distribution over many
jobs".

What runs, and how:

* **The simulator** is a separate process on the wall clock with ``--speed 60``: an estate of
  50 targets (the mix of :func:`bench.memory_bench.estate_scenario`) whose schedules, divided by
  60, end a job every fraction of a second, continuously. Its timestamps stay real epoch
  milliseconds, so a job's ``EndTime`` is a moment on this machine's clock.
* **The daemon** is the real one (``python -m exporter``), polling every 2 s (±10 % jitter, as
  shipped), with the overlap, stuck and re-check durations scaled down by the same factor 60
  (10 s, 60 s, 5 s) as the demo does, and the default API rate limit (5 requests/s).
  Daemon and simulator are pinned to different CPUs; the driver shares the simulator's.
* **The driver** scrapes ``/metrics`` every 50 ms for the measurement period and records, per
  scrape, the moment the response arrived and every ``idaas_sync_jobs_total`` series. Afterwards
  it lists the period's jobs (their ``EndTime``, target, direction, trigger and final status)
  through the API with the project's client.
* **Matching**: within one series (target, direction, trigger, status) jobs are counted in the
  order they end, so the *k*-th job of the series (by EndTime) became visible at the first
  scrape whose counter reached the series' starting value + *k*. Freshness = that scrape's
  arrival − EndTime; its resolution is the 50 ms scrape period. Jobs ending too late to be
  seen before the period ends are left out; a job that should have been seen but never was
  is reported as missing.

Run it::

    python -m bench --only freshness          # writes bench/results/freshness_bench.json + PNG
    python -m bench.freshness_bench [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import plots
from bench.environment import environment
from bench.memory_bench import (
    DEMO_KEY_ID,
    DEMO_KEY_SECRET,
    DaemonProcess,
    SimulatorProcess,
    cpu_plan,
    estate_scenario,
    load_average,
    metric_values,
    percentile,
    pin,
    row,
    running,
    write_scenario,
)

__all__ = ["NAME", "Settings", "main", "run"]

NAME = "freshness_bench"
SERIES = "idaas_sync_jobs_total"


@dataclass(frozen=True)
class Settings:
    targets: int = 50
    speed: float = 60.0
    interval: str = "10m"  # schedule time: 10 s of real time at speed 60
    duration: str = "1m"
    poll_interval: float = 2.0
    measure_seconds: float = 75.0
    warmup_seconds: float = 4.0
    scrape_period: float = 0.05
    min_jobs: int = 200

    @classmethod
    def quick(cls) -> Settings:
        return cls(measure_seconds=15.0, warmup_seconds=3.0, min_jobs=20)

    @property
    def allowance(self) -> float:
        """The target: poll interval + 1 s."""
        return self.poll_interval + 1.0


def _progress(message: str) -> None:
    print(f"[freshness] {message}", file=sys.stderr, flush=True)


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for part in text.split('",'):
        name, _, value = part.partition('="')
        pairs.append((name, value.rstrip('"')))
    return tuple(sorted(pairs))


async def _list_jobs(url: str, instance_ids: list[str], since_ms: int) -> list[dict[str, Any]]:
    """Every job started since *since_ms*, through the API with the project's client."""
    from pydantic import SecretStr

    from exporter.eiam.client import EiamClient
    from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider

    credentials = StaticCredentialsProvider(
        Credential(DEMO_KEY_ID, SecretStr(DEMO_KEY_SECRET), source="bench")
    )
    jobs = []
    async with EiamClient(url, credentials) as client:
        for iid in instance_ids:
            async for job in client.list_synchronization_jobs(iid, start_time=since_ms):
                if job.end_time is None:
                    continue
                jobs.append(
                    {
                        "id": job.synchronization_job_id,
                        "end_ms": job.end_time,
                        "start_ms": job.start_time,
                        "key": tuple(
                            sorted(
                                {
                                    "instance_id": iid,
                                    "target_type": job.target_type or "unknown",
                                    "target_id": job.target_id or "unknown",
                                    "direction": job.direction or "unknown",
                                    "trigger_type": job.trigger_type or "unknown",
                                    "status": job.status or "unknown",
                                }.items()
                            )
                        ),
                    }
                )
    return jobs


def match(
    scrapes: list[tuple[float, dict[tuple[tuple[str, str], ...], float]]],
    jobs: list[dict[str, Any]],
    last_eligible_ms: float,
) -> tuple[list[dict[str, Any]], list[str]]:
    """(freshness per job, IDs of jobs that should have become visible but never did).

    *jobs* must hold every terminal job the daemon can have counted (the whole history), so
    that the *k*-th job of a series by EndTime is the one that takes its counter to *k* + 1.

    >>> key = (("status", "success"),)
    >>> scrapes = [(10.0, {key: 3.0}), (11.0, {key: 3.0}), (12.5, {key: 5.0})]
    >>> jobs = [{"id": i, "end_ms": e, "start_ms": 0, "key": key}
    ...         for i, e in (("a", 9000), ("b", 9500), ("c", 9900), ("d", 10500), ("e", 11800))]
    >>> seen, missing = match(scrapes, jobs, last_eligible_ms=12_000)
    >>> [(s["id"], round(s["seconds"], 1)) for s in seen], missing
    ([('d', 2.0), ('e', 0.7)], [])
    """
    by_series: dict[Any, list[dict[str, Any]]] = {}
    for job in jobs:
        by_series.setdefault(job["key"], []).append(job)
    seen: list[dict[str, Any]] = []
    missing: list[str] = []
    for key, series_jobs in by_series.items():
        series_jobs.sort(key=lambda j: (j["end_ms"], j["start_ms"] or 0, j["id"]))
        values = [(moment, sample.get(key, 0.0)) for moment, sample in scrapes]
        already = int(values[0][1])  # counted before the first scrape: the oldest-ending ones
        cursor = 0
        for index in range(already, len(series_jobs)):
            job = series_jobs[index]
            while cursor < len(values) and values[cursor][1] < index + 1:
                cursor += 1
            if cursor == len(values):
                if job["end_ms"] <= last_eligible_ms:
                    missing.append(job["id"])
                continue
            visible_at = values[cursor][0]
            seen.append(
                {
                    "id": job["id"],
                    "end_ms": job["end_ms"],
                    "visible_at": visible_at,
                    "seconds": visible_at - job["end_ms"] / 1000,
                }
            )
    return seen, missing


def run(*, quick: bool = False, settings: Settings | None = None) -> dict[str, Any]:
    from exporter.logs import configure_logging

    configure_logging("error")  # the driver's own client would log every page
    settings = settings or (Settings.quick() if quick else Settings())
    env = environment()
    load_start = load_average()
    exporter_cpu, simulator_cpu = cpu_plan()
    driver_pinned = pin(0, simulator_cpu)
    scale = settings.speed
    scrapes: list[tuple[float, dict[Any, float]]] = []
    scrape_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="freshness-bench-") as tmp:
        work = Path(tmp)
        scenario = write_scenario(
            work / "estate.json",
            estate_scenario(
                settings.targets,
                interval=settings.interval,
                duration=settings.duration,
                history="1h",
                name="bench-freshness",
            ),
        )
        simulator = SimulatorProcess(
            scenario, work / "simulator.log", cpu=simulator_cpu, speed=settings.speed
        )
        simulator.start()
        daemon = DaemonProcess(
            work / "daemon.log",
            instance_ids=simulator.instances,
            endpoint=simulator.url,
            cpu=exporter_cpu,
            settings={
                "poll_interval_seconds": settings.poll_interval,
                "overlap_seconds": 600 / scale,
                "stuck_after_seconds": 3600 / scale,
                "recheck_interval_seconds": 300 / scale,
                "state_file": work / "state.json",
            },
        )
        with running(simulator, daemon):
            daemon.start()
            daemon.wait_ready(60)
            time.sleep(settings.warmup_seconds)
            _progress(
                f"scraping every {settings.scrape_period * 1000:g} ms for "
                f"{settings.measure_seconds:g} s"
            )
            start_wall = time.time()
            deadline = time.monotonic() + settings.measure_seconds
            next_at = time.monotonic()
            while time.monotonic() < deadline:
                sent = time.perf_counter()
                text = daemon.metrics_text()
                arrived = time.time()
                scrape_ms.append((time.perf_counter() - sent) * 1e3)
                found = metric_values(text, [SERIES])[SERIES]
                scrapes.append((arrived, {_labels(labels): value for labels, value in found}))
                next_at += settings.scrape_period
                time.sleep(max(0.0, next_at - time.monotonic()))
            polls = daemon.sample(
                ["idaas_exporter_polls_total", "idaas_exporter_last_poll_duration_seconds"]
            )
            jobs = asyncio.run(
                _list_jobs(simulator.url, simulator.instances, int((start_wall - 3600) * 1000))
            )
    load_end = load_average()
    last_scrape = scrapes[-1][0]
    # a job is owed visibility if it ended at least (interval + 1 s) before the last scrape
    last_eligible_ms = (last_scrape - settings.allowance - 0.5) * 1000
    seen, missing = match(scrapes, jobs, last_eligible_ms)
    seconds = sorted(s["seconds"] for s in seen)
    document: dict[str, Any] = {
        "benchmark": NAME,
        "title": "Freshness: job completion (EndTime) to visibility on /metrics",
        "environment": env,
        "settings": {
            **settings.__dict__,
            "overlap_stuck_recheck_seconds": [600 / scale, 3600 / scale, 300 / scale],
            "api_rate_limit": "5 (default)",
            "quick": quick,
            "load_average_start": load_start,
            "load_average_end": load_end,
        },
        "pinning": {
            "pinned": daemon.pinned and simulator.pinned and driver_pinned,
            "client_cpu": exporter_cpu,
            "server_cpu": simulator_cpu,
            "note": "client = the daemon; the simulator and the scraping driver share the other",
        },
        "scrapes": len(scrapes),
        "scrape_ms": {
            "median": round(statistics.median(scrape_ms), 2),
            "p99": round(percentile(scrape_ms, 0.99), 2),
        },
        "jobs_listed": len(jobs),
        "jobs_measured": len(seen),
        "missing": missing,
        "polls": int(sum(v for _l, v in polls["idaas_exporter_polls_total"])),
        "freshness_seconds": [round(s, 4) for s in seconds],
    }
    if seconds:
        document["distribution"] = {
            "p50": round(percentile(seconds, 0.50), 3),
            "p90": round(percentile(seconds, 0.90), 3),
            "p99": round(percentile(seconds, 0.99), 3),
            "max": round(max(seconds), 3),
            "min": round(min(seconds), 3),
            "mean": round(statistics.fmean(seconds), 3),
            "within_allowance": sum(1 for s in seconds if s <= settings.allowance),
        }
    document["summary"] = _summary(document, settings)
    document["plots"] = _plot(document, settings)
    return document


def _summary(doc: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    dist = doc.get("distribution")
    n = doc["jobs_measured"]
    allowance = settings.allowance
    if not dist:
        return [row("jobs measured", n, "", f"≥ {settings.min_jobs}", False)]
    share = dist["within_allowance"] / n
    return [
        row(
            "jobs measured (completed during the run and matched to a scrape)",
            n,
            "jobs",
            f"≥ {settings.min_jobs}",
            n >= settings.min_jobs,
        ),
        row("freshness p50 / p90 / p99", f"{dist['p50']} / {dist['p90']} / {dist['p99']}", "s"),
        row(
            "freshness max",
            dist["max"],
            "s",
            f"≤ poll interval + 1 s = {allowance:g} s",
            dist["max"] <= allowance,
        ),
        row(
            "jobs visible within poll interval + 1 s",
            f"{dist['within_allowance']} of {n} ({share:.1%})",
            "",
            "all",
            share == 1.0,
        ),
        row(
            "jobs owed visibility but never seen", len(doc["missing"]), "", "0", not doc["missing"]
        ),
        row("freshness mean / min", f"{dist['mean']} / {dist['min']}", "s"),
        row(
            "scrape period / scrape duration median (resolution)",
            f"{settings.scrape_period * 1000:g} / {doc['scrape_ms']['median']}",
            "ms",
        ),
        row(
            "daemon poll interval (±10 % jitter) / polls during the run",
            f"{settings.poll_interval:g} s / {doc['polls']}",
        ),
        row(
            "load average (1 min) at start / end",
            f"{doc['settings']['load_average_start'][0]} / "
            f"{doc['settings']['load_average_end'][0]}",
        ),
    ]


def _plot(doc: dict[str, Any], settings: Settings) -> list[str]:
    dist = doc.get("distribution")
    if not dist:
        return []
    path = plots.histogram(
        "freshness_distribution.png",
        doc["freshness_seconds"],
        title=f"Job completion → visible on /metrics ({doc['jobs_measured']} jobs, "
        f"poll interval {settings.poll_interval:g} s)",
        xlabel="seconds from the job's EndTime to the first scrape that counts it",
        bins=40,
        env=doc["environment"],
        note=f"scrapes every {settings.scrape_period * 1000:g} ms",
        vlines=[
            (dist["p50"], f"p50 {dist['p50']} s"),
            (dist["p99"], f"p99 {dist['p99']} s"),
            (settings.poll_interval, f"poll interval {settings.poll_interval:g} s"),
            (settings.allowance, f"target: interval + 1 s = {settings.allowance:g} s"),
        ],
    )
    return [path.name] if path else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.freshness_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke-sized run")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    document = run(quick=quick)
    path = plots.results_dir() / f"{NAME}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", "utf-8")
    for item in document["summary"]:
        verdict = "" if item["ok"] is None else (" [met]" if item["ok"] else " [MISSED]")
        print(f"{item['metric']}: {item['value']} {item['unit']}{verdict}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
