"""The end-to-end harness itself: a test that blames the product for the harness's own race is a
flaky test, and a flaky test is a defect of the product."""

from __future__ import annotations

import asyncio
from pathlib import Path

from exporter.simulator import ManualClock, World, load_scenario, run_in_thread

from .processes import ExporterProcess


async def test_kill_never_pairs_the_dead_url_with_the_new_generation(tmp_path: Path) -> None:
    """A scraper reads ``url`` and ``generation`` together and charges a failed scrape to the
    generation it read. While the killed process is being reaped, it must see either the old
    pair or "not up" — never the old URL under the new generation (the soak's 286/287)."""
    world = World(load_scenario("small"), seed=3, now_ms=ManualClock())
    with run_in_thread(world) as simulator:
        exporter = ExporterProcess(
            simulator, [i.instance_id for i in world.instances], tmp_path / "state.json"
        )
        await exporter.start()
        before = (exporter.url, exporter.generation)
        seen: set[tuple[str | None, int]] = set()
        stop = asyncio.Event()

        async def observe() -> None:
            while not stop.is_set():
                seen.add((exporter.url, exporter.generation))
                await asyncio.sleep(0)

        observer = asyncio.create_task(observe())
        await asyncio.sleep(0)
        await exporter.kill()
        stop.set()
        await observer
    dead_url, generation = before
    assert (dead_url, generation + 1) not in seen
    assert (None, generation + 1) in seen
