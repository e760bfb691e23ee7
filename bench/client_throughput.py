"""Fetch-and-parse throughput of ListSynchronizationJobs: our client against the official SDK.

Issue 2, "Benchmark": full 100-job pages with every statistics block, from a loopback server,
reported as jobs/s and µs per page; target ≥ 20,000 jobs/s on one core and ≥ 2× the official SDK
(``alibabacloud_eiam20211201``) measured on the same pages in the same run.

How the run is made honest:

* **One core each.** This process is pinned to one CPU and the page server
  (:mod:`bench.pageserver`, a separate process) to another, so the client's figure is what one
  core does. The server's own ceiling is measured first: if it were close to the client's
  figure, the benchmark would be measuring the server.
* **Same pages, same run.** Every client pages through the same pre-encoded pages (~210 KB
  each, chained by NextToken) from the same server process, and each client's first pass is
  checked to return every job exactly once.
* **Phase A — ours alone.** Our client before the SDK is even imported (the exporter never
  loads it, and its ~50,000 extra heap objects make every full garbage collection slower);
  this is the figure for the absolute target. Interleaved with it run two baselines that use a
  bare ``httpx.AsyncClient`` with the same settings: *fetch only* and *fetch +
  model_validate_json*. They split our time into transport, parsing and client overhead.
* **Phase B — same heap, interleaved.** The SDK is imported and repetitions alternate (ours,
  SDK sync, SDK async, ours, ...) so that the drift of a noisy virtual machine hits every client
  alike; the ours/SDK ratio comes from this phase.
* **Phase C — what-if, garbage collector tuned.** ``gc.freeze()`` plus a gen-0 threshold of
  10,000, as a daemon could set at start-up, applied to ours and the SDK alike. It is reported
  separately and never replaces the figures above: it shows how much of each client's time is
  the collector's.
* **Repetitions, not one lucky run.** Warm-up repetitions are discarded; the report gives the
  median and p90 (nearest rank) of µs per page over the counted repetitions, with their number,
  plus a CPU-steadiness calibration (a fixed loop timed before and after).

Parse-only costs (our ``model_validate_json`` against the SDK's ``json.loads`` + ``from_map``,
rotating 20 distinct pages so no string cache is flattered) and the cost of request preparation
+ V3 signing are measured on their own; full runs also write a cProfile listing of one paging
run of our client to ``bench/results/client_throughput.profile.txt``.

Run it::

    python -m bench --only client_throughput           # the usual way (writes REPORT.md too)
    python -m bench.client_throughput [--quick] [--no-profile] [--no-gc-what-if]
                                      [--pages N] [--repetitions N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import math
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.environment import environment, one_line
from bench.pageserver import (
    INSTANCE_ID,
    JOBS_PER_PAGE,
    ServerProcess,
    fetch_raw,
    measure_ceiling,
    page_token,
    start_server_process,
)

__all__ = ["NAME", "Settings", "main", "render", "run"]

NAME = "client_throughput"
TARGET_JOBS_PER_SECOND = 20_000.0
TARGET_RATIO = 2.0
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ACCESS_KEY_ID = "LTAI5tBenchmarkKeyId00000"
ACCESS_KEY_SECRET = "bench-secret-not-a-real-one"
TUNED_GC_THRESHOLD = (10_000, 10, 10)
"""Phase C's gen-0/1/2 thresholds (CPython's default is 700, 10, 10)."""

CONTENDED_CPU_SHARE = 0.85
"""Below this share of wall time on CPU, a client waited for something else than the server."""

PageAll = Callable[[], tuple[int, int]]


@dataclass(frozen=True)
class Settings:
    """Sizes of one run. ``quick`` shrinks everything to a smoke run of a few seconds."""

    pages: int = 200
    repetitions: int = 9
    sdk_repetitions: int = 7
    warmup: int = 2
    parse_iterations: int = 150
    gc_what_if: bool = True
    profile: bool = True

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            pages=40, repetitions=3, sdk_repetitions=3, warmup=1, parse_iterations=30, profile=False
        )


# -- measuring helpers ------------------------------------------------------------------------


class GcMeter:
    """Counts garbage collections per generation and the time spent in them (``gc.callbacks``).

    Why: a full page creates thousands of objects, so the cyclic collector runs several times
    per page, and a full collection walks the whole heap. Reporting it separately tells "the
    parser is slow" apart from "the collector is busy".
    """

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[min(int(info.get("generation", 2)), 2)] += 1

    @contextlib.contextmanager
    def measuring(self) -> Iterator[GcMeter]:
        self.collections, self.seconds = [0, 0, 0], 0.0
        gc.callbacks.append(self)
        try:
            yield self
        finally:
            gc.callbacks.remove(self)


@dataclass
class Repetition:
    """One full paging run of one client."""

    wall_seconds: float
    cpu_seconds: float
    gc_seconds: float
    gc_collections: list[int]
    jobs: int
    pages: int


@dataclass
class ClientFigures:
    """All counted repetitions of one client and the statistics derived from them."""

    label: str
    note: str = ""
    repetitions: list[Repetition] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        if not self.repetitions:
            return {"label": self.label, "note": self.note, "count": 0, "error": self.error}
        reps = self.repetitions
        us_page = sorted(r.wall_seconds / r.pages * 1e6 for r in reps)
        median_us = statistics.median(us_page)
        p90_us = _nearest_rank(us_page, 0.9)
        cpu_us = statistics.median(r.cpu_seconds / r.pages * 1e6 for r in reps)
        return {
            "label": self.label,
            "note": self.note,
            "count": len(reps),
            "pages_per_repetition": reps[0].pages,
            "jobs_per_repetition": reps[0].jobs,
            "us_per_page_median": round(median_us, 1),
            "us_per_page_p90": round(p90_us, 1),
            "us_per_page_min": round(us_page[0], 1),
            "jobs_per_second_median": round(JOBS_PER_PAGE / median_us * 1e6, 1),
            "jobs_per_second_p90": round(JOBS_PER_PAGE / p90_us * 1e6, 1),
            "cpu_us_per_page_median": round(cpu_us, 1),
            "jobs_per_cpu_second_median": round(JOBS_PER_PAGE / cpu_us * 1e6, 1),
            "cpu_share_median": round(
                statistics.median(r.cpu_seconds / r.wall_seconds for r in reps), 3
            ),
            "gc_us_per_page_median": round(
                statistics.median(r.gc_seconds / r.pages * 1e6 for r in reps), 1
            ),
            "gc_collections_per_page_by_generation": [
                round(statistics.median(r.gc_collections[g] / r.pages for r in reps), 3)
                for g in range(3)
            ],
            "error": self.error,
        }


def _nearest_rank(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (p90 of 9 values is the largest)."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _measure(meter: GcMeter, page_all: PageAll) -> Repetition:
    with meter.measuring():
        cpu0, wall0 = time.process_time(), time.perf_counter()
        jobs, pages = page_all()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Repetition(wall, cpu, meter.seconds, list(meter.collections), jobs, pages)


def _interleave(
    meter: GcMeter,
    runners: dict[str, PageAll],
    figures: dict[str, ClientFigures],
    counts: dict[str, int],
) -> dict[str, Any]:
    """Run repetition i of every client before repetition i + 1 of any (drift hits all).

    Between rounds a short fixed loop is timed and the per-CPU steal is sampled, so the phase
    reports how fast the machine itself was while it ran (see :func:`calibrate`).
    """
    reference: list[float] = []
    ticks = _cpu_ticks()
    for index in range(max(counts.values(), default=0)):
        for key, page_all in runners.items():
            if index < counts[key]:
                figures[key].repetitions.append(_measure(meter, page_all))
        reference.append(calibrate(3)["median_ms"])
    return {
        "reference_loop_ms_median": round(statistics.median(reference), 3) if reference else None,
        "reference_loop_ms_range": [min(reference), max(reference)] if reference else None,
        "cpus": _steal_percent(ticks, _cpu_ticks()),
    }


def _per_call_us(function: Callable[[], object], iterations: int, repeats: int = 5) -> float:
    """Median µs per call over *repeats* timed batches, garbage collector left enabled.

    ``timeit`` disables the collector; here it stays on because the clients run with it on and
    the collector is part of what parsing a page costs.
    """
    function()
    batches = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(iterations):
            function()
        batches.append((time.perf_counter() - started) / iterations * 1e6)
    return statistics.median(batches)


def _pin(cpu: int) -> bool:
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        return False
    return True


def _cpu_plan() -> tuple[int | None, int | None]:
    """(client CPU, server CPU): two distinct CPUs when this process may use two or more."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(cpus) >= 2:
        return cpus[0], cpus[1]
    return None, None


