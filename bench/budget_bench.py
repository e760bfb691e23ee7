"""API requests over a simulated day, against the ideal count.

Issue 4, "Benchmarks": over a simulated day of jobs, API requests ≤ 1.1 × the ideal count.
Issue 6: "API requests over a simulated day versus the ideal count; with a stuck job; with two
instances".

What runs: the real :class:`~exporter.service.poller.InstancePoller` (the daemon's poll loop body:
plan the window, page, track, re-check stuck jobs, refresh names) with a real
:class:`~exporter.eiam.client.EiamClient` over loopback HTTP against an in-process simulator
whose world runs on a :class:`~exporter.simulator.ManualClock`. The poller's clock is the same
manual clock. After a first poll (the start-up back-fill of ``lookback_seconds``, reported on
its own), the clock advances 60 s before each of 1,440 polls: one simulated day at the default
interval. Several instances share one client, as in the daemon.

Counting: every HTTP request the client sends (retries included) is reported to its observer,
an :class:`~exporter.core.contract.ApiRequestStats` — the very object behind
``idaas_exporter_api_requests_total`` — wrapped to also bin requests by simulated hour.

The ideal: per poll and instance, ``max(1, ceil(jobs newly started in that interval / 100))``
— one request when nothing is new, otherwise the pages the new jobs fill — taken from the
simulator's world, summed over the day. Target names refresh is off for the ratio (its cost is
measured separately); a stuck job's ``GetSynchronizationJob`` re-checks are not in the ideal
either and are reported against the documented cost (one per ``recheck_interval_seconds``
once the job has been in progress for ``stuck_after_seconds``).

Cases: each instance of the ``demo`` scenario alone (production has a job stuck running; staging
is quiet), a stuck-job case (``small`` plus a second job stuck from mid-day), the two ``demo``
instances together, and a busy estate (100 targets syncing every 10 min, about 800 jobs an
hour, where the overlap every poll re-reads — ``overlap_seconds`` — can hold more than one page
of jobs).

Run it::

    python -m bench --only budget            # writes bench/results/budget_bench.json + PNG
    python -m bench.budget_bench [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import sys
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import plots
from bench.environment import environment
from bench.memory_bench import estate_scenario, load_average, row

__all__ = ["NAME", "Case", "main", "run"]

NAME = "budget_bench"
TARGET_RATIO = 1.1
T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
MINUTE = 60_000
HOUR = 3_600_000


@dataclass(frozen=True)
class Case:
    name: str
    scenario: str  # "demo", "small" or "busy"
    instances: tuple[int, ...]  # indexes into the scenario's instances
    names_refresh: float = 0.0
    stuck_at_hour: float | None = None  # add a job stuck running from this simulated hour


@dataclass(frozen=True)
class Settings:
    polls: int = 1440
    interval_ms: int = MINUTE
    cases: tuple[Case, ...] = (
        Case("demo production instance alone (a job stuck running)", "demo", (0,)),
        Case("demo staging instance alone", "demo", (1,)),
        Case(
            "stuck jobs (small scenario + a second job stuck from hour 12)",
            "small",
            (0,),
            stuck_at_hour=12.0,
        ),
        Case("two instances (demo production + staging, one client)", "demo", (0, 1)),
        Case("busy estate (100 targets every 10 min)", "busy", (0,)),
    )
    names_case: Case = Case(
        "two instances, target names refreshed every 600 s", "demo", (0, 1), names_refresh=600.0
    )

    @classmethod
    def quick(cls) -> Settings:
        return cls(polls=120)


def _progress(message: str) -> None:
    print(f"[budget] {message}", file=sys.stderr, flush=True)


def _scenario(name: str) -> Any:
    from exporter.simulator import load_scenario
    from exporter.simulator.scenarios import Scenario

    if name == "busy":
        return Scenario.model_validate(
            estate_scenario(100, interval="10m", duration="2m", history="26h", name="bench-busy")
        )
    return load_scenario(name)


@dataclass
class HourlyStats:
    """The client's observer: ``ApiRequestStats`` plus requests per simulated hour."""

    clock: Callable[[], int]
    start_ms: int
    stats: Any = None
    hours: dict[int, dict[str, int]] = field(default_factory=dict)
    recording: bool = False

    def __post_init__(self) -> None:
        from exporter.core.contract import ApiRequestStats

        self.stats = ApiRequestStats()

    def on_request(self, event: Any) -> None:
        if not self.recording:
            return
        self.stats.on_request(event)
        hour = (self.clock() - self.start_ms - 1) // HOUR
        bucket = self.hours.setdefault(hour, {})
        bucket[event.action] = bucket.get(event.action, 0) + 1


def _new_jobs(world: Any, instance_id: str, after_ms: int, until_ms: int) -> int:
    """Jobs of *instance_id* whose StartTime lies in (after_ms, until_ms]."""
    from exporter.simulator.world import KEY_SHIFT

    keys = world.instance(instance_id).keys
    return bisect_right(keys, ((until_ms + 1) << KEY_SHIFT) - 1) - bisect_right(
        keys, ((after_ms + 1) << KEY_SHIFT) - 1
    )


