"""The daemon end to end, in-process, against the simulator: counters equal the ground truth,
restarts continue them, a failed state write publishes nothing, and the golden exposition."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.harness import parse_exposition
from exporter.config import Settings
from exporter.service.daemon import Daemon
from exporter.service.state_store import StateStore
from exporter.simulator import ManualClock, SimulatorServer, World, ground_truth, load_scenario

from .support import daemon_settings, mismatches, simulator_credentials, wait_until

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
MINUTE = 60_000
DAY = 24 * 60 * MINUTE
GOLDEN = Path(__file__).parent / "golden" / "small.prom"


@dataclass
class Running:
    daemon: Daemon
    stop: asyncio.Event
    task: asyncio.Task[int]

    @property
    def url(self) -> str:
        assert self.daemon.server is not None
        return self.daemon.server.url

    async def scrape(self) -> str:
        async with httpx.AsyncClient() as client:
            response = await client.get(
                self.url + "/metrics", headers={"accept-encoding": "identity"}
            )
        response.raise_for_status()
        return response.text

    async def shutdown(self) -> int:
        self.stop.set()
        return await self.task


@dataclass
class Rig:
    world: World
    clock: ManualClock
    simulator: SimulatorServer
    state_file: Path
    lookback_ms: int = 24 * 3600 * 1000

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "state_file": self.state_file,
            "target_names_refresh_seconds": 300,
            **overrides,
        }
        ids = [i.instance_id for i in self.world.instances]
        return daemon_settings(self.simulator.base_url, ids, **values)

    async def start(self, **overrides: Any) -> Running:
        credentials = simulator_credentials(self.simulator.access_key)
        daemon = Daemon(self.settings(**overrides), credentials=credentials, clock_ms=self.clock)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        started = asyncio.create_task(daemon.started.wait())
        done, _ = await asyncio.wait({task, started}, timeout=10, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()  # raises the start-up error
        assert started in done, "daemon did not start"
        return Running(daemon, stop, task)

    def truth(self) -> dict[str, Any]:
        return ground_truth(self.world, since_ms=T0 - self.lookback_ms)

    async def converge(self, running: Running, timeout: float = 15.0) -> None:
        last: list[str] = []

        async def equal() -> bool:
            nonlocal last
            last = mismatches(parse_exposition(await running.scrape()), self.truth())
            return not last

        try:
            await wait_until(equal, timeout=timeout, what="the exporter to match the ground truth")
        except AssertionError:
            raise AssertionError("\n".join(last[:20])) from None


@contextlib.asynccontextmanager
async def small_world(tmp_path: Path) -> AsyncIterator[Rig]:
    """The "small" scenario on a manual clock at T0, served with its control interface."""
    clock = ManualClock(T0)
    world = World(load_scenario("small"), seed=3, now_ms=clock)
    async with SimulatorServer(world, control=True) as simulator:
        yield Rig(world, clock, simulator, tmp_path / "state" / "state.json")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with small_world(tmp_path) as small:
        yield small


@pytest.fixture
async def demo_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """The demo's targets (every 10 min, hourly, daily, on demand, at random) and its 9 days of
    history, all read at the first poll (a lookback of 10 days)."""
    clock = ManualClock(T0)
    world = World(load_scenario("demo"), seed=5, now_ms=clock)
    async with SimulatorServer(world, control=True) as simulator:
        yield Rig(world, clock, simulator, tmp_path / "state" / "state.json", 10 * DAY)


async def test_cadence_follows_the_ground_truth_and_survives_a_restart(demo_rig: Rig) -> None:
    rig = demo_rig
    lookback = {"lookback_seconds": rig.lookback_ms / 1000}
    running = await rig.start(**lookback)
    try:
        await rig.converge(running, timeout=60)
        shown = parse_exposition(await running.scrape())
    finally:
        assert await running.shutdown() == 0
    schedules = {
        dict(labels)["schedule"]
        for (name, labels), value in shown.items()
        if name == "idaas_sync_target_schedule" and value == 1
    }
    assert schedules == {"regular", "irregular", "manual"}
    intervals = [
        value
        for (name, _labels), value in shown.items()
        if name == "idaas_sync_target_interval_seconds"
    ]
    for nominal in (600, 3600, 86400):  # the AD, DingTalk and the payroll push
        assert any(abs(value - nominal) < 0.05 * nominal for value in intervals), nominal
    # restarted with its state file, and time passing: the cadence is still the ground truth's
    rig.clock.advance(90 * MINUTE)
    running = await rig.start(**lookback)
    try:
        await rig.converge(running, timeout=60)
    finally:
        assert await running.shutdown() == 0


async def test_counters_follow_the_ground_truth_as_time_passes(rig: Rig) -> None:
    running = await rig.start()
    try:
        await rig.converge(running)
        for _ in range(6):
            rig.clock.advance(25 * MINUTE)
            await rig.converge(running)
    finally:
        assert await running.shutdown() == 0


async def test_restart_continues_counters_from_the_state_file(rig: Rig) -> None:
    running = await rig.start()
    await rig.converge(running)
    before = parse_exposition(await running.scrape())
    assert await running.shutdown() == 0
    assert rig.state_file.exists()

    rig.clock.advance(90 * MINUTE)  # jobs finish while the exporter is down
    running = await rig.start()
    try:
        # restored state is served at once, before the first poll: nothing goes backwards
        restored = parse_exposition(await running.scrape())
        for key, value in before.items():
            if key[0] == "idaas_sync_jobs_total":
                assert restored[key] == value
        async with httpx.AsyncClient() as client:
            assert (await client.get(running.url + "/-/ready")).status_code == 200
        await rig.converge(running)
    finally:
        await running.shutdown()


async def test_failed_state_write_publishes_nothing_new(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = await rig.start()
    try:
        await rig.converge(running)
        before = parse_exposition(await running.scrape())
        real_save = StateStore.save

        def broken(self: StateStore, instances: Any) -> int:
            raise OSError(30, "Read-only file system")

        monkeypatch.setattr(StateStore, "save", broken)
        rig.clock.advance(60 * MINUTE)

        async def down() -> bool:
            text = await running.scrape()
            return (
                'idaas_exporter_poll_errors_total{instance_id="' in text
                and re.search(r"idaas_exporter_up\{[^}]*\} 0", text) is not None
            )

        await wait_until(down, timeout=10, what="the failed write to show as a failed poll")
        during = parse_exposition(await running.scrape())
        for key, value in during.items():
            if key[0].startswith("idaas_sync_") and key[0].endswith("_total"):
                assert before.get(key) == value, f"{key} changed without being persisted"
        assert any(
            "StateWriteError" in str(k)
            for k in during
            if k[0].startswith("idaas_exporter_poll_errors")
        )
        monkeypatch.setattr(StateStore, "save", real_save)
        await rig.converge(running)
    finally:
        await running.shutdown()


def normalise(text: str) -> str:
    """Drop what depends on wall time, timing or the machine; keep everything the world fixes."""
    volatile = (
        "process_",
        "python_",
        "idaas_exporter_api_request",
        "idaas_exporter_http_connection",  # the cap depends on the descriptor limit
        "idaas_exporter_last_poll",
        "idaas_exporter_polls",
        "idaas_exporter_state_writes",
    )
    kept = []
    for line in text.splitlines():
        name = (
            line.split(" ", 3)[2] if line.startswith("#") else line.split("{", 1)[0].split(" ")[0]
        )
        if name.startswith(volatile):
            continue
        line = re.sub(r'version="[^"]*"', 'version="VERSION"', line)
        line = re.sub(r'python_version="[^"]*"', 'python_version="X"', line)
        line = re.sub(r"\(every [0-9.]+ s\)", "(every N s)", line)
        kept.append(line)
    return "\n".join(kept) + "\n"


async def test_golden_exposition(rig: Rig, tmp_path: Path) -> None:
    running = await rig.start()
    try:
        await rig.converge(running)
        # two more polls of every instance by the daemon's own pollers (one of them started
        # after convergence, so names are refreshed and nothing is pending); a poll run from
        # the test beside them would break the invariant that polls of an instance never
        # overlap
        daemon = running.daemon
        seen = {iid: status.polls.get("success", 0) for iid, status in daemon.status.items()}

        async def polled_twice_more() -> bool:
            return all(
                daemon.status[iid].polls.get("success", 0) >= count + 2
                for iid, count in seen.items()
            )

        await wait_until(polled_twice_more, timeout=20, what="two more polls of every instance")
        text = await running.scrape()
    finally:
        await running.shutdown()
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (Debian package prometheus; tests/run.sh installs it)"
    raw = tmp_path / "metrics.prom"
    raw.write_text(text)
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    actual = normalise(text)
    if not GOLDEN.exists():  # pragma: no cover - first run writes the golden file for review
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(actual)
        pytest.fail(f"golden file {GOLDEN} written; review and commit it")
    assert actual == GOLDEN.read_text()