def _drop_proxy_environment() -> None:
    """The SDK reads ``HTTP_PROXY`` itself; a proxy must never sit between us and loopback."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ.pop(name, None)
        os.environ.pop(name.lower(), None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


@contextlib.contextmanager
def _tuned_gc() -> Iterator[None]:
    """Phase C: what a daemon could do at start-up — freeze the heap, raise the gen-0 threshold."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*TUNED_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def calibrate(runs: int = 25) -> dict[str, float]:
    """Time a fixed pure-Python loop to show how steady this CPU is right now.

    Why: on a shared virtual machine the same code can take 50 % longer from one second to the
    next (noisy neighbours, steal). A large spread here means the figures have that spread too.
    """

    def work() -> int:
        total = 0
        for i in range(100_000):
            total += i * i
        return total

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1e3)
    return {
        "runs": runs,
        "median_ms": round(statistics.median(times), 3),
        "min_ms": round(min(times), 3),
        "max_ms": round(max(times), 3),
        "cv_percent": round(statistics.pstdev(times) / statistics.mean(times) * 100, 1),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_ticks() -> dict[str, list[int]]:
    """Per-CPU tick counters from ``/proc/stat`` (empty off Linux)."""
    try:
        lines = Path("/proc/stat").read_text(encoding="ascii").splitlines()
    except OSError:
        return {}
    return {
        parts[0]: [int(x) for x in parts[1:9]]
        for parts in (line.split() for line in lines)
        if parts and parts[0].startswith("cpu")
    }


def _steal_percent(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, Any]:
    """Share of each CPU's time stolen by the hypervisor (and busy share) between two samples.

    Why: on a virtual machine a neighbour can take the physical core away; that shows up here
    as steal, and the figures of that run are then slower than the code is.
    """
    shares: dict[str, Any] = {}
    for cpu, ticks in after.items():
        if cpu not in before:
            continue
        delta = [a - b for a, b in zip(ticks, before[cpu], strict=True)]
        total = sum(delta)
        if total > 0:
            idle = delta[3] + delta[4]
            shares[cpu] = {
                "steal_percent": round(delta[7] / total * 100, 1),
                "busy_percent": round((total - idle - delta[7]) / total * 100, 1),
            }
    return shares


# -- our client and the bare-httpx baselines ------------------------------------------------


class OursRunner:
    """Our :class:`~exporter.eiam.client.EiamClient` with production settings, rate limit off."""

    def __init__(self, loop: asyncio.AbstractEventLoop, base_url: str) -> None:
        from pydantic import SecretStr

        from exporter.eiam.client import EiamClient
        from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider
        from exporter.eiam.ratelimit import RateLimiter

        self._loop = loop
        self.credential = Credential(ACCESS_KEY_ID, SecretStr(ACCESS_KEY_SECRET), source="bench")
        provider = StaticCredentialsProvider(self.credential)
        self.client = EiamClient(base_url, provider, rate_limiter=RateLimiter(None))

    def page_all(self) -> tuple[int, int]:
        return self._loop.run_until_complete(self._page_all())

    async def _page_all(self) -> tuple[int, int]:
        jobs = pages = 0
        async for page in self.client.list_synchronization_job_pages(INSTANCE_ID):
            jobs += len(page.synchronization_jobs)
            pages += 1
        return jobs, pages

    def iterate_jobs(self) -> tuple[int, int]:
        """The job iterator (``list_synchronization_jobs``): one job at a time, pages counted."""
        return self._loop.run_until_complete(self._iterate_jobs())

    async def _iterate_jobs(self) -> tuple[int, int]:
        jobs = 0
        async for _job in self.client.list_synchronization_jobs(INSTANCE_ID):
            jobs += 1
        return jobs, math.ceil(jobs / JOBS_PER_PAGE)

    def keep_all(self) -> tuple[int, int]:
        """The poller's pattern: every job of every page kept in one list until the end."""
        return self._loop.run_until_complete(self._keep_all())

    async def _keep_all(self) -> tuple[int, int]:
        jobs: list[Any] = []
        pages = 0
        async for page in self.client.list_synchronization_job_pages(INSTANCE_ID):
            jobs.extend(page.synchronization_jobs)
            pages += 1
        return len(jobs), pages

    def distinct_ids(self) -> int:
        async def collect() -> set[str]:
            return {
                job.synchronization_job_id
                async for job in self.client.list_synchronization_jobs(INSTANCE_ID)
            }

        return len(self._loop.run_until_complete(collect()))

    def close(self) -> None:
        self._loop.run_until_complete(self.client.aclose())


class HttpxBaseline:
    """A bare ``httpx.AsyncClient`` (our client's settings) fetching the same pages unsigned.

    ``fetch_only`` reads each body and drops it; ``fetch_and_parse`` adds
    ``ListSynchronizationJobsResponse.model_validate_json``. Our client minus the latter is
    what signing, retries, deadlines, error checks, paging checks and logging cost.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, base_url: str, pages: int) -> None:
        import httpx

        from exporter.eiam.client import ClientTimeouts
        from exporter.eiam.models import ListSynchronizationJobsResponse

        self._loop = loop
        self._model = ListSynchronizationJobsResponse
        self._http = httpx.AsyncClient(timeout=ClientTimeouts().httpx(), trust_env=False)
        query = f"InstanceId={INSTANCE_ID}&MaxResults=100"
        self._urls = [f"{base_url}/?{query}"] + [
            f"{base_url}/?{query}&NextToken={page_token(i)}" for i in range(1, pages)
        ]

    def fetch_only(self) -> tuple[int, int]:
        return self._loop.run_until_complete(self._run(parse=False))

    def fetch_and_parse(self) -> tuple[int, int]:
        return self._loop.run_until_complete(self._run(parse=True))

    async def _run(self, *, parse: bool) -> tuple[int, int]:
        jobs = 0
        for url in self._urls:
            response = await self._http.post(url)
            if parse:
                jobs += len(self._model.model_validate_json(response.content).synchronization_jobs)
            elif len(response.content) < 1_000:
                raise RuntimeError(f"short page from {url}")
            else:
                jobs += JOBS_PER_PAGE
        return jobs, len(self._urls)

    def close(self) -> None:
        self._loop.run_until_complete(self._http.aclose())


def prepare_and_sign_us(runner: OursRunner, base_url: str) -> float:
    """µs for what our client does before each request: flatten, canonical query, build, sign."""
    import httpx

    from exporter.eiam.client import API_VERSION
    from exporter.eiam.encoding import canonical_query_string, flatten_params
    from exporter.eiam.signing import AcsV3Auth

    auth = AcsV3Auth(runner.client.credentials)
    endpoint = httpx.URL(base_url + "/")
    http = httpx.AsyncClient(trust_env=False)
    params = {"InstanceId": INSTANCE_ID, "MaxResults": 100, "NextToken": page_token(1)}

    def prepare_and_sign() -> object:
        query = canonical_query_string(flatten_params(params))
        request = http.build_request(
            "POST",
            endpoint.copy_with(query=query.encode("ascii")),
            headers={"x-acs-action": "ListSynchronizationJobs", "x-acs-version": API_VERSION},
        )
        auth.sign(request, runner.credential)
        return request

    return _per_call_us(prepare_and_sign, 500)


# -- the official SDK -----------------------------------------------------------------------


class SdkRunner:
    """The official ``alibabacloud_eiam20211201`` client, sync or async, paging by NextToken.

    The SDK's async variant opens a new aiohttp session (and TCP connection) for every call;
    that is how the SDK works, so it is measured as it is.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, port: int, *, use_async: bool) -> None:
        from alibabacloud_eiam20211201 import models
        from alibabacloud_eiam20211201.client import Client
        from alibabacloud_tea_openapi.models import Config

        self._loop = loop
        self._models = models
        self._async = use_async
        self.client = Client(
            Config(
                access_key_id=ACCESS_KEY_ID,
                access_key_secret=ACCESS_KEY_SECRET,
                endpoint=f"127.0.0.1:{port}",
                protocol="http",
            )
        )

    def _request(self, token: str | None) -> Any:
        return self._models.ListSynchronizationJobsRequest(
            instance_id=INSTANCE_ID, max_results=100, next_token=token
        )

    def page_all(self, collect: set[str] | None = None) -> tuple[int, int]:
        if self._async:
            return self._loop.run_until_complete(self._page_all_async(collect))
        jobs = pages = 0
        token: str | None = None
        while True:
            body = self.client.list_synchronization_jobs(self._request(token)).body
            jobs += len(body.synchronization_jobs)
            pages += 1
            if collect is not None:
                collect.update(j.synchronization_job_id for j in body.synchronization_jobs)
            token = body.next_token
            if not token:
                return jobs, pages

    async def _page_all_async(self, collect: set[str] | None) -> tuple[int, int]:
        jobs = pages = 0
        token: str | None = None
        while True:
            response = await self.client.list_synchronization_jobs_async(self._request(token))
            body = response.body
            jobs += len(body.synchronization_jobs)
            pages += 1
            if collect is not None:
                collect.update(j.synchronization_job_id for j in body.synchronization_jobs)
            token = body.next_token
            if not token:
                return jobs, pages

    def distinct_ids(self) -> int:
        ids: set[str] = set()
        self.page_all(ids)
        return len(ids)


