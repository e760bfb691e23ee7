"""The simulator must never be the bottleneck of a benchmark: build time, memory, pages per second.

Issue 3, "Performance": a world of 100,000 historical jobs builds in < 5 s and fits in < 200 MB;
full 100-job pages of ``ListSynchronizationJobs`` are served at ≥ 300 pages/s on loopback.

What is measured, and how:

* **Build** — ``World(load_scenario("bench-100k"))`` (exactly 100,000 jobs), timed three times in
  this process (median reported), then its memory two ways: the RSS growth of a fresh child
  process (what the operating system sees) and ``tracemalloc``'s traced size after the build
  (what Python allocated; the tracing makes that build slower, so it is not timed).
* **Pages/s over HTTP** — the simulator runs in a child process (pinned to its own CPU when the
  machine has two), serving the 100k world; this process pages with ``httpx.AsyncClient``,
  every request V3-signed by the project's ``AcsV3Auth``, over keep-alive connections, each
  page ``MaxResults=100``. Two access patterns:

  - *hot*: walkers repeat the newest ten pages of an instance, like pollers with an overlap
    window (the server's fragment cache serves them);
  - *cold*: walkers page through all 100,000 jobs (1,000 pages) once, most jobs rendered for the
    first time.

  Each pattern runs three times; the median run is reported (all three are in the JSON).
  Reported: pages/s achieved, and the server process's CPU time per page (from its
  ``/proc``/psutil CPU counters), whose inverse is the page rate one server core can sustain
  whatever the client costs. The client (httpx, signing) shares no CPU with the server when
  pinning is possible, but it can still be the slower side: the CPU figure says which.
* **In-process** — the API handler alone (signature check, query, rendering), no socket:
  µs per full page, hot and cold.
* **httpserver** — serving a pre-rendered 20 kB body (what ``/metrics`` does): server CPU µs per
  request over pipelined keep-alive requests.

Run it::

    python -m bench --only simulator            # writes bench/results/simulator_bench.json
    python bench/simulator_bench.py [--quick]    # prints the figures
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import os
import re
import statistics
import sys
import time
import tracemalloc
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["NAME", "main", "run"]

NAME = "simulator_bench"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGET_BUILD_S = 5.0
TARGET_MEMORY_MB = 200.0
TARGET_PAGES_PER_S = 300.0
_TOKEN = re.compile(rb'"NextToken":"([^"]+)"')


# -- helpers ---------------------------------------------------------------------------------


def _pin(cpu: int | None) -> bool:
    if cpu is None:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        return False
    return True


def _cpu_plan() -> tuple[int | None, int | None]:
    """(client CPU, server CPU) when two distinct CPUs are available."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def _rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cpu_seconds(pid: int) -> float:
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except ImportError:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _world(scenario: str = "bench-100k") -> Any:
    from exporter.simulator import ManualClock, World, load_scenario

    return World(load_scenario(scenario), seed=1, now_ms=ManualClock(1_735_689_600_000))


# -- build and memory ------------------------------------------------------------------------


def _build_child(conn: Connection) -> None:
    """In a fresh process: RSS growth of one build, and the traced size of another."""
    import exporter.simulator  # noqa: F401 - imports are not the world's memory

    gc.collect()
    before = _rss_bytes()
    started = time.perf_counter()
    world = _world()
    seconds = time.perf_counter() - started
    gc.collect()
    rss = _rss_bytes() - before
    jobs = world.job_count()
    del world
    gc.collect()
    tracemalloc.start()
    traced_world = _world()
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    conn.send(
        {"jobs": jobs, "seconds": seconds, "rss_bytes": rss, "traced_bytes": traced,
         "traced_jobs": traced_world.job_count()}
    )  # fmt: skip
    conn.close()


def measure_build(repeats: int) -> dict[str, Any]:
    builds = []
    for _ in range(repeats):
        started = time.perf_counter()
        world = _world()
        builds.append(time.perf_counter() - started)
        assert world.job_count() == 100_000, world.job_count()
        del world
        gc.collect()
    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_build_child, args=(child,))
    process.start()
    fresh = parent.recv()
    process.join()
    return {
        "jobs": fresh["jobs"],
        "build_seconds_median": statistics.median(builds),
        "build_seconds_all": [round(b, 3) for b in builds],
        "build_seconds_fresh_process": fresh["seconds"],
        "rss_growth_mb": fresh["rss_bytes"] / 1e6,
        "tracemalloc_mb": fresh["traced_bytes"] / 1e6,
    }


# -- the server process ----------------------------------------------------------------------


