"""``/metrics`` latency versus series count, against prometheus-client's ``generate_latest``.

Issue 4, "Benchmarks": with 100 targets (≥ 15,000 series) ``/metrics`` answers in a median
≤ 5 ms and ≥ 10× faster than prometheus-client's ``generate_latest`` over the same families,
measured in the same run. Issue 6: latency versus series count (1k, 10k, 50k), side by side.

What is measured, and how:

* **A real estate, not synthetic rows.** For each size, a simulated estate (the targets of
  :func:`bench.memory_bench.estate_scenario`: AD, OpenLDAP, DingTalk/WeCom/Feishu both ways,
  SCIM applications; 72 h of hourly syncs with partial successes, failures and manual runs)
  is fed through the exporter's own ledger and tracker; its :class:`InstanceState`, poll
  statuses, target names and API request statistics give the families, exactly as in the
  daemon. Sizes: about 1k and 10k series, 100 targets (the issue's figure, which it
  estimates at ≥ 15,000 series), 15k and 50k series; the issue's targets are judged at both
  the 100-target and the ≥ 15,000-series points.
* **Server process, pinned.** A child process (its own CPU when the machine has two) builds
  those families once and serves them two ways on loopback, with the project's
  :class:`~exporter.web.server.HTTPServer` on its own thread and event loop, as in the daemon:

  - *ours*: :class:`~exporter.web.app.WebApp` serving a :class:`~exporter.web.app.Snapshot` rendered
    once (the daemon's ``_render``), plus the always-fresh ``process_*`` metrics per scrape;
  - *generate_latest*: the same families in a :class:`~prometheus_client.CollectorRegistry`
    (our :class:`~exporter.core.contract.SnapshotCollector` plus the same process collectors),
    rendered on every scrape the way prometheus-client's own handler does (``choose_encoder``,
    then ``gzip.compress`` when accepted).
* **Client, pinned to the other CPU.** A raw-socket HTTP/1.1 client on one keep-alive
  connection (so the client's own cost is a ``recv_into`` loop, not a parser), timing each
  scrape from the request's first byte to the response's last. Rounds alternate ours and
  generate_latest so machine drift hits both alike; warm-up scrapes are discarded. Two
  request shapes: *text* (``Accept: text/plain``, no compression — the bytes a curl gets) and
  *Prometheus* (Prometheus 2's ``Accept`` header preferring OpenMetrics, ``Accept-Encoding:
  gzip`` — what a real scrape asks for); ours also answers *OpenMetrics without gzip* (a curl
  or an agent without compression). Reported: median, p90, p99 (nearest rank), and the
  server process's CPU time per scrape (``time.process_time`` in the server process, immune to
  the client's cost).
* **While a poll renders.** The snapshot is rendered in a worker thread once per poll, which
  holds the GIL for most of its duration; a batch of scrapes runs while a thread re-renders
  in a loop (the worst case: every scrape overlaps a render) to show that price.
* **In-process costs** in the server process: the render per poll (``build_families`` +
  ``Snapshot.from_families``), ``generate_latest`` alone, and our per-scrape handler alone.
  A correctness check parses both outputs with prometheus-client's parser and compares every
  sample (sizes ≤ 15k).

Run it::

    python -m bench --only metrics           # writes bench/results/metrics_bench.json + PNG
    python -m bench.metrics_bench [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import plots
from bench.environment import environment
from bench.memory_bench import (
    cpu_plan,
    estate_scenario,
    load_average,
    percentile,
    pin,
    row,
)

__all__ = ["NAME", "Settings", "main", "run"]

NAME = "metrics_bench"
TARGET_MEDIAN_MS = 5.0
TARGET_RATIO = 10.0
T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z

TEXT_HEADERS = "Accept: text/plain\r\nAccept-Encoding: identity\r\n"
PROMETHEUS_HEADERS = (
    "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
    "Accept-Encoding: gzip\r\n"
)
"""The request headers of a Prometheus 2.x scrape (OpenMetrics preferred, gzip)."""
OPENMETRICS_PLAIN_HEADERS = (
    "Accept: application/openmetrics-text;version=1.0.0\r\nAccept-Encoding: identity\r\n"
)
"""OpenMetrics without compression (curl, some agents): served from the gzipped snapshot."""


@dataclass(frozen=True)
class Size:
    label: str
    targets: int
    instances: int
    ours_per_round: int
    baseline_per_round: int


@dataclass(frozen=True)
class Settings:
    sizes: tuple[Size, ...] = (
        Size("1k", 7, 1, 60, 40),
        Size("10k", 67, 1, 60, 8),
        Size("100 targets", 100, 1, 60, 6),
        Size("15k", 110, 1, 60, 6),
        Size("50k", 335, 4, 40, 3),
    )
    rounds: int = 5
    warmup: int = 5
    render_repeats: int = 7
    during_render_scrapes: int = 60
    history: str = "72h"
    check_equivalence_max_series: int = 16_000
    issue_sizes: tuple[str, ...] = ("100 targets", "15k")

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            sizes=(Size("1k", 7, 1, 30, 10), Size("100 targets", 100, 1, 20, 2)),
            rounds=2,
            warmup=2,
            render_repeats=3,
            during_render_scrapes=15,
            history="24h",
            check_equivalence_max_series=2_000,
        )


def _progress(message: str) -> None:
    print(f"[metrics] {message}", file=sys.stderr, flush=True)


# -- the server process -------------------------------------------------------------------------


def build_estate(targets: int, instances: int, history: str) -> dict[str, Any]:
    """The daemon's inputs for a simulated estate: committed states, statuses, API stats."""
    import random

    from exporter.core.contract import ApiRequestStats, PollStatus
    from exporter.core.instance import InstanceState
    from exporter.core.ledger import InstanceLedger
    from exporter.core.tracker import InProgressJob, TrackerState
    from exporter.eiam.client import RequestEvent
    from exporter.eiam.models import SynchronizationJob
    from exporter.simulator import ManualClock, World
    from exporter.simulator.render import job_fragment
    from exporter.simulator.scenarios import Scenario

    scenario = Scenario.model_validate(
        estate_scenario(
            targets,
            instances=instances,
            interval="1h",
            duration="3m",
            history=history,
            name="bench-metrics",
        )
    )
    world = World(scenario, seed=7, now_ms=ManualClock(T0))
    now = world.advance()
    committed: dict[str, Any] = {}
    status: dict[str, Any] = {}
    for instance in world.instances:
        terminal, running = [], {}
        for job in instance.jobs:
            model = SynchronizationJob.model_validate_json(job_fragment(job, now))
            if job.terminal_at(now):
                terminal.append(model)
            else:
                running[model.synchronization_job_id] = InProgressJob(model, now, now)
        names = {(t.target_type, t.target_id): t.name for t in instance.targets}
        tracker = TrackerState(
            window_start_ms=now - 600_000,
            watermark_ms=now,
            counted={j.synchronization_job_id: j.start_time or 0 for j in terminal[-50:]},
            in_progress=running,
        )
        committed[instance.instance_id] = InstanceState(
            tracker=tracker,
            ledger=InstanceLedger().with_jobs(terminal),
            target_names=names,
            names_refreshed_ms=now,
        )
        status[instance.instance_id] = PollStatus(
            up=True,
            last_poll_s=now / 1000,
            last_success_s=now / 1000,
            last_duration_s=0.042,
            polls={"success": 4320, "error": 3},
            errors={"Throttling.User": 3},
        )
    api = ApiRequestStats()
    rng = random.Random(3)
    for action in (
        "ListSynchronizationJobs",
        "GetSynchronizationJob",
        "ListIdentityProviders",
        "ListApplications",
    ):
        for _ in range(500):
            code = "Throttling.User" if rng.random() < 0.01 else "200"
            api.on_request(RequestEvent(action, code, rng.uniform(0.02, 0.4), 1, False))
    return {"committed": committed, "status": status, "api": api, "jobs": world.job_count()}