# -- parse-only and profile -----------------------------------------------------------------


def parse_only(pages: list[bytes], iterations: int) -> dict[str, Any]:
    """µs to turn one page's bytes into objects: ours vs the SDK's json.loads + from_map.

    The pages are rotated (distinct job IDs each time) rather than one page parsed again and
    again, which would flatter any parser with a string cache.
    """
    from alibabacloud_eiam20211201 import models

    from exporter.eiam.models import ListSynchronizationJobsResponse

    decoded = [json.loads(page) for page in pages]
    rotation = {"ours": 0, "sdk": 0, "from_map": 0, "loads": 0}

    def take(kind: str) -> int:
        index = rotation[kind] = (rotation[kind] + 1) % len(pages)
        return index

    def ours() -> object:
        return ListSynchronizationJobsResponse.model_validate_json(pages[take("ours")])

    def sdk() -> object:
        # What the SDK does per call: read_as_json, then from_map into the response model.
        payload = {"headers": {}, "statusCode": 200, "body": json.loads(pages[take("sdk")])}
        return models.ListSynchronizationJobsResponse().from_map(payload)

    def sdk_from_map() -> object:
        return models.ListSynchronizationJobsResponseBody().from_map(decoded[take("from_map")])

    def loads() -> object:
        return json.loads(pages[take("loads")])

    figures: dict[str, Any] = {
        "pages_rotated": len(pages),
        "page_bytes_mean": round(statistics.mean(len(p) for p in pages)),
        "iterations": iterations,
        "ours_model_validate_json_us": _per_call_us(ours, iterations),
        "sdk_json_loads_plus_from_map_us": _per_call_us(sdk, iterations),
        "sdk_from_map_only_us": _per_call_us(sdk_from_map, iterations),
        "json_loads_only_us": _per_call_us(loads, iterations),
    }
    gc.disable()
    try:
        figures["ours_model_validate_json_gc_off_us"] = _per_call_us(ours, iterations)
        figures["sdk_json_loads_plus_from_map_gc_off_us"] = _per_call_us(sdk, iterations)
    finally:
        gc.enable()
    figures = {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}
    figures["ratio_sdk_over_ours"] = round(
        figures["sdk_json_loads_plus_from_map_us"] / figures["ours_model_validate_json_us"], 2
    )
    return figures