def _server_child(conn: Connection, cpu: int | None, scenario: str, pre_rendered: bool) -> None:
    _pin(cpu)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if pre_rendered:
            from exporter.web.server import HTTPServer, Request, Response

            body = b"# HELP x y\n" + b"x 1\n" * 5000
            response = Response(200, [("content-type", "text/plain; version=0.0.4")], body[:20_000])

            async def handler(request: Request) -> Response:
                return response

            server: Any = HTTPServer(handler)
            await server.start()
            info: dict[str, Any] = {"port": server.port}
        else:
            from exporter.simulator import SimulatorServer

            world = _world(scenario)
            gc.collect()
            gc.freeze()  # as ``idaas-sync-exporter simulate`` does after building its world
            server = SimulatorServer(world)
            await server.start()
            info = {
                "port": server.port,
                "instances": [i.instance_id for i in world.instances],
                "jobs": world.job_count(),
            }
        conn.send(info)
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            if message == "clear-cache" and not pre_rendered:
                server.api.cache = type(server.api.cache)(server.api.cache.max_entries)
                conn.send("ok")
                continue
            break
        stop.set()
        await server.stop()

    asyncio.run(serve())


class ServerProcess:
    def __init__(self, cpu: int | None, scenario: str = "bench-100k", pre_rendered: bool = False):
        context = mp.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=_server_child, args=(child, cpu, scenario, pre_rendered), daemon=True
        )
        self.process.start()
        if not self._conn.poll(120):
            raise RuntimeError("the server process did not start")
        self.info: dict[str, Any] = self._conn.recv()
        self.port: int = self.info["port"]
        assert self.process.pid is not None
        self.pid: int = self.process.pid

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.pid)

    def restart_cache(self) -> None:
        """Empty the server's fragment cache so that a cold run renders every job again."""
        self._conn.send("clear-cache")
        self._conn.recv()

    def stop(self) -> None:
        self._conn.send("stop")
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()


# -- HTTP clients ----------------------------------------------------------------------------

Task = tuple[str, int | None, int | None]
"""(InstanceId, StartTime, EndTime): one walker's share of a listing."""


def _client(port: int, connections: int) -> Any:
    import httpx
    from pydantic import SecretStr

    from exporter.eiam.credentials import Credential, StaticCredentialsProvider
    from exporter.eiam.signing import AcsV3Auth
    from exporter.simulator import DEMO_ACCESS_KEY  # first: it breaks an import cycle

    credential = Credential(
        DEMO_ACCESS_KEY.access_key_id, SecretStr(DEMO_ACCESS_KEY.access_key_secret)
    )
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        auth=AcsV3Auth(StaticCredentialsProvider(credential)),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"x-acs-action": "ListSynchronizationJobs", "x-acs-version": "2021-12-01"},
        timeout=60.0,
        trust_env=False,
    )


def _params(task: Task, token: bytes | None, **extra: str) -> dict[str, str]:
    instance_id, start, end = task
    params = {"InstanceId": instance_id, "MaxResults": "100", **extra}
    if start is not None:
        params["StartTime"] = str(start)
    if end is not None:
        params["EndTime"] = str(end)
    if token:
        params["NextToken"] = token.decode()
    return params


def _count_and_token(status: int, body: bytes) -> tuple[int, bytes | None]:
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
    match = _TOKEN.search(body[:400])  # NextToken precedes the jobs array
    return body.count(b'"SynchronizationJobId"'), (match.group(1) if match else None)


async def _walk_httpx(port: int, tasks: list[Task], mode: str, seconds: float) -> tuple[int, int]:
    """Page every task (cold: once through; hot: its first ten pages, again and again)."""
    pages = jobs = 0
    async with _client(port, len(tasks)) as client:

        async def walker(task: Task) -> None:
            nonlocal pages, jobs
            deadline = time.perf_counter() + seconds
            while True:
                token = None
                for _ in range(10 if mode == "hot" else 1_000_000):
                    response = await client.post("/", params=_params(task, token))
                    count, token = _count_and_token(response.status_code, response.content)
                    pages += 1
                    jobs += count
                    if token is None:
                        break
                if mode == "cold" or time.perf_counter() >= deadline:
                    return

        await asyncio.gather(*(walker(t) for t in tasks))
    return pages, jobs


def _httpx_child(conn: Connection, port: int, tasks: list[Task], mode: str, seconds: float) -> None:
    conn.recv()  # start together
    started = time.perf_counter()
    pages, jobs = asyncio.run(_walk_httpx(port, tasks, mode, seconds))
    conn.send((pages, jobs, time.perf_counter() - started))