def _families(estate: dict[str, Any]) -> list[Any]:
    """Exactly the daemon's families (``daemon._render`` without the rendering)."""
    from exporter.core.contract import build_families
    from exporter.core.exposition import Family

    writes = Family(
        "idaas_exporter_state_writes", "counter", "Writes of the state file.", ("result",)
    )
    writes.add(("success",), 4320)
    writes.add(("error",), 0)
    return build_families(
        estate["committed"], estate["status"], estate["api"], poll_interval=60.0, extra=[writes]
    )


def _median_ms(function: Any, repeats: int) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1e3)
    return {
        "median_ms": round(statistics.median(times), 3),
        "min_ms": round(min(times), 3),
        "max_ms": round(max(times), 3),
        "n": repeats,
    }


def _equivalent(ours: bytes, theirs: bytes) -> dict[str, Any]:
    """Parse both expositions and compare every sample (process metrics aside)."""
    from prometheus_client.parser import text_string_to_metric_families

    def samples(data: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        found = {}
        for family in text_string_to_metric_families(data.decode()):
            for sample in family.samples:
                if sample.name.startswith(("process_", "python_")):
                    continue
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return found

    a, b = samples(ours), samples(theirs)
    differing = [k for k in set(a) | set(b) if a.get(k) != b.get(k)]
    return {
        "samples": len(a),
        "equal": not differing,
        "differing": len(differing),
        "example": repr(sorted(differing)[:2]),
    }


def server_main(conn: Connection, size: Size, history: str, cpu: int | None, checks: int) -> None:
    """The server child: build, measure in-process costs, serve, obey the parent's commands."""
    pinned = pin(0, cpu)
    from prometheus_client import (
        CollectorRegistry,
        GCCollector,
        PlatformCollector,
        ProcessCollector,
        generate_latest,
    )
    from prometheus_client.exposition import choose_encoder

    from exporter.core.contract import SnapshotCollector
    from exporter.core.exposition import Snapshot
    from exporter.service.daemon import _render
    from exporter.web.app import WebApp
    from exporter.web.server import HTTPServer, Request, Response

    started = time.perf_counter()
    estate = build_estate(size.targets, size.instances, history)
    families = _families(estate)
    build_seconds = time.perf_counter() - started
    snapshot = Snapshot.from_families(families)
    app = WebApp(poll_interval=60.0)
    app.snapshot = snapshot
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(families))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)

    def render_once() -> Any:
        return _render(
            estate["committed"],
            estate["status"],
            estate["api"],
            {"success": 4320, "error": 0},
            60.0,
        )

    repeats = 3 if size.targets > 200 else 7
    text_request = Request("GET", "/metrics", "/metrics", "", {"accept": "text/plain"})
    inprocess = {
        "render_per_poll": _median_ms(render_once, repeats),
        "build_families": _median_ms(lambda: _families(estate), repeats),
        "snapshot_from_families": _median_ms(lambda: Snapshot.from_families(families), repeats),
        "generate_latest": _median_ms(lambda: generate_latest(registry), repeats),
        "our_scrape_handler": _median_ms(lambda: app._metrics(text_request), 50),
    }
    checks_result = None
    if snapshot.series <= checks:
        body = app._metrics(text_request).body
        checks_result = _equivalent(body, generate_latest(registry))

    async def baseline(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = encoder(registry)
        headers = [("content-type", content_type)]
        if "gzip" in request.headers.get("accept-encoding", "").lower():
            body = gzip.compress(body)
            headers.append(("content-encoding", "gzip"))
        return Response(200, headers, body)

    loop = asyncio.new_event_loop()
    servers = [
        HTTPServer(app, host="127.0.0.1", port=0),
        HTTPServer(baseline, host="127.0.0.1", port=0),
    ]
    ready = threading.Event()
    stop_loop = asyncio.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            for server in servers:
                await server.start()
            ready.set()
            await stop_loop.wait()
            for server in servers:
                await server.stop(1.0)

        loop.run_until_complete(main())

    thread = threading.Thread(target=serve, name="http", daemon=True)
    thread.start()
    ready.wait(30)
    conn.send(
        {
            "ports": [s.port for s in servers],
            "series": snapshot.series,
            "jobs": estate["jobs"],
            "targets": sum(len(s.ledger.targets) for s in estate["committed"].values()),
            "text_bytes": len(snapshot.text),
            "openmetrics_bytes": snapshot.openmetrics_length,
            "text_gzip_bytes": sum(map(len, snapshot.text_gzip.parts(b""))),
            "build_seconds": round(build_seconds, 2),
            "inprocess": inprocess,
            "equivalence": checks_result,
            "pinned": pinned,
        }
    )
    rendering = threading.Event()

    def render_loop() -> None:
        while rendering.is_set():
            app.snapshot = render_once()

    render_thread: threading.Thread | None = None
    while True:
        command = conn.recv()
        if command == "render-on":
            rendering.set()
            render_thread = threading.Thread(target=render_loop, daemon=True)
            render_thread.start()
            conn.send("ok")
        elif command == "cpu":
            conn.send(time.process_time())
        elif command == "render-off":
            rendering.clear()
            if render_thread is not None:
                render_thread.join()
            conn.send("ok")
        else:
            break
    loop.call_soon_threadsafe(stop_loop.set)
    thread.join(10)
    conn.close()


# -- the client ---------------------------------------------------------------------------------


class RawClient:
    """One keep-alive HTTP/1.1 connection; reads a response into a reused buffer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray(1 << 20)
        self.view = memoryview(self.buffer)

    def get(self, headers: str, keep: bool = False) -> tuple[float, int, bytes]:
        """(seconds, body bytes, body if *keep*) of one ``GET /metrics``."""
        request = f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()
        sock = self.sock
        started = time.perf_counter()
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        status = head[9:12]
        length = -1
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if status != b"200" or length < 0:
            raise ConnectionError(f"unexpected response {head[:200]!r}")
        body = [rest] if keep else []
        remaining = length - len(rest)
        view = self.view
        while remaining > 0:
            received = sock.recv_into(view, min(remaining, len(view)))
            if not received:
                raise ConnectionError("connection closed mid-body")
            if keep:
                body.append(bytes(view[:received]))
            remaining -= received
        elapsed = time.perf_counter() - started
        return elapsed, length, b"".join(body)

    def close(self) -> None:
        self.sock.close()


def _stats(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1e3 for s in seconds]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(percentile(ms, 0.90), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
    }


def measure_size(
    size: Size, settings: Settings, client_cpu: int | None, server_cpu: int | None
) -> dict[str, Any]:
    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=server_main,
        args=(child, size, settings.history, server_cpu, settings.check_equivalence_max_series),
        daemon=True,
    )
    process.start()
    info = parent.recv()
    ours_port, baseline_port = info["ports"]
    ours, baseline = RawClient(ours_port), RawClient(baseline_port)
    variants = {
        "text": TEXT_HEADERS,
        "prometheus": PROMETHEUS_HEADERS,
        "openmetrics_plain": OPENMETRICS_PLAIN_HEADERS,
    }
    latencies: dict[str, list[float]] = {
        f"{who}_{v}": []
        for who in ("ours", "baseline")
        for v in variants
        if who == "ours" or v != "openmetrics_plain"
    }
    cpu_used: dict[str, float] = dict.fromkeys(latencies, 0.0)
    sizes: dict[str, int] = {}
    try:
        for name, headers in variants.items():  # validate and warm up
            _s, length, body = ours.get(headers, keep=True)
            if name == "prometheus":
                body = gzip.decompress(body)
            if not body.startswith(b"# HELP"):
                raise RuntimeError(f"unexpected /metrics body: {body[:80]!r}")
            sizes[f"ours_{name}"] = length
            if f"baseline_{name}" in latencies:
                sizes[f"baseline_{name}"] = baseline.get(headers)[1]
            for _ in range(settings.warmup):
                ours.get(headers)
                if f"baseline_{name}" in latencies:
                    baseline.get(headers)
        for _ in range(settings.rounds):
            for name, headers in variants.items():
                for who, client, count in (
                    ("ours", ours, size.ours_per_round),
                    ("baseline", baseline, size.baseline_per_round),
                ):
                    key = f"{who}_{name}"
                    if key not in latencies:
                        continue
                    parent.send("cpu")
                    before = parent.recv()
                    for _ in range(count):
                        latencies[key].append(client.get(headers)[0])
                    parent.send("cpu")
                    cpu_used[key] += parent.recv() - before
        parent.send("render-on")
        parent.recv()
        during: list[float] = []
        time.sleep(0.05)
        for _ in range(settings.during_render_scrapes):
            during.append(ours.get(TEXT_HEADERS)[0])
        parent.send("render-off")
        parent.recv()
    finally:
        ours.close()
        baseline.close()
        parent.send("stop")
        process.join(30)
    result = {
        key: {
            **_stats(values),
            "server_cpu_us_per_scrape": round(cpu_used[key] / len(values) * 1e6, 1),
            "body_bytes": sizes[key],
        }
        for key, values in latencies.items()
    }
    result["ours_text_during_render"] = _stats(during)
    return {
        "label": size.label,
        "targets_configured": size.targets,
        "instances": size.instances,
        **info,
        "scrapes": result,
    }


def run(*, quick: bool = False, settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or (Settings.quick() if quick else Settings())
    env = environment()
    load_start = load_average()
    client_cpu, server_cpu = cpu_plan()
    pinned = pin(0, client_cpu)
    points = []
    for size in settings.sizes:
        _progress(f"{size.label}: building and serving {size.targets} targets")
        point = measure_size(size, settings, client_cpu, server_cpu)
        scrapes = point["scrapes"]
        _progress(
            f"{size.label}: {point['series']:,} series, ours {scrapes['ours_text']['median_ms']} "
            f"ms, generate_latest {scrapes['baseline_text']['median_ms']} ms (median, text)"
        )
        points.append(point)
    load_end = load_average()
    document: dict[str, Any] = {
        "benchmark": NAME,
        "title": "/metrics latency vs series count, ours vs prometheus-client generate_latest",
        "environment": env,
        "settings": {
            "rounds": settings.rounds,
            "warmup": settings.warmup,
            "history": settings.history,
            "sizes": [s.label for s in settings.sizes],
            "quick": quick,
            "load_average_start": load_start,
            "load_average_end": load_end,
        },
        "pinning": {
            "pinned": pinned and all(p["pinned"] for p in points),
            "client_cpu": client_cpu,
            "server_cpu": server_cpu,
        },
        "points": points,
    }
    document["summary"] = _summary(document, settings)
    document["plots"] = _plot(document)
    return document


def _ratio(point: dict[str, Any], variant: str) -> float:
    scrapes = point["scrapes"]
    return round(
        scrapes[f"baseline_{variant}"]["median_ms"] / scrapes[f"ours_{variant}"]["median_ms"], 1
    )


def _summary(doc: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    rows = []
    for point in doc["points"]:
        s = point["scrapes"]
        label = (
            f"{point['series']:,} series ({point['targets_configured']} targets, "
            f"{point['targets']} target×direction)"
        )
        issue = point["label"] in settings.issue_sizes
        ours_text, ours_prom = s["ours_text"], s["ours_prometheus"]
        rows += [
            row(
                f"{label}: ours, text — median / p99 (n={ours_text['n']})",
                f"{ours_text['median_ms']} / {ours_text['p99_ms']}",
                "ms",
                f"median ≤ {TARGET_MEDIAN_MS:g} ms" if issue else "",
                ours_text["median_ms"] <= TARGET_MEDIAN_MS if issue else None,
            ),
            row(
                f"{label}: ours, Prometheus request (OpenMetrics + gzip) — median / p99",
                f"{ours_prom['median_ms']} / {ours_prom['p99_ms']}",
                "ms",
                f"median ≤ {TARGET_MEDIAN_MS:g} ms" if issue else "",
                ours_prom["median_ms"] <= TARGET_MEDIAN_MS if issue else None,
            ),
            row(
                f"{label}: ours, OpenMetrics without gzip — median / p99",
                f"{s['ours_openmetrics_plain']['median_ms']} / "
                f"{s['ours_openmetrics_plain']['p99_ms']}",
                "ms",
            ),
            row(
                f"{label}: generate_latest, text — median / p99 (n={s['baseline_text']['n']})",
                f"{s['baseline_text']['median_ms']} / {s['baseline_text']['p99_ms']}",
                "ms",
            ),
            row(
                f"{label}: generate_latest, Prometheus request — median / p99",
                f"{s['baseline_prometheus']['median_ms']} / {s['baseline_prometheus']['p99_ms']}",
                "ms",
            ),
            row(
                f"{label}: speed-up over generate_latest, text / Prometheus request (medians)",
                f"{_ratio(point, 'text')} / {_ratio(point, 'prometheus')}",
                "×",
                f"≥ {TARGET_RATIO:g}×" if issue else "",
                min(_ratio(point, "text"), _ratio(point, "prometheus")) >= TARGET_RATIO
                if issue
                else None,
            ),
            row(
                f"{label}: server CPU per scrape, ours / generate_latest (text)",
                f"{s['ours_text']['server_cpu_us_per_scrape']:,.0f} / "
                f"{s['baseline_text']['server_cpu_us_per_scrape']:,.0f}",
                "µs",
            ),
            row(
                f"{label}: ours while a poll renders in the background — median / p99",
                f"{s['ours_text_during_render']['median_ms']} / "
                f"{s['ours_text_during_render']['p99_ms']}",
                "ms",
            ),
            row(
                f"{label}: our render per poll (build_families + Snapshot.from_families), "
                "median (min)",
                f"{point['inprocess']['render_per_poll']['median_ms']} "
                f"({point['inprocess']['render_per_poll']['min_ms']})",
                "ms",
            ),
            row(
                f"{label}: body bytes, text / Prometheus request (gzip)",
                f"{s['ours_text']['body_bytes']:,} / {s['ours_prometheus']['body_bytes']:,}",
                "B",
            ),
        ]
        if point.get("equivalence"):
            eq = point["equivalence"]
            rows.append(
                row(
                    f"{label}: same samples as generate_latest (parsed, {eq['samples']:,})",
                    "equal" if eq["equal"] else f"{eq['differing']} differ",
                    "",
                    "equal",
                    eq["equal"],
                )
            )
    rows.append(
        row(
            "load average (1 min) at start / end",
            f"{doc['settings']['load_average_start'][0]} / "
            f"{doc['settings']['load_average_end'][0]}",
        )
    )
    return rows


def _plot(doc: dict[str, Any]) -> list[str]:
    points = doc["points"]
    xs = [p["series"] for p in points]

    def pick(key: str, field: str) -> list[float]:
        return [p["scrapes"][key][field] for p in points]

    path = plots.lines(
        "metrics_latency_vs_series.png",
        {
            "ours, text: median": (xs, pick("ours_text", "median_ms")),
            "ours, text: p99": (xs, pick("ours_text", "p99_ms")),
            "ours, Prometheus request (OpenMetrics+gzip): median": (
                xs,
                pick("ours_prometheus", "median_ms"),
            ),
            "ours, OpenMetrics without gzip: median": (
                xs,
                pick("ours_openmetrics_plain", "median_ms"),
            ),
            "generate_latest, text: median": (xs, pick("baseline_text", "median_ms")),
            "generate_latest, Prometheus request: median": (
                xs,
                pick("baseline_prometheus", "median_ms"),
            ),
            "ours: render once per poll (in-process)": (
                xs,
                [p["inprocess"]["render_per_poll"]["median_ms"] for p in points],
            ),
        },
        title="/metrics latency over loopback HTTP vs series count",
        xlabel="series (samples) in the exposition",
        ylabel="ms per scrape (log)",
        env=doc["environment"],
        note="keep-alive raw-socket client and server pinned to separate CPUs",
        logx=True,
        logy=True,
        hlines=[(TARGET_MEDIAN_MS, f"target: median ≤ {TARGET_MEDIAN_MS:g} ms at ≥ 15k series")],
    )
    return [path.name] if path else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke-sized run")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    document = run(quick=quick)
    path = plots.results_dir() / f"{NAME}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", "utf-8")
    for item in document["summary"]:
        verdict = "" if item["ok"] is None else (" [met]" if item["ok"] else " [MISSED]")
        print(f"{item['metric']}: {item['value']} {item['unit']}{verdict}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
