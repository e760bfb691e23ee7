"""``/metrics`` latency versus series count, ours against prometheus-client's ``generate_latest``.

A simulated estate (72 h of hourly syncs: partial successes, failures, manual runs), folded into
the daemon's one input (:class:`ExporterView`), is served by a process on its own CPU with our
:class:`HTTPServer` twice: ours (:class:`WebApp`: the daemon's snapshot plus per-scrape process
metrics), and generate_latest over the same families (our OpenMetrics parsed once by
prometheus-client's parser, beside the same process collectors, encoded per scrape as its own
handler does; the run fails unless every parsed sample of both is equal). This process, on the
other CPU, times scrapes (request's first byte to body's last, one keep-alive raw socket each)
in rounds alternating the servers: text, a Prometheus scrape (OpenMetrics + gzip), OpenMetrics
without gzip, and ours while the server re-renders back to back (a render holds the GIL). The
server times ``build_families``, the render per poll and ``generate_latest`` too (median of
repeats; pyperf's runner would re-execute ``python -m bench`` as its workers).
"""

from __future__ import annotations

import asyncio
import gzip
import multiprocessing as mp
import socket
import statistics
import threading
import time
import timeit
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

import prometheus_client as prom
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from bench import harness
from exporter.core import contract, instance, ledger, tracker
from exporter.core.exposition import render
from exporter.eiam.client import RequestEvent
from exporter.eiam.models import SynchronizationJob
from exporter.service.daemon import _render
from exporter.simulator import ManualClock, Scenario, World
from exporter.simulator.render import job_fragment
from exporter.web.app import WebApp
from exporter.web.server import HTTPServer, Request, Response

TITLE = "/metrics latency vs series count, ours vs prometheus-client generate_latest"
TARGET_MS, TARGET_RATIO, JUDGED, GZ = 5.0, 10.0, 100, "OpenMetrics + gzip"
OM = "application/openmetrics-text;version=1.0.0"
PROM = f"{OM},application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,"
SHAPES = {"text": "text/plain", "OpenMetrics": OM, GZ: PROM + "*/*;q=0.1\r\nAccept-Encoding: gzip"}
"""Request headers: curl's; Prometheus 2's scrape; OpenMetrics (no Accept-Encoding: identity)."""
SIZES = ((7, 1, 60, 40), (67, 1, 60, 8), (100, 1, 60, 6), (335, 4, 40, 3))
"""(targets, instances, our scrapes per round, generate_latest's): ~1k, ~10k, ~15k, ~50k series."""
QUICK_SIZES = ((7, 1, 20, 5), (100, 1, 20, 2))


def estate_view(targets: int, instances: int) -> tuple[contract.ExporterView, int]:
    """The daemon's view of a simulated estate after 72 h of polls, and its jobs."""
    estate = harness.estate_scenario(targets, instances=instances, history="72h")
    world = World(Scenario.model_validate(estate), seed=7, now_ms=ManualClock(1_735_689_600_000))
    now = world.advance()
    states = {}
    for one in world.instances:
        done, running = [], {}
        for job in one.jobs:
            model = SynchronizationJob.model_validate_json(job_fragment(job, now))
            if job.terminal_at(now):
                done.append(model)
            else:
                running[model.synchronization_job_id] = tracker.InProgressJob(model, now, now)
        counted = {j.synchronization_job_id: j.start_time or 0 for j in done[-50:]}
        names = {(t.target_type, t.target_id): t.name for t in one.targets}
        states[one.instance_id] = instance.InstanceState(
            tracker.TrackerState(now - 600_000, now, counted, running),
            ledger.InstanceLedger().with_jobs(done), names,
        )  # fmt: skip
    status = contract.PollStatus(True, now / 1e3, now / 1e3, 0.04, {"success": 4320, "error": 3},
                                 {"Throttling.User": 3})  # fmt: skip
    polls, api = dict.fromkeys(states, status), contract.ApiRequestStats()
    for i, action in enumerate(("ListSynchronizationJobs", "GetSynchronizationJob") * 750):
        code = "Throttling.User" if i % 97 == 0 else "200"
        api.on_request(RequestEvent(action, code, 0.02 + i % 19 * 0.02, 1, False))
    return contract.ExporterView(states, polls, api, {"success": 4320}, 60.0), world.job_count()