async def _walk_raw(port: int, tasks: list[Task], mode: str, seconds: float) -> tuple[int, int]:
    """The same walk with a minimal HTTP/1.1 client: measures the server, not httpx."""
    pages = jobs = 0
    host = f"127.0.0.1:{port}"

    async def walker(task: Task) -> None:
        nonlocal pages, jobs
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        deadline = time.perf_counter() + seconds
        try:
            while True:
                token = None
                for _ in range(10 if mode == "hot" else 1_000_000):
                    request = _signed_request(_params(task, token), host)
                    lines = [f"POST /?{request.query} HTTP/1.1"]
                    lines += [f"{k}: {v}" for k, v in request.headers.items()]
                    writer.write(("\r\n".join([*lines, "content-length: 0", "", ""])).encode())
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = re.search(rb"content-length: (\d+)", head.lower())
                    assert length is not None
                    body = await reader.readexactly(int(length.group(1)))
                    count, token = _count_and_token(int(head[9:12]), body)
                    pages += 1
                    jobs += count
                    if token is None:
                        break
                if mode == "cold" or time.perf_counter() >= deadline:
                    return
        finally:
            writer.close()

    await asyncio.gather(*(walker(t) for t in tasks))
    return pages, jobs


def _cold_tasks(port: int, instances: list[str], per_instance: int) -> list[Task]:
    """Split each instance's listing into *per_instance* disjoint StartTime windows."""

    async def bounds(instance_id: str) -> tuple[int, int]:
        async with _client(port, 1) as client:
            newest = await client.post("/", params={"InstanceId": instance_id, "MaxResults": "1"})
            body = newest.json()
            total = body["TotalCount"]
            oldest = await client.post(
                "/",
                params={"InstanceId": instance_id, "PageSize": "1", "PageNumber": str(total)},
            )
            return oldest.json()["SynchronizationJobs"][0]["StartTime"], body[
                "SynchronizationJobs"
            ][0]["StartTime"]

    tasks: list[Task] = []
    for instance_id in instances:
        low, high = asyncio.run(bounds(instance_id))
        edges = [low + (high + 1 - low) * i // per_instance for i in range(per_instance + 1)]
        tasks += [(instance_id, edges[i], edges[i + 1] - 1) for i in range(per_instance)]
    return tasks


def _run_httpx_processes(
    port: int, groups: list[list[Task]], mode: str, seconds: float, cpu: int | None
) -> dict[str, Any]:
    context = mp.get_context("spawn")
    pipes = []
    processes = []
    for tasks in groups:
        parent, child = context.Pipe()
        process = context.Process(target=_httpx_child, args=(child, port, tasks, mode, seconds))
        process.start()
        if cpu is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(process.pid or 0, {cpu})
        pipes.append(parent)
        processes.append(process)
    time.sleep(1.0)  # let the children import httpx before the clock starts
    for parent in pipes:
        parent.send("go")
    results = [parent.recv() for parent in pipes]
    for process in processes:
        process.join()
    pages = sum(r[0] for r in results)
    jobs = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results)
    return {"pages": pages, "jobs": jobs, "seconds": elapsed, "client_processes": len(groups)}