async def run_case(case: Case, settings: Settings) -> dict[str, Any]:
    from pydantic import SecretStr

    from exporter.core.instance import InstanceState
    from exporter.core.tracker import TrackerConfig
    from exporter.eiam.client import EiamClient
    from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider
    from exporter.eiam.errors import EiamError
    from exporter.service.poller import InstancePoller, PollResult
    from exporter.simulator import ManualClock, SimulatorServer, World

    clock = ManualClock(T0)
    world = World(_scenario(case.scenario), seed=1, now_ms=clock)
    instance_ids = [world.instances[i].instance_id for i in case.instances]
    observer = HourlyStats(clock, T0)
    committed = {iid: InstanceState.initial() for iid in instance_ids}
    failed: list[str] = []

    async def commit(
        iid: str,
        candidate: InstanceState,
        result: PollResult | None,
        error: EiamError | None,
        duration: float,
    ) -> bool:
        if error is None:
            committed[iid] = candidate
        else:
            failed.append(error.code)
        return error is None

    config = TrackerConfig()
    async with SimulatorServer(world) as simulator:
        key = simulator.access_key
        credentials = StaticCredentialsProvider(
            Credential(key.access_key_id, SecretStr(key.access_key_secret), source="bench")
        )
        client = EiamClient(simulator.base_url, credentials, observer=observer)
        pollers = [
            InstancePoller(
                iid,
                client,
                tracker_config=config,
                interval=settings.interval_ms / 1000,
                names_refresh=case.names_refresh,
                state=lambda iid=iid: committed[iid],  # type: ignore[misc]
                commit=commit,
                clock_ms=clock,
            )
            for iid in instance_ids
        ]
        # the start-up back-fill (lookback_seconds of history), reported on its own
        observer.recording = True
        for poller in pollers:
            await poller.poll_and_commit()
        backfill = dict(observer.stats.requests)
        backfill_ideal = sum(
            max(1, math.ceil(_new_jobs(world, iid, T0 - config.lookback_ms - 1, T0) / 100))
            for iid in instance_ids
        )
        observer.stats = type(observer.stats)()
        observer.hours.clear()
        ideal_hours: dict[int, int] = {}
        ideal = 0
        new_total = 0
        started = time.perf_counter()
        for poll in range(settings.polls):
            before = clock()
            if case.stuck_at_hour is not None and before == T0 + int(case.stuck_at_hour * HOUR):
                target = world.instance(instance_ids[0]).targets[0]
                world.add_job(instance_ids[0], target.target_id, stuck=True)
            clock.advance(settings.interval_ms)
            world.advance()
            for poller in pollers:
                new = _new_jobs(world, poller.instance_id, before, clock())
                new_total += new
                pages = max(1, math.ceil(new / 100))
                ideal += pages
                hour = poll * settings.interval_ms // HOUR
                ideal_hours[hour] = ideal_hours.get(hour, 0) + pages
                await poller.poll_and_commit()
        elapsed = time.perf_counter() - started
        await client.aclose()
    requests = observer.stats.requests
    by_action: dict[str, int] = {}
    for (action, _code), count in requests.items():
        by_action[action] = by_action.get(action, 0) + count
    listing = by_action.get("ListSynchronizationJobs", 0)
    gets = by_action.get("GetSynchronizationJob", 0)
    names = by_action.get("ListIdentityProviders", 0) + by_action.get("ListApplications", 0)
    stuck = _stuck_expectation(world, instance_ids, config, settings)
    hours = sorted(set(ideal_hours) | set(observer.hours))
    return {
        "case": case.name,
        "scenario": case.scenario,
        "instances": instance_ids,
        "names_refresh_seconds": case.names_refresh,
        "polls_per_instance": settings.polls,
        "jobs_started_during_the_day": new_total,
        "requests": {f"{a} {c}": n for (a, c), n in sorted(requests.items())},
        "requests_by_action": by_action,
        "listing_requests": listing,
        "get_requests": gets,
        "names_requests": names,
        "all_requests": sum(by_action.values()),
        "ideal": ideal,
        "ratio_listing": round(listing / ideal, 4) if ideal else None,
        "ratio_all_but_names": round((listing + gets) / ideal, 4) if ideal else None,
        "stuck_rechecks_expected": stuck,
        "failed_polls": failed,
        "backfill_requests": {f"{a} {c}": n for (a, c), n in sorted(backfill.items())},
        "backfill_listing_requests": sum(
            n for (a, _c), n in backfill.items() if a == "ListSynchronizationJobs"
        ),
        "backfill_ideal": backfill_ideal,
        "hours": [
            {
                "hour": h,
                "ideal": ideal_hours.get(h, 0),
                "listing": observer.hours.get(h, {}).get("ListSynchronizationJobs", 0),
                "all": sum(observer.hours.get(h, {}).values()),
            }
            for h in hours
        ],
        "seconds": round(elapsed, 2),
    }


