"""Shared by the tests of deploy/: the names the exporter really exposes, promtool, PromQL.

Exposed names come from a real exposition: the daemon runs in-process against the simulator
(as in tests/e2e/test_daemon.py) until its first poll is served, and is scraped over HTTP. Empty
families still carry their ``# TYPE`` line, so every family of the metric contract is known even
without samples (no poll error, say); their sample names are derived from the type (``_total``,
``_bucket``/``_sum``/``_count``…).
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import yaml
from e2e.support import simulator_credentials
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import Settings
from exporter.service.daemon import Daemon
from exporter.simulator import ManualClock, SimulatorServer, World, load_scenario

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z

ALWAYS_ALLOWED = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
"""Series Prometheus itself writes."""

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}


async def _scrape() -> str:
    clock = ManualClock(T0)
    world = World(load_scenario("small"), seed=3, now_ms=clock)
    with tempfile.TemporaryDirectory() as tmp:
        async with SimulatorServer(world) as simulator:
            key = simulator.access_key
            settings = Settings(
                instance_ids=[i.instance_id for i in world.instances],
                endpoint=simulator.base_url,
                poll_interval_seconds=0.1,
                state_file=Path(tmp) / "state.json",
                web_listen_address="127.0.0.1:0",
                api_rate_limit=0,
            )
            credentials = simulator_credentials(key)
            daemon = Daemon(settings, credentials=credentials, clock_ms=clock)
            stop = asyncio.Event()
            task = asyncio.create_task(daemon.run(stop))
            try:
                await asyncio.wait_for(daemon.started.wait(), 10)
                assert daemon.server is not None
                url = daemon.server.url + "/metrics"
                async with httpx.AsyncClient() as client:
                    for _ in range(200):  # at most 10 s: until the first poll is served
                        text = (await client.get(url)).text
                        if "idaas_sync_jobs_total{" in text:
                            return text
                        await asyncio.sleep(0.05)
                raise AssertionError("the exporter served no job counter within 10 s")
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)


@functools.cache
def exposition() -> str:
    """The text exposition of a daemon that polled the simulator once (cached per session)."""
    return asyncio.run(_scrape())


@functools.cache
def exposed_names() -> frozenset[str]:
    """Every sample name the exporter exposes (or would, for families without samples yet)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition()):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return frozenset(names)


# -- promtool -------------------------------------------------------------------------------


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is needed (Debian package prometheus; tests/run.sh installs it)"
    return path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, check=False, timeout=120
    )


def check_expressions(expressions: dict[str, str], directory: Path) -> None:
    """Fail unless promtool accepts every expression (each written as a recording rule)."""
    rules = {
        "groups": [
            {
                "name": "expressions-under-test",
                "rules": [
                    {"record": f"test:expression:{i}", "expr": expr}
                    for i, expr in enumerate(expressions.values())
                ],
            }
        ]
    }
    path = directory / "expressions.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    checked = run_promtool("check", "rules", path)
    if checked.returncode != 0:
        listing = "\n".join(
            f"{i} {name}: {expr}" for i, (name, expr) in enumerate(expressions.items())
        )
        raise AssertionError(f"{checked.stdout}{checked.stderr}\nexpressions:\n{listing}")


# -- PromQL ----------------------------------------------------------------------------------


def selector_names(expr: str) -> set[str]:
    """Metric names of every vector selector in *expr* (parsed, not pattern-matched)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.add(matcher.value)
            return
        for attribute in ("expr", "lhs", "rhs", "param", "vector_selector"):
            child = getattr(node, attribute, None)
            if child is not None:
                walk(child)
        for child in getattr(node, "args", None) or ():
            walk(child)

    walk(promql_parser.parse(expr))
    return names
