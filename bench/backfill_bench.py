"""Back-fill: wall time to catch up 1, 7 and 30 days of history at a realistic API latency.

Issue 6: "back-fill: wall time to catch up 30 days of history at a realistic per-request
latency, and how it scales with history length".

What runs, and how:

* **The simulator** is a separate process on the wall clock with 31 days of history and the
  fault ``latency=150ms`` (every API response is delayed by 150 ms, a realistic round trip to
  ``eiam.<region>.aliyuncs.com`` from another region or through a proxy). Two estates:

  - ``demo``: the README's two instances (production with nine targets, staging with two;
    about 300 jobs a day);
  - ``100 targets``: one instance with 100 targets (the mix of
    :func:`bench.memory_bench.estate_scenario`) syncing every 6 hours (about 520 jobs a day).
* **The daemon** is the real one (``python -m exporter``) on its first start (no state file)
  with ``lookback_seconds`` = 1, 7 or 30 days, once with the default API rate limit (5
  requests/s, shared by all instances) and once unlimited. A back-fill is its first poll of
  every instance: every page of ``ListSynchronizationJobs`` since now − lookback, in sequence
  (NextToken paging cannot be parallelised). The instances start staggered over
  ``min(interval, 5 s)`` as the daemon does.
* **Measured**: the wall time from the daemon's start-up log line until ``/metrics`` shows a
  successful poll of every instance (caught up and visible), the poll durations it reports
  (``idaas_exporter_last_poll_duration_seconds``), the requests it sent and the jobs it counted.
  The lower bound for one instance is pages × max(latency, 1 / rate).

Run it::

    python -m bench --only backfill           # writes bench/results/backfill_bench.json + PNG
    python -m bench.backfill_bench [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import plots
from bench.environment import environment
from bench.memory_bench import (
    DaemonProcess,
    SimulatorProcess,
    cpu_plan,
    estate_scenario,
    load_average,
    row,
    running,
    total,
    write_scenario,
)

__all__ = ["NAME", "Settings", "main", "run"]

NAME = "backfill_bench"
DAY = 86_400


@dataclass(frozen=True)
class Settings:
    days: tuple[int, ...] = (1, 7, 30)
    rates: tuple[float, ...] = (5.0, 0.0)
    latency: str = "150ms"
    estates: tuple[str, ...] = ("demo", "100 targets")
    history_days: int = 31

    @classmethod
    def quick(cls) -> Settings:
        return cls(days=(1, 3), estates=("demo",), history_days=4)


def _progress(message: str) -> None:
    print(f"[backfill] {message}", file=sys.stderr, flush=True)


def _scenario(estate: str, history_days: int) -> dict[str, Any]:
    if estate == "demo":
        from exporter.simulator.scenarios import BUILTIN_SCENARIOS

        data = BUILTIN_SCENARIOS["demo"]()
        data["history"] = f"{history_days}d"
        data["name"] = "demo-long-history"
        return data
    return estate_scenario(
        100, interval="6h", duration="5m", history=f"{history_days}d", name="bench-backfill"
    )


def _timestamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def backfill_once(
    work: Path, simulator: SimulatorProcess, days: int, rate: float, cpu: int | None, tag: str
) -> dict[str, Any]:
    daemon = DaemonProcess(
        work / f"daemon-{tag}.log",
        instance_ids=simulator.instances,
        endpoint=simulator.url,
        cpu=cpu,
        settings={
            "lookback_seconds": days * DAY,
            "api_rate_limit": rate,
            "poll_interval_seconds": 3600,  # the first poll only
            "target_names_refresh_seconds": 0,
        },
    )
    with running(daemon):
        daemon.start()
        started = _timestamp(daemon.wait_event("idaas-sync-exporter started", 30))
        daemon.wait_ready(900)
        ready_at = time.monotonic()
        ready = daemon.wait_all_polled(60)
        visible_lag = time.monotonic() - ready_at  # /-/ready said yes before /metrics showed it
        found = daemon.sample(
            [
                "idaas_sync_jobs_total",
                "idaas_exporter_api_requests_total",
                "idaas_exporter_last_poll_duration_seconds",
                "idaas_exporter_polls_total",
                "idaas_exporter_api_request_duration_seconds_sum",
                "idaas_exporter_api_request_duration_seconds_count",
            ]
        )
    per_instance: dict[str, float] = {}
    for labels, value in found["idaas_sync_jobs_total"]:
        iid = labels.split('instance_id="', 1)[1].split('"', 1)[0]
        per_instance[iid] = per_instance.get(iid, 0) + value
    durations = [v for _l, v in found["idaas_exporter_last_poll_duration_seconds"]]
    requests = int(total(found, "idaas_exporter_api_requests_total"))
    jobs = int(total(found, "idaas_sync_jobs_total"))
    count = total(found, "idaas_exporter_api_request_duration_seconds_count")
    return {
        "days": days,
        "rate_limit": rate or None,
        "seconds_to_ready": round(ready - started, 2),
        "ready_before_metrics_seconds": round(max(0.0, visible_lag), 3),
        "poll_seconds": [round(d, 2) for d in durations],
        "longest_poll_seconds": round(max(durations), 2) if durations else None,
        "requests": requests,
        "failed_polls": int(total(found, "idaas_exporter_polls_total", 'result="error"')),
        "jobs_counted": jobs,
        "most_pages_one_instance": max(
            (math.ceil(n / 100) for n in per_instance.values()), default=1
        ),
        "mean_request_seconds": round(
            total(found, "idaas_exporter_api_request_duration_seconds_sum") / count, 3
        )
        if count
        else None,
    }


def run(*, quick: bool = False, settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or (Settings.quick() if quick else Settings())
    env = environment()
    load_start = load_average()
    exporter_cpu, simulator_cpu = cpu_plan()
    latency_s = int(settings.latency.removesuffix("ms")) / 1000
    results: list[dict[str, Any]] = []
    pinned = True
    with tempfile.TemporaryDirectory(prefix="backfill-bench-") as tmp:
        work = Path(tmp)
        for estate in settings.estates:
            scenario = write_scenario(
                work / f"{estate.replace(' ', '-')}.json",
                _scenario(estate, settings.history_days),
            )
            simulator = SimulatorProcess(
                scenario,
                work / f"simulator-{estate.replace(' ', '-')}.log",
                cpu=simulator_cpu,
                faults=f"latency={settings.latency}",
            )
            simulator.start()
            with running(simulator):
                pinned = pinned and simulator.pinned
                world = simulator.world()
                for days in settings.days:
                    for rate in settings.rates:
                        tag = f"{estate.replace(' ', '-')}-{days}d-{rate:g}"
                        result = backfill_once(work, simulator, days, rate, exporter_cpu, tag)
                        pages = result["requests"]
                        # sequential paging per instance; a rate limit shared by all of them
                        floor = max(
                            result["most_pages_one_instance"] * latency_s,
                            max(0, pages - int(rate)) / rate if rate else 0.0,  # burst = rate
                        )
                        result.update(
                            estate=estate,
                            instances=len(world["instances"]),
                            targets=sum(len(i["targets"]) for i in world["instances"]),
                            lower_bound_seconds=round(floor, 2),
                        )
                        results.append(result)
                        _progress(
                            f"{estate}, {days} d, rate {rate or 'unlimited'}: "
                            f"{result['seconds_to_ready']} s to ready, {pages} requests, "
                            f"{result['jobs_counted']:,} jobs"
                        )
    document: dict[str, Any] = {
        "benchmark": NAME,
        "title": "Back-fill of 1/7/30 days at 150 ms per request, rate limit 5/s vs unlimited",
        "environment": env,
        "settings": {
            **settings.__dict__,
            "quick": quick,
            "load_average_start": load_start,
            "load_average_end": load_average(),
        },
        "pinning": {"pinned": pinned, "client_cpu": exporter_cpu, "server_cpu": simulator_cpu},
        "runs": results,
    }
    document["summary"] = _summary(document)
    document["plots"] = _plot(document)
    return document


def _summary(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for result in doc["runs"]:
        rate = f"{result['rate_limit']:g} req/s" if result["rate_limit"] else "unlimited"
        rows.append(
            row(
                f"{result['estate']} ({result['instances']} instance(s), {result['targets']} "
                f"targets), {result['days']} d of history, rate limit {rate}: time to caught up",
                result["seconds_to_ready"],
                "s",
            )
        )
        rows.append(
            row(
                "  … requests / jobs counted / longest poll / lower bound "
                "(max(pages of one instance × latency, (requests − burst) / rate))",
                f"{result['requests']} / {result['jobs_counted']:,} / "
                f"{result['longest_poll_seconds']} s / {result['lower_bound_seconds']} s",
            )
        )
        if result["failed_polls"]:
            rows.append(row("  … failed polls", result["failed_polls"], "", "0", False))
    rows.append(
        row(
            "load average (1 min) at start / end",
            f"{doc['settings']['load_average_start'][0]} / "
            f"{doc['settings']['load_average_end'][0]}",
        )
    )
    return rows


def _plot(doc: dict[str, Any]) -> list[str]:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for result in doc["runs"]:
        rate = f"{result['rate_limit']:g} req/s" if result["rate_limit"] else "unlimited"
        label = f"{result['estate']}, {rate}"
        xs, ys = series.setdefault(label, ([], []))
        xs.append(result["days"])
        ys.append(result["seconds_to_ready"])
    path = plots.lines(
        "backfill_seconds_vs_history.png",
        series,
        title="First start: wall time to catch up history (150 ms per API request)",
        xlabel="history to catch up (days of lookback)",
        ylabel="s from start-up until caught up on /metrics",
        env=doc["environment"],
        note="demo ≈ 300 jobs/day over 2 instances (the 2nd starts 2.5 s later by design); "
        "100 targets ≈ 520 jobs/day",
    )
    return [path.name] if path else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill_bench", description=__doc__)
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