def _median_ms(function: Callable[[], object], repeats: int) -> float:
    """Median of *repeats* single calls, garbage collection on (as in the daemon)."""
    times = timeit.repeat(function, "import gc; gc.enable()", number=1, repeat=repeats)
    return round(statistics.median(times) * 1e3, 2)


def _serve(conn: Connection, rendering: Event, size: tuple[int, ...], cpu: int | None) -> None:
    """The server process: build, time, serve both; re-render while *rendering* is set."""
    harness.pin(0, cpu)
    view, jobs = estate_view(size[0], size[1])
    app = WebApp(poll_interval=view.poll_interval)
    app.snapshot = _render(view)
    om = render(contract.build_families(view), openmetrics=True).decode()
    parsed = list(text_string_to_metric_families(om))
    registry = prom.CollectorRegistry(auto_describe=False)
    registry.register(type("Parsed", (), {"collect": staticmethod(lambda: iter(parsed))}))
    for collector in (prom.ProcessCollector, prom.PlatformCollector, prom.GCCollector):
        collector(registry=registry)

    async def baseline(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body, headers = encoder(registry), [("content-type", content_type)]
        if "gzip" in request.headers.get("accept-encoding", ""):
            body, headers = gzip.compress(body), [*headers, ("content-encoding", "gzip")]
        return Response(200, headers, body)

    repeats, latest = 3 if size[0] > 200 else 7, lambda: prom.generate_latest(registry)
    ours, theirs = (harness.parse_exposition(b.decode()) for b in (app.snapshot.text, latest()))
    extra = {name for name, _ in theirs.keys() - ours.keys()}  # process metrics only
    if not ours.items() <= theirs.items() or any(n.startswith("idaas_") for n in extra):
        raise RuntimeError("generate_latest does not serve the samples ours does")
    point = {
        "series": app.snapshot.series, "jobs": jobs, "text_bytes": len(app.snapshot.text),
        "build_families_ms": _median_ms(lambda: contract.build_families(view), repeats),
        "render_per_poll_ms": _median_ms(lambda: _render(view), repeats),
        "generate_latest_ms": _median_ms(latest, repeats),
    }  # fmt: skip
    loop, servers = asyncio.new_event_loop(), [HTTPServer(app), HTTPServer(baseline)]
    for server in servers:
        loop.run_until_complete(server.start())
    threading.Thread(target=loop.run_forever, daemon=True).start()
    conn.send({**point, "ports": [server.port for server in servers]})
    while rendering.wait():
        app.snapshot = _render(view)


def _scraper(port: int) -> Callable[[str], float]:
    """Seconds of a ``GET /metrics`` in a shape, on one connection, into one reused buffer."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    view = memoryview(bytearray(1 << 20))

    def get(shape: str) -> float:
        request = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {SHAPES[shape]}\r\n\r\n".encode()
        started = time.perf_counter()
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536) or b"closed\r\n\r\n"
        head, _, rest = head.lower().partition(b"\r\n\r\n")
        if not head.startswith(b"http/1.1 200") or b"content-length: " not in head:
            raise ConnectionError(f"unexpected response {head[:120]!r}")
        remaining = int(head.split(b"content-length: ")[1].split(b"\r")[0]) - len(rest)
        while remaining > 0:
            if not (received := sock.recv_into(view, min(remaining, len(view)))):
                raise ConnectionError("connection closed mid-body")
            remaining -= received
        return time.perf_counter() - started

    return get


def _measure(size: tuple[int, int, int, int], quick: bool, cpu: int | None) -> dict[str, Any]:
    """One estate size: served by a pinned process, both servers scraped in rounds."""
    context = mp.get_context("spawn")
    (parent, child), rendering = context.Pipe(), context.Event()
    args = (child, rendering, size, cpu)
    (server := context.Process(target=_serve, args=args, daemon=True)).start()
    child.close()  # so that a server that died is an EOFError here, not a hang
    point = parent.recv()
    get = {"ours": _scraper(point["ports"][0]), "generate_latest": _scraper(point["ports"][1])}
    keys = [(who, shape) for shape in SHAPES for who in get]
    times: dict[str, list[float]] = {f"{w} {s}": [] for w, s in keys}
    for who, shape in keys * 5:  # warm-up
        get[who](shape)
    for who, shape in keys * (2 if quick else 5):
        times[f"{who} {shape}"] += [get[who](shape) for _ in range(size[2 if who == "ours" else 3])]
    rendering.set()
    times["ours text, re-rendering"] = [get["ours"]("text") for _ in range(15 if quick else 60)]
    server.kill()
    server.join(10)
    point["scrapes"] = {
        key: {"n": len(v), "median_ms": round(statistics.median(v) * 1e3, 2),
              "p99_ms": round(harness.percentile(v, 0.99) * 1e3, 2)} for key, v in times.items()
    }  # fmt: skip
    return {"targets": size[0], "instances": size[1], **point}


def _rows(point: dict[str, Any]) -> list[dict[str, Any]]:
    scrapes, judged, row = point["scrapes"], point["targets"] == JUDGED, harness.row
    label = f"{point['series']:,} series ({point['targets']} targets, {point['text_bytes']:,} B)"
    rows = []
    for key, s in scrapes.items():
        ok = s["median_ms"] <= TARGET_MS if judged and key in ("ours text", f"ours {GZ}") else None
        rows.append(row(f"{label}: {key}, median / p99 (n={s['n']})",
                        f"{s['median_ms']} / {s['p99_ms']}", "ms",
                        "" if ok is None else f"median ≤ {TARGET_MS:g} ms", ok))  # fmt: skip
    median = {k: v["median_ms"] for k, v in scrapes.items()}
    ratios = [median[f"generate_latest {k}"] / median[f"ours {k}"] for k in ("text", GZ)]
    return [*rows,
        row(f"{label}: speed-up over generate_latest, text / {GZ} (medians)",
            " / ".join(f"{r:.0f}" for r in ratios), "×", f"≥ {TARGET_RATIO:g}×" if judged else "",
            min(ratios) >= TARGET_RATIO if judged else None),
        row(f"{label}: in-process build_families / render per poll / generate_latest (medians)",
            f"{point['build_families_ms']} / {point['render_per_poll_ms']} / "
            f"{point['generate_latest_ms']}", "ms"),
    ]  # fmt: skip


def run(quick: bool) -> dict[str, Any]:
    client_cpu, server_cpu = harness.cpu_plan()
    pinned, load = harness.pin(0, client_cpu), [harness.load_average()]
    points = [_measure(size, quick, server_cpu) for size in (QUICK_SIZES if quick else SIZES)]
    load.append(harness.load_average())
    picks = [("ours text", "median"), ("ours text", "p99"), (f"ours {GZ}", "median")]
    picks += [("generate_latest text", "median"), (f"generate_latest {GZ}", "median")]
    series = {f"{a}: {b}": [[p["series"], p["scrapes"][a][f"{b}_ms"]] for p in points]
              for a, b in picks}  # fmt: skip
    series["ours: render per poll, in-process"] = [[p["series"], p["render_per_poll_ms"]]
                                                    for p in points]  # fmt: skip
    plot = {"name": "latency_vs_series", "title": "/metrics over loopback vs series count",
            "x": "series in the exposition", "y": "ms per scrape", "logx": True, "logy": True,
            "series": series}  # fmt: skip
    figures = {"pinned": pinned and server_cpu is not None, "load_average": load, "points": points}
    return {"rows": [r for p in points for r in _rows(p)], "figures": figures, "plots": [plot]}
