"""Fetch-and-parse throughput of full ListSynchronizationJobs pages: our client vs the official SDK.

What: jobs/s and ms per page while a client pages through N full pages (100 jobs, every statistics
block, distinct job IDs, ~210 kB, chained by NextToken) over loopback, on one core.
How: a child process pinned to the second CPU renders the pages once and serves them with a bare
asyncio protocol writing the pre-built response the NextToken names (~0.1 ms of CPU a page; the
project's h11 ``HTTPServer`` needs ~0.3 ms, on the client's critical path). This process, pinned
to the first CPU, runs our ``EiamClient`` (production settings, INFO logs) **before the SDK is
imported** (the exporter never loads it; its heap slows every full collection): the headline.
Then ours, the SDK sync and async run interleaved, repetition by repetition, so a noisy VM's drift
hits all three alike: the ratio comes from there. Why honest: each client's first pass must return
every job exactly once; warm-ups are dropped; the server's CPU per page and share of the client's
wall time show it is not the bottleneck; a client CPU share < 85 % (something took the core) or a
fixed loop whose time varies > 15 % (the core itself got slower) is flagged. Median and p90 of
plain repetitions: pyperf's worker processes cannot interleave three clients in one heap.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import re
import statistics
import sys
import time
import timeit
from collections.abc import AsyncIterator, Callable
from multiprocessing.connection import Connection
from typing import Any, cast

from pydantic import SecretStr

from bench.harness import cpu_plan, percentile, pin, row
from exporter.eiam.client import EiamClient
from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider
from exporter.logs import configure_logging

TITLE = "EIAM client fetch-and-parse throughput: ours vs the official SDK (issue 2)"
INSTANCE_ID = "idaas_ue2jvisn35ea5lmthk267bench"
KEY_ID, KEY_SECRET = "LTAI5tBenchmarkKeyId00000", "bench-secret-not-a-real-one"
CREDENTIAL = Credential(KEY_ID, SecretStr(KEY_SECRET), source="bench")
TARGET_JOBS_PER_S, TARGET_RATIO, CPU_SHARE, LOOP_DRIFT = 20_000, 2.0, 0.85, 1.15
BLOCKS = {"UserStatistics": 20_000, "OrganizationalUnitStatistics": 800}  # typical entity counts
BLOCKS |= {"GroupStatistics": 1_500, "GroupMemberStatistics": 60_000}
ACTIONS = ("Created", "Updated", "Binded", "Deleted", "Same", "Pushed", "Exported")
ERROR = {"ErrorCode": "Connection.Timeout", "ErrorMessage": "Connection to the LDAP server "
         "ldaps://dc01.corp.example.com:636 timed out after 30 seconds while binding."}  # fmt: skip
LABELS = {"ours_alone": "ours, SDK not imported", "ours": "ours, interleaved with the SDK"}
LABELS |= {"sdk_sync": "official SDK, sync", "sdk_async": "official SDK, async"}
_TOKEN = re.compile(rb"NextToken=p(\d+)")
_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")
Listing = Callable[[], AsyncIterator[Any]]
Pass = Callable[[set[str] | None], int]
"""One paging run over every page: the jobs received (their IDs added to the set, if given)."""


def render_page(index: int, pages: int) -> bytes:
    """Page *index* of *pages*: 100 terminal jobs, deterministic, NextToken unless the last."""
    rng = random.Random(index)

    def counts(scale: int) -> dict[str, int]:
        total = min(int(rng.paretovariate(1.2) * scale / 50), 3 * scale) * (rng.random() < 0.8)
        failed = int(total * rng.random() * 0.05) if rng.random() < 0.3 else 0
        skipped = int((total - failed) * rng.random() * 0.1)
        return {"Total": total, "Success": total - failed - skipped, "Failed": failed,
                "Skipped": skipped}  # fmt: skip

    jobs = []
    for slot in range(100):
        status = rng.choices(("success", "partial_success", "failed"), (75, 15, 10))[0]
        result: dict[str, Any] = {} if status == "success" else dict(ERROR)
        for number, (block, scale) in enumerate(BLOCKS.items()):  # Exported: users and OUs only
            result[block] = {action: counts(scale) for action in ACTIONS[: 7 if number < 2 else 6]}
        start = 1_767_225_600_000 - (index * 100 + slot) * 90_000
        jobs.append({
            "SynchronizationJobId": f"sync_{index:05d}{slot:02d}{rng.getrandbits(100):026x}",
            "TargetType": "identity_provider", "TargetId": f"idp_{rng.getrandbits(100):025x}",
            "Direction": "ingress", "StartTime": start, "EndTime": start + rng.randrange(10**6),
            "TriggerType": "auto", "Status": status, "Result": result,
            "Description": "Scheduled incremental synchronization from DingTalk (all departments)",
        })  # fmt: skip
    body: dict[str, Any] = {"RequestId": f"BENCH-{index:06d}", "TotalCount": pages * 100}
    body |= {"NextToken": f"p{index + 1:06d}"} if index + 1 < pages else {}
    return json.dumps(body | {"SynchronizationJobs": jobs}, separators=(",", ":")).encode()


class _Pages(asyncio.Protocol):
    """HTTP/1.1 cut to the bone: split requests by Content-Length, answer by NextToken."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers, self.buffer = answers, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n") + 4) >= 4:
            length = _LENGTH.search(self.buffer, 0, end)
            size = end + (int(length.group(1)) if length else 0)
            if len(self.buffer) < size:
                return
            token = _TOKEN.search(self.buffer, 0, size)  # in the query, or the SDK's form body
            self.buffer = self.buffer[size:]
            self.transport.write(self.answers[int(token.group(1)) if token else 0])