def profile_ours(runner: OursRunner, path: Path) -> list[dict[str, Any]]:
    """cProfile one paging run of our client; write the listing, return the top functions.

    cProfile charges the garbage collector's pauses to whichever function allocated when a
    collection started (mostly ``validate_json``), so read it together with the gc figures.
    """
    profiler = cProfile.Profile()
    profiler.enable()
    runner.page_all()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)
    path.write_text(out.getvalue(), encoding="utf-8")
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = max(sum(entry[2] for entry in raw.values()), 1e-9)
    rows = []
    ranked = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:15]
    for (filename, line, function), (_, calls, tottime, cumtime, _) in ranked:
        rows.append(
            {
                "function": f"{Path(filename).name}:{line}({function})",
                "calls": calls,
                "tottime_share": round(tottime / total, 3),
                "cumtime_s": round(cumtime, 4),
            }
        )
    return rows


# -- the run --------------------------------------------------------------------------------


def run(*, quick: bool = False, settings: Settings | None = None) -> dict[str, Any]:
    """Run the whole benchmark and return its result document (see the module docs)."""
    settings = settings or (Settings.quick() if quick else Settings())
    _drop_proxy_environment()
    from exporter.logs import configure_logging

    # The daemon's default: INFO, JSON on stderr. Debug events are filtered, as in production.
    configure_logging("info", "json", stream=sys.stderr)

    client_cpu, server_cpu = _cpu_plan()
    pinned = client_cpu is not None and _pin(client_cpu)
    env = environment()
    load_before = _load_average()
    steady_before = calibrate()
    ticks_before = _cpu_ticks()
    with start_server_process(settings.pages, cpu=server_cpu if pinned else None) as server:
        _progress(
            f"page server on port {server.port}: {server.pages} pages, "
            f"{server.total_body_bytes / server.pages / 1000:.0f} kB per page"
        )
        ceiling = measure_ceiling(server.port, settings.pages)
        _progress(
            f"server ceiling: {ceiling['pages_per_second']:.0f} pages/s "
            f"({ceiling['jobs_per_second']:.0f} jobs/s) to a raw-socket client"
        )
        targets = [
            f"/?NextToken={page_token(i)}" if i else "/" for i in range(min(20, server.pages))
        ]
        sample_pages = list(fetch_raw(server.port, targets))
        loop = asyncio.new_event_loop()
        try:
            measured = _run_clients(loop, server, settings)
        finally:
            loop.close()
        ceiling_after = measure_ceiling(server.port, settings.pages, rounds=1)
    measured["parse_only"] = parse_only(sample_pages, settings.parse_iterations)
    _progress("parse-only done")
    steady_after = calibrate()
    cpu_shares = _steal_percent(ticks_before, _cpu_ticks())

    def rounded(figures: dict[str, Any]) -> dict[str, Any]:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}

    document: dict[str, Any] = {
        "benchmark": NAME,
        "title": "ListSynchronizationJobs fetch-and-parse throughput (issue 2)",
        "environment": env,
        "settings": asdict(settings),
        "pinning": {"pinned": pinned, "client_cpu": client_cpu, "server_cpu": server_cpu},
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "cpu_steadiness": {"before": steady_before, "after": steady_after},
        "cpu_shares_during_run": cpu_shares,
        "server": {
            "pages": server.pages,
            "page_bytes_mean": round(server.total_body_bytes / server.pages),
            "ceiling": rounded(ceiling),
            "ceiling_after": rounded(ceiling_after),
        },
        **measured,
    }
    document["targets"] = _targets(document)
    document["breakdown"]["prepare_and_sign_us"] = document["prepare_and_sign_us"]
    document["summary"] = _summary(document)
    return document


