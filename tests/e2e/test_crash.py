"""SIGKILL at random moments while the API misbehaves: no job lost, none counted twice.

The daemon runs as a real process (``python -m exporter``) against the simulator, which
throttles, fails, resets connections and truncates bodies. The process is killed with SIGKILL
several times and restarted on the same state file. Counters must never go down between
scrapes, and once the faults stop every exported counter equals the simulator's ground truth.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.simulator import ManualClock, World, ground_truth, load_scenario, run_in_thread
from exporter.simulator.runner import ThreadedSimulator

from .processes import LOOKBACK_S, ExporterProcess
from .support import Series, mismatches, wait_until

MINUTE = 60_000


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[World, ManualClock, ThreadedSimulator]]:
    clock = ManualClock(int(time.time() * 1000))
    world = World(load_scenario("small"), seed=11, now_ms=clock)
    faults = "throttle=0.2,5xx=0.1,reset=0.05,truncate=0.05,latency=0ms-20ms,retry-after=50ms"
    with run_in_thread(world, control=True, faults=faults) as simulator:
        yield world, clock, simulator


async def test_sigkill_and_faults_never_lose_or_double_count(
    setup: tuple[World, ManualClock, ThreadedSimulator], tmp_path: Path
) -> None:
    world, clock, simulator = setup
    since = clock() - LOOKBACK_S * 1000
    exporter = ExporterProcess(
        simulator, [i.instance_id for i in world.instances], tmp_path / "state.json"
    )
    rng = random.Random(5)
    highest: dict[Series, float] = {}

    def check_monotonic(samples: dict[Series, float] | None) -> None:
        for key, value in (samples or {}).items():
            if key[0].startswith("idaas_sync_") and key[0].endswith("_total"):
                assert value >= highest.get(key, 0), f"{key} went down: {highest[key]} -> {value}"
                highest[key] = value

    await exporter.start()
    kills = 0
    try:
        for _ in range(5):
            clock.advance(rng.randrange(10, 60) * MINUTE)
            deadline = time.monotonic() + rng.uniform(0.5, 2.0)
            while time.monotonic() < deadline:
                check_monotonic(await exporter.scrape())
                await asyncio.sleep(0.05)
            await exporter.kill()
            kills += 1
            await exporter.start()
            check_monotonic(await exporter.scrape())  # the restored state, before any poll

        injected = simulator.server.faults.snapshot()["injected"]
        simulator.server.faults.set(None)
        last: list[str] = []

        async def converged() -> bool:
            nonlocal last
            samples = await exporter.scrape()
            check_monotonic(samples)
            last = mismatches(samples or {}, ground_truth(world, since_ms=since))
            return samples is not None and not last

        try:
            await wait_until(converged, timeout=30, what="counters to equal the ground truth")
        except AssertionError:
            raise AssertionError("\n".join(last[:20] + exporter.logs[-20:])) from None
        truth = ground_truth(world, since_ms=since)
        counted = sum(data["terminal_jobs"] for data in truth["instances"].values())
        print(f"kills={kills} counted={counted} injected={injected}")
        starts = [line for line in exporter.logs if '"idaas-sync-exporter started"' in line]
        assert kills == 5 and len(starts) == 1 + kills  # every SIGKILL was followed by a start
        assert counted > 50
        assert injected.get("throttle", 0) > 0
        assert injected.get("reset", 0) + injected.get("truncate", 0) > 0
        assert injected.get("5xx", 0) > 0
        assert await exporter.terminate() == 0
    finally:
        if exporter.alive():
            exporter.send_signal(signal.SIGKILL)