def _serve(pages: int, cpu: int | None, conn: Connection) -> None:
    """Render the pages, send their sizes and port, answer "cpu" (finer than /proc) till told."""
    pin(0, cpu)
    bodies = [render_page(i, pages) for i in range(pages)]
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n"
    answers = [head.format(len(body)).encode() + body for body in bodies]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Pages(answers), "127.0.0.1", 0)
        conn.send(([len(body) for body in bodies], server.sockets[0].getsockname()[1]))
        while await loop.run_in_executor(None, conn.recv) == "cpu":
            conn.send(time.process_time())

    asyncio.run(main())


def _pass(runner: asyncio.Runner, listing: Listing, name: str, expected: int) -> Pass:
    """One paging run of *listing*, once a first run returned every job exactly once."""

    async def once(ids: set[str] | None) -> int:
        jobs = 0
        async for page in listing():
            jobs += len(page.synchronization_jobs)
            if ids is not None:
                ids.update(job.synchronization_job_id for job in page.synchronization_jobs)
        return jobs

    ids: set[str] = set()
    if (jobs := runner.run(once(ids))) != expected or len(ids) != expected:
        raise RuntimeError(f"{name}: {jobs} jobs, {len(ids)} distinct; expected {expected}")
    return lambda ids: runner.run(once(ids))


def _sdk(port: int, use_async: bool) -> Listing:
    """The official client as shipped: sync (requests) or async (aiohttp, a session per call)."""
    from alibabacloud_eiam20211201 import models
    from alibabacloud_eiam20211201.client import Client
    from alibabacloud_tea_openapi.models import Config

    client = Client(Config(access_key_id=KEY_ID, access_key_secret=KEY_SECRET,
                           endpoint=f"127.0.0.1:{port}", protocol="http"))  # fmt: skip

    async def listing() -> AsyncIterator[Any]:
        token, ask = None, models.ListSynchronizationJobsRequest
        while True:
            request = ask(instance_id=INSTANCE_ID, max_results=100, next_token=token)
            if use_async:
                body = (await client.list_synchronization_jobs_async(request)).body
            else:
                body = client.list_synchronization_jobs(request).body
            yield body
            if not (token := body.next_token):
                return

    return listing


def _fixed_loop_ms() -> float:
    """A fixed pure-Python loop: on a shared VM the CPU's own speed drifts, and this shows it."""
    return timeit.timeit("sum(i * i for i in range(100_000))", number=1) * 1e3


def _interleave(
    runs: dict[str, tuple[Pass, int]], server_cpu: Callable[[], float], pages: int, warmup: int
) -> dict[str, Any]:
    """Warm-ups, then repetition i of every client before i + 1 of any. Per client: n, ms a page
    (median, p90), jobs/s; medians of the CPU shares, server CPU ms a page, fixed-loop ms."""
    reps: dict[str, list[tuple[float, ...]]] = {name: [] for name in runs}
    for index in range(-warmup, max(count for _, count in runs.values())):
        for name, (once, count) in runs.items():
            if index < 0:
                once(None)
            elif index < count:
                server0, cpu0, wall0 = server_cpu(), time.process_time(), time.perf_counter()
                once(None)
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                reps[name].append((wall, cpu, server_cpu() - server0, _fixed_loop_ms()))
    summaries = {}
    for name, measured in reps.items():
        ms = [wall / pages * 1e3 for wall, *_ in measured]
        summaries[name] = {
            "n": len(ms),
            "ms_median": round(statistics.median(ms), 3),
            "ms_p90": round(percentile(ms, 0.9), 3),
            "jobs_per_s": round(100e3 / statistics.median(ms), 1),
            "cpu_share": round(statistics.median(c / w for w, c, *_ in measured), 3),
            "server_ms": round(statistics.median(s for *_, s, _ in measured) / pages * 1e3, 3),
            "server_share": round(statistics.median(s / w for w, _, s, _ in measured), 3),
            "loop_ms": round(statistics.median(loop for *_, loop in measured), 3),
        }
    return summaries