def _run_clients(
    loop: asyncio.AbstractEventLoop, server: ServerProcess, settings: Settings
) -> dict[str, Any]:
    meter = GcMeter()
    expected = settings.pages * JOBS_PER_PAGE
    sdk_preloaded = "alibabacloud_eiam20211201" in sys.modules

    # Phase A: ours and the bare-httpx baselines, interleaved; the SDK not imported.
    ours = OursRunner(loop, server.base_url)
    baseline = HttpxBaseline(loop, server.base_url, settings.pages)
    distinct = ours.distinct_ids()
    if distinct != expected:
        raise RuntimeError(f"our client returned {distinct} distinct jobs, expected {expected}")
    phase_a: dict[str, PageAll] = {
        "ours_alone": ours.page_all,
        "ours_keep_all": ours.keep_all,
        "httpx_fetch_only": baseline.fetch_only,
        "httpx_fetch_and_parse": baseline.fetch_and_parse,
    }
    figures_a = {
        "ours_alone": ClientFigures(
            "ours (phase A, SDK not imported)",
            note="SDK was imported before phase A" if sdk_preloaded else "",
        ),
        "ours_keep_all": ClientFigures(
            "ours, poller pattern (phase A)",
            note="every job of the listing kept in one list, as exporter/service/poller.py does",
        ),
        "httpx_fetch_only": ClientFigures("bare httpx: fetch only (phase A)"),
        "httpx_fetch_and_parse": ClientFigures("bare httpx: fetch + model_validate_json (A)"),
    }
    for _ in range(settings.warmup):
        for page_all in phase_a.values():
            page_all()
    conditions = {
        "A": _interleave(meter, phase_a, figures_a, dict.fromkeys(phase_a, settings.repetitions))
    }
    breakdown = _paired_breakdown(figures_a)
    sign_us = prepare_and_sign_us(ours, server.base_url)
    baseline.close()
    _progress(f"phase A: ours {figures_a['ours_alone'].summary()['jobs_per_second_median']:.0f}")

    # Phase B: SDK imported (same heap for all), interleaved.
    figures_b = {
        "ours": ClientFigures("ours (phase B, interleaved with SDK)"),
        "ours_jobs": ClientFigures(
            "ours, job iterator (phase B)", note="list_synchronization_jobs, one job at a time"
        ),
        "sdk_sync": ClientFigures(
            "official SDK, sync", note="requests session, keep-alive, V3 signature"
        ),
        "sdk_async": ClientFigures(
            "official SDK, async", note="aiohttp, a new session and connection per call"
        ),
    }
    phase_b: dict[str, PageAll] = {"ours": ours.page_all, "ours_jobs": ours.iterate_jobs}
    for key, use_async in (("sdk_sync", False), ("sdk_async", True)):
        try:
            sdk = SdkRunner(loop, server.port, use_async=use_async)
            distinct = sdk.distinct_ids()
            if distinct != expected:
                raise RuntimeError(f"{distinct} distinct jobs, expected {expected}")
            for _ in range(settings.warmup):
                sdk.page_all()
            phase_b[key] = sdk.page_all
        except Exception as exc:  # a variant that does not work is reported, not fatal
            figures_b[key].error = f"{type(exc).__name__}: {exc}"
            _progress(f"{key} unavailable: {figures_b[key].error}")
    ours.page_all()  # re-warm after the SDK import grew the heap
    counts = {
        k: settings.repetitions if k.startswith("ours") else settings.sdk_repetitions
        for k in phase_b
    }
    conditions["B"] = _interleave(meter, phase_b, figures_b, counts)
    for key, value in figures_b.items():
        if value.repetitions:
            _progress(f"phase B: {key} {value.summary()['jobs_per_second_median']:.0f} jobs/s")

    # Phase C: the same two leading clients with the collector tuned (what-if only).
    figures_c: dict[str, ClientFigures] = {}
    if settings.gc_what_if:
        phase_c = {k: v for k, v in phase_b.items() if k in ("ours", "sdk_sync")}
        figures_c = {
            f"{k}_gc_tuned": ClientFigures(
                f"{figures_b[k].label.split(' (')[0]} (phase C, gc tuned)",
                note="gc.freeze() + gc.set_threshold(10000, 10, 10); what-if, not the default",
            )
            for k in phase_c
        }
        runners_c = {f"{k}_gc_tuned": v for k, v in phase_c.items()}
        with _tuned_gc():
            for page_all in runners_c.values():
                page_all()
            counts_c = {
                k: settings.repetitions if k.startswith("ours") else settings.sdk_repetitions
                for k in runners_c
            }
            conditions["C"] = _interleave(meter, runners_c, figures_c, counts_c)
        _progress("phase C done")

    profile: dict[str, Any] = {}
    if settings.profile:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{NAME}.profile.txt"
        profile = {
            "profile_top": profile_ours(ours, path),
            "profile_file": str(path.relative_to(RESULTS_DIR.parent.parent)),
        }
    ours.close()

    clients = {k: v.summary() for k, v in {**figures_a, **figures_b, **figures_c}.items()}
    ratios: dict[str, Any] = {}
    for mine, suffix in (("ours", ""), ("ours_jobs", ""), ("ours", "_gc_tuned")):
        ours_us = clients.get(f"{mine}{suffix}", {}).get("us_per_page_median")
        for key in ("sdk_sync", "sdk_async"):
            other = clients.get(f"{key}{suffix}", {})
            if ours_us and other.get("count"):
                ratio = round(other["us_per_page_median"] / ours_us, 2)
                ratios[f"{mine}_over_{key}{suffix}"] = ratio
                cpu = (
                    other["cpu_us_per_page_median"]
                    / clients[f"{mine}{suffix}"]["cpu_us_per_page_median"]
                )
                ratios[f"{mine}_over_{key}{suffix}_cpu"] = round(cpu, 2)
    return {
        "clients": clients,
        "ratios": ratios,
        "prepare_and_sign_us": round(sign_us, 1),
        "breakdown": breakdown,
        "phase_conditions": conditions,
        **profile,
    }


