"""The exporter as a real process (``python -m exporter``) for the end-to-end tests.

Built on :class:`bench.harness.Process`, the one process harness the benchmarks use too: JSON
logs in a file, SIGTERM/SIGKILL, ``/proc`` readings. What the tests add is async waiting and
the bookkeeping a scraper needs across kills (:attr:`generation`).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

from bench.harness import Process, Series, child_env, parse_exposition
from exporter.simulator.runner import SimulatorServer, ThreadedSimulator

LOOKBACK_S = 2 * 86400


class ExporterProcess(Process):
    """``python -m exporter`` with JSON logs; knows its URL once it has started.

    The log goes to *log_dir* (default: the state file's directory; the soak, which makes that
    directory read-only, passes another one). *listen* is an ephemeral port unless given (a
    scrape target that must keep its address across restarts).
    """

    def __init__(
        self,
        simulator: ThreadedSimulator | SimulatorServer,
        instance_ids: list[str],
        state: Path,
        *,
        log_dir: Path | None = None,
        listen: str = "127.0.0.1:0",
    ) -> None:
        super().__init__([], (log_dir or state.parent) / f"exporter-{id(self):x}.log")
        self.server = simulator.server if isinstance(simulator, ThreadedSimulator) else simulator
        self.listen = listen
        self.instance_ids = instance_ids
        self.state = state
        self.url: str | None = None
        self.extra_env: dict[str, str] = {}
        self.extra_args: list[str] = []
        self.generation = 0
        """Incremented before every kill: a scrape that spans one failed because of it."""
        self.started_at: float | None = None
        """Unix time (from the log) at which the latest process started serving."""

    async def start(self) -> None:  # type: ignore[override]
        key = self.server.access_key
        self.env = child_env(
            {
                "ALIBABA_CLOUD_ACCESS_KEY_ID": key.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": key.access_key_secret,
                **self.extra_env,
            }
        )
        self.argv = [sys.executable, "-m", "exporter", *self.extra_args,
            "--endpoint", self.server.base_url,
            "--state.file", str(self.state),
            "--poll.interval-seconds", "0.2",
            "--poll.lookback-seconds", str(LOOKBACK_S),
            "--api.rate-limit", "0",
            "--api.max-attempts", "3",
            "--web.listen-address", self.listen,
            "--log.format", "json",
        ]  # fmt: skip
        for iid in self.instance_ids:
            self.argv += ["--instance-id", iid]
        self.read_events()
        seen = len(self.events)  # a restart appends to the same log: look past the old lines
        super().start()

        def started() -> str:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                for event in [*self.events[seen:], *self.read_events()]:
                    if event.get("event") == "idaas-sync-exporter started":
                        stamp = str(event["timestamp"]).replace("Z", "+00:00")
                        self.started_at = datetime.fromisoformat(stamp).timestamp()
                        return str(event["listen"])
                if not self.alive():
                    raise AssertionError("exporter exited at start-up:\n" + "\n".join(self.logs))
                time.sleep(0.02)
            raise AssertionError("no 'started' line within 20 s:\n" + "\n".join(self.logs))

        self.url = await asyncio.to_thread(started)

    @property
    def logs(self) -> list[str]:
        """Every line the process (and its predecessors under this object) wrote."""
        try:
            return self.log_path.read_text("utf-8", "replace").splitlines()
        except OSError:
            return []

    def events_named(self, name: str) -> list[dict[str, object]]:
        found = []
        for line in self.logs:
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    def send_signal(self, signum: int) -> None:
        assert self.popen is not None
        self.popen.send_signal(signum)

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    async def wait(self, timeout: float = 20) -> int:
        assert self.popen is not None
        return await asyncio.to_thread(self.popen.wait, timeout)

    async def kill(self) -> None:
        """SIGKILL. The process stops being "up" (``url`` cleared, ``generation`` bumped) in one
        step before the signal, with no await in between: a scraper that reads ``url`` and
        ``generation`` together can never pair the dying process's URL with a new generation."""
        self.url = None
        self.generation += 1
        self.send_signal(signal.SIGKILL)
        await self.wait()

    async def terminate(self) -> int:
        self.send_signal(signal.SIGTERM)
        return await self.wait()

    async def scrape(self) -> dict[Series, float] | None:
        if self.url is None:
            return None
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(self.url + "/metrics")
        except httpx.HTTPError:
            return None
        return parse_exposition(response.text)

    def rss_kib(self) -> int | None:
        return self.rss_kb()
