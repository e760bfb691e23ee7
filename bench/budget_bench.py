"""API requests over a simulated day against the ideal count.

What: ``ListSynchronizationJobs`` requests in 1,440 polls of 60 s (a day at the default interval)
over the ideal — per poll and instance ``max(1, ceil(jobs newly started / 100))``, read from the
simulated world, plus for each reconciliation sweep (on, at its defaults: every hour over the
24 h below the window) ``max(1, ceil(jobs in the swept StartTime range / 100))``;
``GetSynchronizationJob`` (stuck-job re-checks) against one per ``recheck_interval_seconds``
once stuck; all requests against the README's API-cost formula.

How: the real :class:`~exporter.service.poller.InstancePoller` and client over loopback HTTP
against an in-process simulator; world and poller share one manual clock, moved 60 s before
each poll. Every request (retries included) reaches an
:class:`~exporter.core.contract.ApiRequestStats`, the object behind
``idaas_exporter_api_requests_total``. The first poll (the start-up back-fill of
``lookback_seconds``) is counted apart. Tracker and names-refresh settings are the defaults.

Why fair: counts, not timings (no rate limit, no sleeping); the ideal comes from the world, not
from the exporter; several instances share one client, as in the daemon.
"""

from __future__ import annotations

import asyncio
import math
from bisect import bisect_right
from typing import Any

from bench.harness import demo_client, estate_scenario, row
from exporter.core.contract import ApiRequestStats
from exporter.core.instance import InstanceState
from exporter.core.tracker import TrackerConfig
from exporter.logs import configure_logging
from exporter.service.poller import InstancePoller, PollOutcome
from exporter.simulator import ManualClock, Scenario, SimulatorServer, World, load_scenario
from exporter.simulator.world import KEY_SHIFT

TITLE = "API requests over a simulated day vs the ideal count"
T0, MINUTE = 1_735_689_600_000, 60_000  # 2025-01-01T00:00:00Z
LIST = "ListSynchronizationJobs"
NAMES_REFRESH = 600.0  # the default target_names_refresh_seconds
CASES = {  # label: (scenario, indexes of the instances polled)
    "one instance (demo production, a job stuck running)": ("demo", (0,)),
    "two instances (demo production + staging, one client)": ("demo", (0, 1)),
    "100 targets every 10 min": ("busy", (0,)),
}


class Committer:
    """The daemon's part: hold each instance's committed state, accept successful polls."""

    def __init__(self, instance_ids: list[str]) -> None:
        self.states = {iid: InstanceState.initial() for iid in instance_ids}
        self.failed = 0

    def committed_state(self, instance_id: str) -> InstanceState:
        return self.states[instance_id]

    async def commit(self, outcome: PollOutcome) -> bool:
        if outcome.error is not None:
            self.failed += 1
            return False
        self.states[outcome.instance_id] = outcome.candidate
        return True


def by_action(stats: ApiRequestStats) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (action, _code), count in stats.requests.items():
        counts[action] = counts.get(action, 0) + count
    return counts


def new_jobs(world: World, instance_id: str, after_ms: int, until_ms: int) -> int:
    """Jobs of *instance_id* whose StartTime lies in (after_ms, until_ms]."""
    keys = world.instance(instance_id).keys  # type: ignore[union-attr]
    return bisect_right(keys, ((until_ms + 1) << KEY_SHIFT) - 1) - bisect_right(
        keys, ((after_ms + 1) << KEY_SHIFT) - 1
    )


def pages(jobs: int) -> int:
    return max(1, math.ceil(jobs / 100))