def _targets(doc: dict[str, Any]) -> dict[str, Any]:
    alone = doc["clients"]["ours_alone"]
    ratio = doc["ratios"].get("ours_over_sdk_sync")
    jobs = alone.get("jobs_per_second_median") or 0.0
    return {
        "jobs_per_second": {
            "target": TARGET_JOBS_PER_SECOND,
            "measured_median": jobs,
            "met": jobs >= TARGET_JOBS_PER_SECOND,
        },
        "ratio_over_sdk_sync": {
            "target": TARGET_RATIO,
            "measured": ratio,
            "met": ratio is not None and ratio >= TARGET_RATIO,
        },
    }


def _paired_breakdown(figures: dict[str, ClientFigures]) -> dict[str, Any]:
    """Split our phase-A µs/page into parts, from the interleaved rounds of phase A.

    Why paired and CPU-based: the three runs of one round (our client, bare httpx fetching,
    bare httpx fetching + parsing) ran back to back, so their differences are taken round by
    round and the median of those differences is reported; and the client process's CPU time
    is used, which other processes competing for the core do not inflate. The garbage
    collector's pauses are shown on their own: how long it runs depends on what else is alive,
    and our client keeps the previous page referenced while it fetches and parses the next.
    """
    ours = figures["ours_alone"].repetitions
    fetch = figures["httpx_fetch_only"].repetitions
    parse = figures["httpx_fetch_and_parse"].repetitions

    def per_page(rep: Repetition, seconds: float) -> float:
        return seconds / rep.pages * 1e6

    def median(values: Iterator[float]) -> float:
        return round(statistics.median(values), 1)

    rounds = list(zip(ours, fetch, parse, strict=False))
    if not rounds:
        return {"error": "no phase-A repetitions"}
    return {
        "rounds": len(rounds),
        "total_wall_us": median(per_page(o, o.wall_seconds) for o, _, _ in rounds),
        "total_cpu_us": median(per_page(o, o.cpu_seconds) for o, _, _ in rounds),
        "waiting_for_server_us": median(
            per_page(o, o.wall_seconds - o.cpu_seconds) for o, _, _ in rounds
        ),
        "httpx_transport_cpu_us": median(per_page(f, f.cpu_seconds) for _, f, _ in rounds),
        "parse_cpu_without_gc_us": median(
            per_page(p, p.cpu_seconds - p.gc_seconds - f.cpu_seconds) for _, f, p in rounds
        ),
        "gc_while_parsing_alone_us": median(per_page(p, p.gc_seconds) for _, _, p in rounds),
        "gc_extra_in_our_client_us": median(
            per_page(o, o.gc_seconds - p.gc_seconds) for o, _, p in rounds
        ),
        "client_overhead_cpu_without_gc_us": median(
            per_page(o, (o.cpu_seconds - o.gc_seconds) - (p.cpu_seconds - p.gc_seconds))
            for o, _, p in rounds
        ),
        "note": (
            "client CPU per page = httpx transport + parse + gc while parsing + extra gc in our "
            "client (previous page still referenced) + client overhead (signing, retry loop, "
            "deadline, checks, logging); medians of per-round differences, so the parts add "
            "up only approximately; waiting_for_server is wall minus CPU of our client"
        ),
    }


