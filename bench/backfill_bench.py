"""Back-fill: wall time for a first start to catch up 1, 7 and 30 days at 150 ms per request.

How: a simulator process on the wall clock with 31 days of history and the fault
``latency=150ms`` (every API response delayed, as across regions or through a proxy), for two
estates: ``demo`` (two instances, 11 targets, ~300 jobs a day) and 100 targets in one instance
syncing every 6 h (~520 jobs a day). For each history length, the real daemon starts without
state with ``lookback_seconds`` set to it, once at the default rate limit (5 requests/s, shared
by all instances) and once unlimited. Its first poll of an instance pages
``ListSynchronizationJobs`` from now − lookback in sequence (NextToken paging cannot be
parallelised). Measured: from the daemon's start-up log line until ``/metrics`` shows a
successful poll of every instance, and the requests and jobs it reports.

Why fair: the shipped daemon, first start, nothing cached; a lower bound is printed beside it:
the larger of each instance's staggered start (the daemon spreads first polls over 5 s) plus its
pages × latency, and (requests − burst) / rate.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import SimulatorProcess, daemon, estate_scenario, row, running, simulator, total
from exporter.simulator.scenarios import BUILTIN_SCENARIOS

TITLE = "Back-fill of 1/7/30 days at 150 ms per request, rate limit 5/s vs unlimited"
DAY, LATENCY, ESTATES = 86_400, 0.150, ("demo", "100 targets")
NAMES = [
    "idaas_sync_jobs_total",
    "idaas_exporter_api_requests_total",
    "idaas_exporter_last_poll_duration_seconds",
    "idaas_exporter_polls_total",
]


def scenario(estate: str, history_days: int) -> dict[str, Any]:
    if estate == "demo":
        data, name = BUILTIN_SCENARIOS["demo"](), "demo-long-history"
    else:
        data, name = estate_scenario(100, interval="6h", duration="5m"), "bench-backfill"
    return {**data, "name": name, "history": f"{history_days}d"}


def backfill(
    sim: SimulatorProcess, log: Path, cpu: int | None, days: int, rate: float
) -> dict[str, Any]:
    """One first start: seconds until caught up on ``/metrics``, and what it took."""
    exporter = daemon(
        sim, log, cpu, lookback_seconds=days * DAY, api_rate_limit=rate,
        poll_interval_seconds=3600, target_names_refresh_seconds=0,  # the first poll only
    )  # fmt: skip
    with running(exporter):
        exporter.start()
        started = exporter.wait_event("idaas-sync-exporter started", 30)["timestamp"]
        # readiness first: lighter on the daemon than reading /metrics all along
        exporter.wait_until(lambda: exporter.get("/-/ready").status_code == 200, 900, "ready")
        caught_up = exporter.wait_all_polled(60)
        found = exporter.sample(NAMES)
    per_instance: dict[str, float] = {}
    for labels, value in found["idaas_sync_jobs_total"]:
        iid = labels.split('instance_id="', 1)[1].split('"', 1)[0]
        per_instance[iid] = per_instance.get(iid, 0) + value
    requests = int(total(found, "idaas_exporter_api_requests_total"))
    # per instance: its staggered start (over 5 s, as the daemon does), then its pages in sequence;
    # for them all: one rate limit (burst = rate)
    spread = 5.0 / len(sim.instances)
    paging = max(
        n * spread + max(1, math.ceil(per_instance.get(iid, 0) / 100)) * LATENCY
        for n, iid in enumerate(sim.instances)
    )
    floor = max(paging, max(0, requests - int(rate)) / rate if rate else 0.0)
    started_s = datetime.fromisoformat(str(started).replace("Z", "+00:00")).timestamp()
    return {
        "seconds": round(caught_up - started_s, 2),
        "lower_bound_seconds": round(floor, 2),
        "requests": requests,
        "jobs": int(total(found, "idaas_sync_jobs_total")),
        "longest_poll_seconds": round(max(v for _, v in found[NAMES[2]]), 2),
        "cpus": [cpu, sim.cpu],
        "failed_polls": int(total(found, "idaas_exporter_polls_total", 'result="error"')),
    }


def run(quick: bool) -> dict[str, Any]:
    days_list, estates, history = ((1, 3), ("demo",), 4) if quick else ((1, 7, 30), ESTATES, 31)
    runs: list[dict[str, Any]] = []
    for estate in estates:
        with simulator(scenario(estate, history), faults="latency=150ms") as (sim, work, cpu):
            for days in days_list:
                for rate in (5.0, 0.0):
                    log = work / f"daemon-{days}d-{rate:g}.log"
                    limit = f"{rate:g} req/s" if rate else "unlimited"
                    result = backfill(sim, log, cpu, days, rate)
                    runs.append({"estate": estate, "days": days, "rate": limit, **result})
                    print(f"[backfill] {estate}, {days} d, {limit}: {result}", flush=True)
    rows = []
    for r in runs:
        rows.append(row(
            f"{r['estate']}, {r['days']} d of history, {r['rate']}: seconds to caught up "
            f"({r['requests']} requests, {r['jobs']:,} jobs; lower bound "
            f"{r['lower_bound_seconds']} s)", r["seconds"], "s",
        ))  # fmt: skip
        if r["failed_polls"]:
            rows.append(row("  … failed polls", r["failed_polls"], "", "0", False))
    series: dict[str, list[list[float]]] = {}
    for r in runs:
        series.setdefault(f"{r['estate']}, {r['rate']}", []).append([r["days"], r["seconds"]])
    return {
        "rows": rows,
        "figures": {"latency_seconds": LATENCY, "history_days": history, "runs": runs},
        "plots": [{
            "name": "seconds_vs_history", "series": series,
            "title": "First start: wall time to catch up history (150 ms per API request)",
            "x": "history caught up (days of lookback)", "y": "s until caught up on /metrics",
        }],
    }  # fmt: skip
