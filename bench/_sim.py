"""What the budget, freshness and back-fill benchmarks share beyond :mod:`bench.harness`."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench.harness import DaemonProcess, SimulatorProcess, cpu_plan, running, write_scenario
from exporter.eiam.client import EiamClient
from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider
from exporter.simulator.auth import DEMO_ACCESS_KEY


def demo_client(url: str, **options: Any) -> EiamClient:
    """The project's client with the simulator's demo key (unlimited unless *options* say)."""
    key = DEMO_ACCESS_KEY
    credential = Credential(key.access_key_id, SecretStr(key.access_key_secret), source="bench")
    return EiamClient(url, StaticCredentialsProvider(credential), **options)


@contextlib.contextmanager
def simulator(
    scenario: Mapping[str, Any], **options: Any
) -> Iterator[tuple[SimulatorProcess, Path, int | None]]:
    """A started simulator process of *scenario* on its own CPU (when there are two): yields
    it, a scratch directory and the CPU left for the daemon."""
    daemon_cpu, simulator_cpu = cpu_plan()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        path = write_scenario(work / "scenario.json", scenario)
        process = SimulatorProcess(path, work / "simulator.log", cpu=simulator_cpu, **options)
        with running(process):
            process.start()
            yield process, work, daemon_cpu


def daemon(sim: SimulatorProcess, log: Path, cpu: int | None, **settings: Any) -> DaemonProcess:
    """The real daemon (not started) polling every instance of *sim*, on *cpu*."""
    return DaemonProcess(
        log, instance_ids=sim.instances, endpoint=sim.url, cpu=cpu, settings=settings
    )
