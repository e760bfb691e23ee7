"""Every query of the Grafana dashboard against a real Prometheus holding the demo's data as
scraped every 15 s, 60 s and 120 s: no panel is empty that should have data.

What a panel gets is what Grafana would send: the interval variables computed as Grafana 11
computes them from the datasource's scrape interval and the panel's min interval
(``$__interval``, ``$__rate_interval`` = max($__interval + scrape, 4 × scrape), ``$__range``; see
``grafana_intervals`` in tests/deploy/test_dashboard.py), every template variable at its All
value (the variable queries are run first, in order, against the same Prometheus: job and
replica become the regex of the exporter's own values, as Grafana builds it), range queries
over the last hour with start and end aligned to the step, instant queries at the end. Checked:
the variables' options (targets listed by name); every query returns series; every step whose
window lies inside the data has a value (a window of one sample leaves a step blank: the defect
of issue 11 §2.2); every label a legend names is set; per-target queries keep every series,
named by target_id, when idaas_sync_target_info is empty; the two status stats return nothing
at all (Grafana's "No data") once the exporter's series are gone; the health table's queries
describe the same rows; and every series of the exporter's own panels belongs to the exporter
— this Prometheus also scrapes itself, like the compose demo's. The 60 s data is checked with the
provisioned datasource's scrape interval, and with Grafana's default of 15 s (a datasource that
does not say, in front of the chart's 60 s ServiceMonitor).

Why backfilled data. Only the spacing of the samples decides whether a window holds one sample
or two, and waiting for 4 × 60 s of real scrapes is too slow, so real scrapes are stamped at
the spacing under test instead:

1. The daemon runs in-process against the simulator's demo world (two IDaaS instances, eleven
   targets: one failing since minute 10, one with partial successes, one stuck job) on a manual
   clock that starts 90 minutes in the past. Every 15 s of simulated time the test fetches
   /metrics over HTTP in OpenMetrics, as Prometheus does; every 60 s the daemon polls (the
   chart's poll interval). The daemon's own poll timestamps follow the simulated clock too (its
   module's ``time`` is patched), and the API throttles every request for two minutes, so the
   error and throttling panels have something to show.
2. Each exposition is stamped with the simulated time it was taken at and gets what a scrape
   adds: the target labels (job, instance; for the 15 s data a relabelled ``cluster``) and
   ``up 1``. ``promtool tsdb create-blocks-from openmetrics`` turns them into blocks: every
   exposition (15 s), every 4th (60 s), every 8th (120 s), each ending with the newest.
3. A real Prometheus opens the blocks, loads deploy/prometheus/idaas-sync-exporter.rules.yml as
   it is (the health table reads idaas_sync:success_max_age_seconds) and scrapes itself.

What backfill does not give: staleness markers (a series that leaves the exposition lingers
for the 5-minute lookback instead of ending at once: more data, never less, and no panel reads
an ending), exemplars (blocks hold none: ``test_the_job_rate_panel_shows_exemplars`` scrapes a
live daemon for them) and recording rules before Prometheus started (they are evaluated from
its start on, so only instant queries read them — the health table's are instant). Queries run
at the real "now", some seconds after the newest sample (the lookback covers instant queries);
steps after the newest sample (+ half a scrape interval) are not required to have a value, but
their series are checked — that is where Prometheus's own series are (it scrapes itself from
its start on).

Ports are ephemeral and on loopback, data lives in pytest's tmp directories, every wait has a
deadline, every process is stopped by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from deploy.test_dashboard import (
    DATASOURCE,
    GRAFANA_DEFAULT_SCRAPE_INTERVAL,
    NO_DATA_STATS,
    Query,
    dashboard_queries,
    grafana_intervals,
    legend_labels,
    seconds,
    substitute,
    variables,
)

from exporter.config import Settings
from exporter.service import daemon as daemon_module
from exporter.service.daemon import Daemon
from exporter.simulator import ManualClock, SimulatorServer, World, load_scenario

from .support import simulator_credentials, wait_until

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "idaas-sync-exporter.rules.yml"
JOB = "idaas-sync-exporter"
CLUSTER = "e2e"
SCRAPE_MS = 15_000
POLL_EVERY = 4  # scrapes: a poll every 60 s of simulated time
HISTORY_MS = 90 * 60 * 1000
FAULTS = "throttle=1@20m-22m,retry-after=10ms"  # minutes 20 and 21: every request throttled
RANGE_S = 3600.0  # the dashboard's time range under test: the last hour
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
HEADERS = {"accept": OPENMETRICS, "accept-encoding": "identity"}
_SAMPLE = re.compile(r'([A-Za-z_:][\w:]*)(?:\{((?:[^"}]|"(?:[^"\\]|\\.)*")*)\})? (\S+)(.*)')


# -- recording the demo ----------------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    at_ms: int
    text: str = field(repr=False)


@dataclass
class History:
    """Expositions of the demo taken every 15 s of simulated time, oldest first."""

    scrapes: list[Scrape] = field(repr=False)
    address: str  # the daemon's host:port, its `instance` label
    instance_ids: list[str]
    target_names: dict[str, str]  # target_id → name, from the scenario

    def every(self, seconds: int) -> list[Scrape]:
        step = seconds * 1000 // SCRAPE_MS
        return self.scrapes[::-1][::step][::-1]  # ends with the newest


async def record_demo() -> History:
    end_ms = int(time.time() * 1000)
    clock = ManualClock(end_ms - HISTORY_MS)
    world = World(load_scenario("demo"), seed=11, now_ms=clock)
    names = {t.target_id: t.name for i in world.instances for t in i.targets}
    scrapes: list[Scrape] = []
    with pytest.MonkeyPatch.context() as patch:
        # the daemon stamps its polls with time.time(): make that the simulated clock
        patch.setattr(daemon_module, "time", SimpleNamespace(time=lambda: clock() / 1000))
        async with SimulatorServer(world, faults=FAULTS) as simulator:
            settings = Settings(
                instance_ids=[i.instance_id for i in world.instances],
                endpoint=simulator.base_url,
                # the test polls (below); the daemon's own loop only polls once, at the start
                poll_interval_seconds=86400,
                state_file=None,
                web_listen_address="127.0.0.1:0",
                api_rate_limit=0,
            )
            credentials = simulator_credentials(simulator.access_key)
            daemon = Daemon(settings, credentials=credentials, clock_ms=clock)
            stop = asyncio.Event()
            task = asyncio.create_task(daemon.run(stop))
            try:
                await asyncio.wait_for(daemon.started.wait(), 10)
                assert daemon.server is not None

                async def first_polls_done() -> bool:
                    return all(status.polls for status in daemon.status.values())

                await wait_until(first_polls_done, timeout=15, what="the daemon's first polls")
                url = daemon.server.url + "/metrics"
                async with httpx.AsyncClient(timeout=10) as client:
                    count = 0
                    while True:
                        response = await client.get(url, headers=HEADERS)
                        response.raise_for_status()
                        assert response.headers["content-type"].startswith(OPENMETRICS)
                        scrapes.append(Scrape(clock(), response.text))
                        # until the simulated time has caught up with the wall clock
                        if clock() + SCRAPE_MS > time.time() * 1000:
                            break
                        clock.advance(SCRAPE_MS)
                        count += 1
                        if count % POLL_EVERY == 0:  # both instances, as the daemon would
                            await asyncio.gather(
                                *(i.poller.poll_and_commit() for i in daemon.instances.values())
                            )
                address = daemon.server.url.split("://", 1)[1]
            finally:
                stop.set()
                assert await asyncio.wait_for(task, 10) == 0
    return History(scrapes, address, sorted(i.instance_id for i in world.instances), names)


def write_openmetrics(scrapes: list[Scrape], labels: dict[str, str], path: Path) -> None:
    """The expositions as one OpenMetrics file, each sample stamped and given *labels* (what
    a scrape adds), plus `up 1` per scrape; exemplars dropped (blocks cannot hold them)."""
    extra = ",".join(f'{k}="{v}"' for k, v in labels.items())
    heads: dict[str, str] = {}
    with path.open("w") as out:
        for scrape in scrapes:
            stamp = f" {scrape.at_ms / 1000:.3f}\n"
            lines = []
            for line in scrape.text.splitlines():
                if line.startswith("#"):
                    if line.startswith(("# TYPE ", "# HELP ", "# UNIT ")):
                        lines.append(line + "\n")
                    continue
                head = heads.get(line)
                if head is None:
                    match = _SAMPLE.fullmatch(line)
                    assert match, line
                    name, own, value, rest = match.groups()
                    assert not rest or rest.startswith(" # {"), f"a sample timestamp? {line}"
                    head = f"{name}{{{extra}{',' + own if own else ''}}} {value}"
                    heads[line] = head
                lines.append(head + stamp)
            lines.append(f"up{{{extra}}} 1{stamp}")
            out.write("".join(lines))
        out.write("# EOF\n")


@dataclass(frozen=True)
class Dataset:
    scrape: int  # seconds between samples
    newest_ms: int
    oldest_ms: int
    cluster: str | None
    server: PrometheusProcess


@dataclass
class Demo:
    history: History
    datasets: dict[int, Dataset]


DATASETS = {15: CLUSTER, 60: None, 120: None}  # scrape interval → relabelled cluster label


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The demo recorded once; per scrape interval its blocks, opened by a real Prometheus.
    The promtool runs overlap the writing of the next file, the Prometheus start-ups (5 s each
    before the first scrape of themselves) overlap each other."""
    history = asyncio.run(record_demo())
    base = tmp_path_factory.mktemp("dashboard-data")
    converting: list[tuple[int, Path, subprocess.Popen[bytes]]] = []
    servers: list[PrometheusProcess] = []
    try:
        for scrape, cluster in DATASETS.items():
            labels = {"job": JOB, "instance": history.address}
            if cluster:
                labels["cluster"] = cluster  # as relabelling would add it
            directory = base / f"{scrape}s"
            directory.mkdir()
            write_openmetrics(history.every(scrape), labels, directory / "data.om")
            with (directory / "promtool.log").open("wb") as log:
                source, blocks = directory / "data.om", directory / "tsdb"
                promtool = subprocess.Popen(
                    [
                        _binary("promtool"),
                        "tsdb",
                        "create-blocks-from",
                        "openmetrics",
                        source,
                        blocks,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            converting.append((scrape, directory, promtool))
        for _, directory, promtool in converting:
            code = promtool.wait(60)
            assert code == 0, (directory / "promtool.log").read_text()
            (directory / "data.om").unlink()
            servers.append(launch_prometheus(directory, directory / "tsdb", []))
        deadline = time.monotonic() + 30
        for server in servers:
            server.wait_ready(deadline, "idaas_sync:success_max_age_seconds")
        datasets = {}
        for (scrape, _, _), server in zip(converting, servers, strict=True):
            scrapes = history.every(scrape)
            datasets[scrape] = Dataset(
                scrape, scrapes[-1].at_ms, scrapes[0].at_ms, DATASETS[scrape], server
            )
        yield Demo(history, datasets)
    finally:
        for _, _, promtool in converting:
            if promtool.poll() is None:
                promtool.kill()
                promtool.wait(10)
        for server in servers:
            server.stop()


# -- Prometheus ------------------------------------------------------------------------------


def _binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found (Debian package prometheus; tests/run.sh installs it)")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PrometheusProcess:
    """A Prometheus on 127.0.0.1 with the shipped rules, scraping itself every second."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "--- prometheus log ---\n" + "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, deadline: float, *required: str) -> None:
        """Until ready, its own first scrape is in and every *required* query has a result."""
        wanted = ['up{job="prometheus"}', *required]
        with httpx.Client(timeout=5) as client:
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"prometheus exited\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.url + "/-/ready").status_code == 200 and all(
                        client.get(self.url + "/api/v1/query", params={"query": q}).json()["data"][
                            "result"
                        ]
                        for q in wanted
                    ):
                        return
                if time.monotonic() > deadline:
                    raise AssertionError(f"Prometheus not ready with {wanted}\n{self.log_tail()}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def launch_prometheus(
    directory: Path, storage: Path, scrape_configs: list[dict[str, Any]], *features: str
) -> PrometheusProcess:
    port = _free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
            *scrape_configs,
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = directory / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                _binary("prometheus"),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                *(f"--enable-feature={f}" for f in features),
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return PrometheusProcess(process, f"http://127.0.0.1:{port}", log)


@dataclass
class Prometheus:
    """Prometheus's HTTP API, as Grafana calls it."""

    url: str
    client: httpx.AsyncClient

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(self.url + path, params=params)
        assert response.status_code == 200, f"{path} {params}: {response.text}"
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    async def instant(self, expr: str, at: float) -> list[dict[str, Any]]:
        data = await self.get("/api/v1/query", query=expr, time=f"{at:.3f}")
        assert data["resultType"] == "vector", (expr, data["resultType"])
        result: list[dict[str, Any]] = data["result"]
        return result

    async def range(self, expr: str, start: float, end: float, step: float) -> list[Any]:
        data = await self.get(
            "/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step
        )
        result: list[dict[str, Any]] = data["result"]
        return result


@contextlib.asynccontextmanager
async def api(server: PrometheusProcess) -> AsyncIterator[Prometheus]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield Prometheus(server.url, client)


# -- Grafana's part: variables ---------------------------------------------------------------


def _regex_escape(value: str) -> str:
    """Grafana's prometheusSpecialRegexEscape: a value inside a PromQL regex string."""
    return re.sub(r"([$^*{}\[\]'+?.()|])", r"\\\\\1", value.replace("\\", "\\\\\\\\"))


@dataclass
class Option:
    text: str
    value: str


async def variable_options(
    server: Prometheus, variable: dict[str, Any], values: dict[str, str], start: float, end: float
) -> list[Option]:
    """The options Grafana computes for a query variable (label_values / query_result, then
    the variable's regex with its value and text groups, unique values, sorted by text)."""
    query = substitute(variable["query"]["query"], grafana_intervals(15, RANGE_S), values)
    options: list[Option] = []
    labels = re.fullmatch(r"label_values\((?:(.+), *)?(\w+)\)", query)
    if labels:
        params: dict[str, Any] = {"start": f"{start:.3f}", "end": f"{end:.3f}"}
        if labels.group(1):
            params["match[]"] = labels.group(1)
        found = await server.get(f"/api/v1/label/{labels.group(2)}/values", **params)
        texts = [str(v) for v in found]
    else:
        inner = re.fullmatch(r"query_result\((.+)\)", query)
        assert inner, query
        texts = []
        for series in await server.instant(inner.group(1), end):
            metric = dict(series["metric"])
            name = metric.pop("__name__", "")
            shown = ",".join(f'{k}="{v}"' for k, v in metric.items())
            texts.append(f"{name}{{{shown}}} {series['value'][1]} {int(series['value'][0] * 1000)}")
    pattern = variable.get("regex") or ""
    for text in texts:
        if not pattern:
            options.append(Option(text, text))
            continue
        body = pattern[1 : pattern.rindex("/")] if pattern.startswith("/") else pattern
        match = re.search(body.replace("(?<", "(?P<"), text)
        if not match:
            continue
        groups = match.groupdict()
        if "value" in groups or "text" in groups:
            value = groups.get("value") or groups.get("text") or ""
            options.append(Option(groups.get("text") or value, value))
        else:
            captured = match.group(1) if match.groups() else match.group(0)
            options.append(Option(captured, captured))
    unique = {o.value: o for o in options}
    return (
        sorted(unique.values(), key=lambda o: o.text)
        if variable.get("sort")
        else list(unique.values())
    )


def all_value(variable: dict[str, Any], options: list[Option]) -> str:
    """What Grafana puts in place of a variable whose selection is All."""
    if variable.get("allValue"):
        return str(variable["allValue"])
    escaped = [_regex_escape(o.value) for o in options]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


async def template_values(
    server: Prometheus, start: float, end: float
) -> tuple[dict[str, str], dict[str, list[Option]]]:
    values: dict[str, str] = {}
    options: dict[str, list[Option]] = {}
    for name, variable in variables().items():
        if variable["type"] != "query":
            continue
        options[name] = await variable_options(server, variable, values, start, end)
        values[name] = all_value(variable, options[name])
    return values, options


# -- Grafana's part: panels ------------------------------------------------------------------


@dataclass
class Check:
    """The checks of one data set at one datasource scrape interval."""

    server: Prometheus
    dataset: Dataset
    history: History
    scrape: float  # what the datasource says (timeInterval)
    values: dict[str, str]
    now: float
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"[data every {self.dataset.scrape} s, datasource {self.scrape:g} s]"

    def problem(self, query: Query, text: str) -> None:
        self.problems.append(f"{self.label} {query.name}: {text}")

    async def run(
        self, query: Query, expr: str | None = None, *, covered: bool = True
    ) -> list[dict[str, Any]]:
        """Run *query* (or *expr* in its place) as Grafana would; with *covered*, note every
        step whose window lies inside the recorded data and has no value."""
        intervals = grafana_intervals(
            self.scrape,
            RANGE_S,
            panel_interval=query.panel_interval,
            query_interval=query.query_interval,
        )
        promql = substitute(expr or query.expr, intervals, self.values)
        if query.instant:
            return await self.server.instant(promql, self.now)
        step = intervals.step
        first, last = (self.now - RANGE_S) // step * step, self.now // step * step  # aligned
        result = await self.server.range(promql, first, last, step)
        # Prometheus's own series begin when it started, maybe after the last aligned step:
        # the newest moment shows whether the query picks them up
        self.check_scope(query, await self.server.instant(promql, self.now))
        if not covered:
            return result
        windows = [seconds(r) for r in re.findall(r"\[([^\]:]+)\]", promql)]
        window = max(windows, default=0.0)
        oldest = self.dataset.oldest_ms / 1000
        # the data ends with the newest scrape: later steps are not the dashboard's to fill
        newest = self.dataset.newest_ms / 1000 + self.dataset.scrape / 2
        due = {
            round(t, 3)
            for t in (first + i * step for i in range(int((last - first) // step) + 1))
            if t - window >= oldest and t <= newest
        }
        seen = {round(float(point[0]), 3) for series in result for point in series["values"]}
        if due - seen:
            missing = sorted(due - seen)
            self.problem(
                query,
                f"blank at {len(missing)} of {len(due)} steps of {step:g} s (window "
                f"{window:g} s), e.g. {missing[0] - newest:+.0f} s: {promql}",
            )
        return result

    def check_series(self, query: Query, result: list[dict[str, Any]]) -> None:
        if not result:
            self.problem(query, "no series")
            return
        wanted = legend_labels(query.legend)
        for series in result:
            metric = series["metric"]
            unset = sorted(label for label in wanted if not metric.get(label))
            if unset:
                self.problem(query, f"legend {query.legend!r} without {unset}: {metric}")
            if query.instant and math.isnan(float(series["value"][1])):
                self.problem(query, f"NaN: {metric}")
        self.check_scope(query, result)

    def check_scope(self, query: Query, result: list[dict[str, Any]]) -> None:
        for series in result:
            metric = series["metric"]
            if "job" in metric and metric["job"] != JOB:
                self.problem(query, f"a series of another job: {metric}")
            elif "instance" in metric and metric["instance"] != self.history.address:
                self.problem(query, f"a series of another scrape target: {metric}")


async def check_dataset(
    server: Prometheus, demo: Demo, dataset: Dataset, scrape: float
) -> list[str]:
    now = time.time()
    values, options = await template_values(server, now - RANGE_S, now)
    check = Check(server, dataset, demo.history, scrape, values, now)
    problems = check.problems
    label = check.label

    # variables: the exporter's own job and replica, the instances, targets by name
    expected = {
        "cluster": [dataset.cluster] if dataset.cluster else [],
        "job": [JOB],
        "instance": [demo.history.address],
        "instance_id": demo.history.instance_ids,
    }
    for name, wanted in expected.items():
        got = sorted(o.value for o in options.get(name, []))
        if got != wanted:
            problems.append(f"{label} variable ${name}: {got}, expected {wanted}")
    names = {o.value: o.text for o in options.get("target", [])}
    if names != demo.history.target_names:
        problems.append(
            f"{label} variable $target shows {names}, expected {demo.history.target_names}"
        )

    tables: dict[str, dict[str, set[tuple[str, ...]]]] = {}
    for query in dashboard_queries():
        if query.name.startswith("annotation"):
            # no restart happened: the annotation shows nothing, but its window must have data
            assert query.expr.endswith(" > 0"), query.expr
            check.check_series(query, await check.run(query, query.expr.removesuffix(" > 0")))
            if await check.run(query, covered=False):
                check.problem(query, "a restart annotation, yet the exporter never restarted")
            continue
        result = await check.run(query)
        check.check_series(query, result)
        assert query.panel is not None and query.target is not None
        if "idaas_sync_target_info{" in query.expr:
            # without names (not listed, or not permitted) the same series, named by their ID
            now_only = replace(query, instant=True)
            named = await check.run(now_only)
            unnamed = await check.run(
                now_only, query.expr.replace("idaas_sync_target_info{", "idaas_sync_no_info{")
            )
            ids = [s["metric"].get("target_name") == s["metric"]["target_id"] for s in unnamed]
            if len(unnamed) != len(named) or not all(ids):
                check.problem(query, f"without target names: {unnamed} instead of {named}")
        if query.panel["type"] == "table":
            keys = tables.setdefault(query.panel["title"], {})
            keys[query.target["refId"]] = {
                tuple(sorted((k, v) for k, v in s["metric"].items())) for s in result
            }
        if query.panel["title"] in NO_DATA_STATS:
            # the exporter gone: no series (Grafana then shows "No data"), not a 0
            gone = await server.instant(
                substitute(query.expr, grafana_intervals(scrape, RANGE_S), {**values, "job": "x"}),
                now,
            )
            if gone:
                check.problem(query, f"a value without any data: {gone}")

    # the health table's queries describe the same targets: merged, every row is complete,
    # except the columns a target may lack: B (the last success of a target that never
    # succeeded), G and H (the cadence, learnt for regular targets only)
    for title, keys in tables.items():
        rows = set().union(*keys.values())
        for ref, found in keys.items():
            if ref not in {"B", "G", "H"} and found != rows:
                problems.append(f"{label} {title!r} {ref}: rows {sorted(rows - found)} missing")
    return problems


def _datasource_scrape_interval() -> float:
    (source,) = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    return seconds(source["jsonData"].get("timeInterval", "15s"))


@pytest.mark.parametrize("scrape", [60, 15, 120], ids=["60s", "15s", "120s"])
async def test_every_panel_has_data(demo: Demo, scrape: int) -> None:
    dataset = demo.datasets[scrape]
    assumed = {
        15: [15.0],
        # as provisioned, and as a datasource that does not say (Grafana's default)
        60: sorted({_datasource_scrape_interval(), GRAFANA_DEFAULT_SCRAPE_INTERVAL}),
        120: [120.0],
    }[scrape]
    problems = []
    async with api(dataset.server) as server:
        for interval in assumed:
            problems += await check_dataset(server, demo, dataset, interval)
    assert not problems, "\n".join(problems)


# -- exemplars: a live scrape ----------------------------------------------------------------


async def test_the_job_rate_panel_shows_exemplars(tmp_path: Path) -> None:
    """The panels that ask for exemplars get the newest job IDs (sync_job_id) from a real
    Prometheus with exemplar storage scraping a live daemon (exemplars live in memory, not in
    blocks: backfill cannot give them)."""
    asking = [q for q in dashboard_queries() if q.target and q.target.get("exemplar")]
    assert "Jobs by status" in {q.panel["title"] for q in asking if q.panel}
    clock = ManualClock(int(time.time() * 1000))
    world = World(load_scenario("demo"), seed=11, now_ms=clock)
    job_ids = {j.job_id for i in world.instances for j in world.terminal_jobs(i.instance_id)}
    async with SimulatorServer(world) as simulator:
        settings = Settings(
            instance_ids=[i.instance_id for i in world.instances],
            endpoint=simulator.base_url,
            poll_interval_seconds=0.5,
            state_file=None,
            web_listen_address="127.0.0.1:0",
            api_rate_limit=0,
        )
        credentials = simulator_credentials(simulator.access_key)
        daemon = Daemon(settings, credentials=credentials, clock_ms=clock)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        try:
            await asyncio.wait_for(daemon.started.wait(), 10)
            assert daemon.server is not None
            address = daemon.server.url.split("://", 1)[1]
            scrape = {"job_name": JOB, "static_configs": [{"targets": [address]}]}
            process = launch_prometheus(tmp_path, tmp_path / "tsdb", [scrape], "exemplar-storage")
            deadline = time.monotonic() + 20
            try:
                await asyncio.to_thread(process.wait_ready, deadline, f'up{{job="{JOB}"}} == 1')
            except BaseException:
                process.stop()
                raise
            async with api(process) as server:
                end = time.time()
                values, _ = await template_values(server, end - RANGE_S, end)
                found: dict[str, set[str]] = {}

                async def exemplars_arrived() -> bool:
                    now = time.time()
                    for query in asking:
                        intervals = grafana_intervals(
                            1, RANGE_S, panel_interval=query.panel_interval
                        )
                        data = await server.get(
                            "/api/v1/query_exemplars",
                            query=substitute(query.expr, intervals, values),
                            start=f"{now - 86400:.3f}",
                            end=f"{now:.3f}",
                        )
                        found[query.name] = {
                            e["labels"]["sync_job_id"] for s in data for e in s["exemplars"]
                        }
                    return all(found.values())

                try:
                    await wait_until(exemplars_arrived, timeout=15, what="exemplars", step=0.2)
                except AssertionError as error:
                    raise AssertionError(f"{error}: {found}\n{process.log_tail()}") from None
                finally:
                    process.stop()
                for name, ids in found.items():
                    assert ids <= job_ids, f"{name}: unknown job IDs {ids - job_ids}"
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 10) == 0
