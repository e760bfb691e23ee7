"""The simulator must never be a benchmark's bottleneck: 100k-job world build, memory, pages/s.

Build: ``World(load_scenario("bench-100k"))`` timed in this fresh interpreter (the runner gives
each benchmark its own); memory is the first build's RSS growth, garbage collected before and
after. Pages/s: the real ``simulate`` command (frozen heap, fragment cache, manual clock) pinned
to the second CPU gets V3-signed ``MaxResults=100`` requests from this process, on the first,
over four keep-alive connections: *hot* (walkers repeat an instance's newest ten pages, as
pollers with an overlap do) or *cold* (they split the 1,000 pages once; the 20,000-job fragment
cache cannot hold them: every job is rendered again). Clients: ``httpx.AsyncClient``, what a real
client costs (CPU share near 100 %: client-bound), and a minimal HTTP/1.1 client counting jobs
unparsed: the server's figure, with its CPU per page (``/proc``), one core's capacity. A cold
pass must see every job exactly once; each run is repeated and its median (by pages/s) reported.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from bench.harness import SimulatorProcess, cpu_plan, cpu_seconds, pin, proc_kb, row, running
from exporter.eiam.client import API_VERSION
from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider
from exporter.eiam.signing import AcsV3Auth
from exporter.simulator import DEMO_ACCESS_KEY, ManualClock, World, load_scenario

TITLE = "Simulator: 100k-job world build, memory, full pages served per second (issue 3)"
SCENARIO, TARGET_BUILD_S, TARGET_MB, TARGET_PAGES_S = "bench-100k", 5.0, 200.0, 300.0
HEADERS = {"x-acs-action": "ListSynchronizationJobs", "x-acs-version": API_VERSION}
CREDENTIAL = Credential(DEMO_ACCESS_KEY.access_key_id, SecretStr(DEMO_ACCESS_KEY.access_key_secret))
AUTH = AcsV3Auth(StaticCredentialsProvider(CREDENTIAL))
_NEXT = re.compile(rb'"NextToken":"([^"]+)"')
_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")
Fetch = Callable[[dict[str, str]], Awaitable[tuple[int, bytes]]]
"""One signed ListSynchronizationJobs request with these parameters: (status, body)."""


def measure_build(repeats: int) -> dict[str, Any]:
    """Build times, and the RSS growth (MB) of the first build with the world still alive."""
    gc.collect()
    before, builds, rss_mb = proc_kb(os.getpid()) or 0, [], 0.0
    for index in range(repeats):
        started = time.perf_counter()
        world = World(load_scenario(SCENARIO), seed=1, now_ms=ManualClock(1_735_689_600_000))
        builds.append(round(time.perf_counter() - started, 3))
        assert world.job_count() == 100_000, world.job_count()
        gc.collect()
        if index == 0:
            rss_mb = ((proc_kb(os.getpid()) or 0) - before) * 1024 / 1e6
        del world
        gc.collect()
    return {"seconds": builds, "median_seconds": statistics.median(builds), "rss_mb": rss_mb}


async def _minimal(port: int, stream: Any, params: dict[str, str]) -> tuple[int, bytes]:
    reader, writer = stream
    request = httpx.Request("POST", f"http://127.0.0.1:{port}/", params=params, headers=HEADERS)
    AUTH.sign(request, CREDENTIAL)
    head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
    writer.write(f"POST {request.url.raw_path.decode()} HTTP/1.1\r\n{head}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = _LENGTH.search(head)
    return int(head[9:12]), await reader.readexactly(int(length.group(1)) if length else 0)


async def _httpx(http: httpx.AsyncClient, params: dict[str, str]) -> tuple[int, bytes]:
    response = await http.post("/", params=params)
    return response.status_code, response.content


async def _walk(fetchers: list[Fetch], tasks: list[dict[str, str]], hot_s: float) -> list[int]:
    """Each walker pages its task once through (cold), or its first ten pages until *hot_s*."""
    done = [0, 0]  # pages, jobs

    async def walker(fetch: Fetch, params: dict[str, str]) -> None:
        deadline, token = time.perf_counter() + hot_s, None
        for depth in itertools.count(1):
            status, body = await fetch(params | ({"NextToken": token} if token else {}))
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
            done[0] += 1
            done[1] += body.count(b'"SynchronizationJobId"')
            match = _NEXT.search(body, 0, 400)  # NextToken precedes the jobs
            token = match.group(1).decode() if match and (depth % 10 or not hot_s) else None
            if token is None and (not hot_s or time.perf_counter() > deadline):
                return

    await asyncio.gather(*map(walker, fetchers, tasks))
    return done


async def _page(client: str, url: str, tasks: list[dict[str, str]], hot_s: float) -> list[int]:
    if client == "httpx":
        limits = httpx.Limits(max_connections=len(tasks), max_keepalive_connections=len(tasks))
        async with httpx.AsyncClient(base_url=url, auth=AUTH, headers=HEADERS, limits=limits,
                                     timeout=60.0, trust_env=False) as http:  # fmt: skip
            return await _walk([partial(_httpx, http)] * len(tasks), tasks, hot_s)
    port = httpx.URL(url).port or 80
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in tasks]
    try:
        return await _walk([partial(_minimal, port, stream) for stream in streams], tasks, hot_s)
    finally:
        for _, writer in streams:
            writer.close()


def measure_pages(sim: SimulatorProcess, quick: bool) -> dict[str, Any]:
    """Median (by pages/s) of the repetitions of each client × access pattern."""
    mid = sim.control("GET", "clock")["start_ms"] - load_scenario(SCENARIO).history // 2
    base = [{"InstanceId": instance, "MaxResults": "100"} for instance in sim.instances]
    cold = [b | half for half in ({"EndTime": str(mid - 1)}, {"StartTime": str(mid)}) for b in base]
    plans = {"hot": (base * 2, 2.0 if quick else 6.0), "cold": (cold, 0.0)}
    jobs, runs = sum(i["jobs"] for i in sim.control("GET", "world")["instances"]), {}
    for client, (mode, (tasks, hot_s)) in itertools.product(("httpx", "minimal"), plans.items()):
        attempts = []
        for _ in range(1 if quick else 3):
            server0, cpu0, wall0 = cpu_seconds(sim.pid), time.process_time(), time.perf_counter()
            pages, seen = asyncio.run(_page(client, sim.url, tasks, hot_s))
            wall, server = time.perf_counter() - wall0, cpu_seconds(sim.pid) - server0
            if not hot_s and seen != jobs:
                raise RuntimeError(f"a cold pass saw {seen} jobs of {jobs}")
            attempts.append({"pages": pages, "pages_per_second": round(pages / wall, 1),
                             "client_cpu_share": round((time.process_time() - cpu0) / wall, 3),
                             "server_cpu_ms_per_page": round(server / pages * 1e3, 3)})  # fmt: skip
        attempts.sort(key=lambda attempt: attempt["pages_per_second"])
        runs[f"{client}_{mode}"] = attempts[len(attempts) // 2] | {"all": attempts}
    return runs


def run(quick: bool) -> dict[str, Any]:
    client_cpu, server_cpu = cpu_plan()
    pinned = pin(0, client_cpu)
    build = measure_build(1 if quick else 3)
    with tempfile.TemporaryDirectory() as tmp:
        sim = SimulatorProcess(SCENARIO, Path(tmp, "sim.log"), cpu=server_cpu, manual_clock=True)
        with running(sim):
            sim.start()
            http = measure_pages(sim, quick)
            simulate = {"build": sim.find_event("simulated world built"), "rss_kb": sim.rss_kb()}
    seconds, rss, times = build["median_seconds"], build["rss_mb"], build["seconds"]
    spread = f"{min(times):.2f}–{max(times):.2f} s, n={len(times)}"
    rows = [
        row(f"world build, 100,000 jobs: median ({spread})", seconds, "s",
            f"< {TARGET_BUILD_S:g}", seconds < TARGET_BUILD_S),
        row("world memory: RSS growth of the first build", round(rss, 1), "MB",
            f"< {TARGET_MB:g}", rss < TARGET_MB),
    ]  # fmt: skip
    for key, r in http.items():
        client, mode = key.split("_")
        served, minimal = r["pages_per_second"], client == "minimal"
        target, ok = (f"≥ {TARGET_PAGES_S:g}", served >= TARGET_PAGES_S) if minimal else ("", None)
        share, ms = r["client_cpu_share"], r["server_cpu_ms_per_page"]
        cpus = f"client CPU {share:.0%}, server CPU {ms} ms/page"
        label = f"pages/s to {'a minimal client' if minimal else 'httpx clients'}, {mode} ({cpus})"
        rows.append(row(label, served, "pages/s", target, ok))
    figures = {"build": build, "http": http, "simulate_process": simulate, "pinned": pinned}
    figures["cpus"] = {"client": client_cpu, "server": server_cpu}
    return {"rows": rows, "figures": figures}