def measure_http(quick: bool, client_cpu: int | None, server_cpu: int | None) -> dict[str, Any]:
    server = ServerProcess(server_cpu)
    try:
        instances: list[str] = server.info["instances"]
        seconds = 2.0 if quick else 6.0
        cold_tasks = _cold_tasks(server.port, instances, 2)  # 4 disjoint windows
        hot_tasks: list[Task] = [(instances[i % len(instances)], None, None) for i in range(4)]
        # httpx: two client processes of two connections each, pinned away from the server.
        runs: dict[str, Any] = {}
        plans = {
            "httpx_cold": lambda: _run_httpx_processes(
                server.port, [cold_tasks[0::2], cold_tasks[1::2]], "cold", 0, client_cpu
            ),
            "httpx_hot": lambda: _run_httpx_processes(
                server.port, [hot_tasks[0::2], hot_tasks[1::2]], "hot", seconds, client_cpu
            ),
            "raw_cold": lambda: _timed(_walk_raw(server.port, cold_tasks, "cold", 0)),
            "raw_hot": lambda: _timed(_walk_raw(server.port, hot_tasks, "hot", seconds)),
        }
        repetitions = 1 if quick else 3
        for name, plan in plans.items():
            attempts = []
            for _ in range(repetitions):
                if name.endswith("cold"):
                    server.restart_cache()
                cpu_before = server.cpu_seconds()
                figures = plan()
                cpu = server.cpu_seconds() - cpu_before
                figures["pages_per_second"] = figures["pages"] / figures["seconds"]
                figures["server_cpu_ms_per_page"] = cpu / figures["pages"] * 1000
                capacity = figures["pages"] / cpu if cpu else None
                figures["server_capacity_pages_per_second"] = capacity
                if name.endswith("cold"):
                    assert figures["jobs"] == server.info["jobs"], figures
                attempts.append(figures)
            # The median repetition by pages/s: a noisy neighbour moves single runs a lot.
            attempts.sort(key=lambda f: f["pages_per_second"])
            runs[name] = {
                **attempts[len(attempts) // 2],
                "pages_per_second_all": [round(f["pages_per_second"], 1) for f in attempts],
            }
        return runs
    finally:
        server.stop()


def _timed(walk: Any) -> dict[str, Any]:
    started = time.perf_counter()
    pages, jobs = asyncio.run(walk)
    return {"pages": pages, "jobs": jobs, "seconds": time.perf_counter() - started}


def _signed_request(params: dict[str, str], host: str = "127.0.0.1:1") -> Any:
    """A V3-signed request object for the API handler, signed with the demo key."""
    from datetime import UTC, datetime

    from exporter.eiam.encoding import canonical_query_string, parse_query_string
    from exporter.eiam.signing import (
        EMPTY_BODY_SHA256,
        V3Authorization,
        canonical_request,
        format_acs_date,
        new_nonce,
        signed_header_names,
        v3_signature,
    )
    from exporter.simulator import DEMO_ACCESS_KEY  # first: it breaks an import cycle
    from exporter.web.server import Request

    query = canonical_query_string(params)
    headers = {
        "host": host,
        "x-acs-action": "ListSynchronizationJobs",
        "x-acs-version": "2021-12-01",
        "x-acs-date": format_acs_date(datetime.now(UTC)),
        "x-acs-signature-nonce": new_nonce(),
        "x-acs-content-sha256": EMPTY_BODY_SHA256,
    }
    names = signed_header_names(headers)
    canonical = canonical_request(
        "POST", "/", parse_query_string(query), headers, names, EMPTY_BODY_SHA256
    )
    signature = v3_signature(DEMO_ACCESS_KEY.access_key_secret, canonical)
    headers["authorization"] = V3Authorization(
        DEMO_ACCESS_KEY.access_key_id, tuple(names), signature
    ).header_value()
    return Request("POST", "/?" + query, "/", query, headers, peer=("127.0.0.1", 1))


def measure_handler(quick: bool) -> dict[str, Any]:
    """µs per full page in the API handler alone: signature, query, rendering, no socket."""
    from exporter.simulator import SimulatorServer

    world = _world()
    instance = world.instances[0]
    count = 100 if quick else 400

    async def pages(sim: SimulatorServer, walk: bool) -> float:
        token = None
        started = time.perf_counter()
        for _ in range(count):
            params = {"InstanceId": instance.instance_id, "MaxResults": "100"}
            if token and walk:
                params["NextToken"] = token
            response = await sim.api.handle_api(_signed_request(params))
            body: bytes = response.body  # type: ignore[union-attr]
            match = _TOKEN.search(body[:400])
            token = match.group(1).decode() if match else None
        return (time.perf_counter() - started) / count * 1e6

    # Cold: no fragment cache, walking forward so that every page holds jobs never rendered.
    cold = asyncio.run(pages(SimulatorServer(world, fragment_cache=0), walk=True))
    hot_sim = SimulatorServer(world)
    asyncio.run(pages(hot_sim, walk=False))  # fill the cache with the first page
    hot = asyncio.run(pages(hot_sim, walk=False))
    return {"cold_us_per_page": cold, "hot_us_per_page": hot}


# -- httpserver ------------------------------------------------------------------------------


def measure_httpserver(quick: bool, server_cpu: int | None) -> dict[str, Any]:
    server = ServerProcess(server_cpu, pre_rendered=True)
    try:
        requests = 5_000 if quick else 20_000

        async def blast() -> float:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            request = b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n"
            started = time.perf_counter()
            batch = 50
            for _ in range(requests // batch):
                writer.write(request * batch)
                for _ in range(batch):
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
                    await reader.readexactly(length)
            elapsed = time.perf_counter() - started
            writer.close()
            return elapsed

        before = server.cpu_seconds()
        elapsed = asyncio.run(blast())
        cpu = server.cpu_seconds() - before
        return {
            "requests": requests,
            "body_bytes": 20_000,
            "requests_per_second": requests / elapsed,
            "server_cpu_us_per_request": cpu / requests * 1e6,
        }
    finally:
        server.stop()


# -- report ----------------------------------------------------------------------------------


def run(*, quick: bool = False) -> dict[str, Any]:
    client_cpu, server_cpu = _cpu_plan()
    pinned = _pin(client_cpu)
    build = measure_build(1 if quick else 3)
    http = measure_http(quick, client_cpu, server_cpu)
    handler = measure_handler(quick)
    httpserver = measure_httpserver(quick, server_cpu)
    doc: dict[str, Any] = {
        "benchmark": NAME,
        "title": "Simulator: 100k-job world build, memory, pages served per second",
        "pinning": {"pinned": pinned, "client_cpu": client_cpu, "server_cpu": server_cpu},
        "settings": {"quick": quick, "scenario": "bench-100k", "page_size": 100},
        "build": build,
        "http": http,
        "handler": handler,
        "httpserver": httpserver,
    }
    doc["summary"] = [
        _row("world build (100k jobs), median", build["build_seconds_median"], "s",
             f"< {TARGET_BUILD_S:g}", build["build_seconds_median"] < TARGET_BUILD_S),
        _row("world memory, RSS growth", build["rss_growth_mb"], "MB",
             f"< {TARGET_MEMORY_MB:g}", build["rss_growth_mb"] < TARGET_MEMORY_MB),
        _row("world memory, tracemalloc", build["tracemalloc_mb"], "MB",
             f"< {TARGET_MEMORY_MB:g}", build["tracemalloc_mb"] < TARGET_MEMORY_MB),
        _row("pages/s, httpx clients, hot (newest pages)", http["httpx_hot"]["pages_per_second"],
             "pages/s", f">= {TARGET_PAGES_PER_S:g}",
             http["httpx_hot"]["pages_per_second"] >= TARGET_PAGES_PER_S),
        _row("pages/s, httpx clients, cold (all 100k jobs)", http["httpx_cold"]["pages_per_second"],
             "pages/s", f">= {TARGET_PAGES_PER_S:g}",
             http["httpx_cold"]["pages_per_second"] >= TARGET_PAGES_PER_S),
        _row("pages/s, minimal client, hot", http["raw_hot"]["pages_per_second"], "pages/s",
             "", None),
        _row("pages/s, minimal client, cold", http["raw_cold"]["pages_per_second"], "pages/s",
             "", None),
        _row("server CPU per page, hot", http["raw_hot"]["server_cpu_ms_per_page"], "ms", "", None),
        _row("server CPU per page, cold", http["raw_cold"]["server_cpu_ms_per_page"], "ms", "",
             None),
        _row("handler only, hot page", handler["hot_us_per_page"], "µs", "", None),
        _row("handler only, cold page", handler["cold_us_per_page"], "µs", "", None),
        _row("httpserver pre-rendered 20 kB, server CPU", httpserver["server_cpu_us_per_request"],
             "µs/request", "< 1000", httpserver["server_cpu_us_per_request"] < 1000),
    ]  # fmt: skip
    return doc


def _row(metric: str, value: float, unit: str, target: str, ok: bool | None) -> dict[str, Any]:
    return {"metric": metric, "value": round(value, 3), "unit": unit, "target": target, "ok": ok}


def render(doc: dict[str, Any]) -> str:
    pin = doc["pinning"]
    lines = [
        doc["title"],
        f"  pinning: client CPU {pin['client_cpu']}, server CPU {pin['server_cpu']}"
        if pin["pinned"]
        else "  pinning: not possible (client and server share CPUs)",
    ]
    width = max(len(row["metric"]) for row in doc["summary"])
    for row in doc["summary"]:
        verdict = "" if row["ok"] is None else ("met" if row["ok"] else "MISSED")
        target = f"(target {row['target']})" if row["target"] else ""
        lines.append(
            f"  {row['metric']:<{width}}  {row['value']:>10,.2f} {row['unit']:<10} "
            f"{target} {verdict}".rstrip()
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simulator_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke-sized run")
    args = parser.parse_args(argv)
    doc = run(quick=args.quick or os.environ.get("BENCH_QUICK") == "1")
    try:
        from bench.environment import environment

        doc["environment"] = environment()
    except ImportError:
        pass
    print(render(doc))
    directory = Path(os.environ.get("BENCH_RESULTS_DIR") or RESULTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{NAME}.json"
    target.write_text(json.dumps(doc, indent=2, default=str) + "\n", "utf-8")
    print(f"result: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
