"""The fault and soak suite: everything goes wrong at once, and the numbers stay exactly right.

While the exporter (a real process) polls the simulator:

- the simulator throttles, fails with 5xx, slows down, resets connections and truncates bodies;
- the exporter is killed with SIGKILL at random moments and restarted on the same state;
- its state directory becomes read-only for a while (a read-only bind mount; needs root, as in
  CI — elsewhere that phase is reported as skipped);
- the simulator's clock is skewed against the exporter's, first by 5 minutes (tolerated by the
  gateway), then by 20 minutes (``InvalidTimeStamp.Expired``);
- a scraper hits ``/metrics`` every 50 ms and checks that no counter ever goes down.

At the end, with the faults off, every exported counter must equal the simulator's ground
truth exactly. Also checked: ≥ 99.9 % of scrapes answered while the process is up, memory flat
over the longest process lifetime, and no crash loop (the process never exits by itself).

Short form by default (about a minute); ``SOAK_SECONDS=900`` runs the long form.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bench.harness import parse_exposition
from exporter.simulator import ManualClock, World, ground_truth, load_scenario, run_in_thread
from exporter.simulator.clock import wall_clock_ms

from .processes import LOOKBACK_S, ExporterProcess
from .support import Series, mismatches, wait_until

MINUTE = 60_000
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "45"))
MOUNT = shutil.which("mount") or ""
UMOUNT = shutil.which("umount") or ""
FAULTS = "throttle=0.15,5xx=0.05,reset=0.02,truncate=0.02,latency=0ms-30ms,retry-after=50ms"


class Skew:
    """The simulator's signature clock: the wall clock plus an adjustable offset."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return wall_clock_ms() + self.offset_ms


@dataclass
class Figures:
    scrapes_while_up: int = 0
    scrapes_answered: int = 0
    scrape_errors: list[str] = field(default_factory=list)
    restarts: int = 0
    rss_kib: dict[int, list[int]] = field(default_factory=dict)
    read_only_phase: str = "not run"
    skew_phases: list[str] = field(default_factory=list)


