"""Fixtures for the simulator's tests: a manual clock, seeded worlds, running simulators.

Nothing here touches a network beyond loopback: proxies are cleared for every test (the official
SDK and httpx both honour ``HTTP_PROXY``), and servers bind ``127.0.0.1`` on ephemeral ports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from exporter.simulator import (
    ManualClock,
    SimulatorServer,
    ThreadedSimulator,
    World,
    load_scenario,
    run_in_thread,
)

from .helpers import T0

_PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def small_world(clock: ManualClock) -> World:
    return World(load_scenario("small"), seed=7, now_ms=clock)


@pytest.fixture
def demo_world(clock: ManualClock) -> World:
    return World(load_scenario("demo"), seed=1, now_ms=clock)


@pytest.fixture
async def sim(small_world: World) -> AsyncIterator[SimulatorServer]:
    """The small world served on the running loop, control interface on."""
    async with SimulatorServer(small_world, control=True) as server:
        yield server


@pytest.fixture
def threaded_sim(small_world: World) -> Iterator[ThreadedSimulator]:
    """The small world served from a thread, for synchronous clients like the official SDK."""
    with run_in_thread(small_world, control=True) as runner:
        yield runner