def _summary(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for REPORT.md: metric, value, unit, target and whether it is met."""
    c, t, b = doc["clients"], doc["targets"], doc["breakdown"]
    rows: list[dict[str, Any]] = []

    def row(metric: str, value: Any, unit: str, target: str = "", ok: bool | None = None) -> None:
        rows.append({"metric": metric, "value": value, "unit": unit, "target": target, "ok": ok})

    def client_rows(key: str, target: bool = False) -> None:
        s = c.get(key)
        if s is None:
            return
        if not s["count"]:
            row(s["label"], f"not measured: {s['error']}", "")
            return
        row(
            f"{s['label']}: jobs/s (median)",
            s["jobs_per_second_median"],
            "jobs/s",
            f"≥ {TARGET_JOBS_PER_SECOND:,.0f}" if target else "",
            t["jobs_per_second"]["met"] if target else None,
        )
        row(
            f"{s['label']}: µs/page median / p90 (n)",
            f"{s['us_per_page_median']:,.0f} / {s['us_per_page_p90']:,.0f} (n={s['count']})",
            "µs/page",
        )

    client_rows("ours_alone", target=True)
    alone = c["ours_alone"]
    row(
        "ours (phase A): jobs per CPU-second of the client process (median)",
        alone["jobs_per_cpu_second_median"],
        "jobs/s",
    )
    client_rows("ours_keep_all")
    for key in ("ours", "ours_jobs", "sdk_sync", "sdk_async"):
        client_rows(key)
    for key in (
        "ours_over_sdk_sync",
        "ours_over_sdk_async",
        "ours_jobs_over_sdk_sync",
        "ours_jobs_over_sdk_async",
    ):
        if key in doc["ratios"]:
            sync = key == "ours_over_sdk_sync"
            mine, other = key.split("_over_")
            row(
                f"ratio SDK/ours µs per page: {other} vs {mine.replace('_', ' ')} (phase B)",
                doc["ratios"][key],
                "×",
                f"≥ {TARGET_RATIO:g}" if sync else "",
                t["ratio_over_sdk_sync"]["met"] if sync else None,
            )
    if "ours_over_sdk_sync_cpu" in doc["ratios"]:
        row(
            "ratio SDK/ours CPU µs per page: sdk_sync vs ours (phase B)",
            doc["ratios"]["ours_over_sdk_sync_cpu"],
            "×",
        )
    p = doc["parse_only"]
    row("parse-only: ours model_validate_json", p["ours_model_validate_json_us"], "µs/page")
    row("parse-only: SDK json.loads + from_map", p["sdk_json_loads_plus_from_map_us"], "µs/page")
    row("parse-only: json.loads alone (reference)", p["json_loads_only_us"], "µs/page")
    s = doc["server"]["ceiling"]
    row(
        "server ceiling to a raw-socket client",
        f"{s['pages_per_second']:,.0f} pages/s = {s['jobs_per_second']:,.0f} jobs/s",
        "",
    )
    row(
        "server CPU per page (its one-core ceiling)",
        f"{s['server_cpu_us_per_page']:,.0f} µs (≈ {s['server_cpu_pages_per_second'] or 0:,.0f}"
        " pages/s)",
        "",
    )
    if "error" not in b:
        split = "ours, phase A, CPU µs/page"
        row(f"{split}: total (wall {b['total_wall_us']:,.0f})", b["total_cpu_us"], "µs/page")
        row(f"{split}: httpx transport", b["httpx_transport_cpu_us"], "µs/page")
        row(f"{split}: parse (gc pauses excluded)", b["parse_cpu_without_gc_us"], "µs/page")
        row(f"{split}: gc pauses of parsing alone", b["gc_while_parsing_alone_us"], "µs/page")
        row(f"{split}: extra gc in our client", b["gc_extra_in_our_client_us"], "µs/page")
        row(
            f"{split}: client overhead (gc excluded)",
            b["client_overhead_cpu_without_gc_us"],
            "µs/page",
        )
        row(f"{split}: of which prepare + V3 sign", b["prepare_and_sign_us"], "µs/page")
        row("ours, phase A: waiting for server + loopback", b["waiting_for_server_us"], "µs/page")
    for key in ("ours", "sdk_sync"):
        if c.get(key, {}).get("count"):
            row(f"{c[key]['label']}: gc pauses", c[key]["gc_us_per_page_median"], "µs/page")
    for key in ("ours_gc_tuned", "sdk_sync_gc_tuned"):
        client_rows(key)
    if "ours_over_sdk_sync_gc_tuned" in doc["ratios"]:
        row(
            "ratio SDK/ours, sync, both gc tuned (what-if)",
            doc["ratios"]["ours_over_sdk_sync_gc_tuned"],
            "×",
        )
    return rows


# -- output ---------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"[{NAME}] {message}", file=sys.stderr, flush=True)


def render(doc: dict[str, Any]) -> str:
    """A readable plain-text summary of a result document."""
    lines = [doc["title"], f"  {one_line(doc['environment'])}"]
    pin = doc["pinning"]
    lines.append(
        f"  pinning: client CPU {pin['client_cpu']}, server CPU {pin['server_cpu']}"
        if pin["pinned"]
        else "  pinning: not possible on this machine (client and server share CPUs)"
    )
    steady = doc["cpu_steadiness"]
    lines.append(
        f"  pages: {doc['server']['pages']} × {JOBS_PER_PAGE} jobs, "
        f"{doc['server']['page_bytes_mean'] / 1000:.0f} kB each; load average "
        f"{doc['load_average_before']} → {doc['load_average_after']}; CPU steadiness (fixed "
        f"loop CV) {steady['before']['cv_percent']} % → {steady['after']['cv_percent']} %"
    )
    phases = doc.get("phase_conditions", {})
    client_cpu = f"cpu{pin['client_cpu']}" if pin["pinned"] else "cpu"
    lines.append(
        "  machine speed per phase (fixed loop ms, lower is faster; steal on the client CPU): "
        + "; ".join(
            f"{name} {c['reference_loop_ms_median']} ms, "
            f"steal {c['cpus'].get(client_cpu, {}).get('steal_percent', '?')} %"
            for name, c in phases.items()
        )
    )
    shares = {
        s["label"]: s.get("cpu_share_median")
        for s in doc["clients"].values()
        if s.get("count") and (s.get("cpu_share_median") or 1.0) < CONTENDED_CPU_SHARE
    }
    if shares:
        lines.append(
            "  WARNING: other processes competed for the benchmark's CPU (share of wall time "
            "spent on CPU: "
            + ", ".join(f"{label} {share:.0%}" for label, share in shares.items())
            + "); wall-clock figures are pessimistic, read the CPU-based ones too"
        )
    width = max(len(r["metric"]) for r in doc["summary"])
    for r in doc["summary"]:
        value = f"{r['value']:,.1f}" if isinstance(r["value"], float) else str(r["value"])
        verdict = "" if r["ok"] is None else ("  MET" if r["ok"] else "  MISSED")
        target = f"  (target {r['target']})" if r["target"] else ""
        lines.append(f"  {r['metric']:<{width}}  {value} {r['unit']}{target}{verdict}".rstrip())
    return "\n".join(lines)


def write_result(doc: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{NAME}.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.client_throughput",
        description="Fetch-and-parse throughput: our EIAM client vs the official SDK.",
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds, smaller figures")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write a cProfile listing of one paging run (default: on, off with --quick)",
    )
    parser.add_argument("--no-gc-what-if", action="store_true", help="skip phase C")
    parser.add_argument("--pages", type=int, help="pages per paging run (default 200)")
    parser.add_argument("--repetitions", type=int, help="counted repetitions per client")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    base = Settings.quick() if quick else Settings()
    overrides: dict[str, Any] = {"gc_what_if": not args.no_gc_what_if}
    if args.profile is not None:
        overrides["profile"] = args.profile
    if args.pages:
        overrides["pages"] = args.pages
    if args.repetitions:
        overrides["repetitions"] = overrides["sdk_repetitions"] = args.repetitions
    settings = Settings(**{**asdict(base), **overrides})
    doc = run(settings=settings)
    doc["settings"]["quick"] = quick
    path = write_result(doc, Path(os.environ.get("BENCH_RESULTS_DIR") or RESULTS_DIR))
    print(render(doc))
    print(f"  written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
