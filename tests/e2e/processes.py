"""The exporter as a real process (``python -m exporter``) for the end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx

from exporter.simulator.runner import ThreadedSimulator

from .support import Series, parse_exposition

LOOKBACK_S = 2 * 86400


class ExporterProcess:
    """``python -m exporter`` with JSON logs; knows its URL once it has started."""

    def __init__(self, simulator: ThreadedSimulator, instance_ids: list[str], state: Path) -> None:
        self.simulator = simulator
        self.instance_ids = instance_ids
        self.state = state
        self.process: asyncio.subprocess.Process | None = None
        self.url: str | None = None
        self.logs: list[str] = []
        self.extra_env: dict[str, str] = {}
        self.generation = 0
        """Incremented before every kill: a scrape that spans one failed because of it."""
        self.extra_args: list[str] = []

    async def start(self) -> None:
        key = self.simulator.server.access_key
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IDAAS_", "ALIBABA_"))}
        env.update(
            ALIBABA_CLOUD_ACCESS_KEY_ID=key.access_key_id,
            ALIBABA_CLOUD_ACCESS_KEY_SECRET=key.access_key_secret,
        )
        env.update(self.extra_env)
        args = [*self.extra_args,
            "--endpoint", self.simulator.server.base_url,
            "--state.file", str(self.state),
            "--poll.interval-seconds", "0.2",
            "--poll.lookback-seconds", str(LOOKBACK_S),
            "--api.rate-limit", "0",
            "--api.max-attempts", "3",
            "--web.listen-address", "127.0.0.1:0",
            "--log.format", "json",
        ]  # fmt: skip
        for iid in self.instance_ids:
            args += ["--instance-id", iid]
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", *args,
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.process.stderr is not None
        deadline = time.monotonic() + 20
        while self.url is None:
            line = await asyncio.wait_for(
                self.process.stderr.readline(), deadline - time.monotonic()
            )
            if not line:
                raise AssertionError("exporter exited at start-up:\n" + "\n".join(self.logs))
            text = line.decode(errors="replace").strip()
            self.logs.append(text)
            if text.startswith("{"):
                event = json.loads(text)
                if event.get("event") == "idaas-sync-exporter started":
                    self.url = event["listen"]
        asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.logs.append(line.decode(errors="replace").strip())

    async def kill(self) -> None:
        """SIGKILL. The process stops being "up" (``url`` cleared, ``generation`` bumped) in one
        step before the signal, with no await in between: a scraper that reads ``url`` and
        ``generation`` together can never pair the dying process's URL with a new generation."""
        assert self.process is not None
        self.url = None
        self.generation += 1
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 20)

    async def scrape(self) -> dict[Series, float] | None:
        if self.url is None:
            return None
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(self.url + "/metrics")
        except httpx.HTTPError:
            return None
        return parse_exposition(response.text)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def rss_kib(self) -> int | None:
        """VmRSS of the process in KiB, from /proc."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None