async def run_case(scenario: str, indexes: tuple[int, ...], polls: int) -> dict[str, Any]:
    if scenario == "busy":
        data = estate_scenario(100, interval="10m", duration="2m", history="26h")
        loaded = Scenario.model_validate({**data, "name": "bench-busy"})
    else:
        loaded = load_scenario(scenario)
    clock = ManualClock(T0)
    world = World(loaded, seed=1, now_ms=clock)
    ids = [world.instances[i].instance_id for i in indexes]
    config, committer, stats = TrackerConfig(), Committer(ids), ApiRequestStats()
    hourly: list[tuple[int, int]] = []  # (listing requests, ideal) per simulated hour
    async with SimulatorServer(world) as simulator:
        client = demo_client(simulator.base_url, observer=stats)
        options: dict[str, Any] = {"tracker_config": config, "interval": 60.0, "clock_ms": clock}
        options |= {"names_refresh": NAMES_REFRESH, "committer": committer}
        pollers = [InstancePoller(iid, client, **options) for iid in ids]
        for poller in pollers:  # the start-up back-fill
            await poller.poll_and_commit()
        backfill = by_action(stats).get(LIST, 0)
        backfill_ideal = sum(
            pages(new_jobs(world, i, T0 - config.lookback_ms - 1, T0)) for i in ids
        )
        stats.requests.clear()
        stats.purposes = dict.fromkeys(stats.purposes, 0)
        jobs = ideal = sweeps = sweep_ideal = 0
        last = (0, 0)
        for poll in range(polls):
            before = clock()
            world.advance(clock.advance(MINUTE))
            for poller in pollers:
                new = new_jobs(world, poller.instance_id, before, clock())
                jobs, ideal = jobs + new, ideal + pages(new)
                await poller.poll_and_commit()
                tracker = committer.states[poller.instance_id].tracker
                if tracker.last_sweep_ms == clock():  # this poll swept [from_ms, window)
                    low, high = tracker.retained.from_ms, tracker.window_start_ms
                    assert low is not None
                    assert high is not None
                    swept = pages(new_jobs(world, poller.instance_id, low - 1, high - 1))
                    sweeps, sweep_ideal, ideal = sweeps + 1, sweep_ideal + swept, ideal + swept
            if (poll + 1) % 60 == 0:  # an hour's requests and ideal, from the running totals
                now = (by_action(stats).get(LIST, 0), ideal)
                hourly.append((now[0] - last[0], now[1] - last[1]))
                last = now
        await client.aclose()
    end = T0 + polls * MINUTE
    rechecks = sum(  # the documented cost: one per recheck interval once stuck
        max(0, end - max(job.start_ms, T0) - config.stuck_after_ms) // config.recheck_interval_ms
        for iid in ids
        for job in world.in_progress(iid)
    )
    return {
        "instances": ids, "jobs_started": jobs, "ideal": ideal, "requests": by_action(stats),
        "sweeps": sweeps, "sweep_ideal": sweep_ideal, "purposes": dict(stats.purposes),
        "rechecks_documented": rechecks, "failed_polls": committer.failed,
        "backfill_listing_and_ideal": [backfill, backfill_ideal],
        "hourly_listing_and_ideal": hourly,
    }  # fmt: skip


def case_rows(label: str, case: dict[str, Any], polls: int) -> list[dict[str, Any]]:
    requests, ideal, documented = case["requests"], case["ideal"], case["rechecks_documented"]
    listed, gets = requests.get(LIST, 0), requests.get("GetSynchronizationJob", 0)
    names = requests.get("ListIdentityProviders", 0) + requests.get("ListApplications", 0)
    names_due = 2 * len(case["instances"]) * math.ceil(polls * 60 / NAMES_REFRESH)
    ratio = round(listed / ideal, 3)
    sweeps, sweep_ideal = case.get("sweeps", 0), case.get("sweep_ideal", 0)
    swept = case.get("purposes", {}).get("sweep", 0)
    polled = listed - swept
    rows = [
        row(f"{label}: {LIST} / ideal, steady polls + sweeps ({listed:,} / {ideal:,}; "
            f"{case['jobs_started']:,} jobs started)", ratio, "×", "≤ 1.1", ratio <= 1.1),
        row(f"{label}:   steady polls alone / their ideal", round(polled / (ideal - sweep_ideal),
            3), "×", "≤ 1.1", polled / (ideal - sweep_ideal) <= 1.1),
        row(f"{label}:   reconciliation sweeps ({sweeps}, hourly over 24 h): requests / ideal",
            f"{swept:,} / {sweep_ideal:,}", ""),
        row(f"{label}: GetSynchronizationJob (stuck-job re-checks)", gets, "requests",
            f"documented: 1 per recheck interval once stuck = {documented}",
            abs(gets - documented) <= 1),
        row(f"{label}: ListIdentityProviders + ListApplications", names, "requests",
            f"2 per instance per {NAMES_REFRESH:g} s = {names_due}", names == names_due),
        row(f"{label}: all requests / API-cost arithmetic (ideal pages + names + re-checks)",
            f"{sum(requests.values()):,} / {ideal + names_due + documented:,}"),
        row(f"{label}: start-up back-fill (lookback 24 h), {LIST} / ideal",
            "{} / {}".format(*case["backfill_listing_and_ideal"])),
    ]  # fmt: skip
    if case["failed_polls"]:
        rows.append(row(f"{label}: failed polls", case["failed_polls"], "", "0", False))
    return rows


def run(quick: bool) -> dict[str, Any]:
    configure_logging("error")  # one line per poll and request would drown the figures
    polls = 120 if quick else 1440
    cases = {label: asyncio.run(run_case(*spec, polls)) for label, spec in CASES.items()}
    series = {
        label: [
            [hour, listed / ideal]
            for hour, (listed, ideal) in enumerate(c["hourly_listing_and_ideal"])
        ]
        for label, c in cases.items()
    }
    return {
        "rows": [r for label, case in cases.items() for r in case_rows(label, case, polls)],
        "figures": {"polls_per_instance": polls, "interval_seconds": 60, "cases": cases},
        "plots": [{"name": "ratio_per_hour", "x": "simulated hour", "y": "requests / ideal",
                   "title": f"{LIST} / ideal per simulated hour", "series": series}],
    }  # fmt: skip