class ReadOnlyDirectory:
    """Make a directory read-only for everybody, root included, with a bind mount."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mounted = False

    def available(self) -> bool:
        if os.geteuid() != 0 or not MOUNT or not UMOUNT:
            return False
        probe = subprocess.run(
            [MOUNT, "--bind", str(self.path), str(self.path)],
            capture_output=True,
            check=False,
        )
        self.mounted = probe.returncode == 0
        return self.mounted

    def set(self, read_only: bool) -> None:
        """Remount; a read-only remount fails (EBUSY) while a file is open for writing there,
        i.e. while the exporter is in the middle of a state write: retry until a deadline."""
        mode = "remount,bind,ro" if read_only else "remount,bind,rw"
        deadline = time.monotonic() + 10
        while True:
            done = subprocess.run([MOUNT, "-o", mode, str(self.path)], capture_output=True)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"mount -o {mode} failed: {done.stderr.decode()}")
            time.sleep(0.01)

    def release(self) -> None:
        if self.mounted:
            subprocess.run([UMOUNT, str(self.path)], check=False, capture_output=True)
            self.mounted = False


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[ReadOnlyDirectory]:
    directory = ReadOnlyDirectory(tmp_path / "state")
    directory.path.mkdir()
    try:
        yield directory
    finally:
        directory.release()


async def test_fault_and_soak_suite(state_dir: ReadOnlyDirectory) -> None:
    clock = ManualClock(wall_clock_ms())
    skew = Skew()
    world = World(load_scenario("demo"), seed=17, now_ms=clock)
    since = clock() - LOOKBACK_S * 1000
    rng = random.Random(23)
    figures = Figures()
    highest: dict[Series, float] = {}

    with run_in_thread(world, control=True, faults=FAULTS, auth_clock_ms=skew) as simulator:
        exporter = ExporterProcess(
            simulator,
            [i.instance_id for i in world.instances],
            state_dir.path / "state.json",
            log_dir=state_dir.path.parent,  # not in the directory that turns read-only
        )
        await exporter.start()
        stop = asyncio.Event()

        async def scraper() -> None:
            clients: dict[int, httpx.AsyncClient] = {}
            try:
                while not stop.is_set():
                    url = exporter.url
                    generation = exporter.generation
                    # one connection pool per process: a restarted exporter may get the same
                    # ephemeral port, and a pooled connection to the dead one proves nothing
                    client = clients.get(generation)
                    if client is None:
                        client = clients[generation] = httpx.AsyncClient(timeout=10)
                    if url is not None and exporter.alive():
                        figures.scrapes_while_up += 1
                        try:
                            response = await client.get(url + "/metrics")
                            response.raise_for_status()
                        except httpx.HTTPError as exc:
                            if exporter.generation == generation:
                                figures.scrape_errors.append(
                                    f"{exc!r} url={url} generation={generation} "
                                    f"at {time.monotonic() - started:.2f}s"
                                )
                            else:  # killed while this scrape was under way
                                figures.scrapes_while_up -= 1
                        else:
                            figures.scrapes_answered += 1
                            for key, value in parse_exposition(response.text).items():
                                name = key[0]
                                if name.startswith("idaas_sync_") and name.endswith("_total"):
                                    assert value >= highest.get(key, 0), f"{key} went down"
                                    highest[key] = value
                    rss = exporter.rss_kib() if exporter.alive() else None
                    if rss is not None:
                        figures.rss_kib.setdefault(exporter.pid, []).append(rss)
                    await asyncio.sleep(0.05)
            finally:
                for client in clients.values():
                    await client.aclose()

        scraping = asyncio.create_task(scraper())
        started = time.monotonic()
        kill_at = sorted(rng.uniform(0.1, 0.9) * SOAK_SECONDS for _ in range(4))
        read_only_at = (0.3 * SOAK_SECONDS, 0.3 * SOAK_SECONDS + 5)
        skew_small_at = (0.5 * SOAK_SECONDS, 0.5 * SOAK_SECONDS + 4)
        skew_large_at = (0.65 * SOAK_SECONDS, 0.65 * SOAK_SECONDS + 4)
        can_read_only = state_dir.available()
        read_only = False
        try:
            while (elapsed := time.monotonic() - started) < SOAK_SECONDS:
                clock.advance(rng.randrange(2, 12) * MINUTE)
                assert exporter.alive(), "the exporter exited by itself:\n" + "\n".join(
                    exporter.logs[-20:]
                )
                if kill_at and elapsed >= kill_at[0]:
                    kill_at.pop(0)
                    await exporter.kill()
                    await exporter.start()  # raises if it cannot start again
                    figures.restarts += 1
                if can_read_only and read_only_at[0] <= elapsed < read_only_at[1] and not read_only:
                    state_dir.set(True)
                    read_only = True
                elif read_only and elapsed >= read_only_at[1]:
                    state_dir.set(False)
                    read_only = False
                    figures.read_only_phase = f"{read_only_at[1] - read_only_at[0]:g} s read-only"
                in_small = skew_small_at[0] <= elapsed < skew_small_at[1]
                in_large = skew_large_at[0] <= elapsed < skew_large_at[1]
                skew.offset_ms = 5 * MINUTE if in_small else 20 * MINUTE if in_large else 0
                await asyncio.sleep(0.25)
            injected = simulator.server.faults.snapshot()["injected"]
            simulator.server.faults.set(None)
            skew.offset_ms = 0
            if read_only:
                state_dir.set(False)
            if not can_read_only:
                figures.read_only_phase = "skipped (bind mounts need root)"
            figures.skew_phases = ["5 min (accepted)", "20 min (rejected)"]

            last: list[str] = []

            async def converged() -> bool:
                nonlocal last
                samples = await exporter.scrape()
                last = mismatches(samples or {}, ground_truth(world, since_ms=since))
                return samples is not None and not last

            try:
                await wait_until(converged, timeout=60, what="counters to equal the ground truth")
            except AssertionError:
                raise AssertionError("\n".join(last[:20] + exporter.logs[-30:])) from None
        finally:
            stop.set()
            await scraping
            if exporter.alive():
                assert await exporter.terminate() == 0

    logs = "\n".join(exporter.logs)
    if can_read_only:
        assert "StateWriteError" in logs or "state file not written" in logs
    assert "InvalidTimeStamp.Expired" in logs  # the large skew was really rejected
    answered = figures.scrapes_answered / max(1, figures.scrapes_while_up)
    lifetimes = sorted(figures.rss_kib.values(), key=len)
    longest = lifetimes[-1]
    third = max(1, len(longest) // 3)
    rss_start = sorted(longest[:third])[third // 2] / 1024
    rss_end = sorted(longest[-third:])[third // 2] / 1024
    truth = ground_truth(world, since_ms=since)
    counted = sum(data["terminal_jobs"] for data in truth["instances"].values())
    print(  # the figures of the closing note
        f"\nsoak {SOAK_SECONDS:g}s: jobs counted {counted}, faults injected {injected}, "
        f"restarts {figures.restarts}, read-only: {figures.read_only_phase}, "
        f"skew: {figures.skew_phases}, scrapes answered {figures.scrapes_answered}/"
        f"{figures.scrapes_while_up} ({answered:.4%}), RSS of the longest-lived process "
        f"{rss_start:.1f} -> {rss_end:.1f} MiB, mismatches: 0"
    )
    assert figures.restarts == 4
    # every scrape of a live process is answered: a kill is charged to nobody (the harness
    # clears the URL before the signal), so any failure here is the exporter's
    assert not figures.scrape_errors, figures.scrape_errors[:5]
    assert figures.scrapes_answered == figures.scrapes_while_up
    assert rss_end - rss_start < 15, f"memory grew {rss_start:.1f} -> {rss_end:.1f} MiB"
    assert sum(injected.get(k, 0) for k in ("throttle", "5xx", "reset", "truncate")) > 0