def run(quick: bool) -> dict[str, Any]:
    pages, reps, sdk_reps, warmup = (40, 3, 3, 1) if quick else (200, 9, 7, 2)
    for name in [k for k in os.environ if k.lower() in ("http_proxy", "https_proxy", "all_proxy")]:
        del os.environ[name]  # the SDK reads them itself
    configure_logging("info", "json", stream=sys.stderr)  # as the daemon: debug events filtered
    client_cpu, server_cpu = cpu_plan()
    pinned = pin(0, client_cpu)
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(pages, server_cpu, child), daemon=True)
    server.start()
    runner = asyncio.Runner()

    def server_seconds() -> float:
        parent.send("cpu")
        return float(parent.recv())

    try:
        (sizes, port), jobs = parent.recv(), pages * 100
        loop_before = statistics.median(_fixed_loop_ms() for _ in range(9))
        assert "alibabacloud_eiam20211201" not in sys.modules, "the SDK is imported already"
        eiam = EiamClient(f"http://127.0.0.1:{port}", StaticCredentialsProvider(CREDENTIAL))
        ours = _pass(runner, lambda: eiam.list_synchronization_job_pages(INSTANCE_ID), "ours", jobs)
        clients = _interleave({"ours_alone": (ours, reps)}, server_seconds, pages, warmup)
        runs = {"ours": (ours, reps)}
        for name, use_async in (("sdk_sync", False), ("sdk_async", True)):
            runs[name] = (_pass(runner, _sdk(port, use_async), name, jobs), sdk_reps)
        clients |= _interleave(runs, server_seconds, pages, warmup)  # ours re-warmed: SDK heap
    finally:
        parent.send("stop")
        server.join(10)  # daemonic: killed at exit, should it hang
        runner.close()
    ours_ms, alone = clients["ours"]["ms_median"], clients["ours_alone"]
    ratios = {k: round(clients[k]["ms_median"] / ours_ms, 2) for k in runs if k != "ours"}
    jobs_s, sync = alone["jobs_per_s"], ratios["sdk_sync"]
    rows = [
        row("ours, SDK not imported: jobs/s (median)", jobs_s, "jobs/s",
            f"≥ {TARGET_JOBS_PER_S:,}", jobs_s >= TARGET_JOBS_PER_S),
        row("ours faster than the SDK, sync (interleaved medians)", sync, "×",
            f"≥ {TARGET_RATIO:g}", sync >= TARGET_RATIO),
    ]  # fmt: skip
    for key, c in clients.items():
        ms = f"{c['ms_median']:.2f} / {c['ms_p90']:.2f} ms a page (median / p90), n={c['n']}"
        rows.append(row(f"{LABELS[key]}: jobs/s (median)", c["jobs_per_s"], f"jobs/s; {ms}"))
    load = f"{alone['server_ms']:.3f} ms / {alone['server_share']:.0%}"
    rows.append(row("page server: CPU a page / share of ours' wall time", load, ""))
    loops = [loop_before, *(c["loop_ms"] for c in clients.values())]
    share, drift = min(c["cpu_share"] for c in clients.values()), max(loops) / min(loops)
    value, steady = f"{share:.0%}; ×{drift:.2f}", share >= CPU_SHARE and drift <= LOOP_DRIFT
    rows.append(row("steady core: min client CPU share; fixed loop max/min", value, "",
                    f"≥ {CPU_SHARE:.0%}; ≤ ×{LOOP_DRIFT}", steady))  # fmt: skip
    figures = {"pages": pages, "page_bytes_mean": round(statistics.mean(sizes)), "clients": clients}
    figures |= {"sdk_ms_per_page_over_ours": ratios, "loop_ms_before": round(loop_before, 3)}
    figures["pinning"] = {"pinned": pinned, "client_cpu": client_cpu, "server_cpu": server_cpu}
    return {"rows": rows, "figures": figures}
