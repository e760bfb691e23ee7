"""Run the simulator in this process: on the current event loop, or on a thread of its own.

Why two forms: async tests, benchmarks and ``--demo`` share an event loop with the simulator
(:class:`SimulatorServer`), while synchronous callers — the official Alibaba SDK above all —
block, so the simulator must serve from another thread (:func:`run_in_thread`).

>>> from exporter.simulator.clock import ManualClock
>>> from exporter.simulator.scenarios import load_scenario
>>> world = World(load_scenario("small"), seed=3, now_ms=ManualClock(1_735_689_600_000))
>>> with run_in_thread(world, control=True) as sim:
...     sim.base_url.startswith("http://127.0.0.1:")
True
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, Self, TypeVar

from exporter.simulator.auth import DEMO_ACCESS_KEY, DEMO_STS_KEY, AccessKey, Authenticator
from exporter.simulator.clock import Clock, wall_clock_ms
from exporter.simulator.control import ControlApi
from exporter.simulator.faults import FaultInjector, FaultPlan
from exporter.simulator.scenarios import load_scenario
from exporter.simulator.server import EiamApi
from exporter.simulator.world import World
from exporter.web.server import HTTPServer, Limits

__all__ = ["SimulatorServer", "ThreadedSimulator", "run_in_thread"]

T = TypeVar("T")


class SimulatorServer:
    """The simulated EIAM API on an HTTP server, in the running event loop.

    ``async with SimulatorServer(world, port=0) as sim:`` then point a client at
    ``sim.base_url`` with one of ``sim.access_keys`` (the demo keys by default). *faults* is a
    :class:`FaultPlan` or a ``--faults`` spec; ``sim.faults.set(...)`` switches it at run time.
    *control* enables ``/_sim`` (loopback peers only). *auth_clock_ms* is the clock signatures
    are checked against (the wall clock; move it to provoke ``InvalidTimeStamp.Expired``) — it
    is separate from the world's clock, which may be a manual one.
    """

    def __init__(
        self,
        world: World | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_keys: Sequence[AccessKey] | None = None,
        faults: FaultPlan | str | None = None,
        control: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        auth_clock_ms: Clock | None = None,
        limits: Limits | None = None,
        fragment_cache: int = 20_000,
    ) -> None:
        self.world = world if world is not None else World(load_scenario("demo"))
        plan = faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults)
        self.faults = FaultInjector(
            plan, clock=self.world.clock, default_seed=self.world.seed, world=self.world
        )
        self.access_keys = list(access_keys) if access_keys else [DEMO_ACCESS_KEY, DEMO_STS_KEY]
        self.authenticator = Authenticator(
            self.access_keys, clock_ms=auth_clock_ms or wall_clock_ms
        )
        self.api = EiamApi(
            self.world,
            authenticator=self.authenticator,
            faults=self.faults,
            fragment_cache=fragment_cache,
        )
        self.control: ControlApi | None = None
        if control:
            self.control = ControlApi(self.world, self.faults, api_stats=self.api.stats)
            self.api.control = self.control
        self.http = HTTPServer(
            self.api, host=host, port=port, ssl_context=ssl_context, limits=limits
        )

    @property
    def host(self) -> str:
        return self.http.host

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (https with an SSL context)."""
        return self.http.url

    @property
    def endpoint(self) -> str:
        """``host:port``, the form the official SDK's ``Config.endpoint`` takes."""
        return self.http.url.split("://", 1)[1]

    @property
    def control_url(self) -> str:
        return self.base_url + "/_sim"

    @property
    def access_key(self) -> AccessKey:
        """The first accepted credential (the demo AccessKey by default)."""
        return self.access_keys[0]

    async def start(self) -> None:
        await self.http.start()

    async def stop(self, grace: float = 5.0) -> None:
        await self.http.stop(grace)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class ThreadedSimulator:
    """A :class:`SimulatorServer` serving from its own thread and event loop."""

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # Convenience views of the server.
    @property
    def world(self) -> World:
        return self.server.world

    @property
    def faults(self) -> FaultInjector:
        return self.server.faults

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def access_key(self) -> AccessKey:
        return self.server.access_key

    def start(self, timeout: float = 10.0) -> None:
        started: Future[None] = Future()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._stop = asyncio.Event()
            try:
                loop.run_until_complete(self.server.start())
            except BaseException as exc:
                started.set_exception(exc)
                loop.close()
                return
            started.set_result(None)
            try:
                loop.run_until_complete(self._stop.wait())
                loop.run_until_complete(self.server.stop())
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="eiam-simulator", daemon=True)
        self._thread.start()
        started.result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run *fn* on the simulator's thread (for reads that must not race a request)."""
        assert self._loop is not None, "not started"
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
        self._thread = None


@contextlib.contextmanager
def run_in_thread(
    world: World | None = None,
    **server_options: Any,
) -> Iterator[ThreadedSimulator]:
    """Serve *world* from a background thread for the duration of the ``with`` block.

    *server_options* are those of :class:`SimulatorServer` (``port``, ``faults``, ``control``,
    ``access_keys``, ``auth_clock_ms``…).
    """
    server = SimulatorServer(world, **server_options)
    runner = ThreadedSimulator(server)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()