def _stuck_expectation(world: Any, instance_ids: list[str], config: Any, settings: Settings) -> int:
    """Documented re-checks of the day: per job in progress for longer than stuck_after, one
    GetSynchronizationJob per recheck interval (an upper bound; the tracker's exact moments
    depend on when the job was first seen)."""
    end = T0 + settings.polls * settings.interval_ms
    expected = 0
    for iid in instance_ids:
        for job in world.in_progress(iid):
            first_seen = max(job.start_ms, T0)
            stuck_from = first_seen + config.stuck_after_ms
            if stuck_from < end:
                expected += (end - stuck_from) // config.recheck_interval_ms
    return expected


def run(*, quick: bool = False, settings: Settings | None = None) -> dict[str, Any]:
    from exporter.core.tracker import TrackerConfig
    from exporter.logs import configure_logging

    configure_logging("error")  # one line per poll and request would drown the figures
    settings = settings or (Settings.quick() if quick else Settings())
    env = environment()
    load_start = load_average()
    results = []
    for case in (*settings.cases, settings.names_case):
        result = asyncio.run(run_case(case, settings))
        _progress(
            f"{case.name}: {result['listing_requests']} listing requests, ideal {result['ideal']}"
            f", ratio {result['ratio_listing']}, {result['get_requests']} Get, "
            f"{result['names_requests']} names ({result['seconds']} s)"
        )
        results.append(result)
    document: dict[str, Any] = {
        "benchmark": NAME,
        "title": "API requests over a simulated day vs the ideal count",
        "environment": env,
        "settings": {
            "polls": settings.polls,
            "interval_seconds": settings.interval_ms / 1000,
            "tracker_defaults_ms": dataclasses.asdict(TrackerConfig()),
            "rate_limit": "off (counts, not timing)",
            "quick": quick,
            "load_average_start": load_start,
            "load_average_end": load_average(),
        },
        "cases": results,
    }
    document["summary"] = _summary(document)
    document["plots"] = _plot(document)
    return document


def _summary(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for case in doc["cases"]:
        name = case["case"]
        if case["names_refresh_seconds"]:
            per_day = case["names_requests"]
            rows.append(
                row(
                    f"{name}: ListIdentityProviders + ListApplications over the day",
                    per_day,
                    "requests",
                    f"documented: 2 per instance per refresh = "
                    f"{2 * len(case['instances']) * int(86400 // case['names_refresh_seconds'])}",
                )
            )
            rows.append(row(f"{name}: all requests over the day", case["all_requests"], "requests"))
            continue
        ratio = case["ratio_listing"]
        rows.append(
            row(
                f"{name}: ListSynchronizationJobs / ideal "
                f"({case['listing_requests']:,} / {case['ideal']:,}; "
                f"{case['jobs_started_during_the_day']:,} jobs started)",
                ratio,
                "×",
                f"≤ {TARGET_RATIO:g}",
                ratio is not None and ratio <= TARGET_RATIO,
            )
        )
        if case["get_requests"] or case["stuck_rechecks_expected"]:
            rows.append(
                row(
                    f"{name}: GetSynchronizationJob (stuck-job re-checks) over the day",
                    case["get_requests"],
                    "requests",
                    f"documented ≤ {case['stuck_rechecks_expected']} "
                    "(1 per recheck interval once stuck)",
                    case["get_requests"] <= case["stuck_rechecks_expected"] + 1,
                )
            )
            rows.append(
                row(f"{name}: listing + re-checks / ideal", case["ratio_all_but_names"], "×")
            )
        rows.append(
            row(
                f"{name}: start-up back-fill (lookback 24 h), listing requests / ideal",
                f"{case['backfill_listing_requests']} / {case['backfill_ideal']}",
            )
        )
        if case["failed_polls"]:
            rows.append(row(f"{name}: failed polls", len(case["failed_polls"]), "", "0", False))
    rows.append(
        row(
            "load average (1 min) at start / end",
            f"{doc['settings']['load_average_start'][0]} / "
            f"{doc['settings']['load_average_end'][0]}",
        )
    )
    return rows


def _plot(doc: dict[str, Any]) -> list[str]:
    charts = []
    for case in doc["cases"]:
        hours = [h["hour"] for h in case["hours"]]
        series = {
            "ListSynchronizationJobs": (hours, [h["listing"] for h in case["hours"]]),
            "all requests": (hours, [h["all"] for h in case["hours"]]),
            "ideal": (hours, [h["ideal"] for h in case["hours"]]),
        }
        charts.append((case["case"], series))
    path = plots.panels(
        "budget_requests_per_hour.png",
        charts,
        title="API requests per simulated hour vs the ideal (1,440 polls of 60 s)",
        xlabel="simulated hour",
        ylabel="requests per hour",
        env=doc["environment"],
        styles={"ideal": "--"},
    )
    return [path.name] if path else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.budget_bench", description=__doc__)
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
