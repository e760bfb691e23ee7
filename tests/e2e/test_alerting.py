"""Alerting end to end, with the real Prometheus server and Alertmanager on loopback.

The daemon polls the simulator in-process; a real ``prometheus`` scrapes it every second and
evaluates the shipped rules every second; firing alerts go to a real Alertmanager, which posts
them to a webhook receiver run by this test on 127.0.0.1. One target of the simulated instance is
made to fail at run time through the simulator's control interface (``/_sim``): its failed-sync
alert must reach the webhook, and the healthy target must raise nothing.

Why a test copy of the rules: the shipped ``for:`` durations (1 to 15 minutes) assume a 60 s
scrape interval. Here everything runs 60 times faster (1 s scrapes and evaluations), so the copy
divides every ``for:`` by 60 (1m → 1s, 15m → 15s) and changes nothing else: expressions,
labels, annotations and recording rules are the shipped ones, and the proportions between the
waits and the scrape interval stay those of production (an absent exporter still needs 5
evaluations before IdaasExporterAbsent fires, not 0 — which would fire before the first scrape),
and the copy is loaded only once Prometheus has scraped the exporter (see step 1 of the test).

Ports are ephemeral, state lives in pytest's tmp_path, every wait has a deadline, and all
processes are stopped by the test. Bounded to 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.config import Settings
from exporter.service.daemon import Daemon
from exporter.simulator import ManualClock, Scenario, SimulatorServer, World

from .support import simulator_credentials, wait_until

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "idaas-sync-exporter.rules.yml"
INSTANCE = "idaas_e2ealerting0000000000000"
HEALTHY = "idp_e2ehealthy00000000000000000"
BROKEN = "app_e2ebroken000000000000000000"
BROKEN_NAME = "E2E SCIM application"
JOB = "idaas-sync-exporter"

SCENARIO = {
    "name": "alerting",
    "description": "one healthy identity provider, one application that will be made to fail",
    "history": "6h",
    "instances": [
        {
            "id": INSTANCE,
            "targets": [
                {
                    "type": "identity_provider",
                    "kind": "ad",
                    "id": HEALTHY,
                    "name": "E2E corporate AD",
                    "interval": "30m",
                    "duration": "2m",
                    "jitter": 0.0,
                    "manual_rate": 0.0,
                    "partial_rate": 0.0,
                    "failure_rate": 0.0,
                },
                {
                    "type": "application",
                    "id": BROKEN,
                    "name": BROKEN_NAME,
                    "interval": "30m",
                    "duration": "1m",
                    "jitter": 0.0,
                    "manual_rate": 0.0,
                    "partial_rate": 0.0,
                    "failure_rate": 0.0,
                },
            ],
        }
    ],
}


# -- the test copy of the rules --------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(duration: str) -> int:
    parts = re.findall(r"(\d+)([smhd])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * _UNITS[u] for n, u in parts)


_RANGE = re.compile(r"\[((?:\d+[smhd])+)\]")
"""A range window of PromQL, e.g. ``[1h]`` or ``[1h30m]`` (the rules use no subqueries)."""


def _faster(duration: str) -> str:
    return f"{max(1, _seconds(duration) // 60)}s"


def rules_60_times_faster(source: Path, target: Path, *, windows: bool = False) -> dict[str, str]:
    """Write *source* with every ``for:`` and ``keep_firing_for:`` divided by 60 (at least
    1 s); with *windows*, every range window of every expression too (``[1h]`` → ``[60s]``).
    Return alert → for."""
    document = yaml.safe_load(source.read_text())
    scaled: dict[str, str] = {}
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = _faster(rule["for"])
                scaled[rule["alert"]] = rule["for"]
            if "keep_firing_for" in rule:
                rule["keep_firing_for"] = _faster(rule["keep_firing_for"])
            if windows:
                rule["expr"] = _RANGE.sub(lambda m: f"[{_faster(m[1])}]", rule["expr"])
    target.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return scaled


# -- the webhook receiver --------------------------------------------------------------------


@dataclass
class Webhook:
    """Alertmanager's webhook payloads, as received on 127.0.0.1."""

    server: ThreadingHTTPServer
    payloads: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    """``time.monotonic()`` at which each payload arrived, in the order of *payloads*."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def alerts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [alert for payload in self.payloads for alert in payload["alerts"]]

    def timed_alerts(self) -> list[tuple[float, dict[str, Any]]]:
        """Every alert received, with the monotonic time its payload arrived."""
        with self.lock:
            return [
                (arrived, alert)
                for arrived, payload in zip(self.arrivals, self.payloads, strict=True)
                for alert in payload["alerts"]
            ]


@contextlib.contextmanager
def webhook_receiver() -> Iterator[Webhook]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            payload = json.loads(self.rfile.read(length))
            with hook.lock:
                hook.arrivals.append(time.monotonic())
                hook.payloads.append(payload)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output clean
            pass

    hook = Webhook(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()
        thread.join(5)


# -- Prometheus and Alertmanager processes ---------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A Prometheus or Alertmanager process on 127.0.0.1:port, its log in a file."""

    name: str
    process: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} log ---\n" + "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_server(name: str, argv: list[str], port: int, log: Path) -> Server:
    """Start a server and wait (15 s at most) until its /-/ready answers 200."""
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output
        )
    server = Server(name, process, port, log)

    async def ready() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"{name} exited with {process.returncode}\n{server.log_tail()}")
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                return (await client.get(server.url + "/-/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await wait_until(ready, timeout=15, what=f"{name} to be ready", step=0.1)
    except BaseException:
        await server.stop()
        raise
    return server


def binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"none of {names} found (Debian packages prometheus, prometheus-alertmanager)")


@contextlib.asynccontextmanager
async def alerting_servers(
    tmp_path: Path,
    webhook: Webhook,
    scrape_configs: list[dict[str, Any]],
    *,
    rule_files: list[str],
    route: dict[str, str],
    send_resolved: bool,
    prometheus_flags: tuple[str, ...] = (),
) -> AsyncIterator[tuple[Server, Server]]:
    """A real Alertmanager posting to *webhook* (grouped by alert, instance and target; *route*
    sets its waits) and a real Prometheus scraping *scrape_configs* and evaluating *rule_files*
    every second, sending to that Alertmanager. Yields (prometheus, alertmanager); both are
    stopped on the way out. Configurations and logs live in *tmp_path*, ports are ephemeral."""
    servers: list[Server] = []
    try:
        am_port = free_port()
        (tmp_path / "alertmanager.yml").write_text(
            yaml.safe_dump(
                {
                    "route": {
                        "receiver": "test",
                        "group_by": ["alertname", "instance_id", "target_id"],
                        **route,
                    },
                    "receivers": [
                        {
                            "name": "test",
                            "webhook_configs": [
                                {"url": webhook.url, "send_resolved": send_resolved}
                            ],
                        }
                    ],
                }
            )
        )
        alertmanager = await start_server(
            "alertmanager",
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",  # no HA gossip port
            ],
            am_port,
            tmp_path / "alertmanager.log",
        )
        servers.append(alertmanager)
        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": rule_files,
                    "alerting": {
                        "alertmanagers": [
                            {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}
                        ]
                    },
                    "scrape_configs": scrape_configs,
                }
            )
        )
        prometheus = await start_server(
            "prometheus",
            [
                binary("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                *prometheus_flags,
            ],
            prom_port,
            tmp_path / "prometheus.log",
        )
        servers.append(prometheus)
        yield prometheus, alertmanager
    finally:
        for server in reversed(servers):
            await server.stop()


# -- the rig ---------------------------------------------------------------------------------


def _rfc3339(stamp: str) -> float:
    """Unix seconds from Prometheus's RFC 3339 timestamps (nanoseconds cut to microseconds)."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


@dataclass
class Rig:
    simulator: SimulatorServer
    daemon_url: str
    prometheus: Server
    alertmanager: Server
    webhook: Webhook
    scaled_for: dict[str, str]

    async def query(self, promql: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(
                self.prometheus.url + "/api/v1/query", params={"query": promql}
            )
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    async def prometheus_alerts(self) -> list[dict[str, Any]]:
        """Every alert Prometheus holds, pending or firing."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self.prometheus.url + "/api/v1/alerts")
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()["data"]["alerts"]
        return alerts

    async def control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(self.simulator.control_url + path, json=body)
        assert response.status_code < 300, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def last_evaluation(self, group: str) -> float:
        """When Prometheus last evaluated rule *group* (Unix seconds; 0 before the first)."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self.prometheus.url + "/api/v1/rules")
        response.raise_for_status()
        for entry in response.json()["data"]["groups"]:
            if entry["name"] == group:
                stamp = entry.get("lastEvaluation", "")
                if not stamp or stamp.startswith("0001-"):
                    return 0.0
                return _rfc3339(stamp)
        raise AssertionError(f"no rule group {group!r} loaded")

    async def rule_groups(self) -> dict[str, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self.prometheus.url + "/api/v1/rules")
        response.raise_for_status()
        return {g["name"]: g for g in response.json()["data"]["groups"]}

    async def reload(self, path: Path, *, names: set[str], rule: str) -> None:
        """SIGHUP; return once the groups *names* of *path*, one holding *rule*, have been
        evaluated."""
        sent = time.time()
        self.prometheus.process.send_signal(signal.SIGHUP)

        async def loaded() -> bool:
            groups = await self.rule_groups()
            return (
                set(groups) == names
                and any(rule in {r["name"] for r in g["rules"]} for g in groups.values())
                and all(
                    g["file"] == str(path)
                    and not g["lastEvaluation"].startswith("0001-")
                    and _rfc3339(g["lastEvaluation"]) > sent
                    for g in groups.values()
                )
            )

        await wait_until(loaded, timeout=10, what=f"Prometheus to load {path.name}", step=0.05)

    def logs(self) -> str:
        return self.prometheus.log_tail() + "\n" + self.alertmanager.log_tail()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = ManualClock(int(time.time() * 1000))  # the world's time starts at the wall clock
    world = World(Scenario.model_validate(SCENARIO), seed=5, now_ms=clock)
    scaled = rules_60_times_faster(RULES, tmp_path / "rules-copy.yml")
    (tmp_path / "rules").mkdir()

    async with SimulatorServer(world, control=True) as simulator:
        key = simulator.access_key
        settings = Settings(
            instance_ids=[INSTANCE],
            endpoint=simulator.base_url,
            poll_interval_seconds=0.2,
            state_file=tmp_path / "state.json",
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
            daemon_address = daemon.server.url.split("://", 1)[1]
            with webhook_receiver() as webhook:
                async with alerting_servers(
                    tmp_path,
                    webhook,
                    [{"job_name": JOB, "static_configs": [{"targets": [daemon_address]}]}],
                    # a glob: no rule file until the first scrape (see the test, step 1)
                    rule_files=[str(tmp_path / "rules" / "*.yml")],
                    route={"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
                    send_resolved=False,
                    # production's 1 min / 60: an alert that fired while the reload (step 1)
                    # had Prometheus rediscover Alertmanager is sent again 1 s later
                    prometheus_flags=("--rules.alert.resend-delay=1s",),
                ) as (prometheus, alertmanager):
                    yield Rig(
                        simulator, daemon.server.url, prometheus, alertmanager, webhook, scaled
                    )
                    for rules in (tmp_path / "rules").glob("*.yml"):
                        rules.unlink()  # no alert evaluated while the servers stop
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 10) == 0


def _labels(alert: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = alert["labels"]
    return labels


async def test_a_failing_target_pages_through_alertmanager_and_a_healthy_one_stays_quiet(
    rig: Rig, tmp_path: Path
) -> None:
    assert rig.scaled_for["IdaasSyncJobFailed"] == "1s"
    assert rig.scaled_for["IdaasExporterAbsent"] == "5s"

    # 1. Prometheus scrapes the exporter; only then are the shipped rules loaded. Prometheus
    #    applies discovered targets on a 5 s tick that is not scaled by 60, so before its first
    #    scrape absent(up) may hold for 5 s — IdaasExporterAbsent's scaled `for` — and fire: an
    #    artefact of the scaling (in production 5 s is nothing next to 5 minutes). Both
    #    targets' latest jobs succeeded: once evaluated, no alert is pending or firing.
    async def scraped() -> bool:
        return bool(await rig.query(f'up{{job="{JOB}"}} == 1'))

    await wait_until(scraped, timeout=20, what="Prometheus's first scrape of the exporter")
    loaded = tmp_path / "rules" / "idaas-sync-exporter.rules.yml"
    loaded.write_text((tmp_path / "rules-copy.yml").read_text())
    await rig.reload(loaded, names={"idaas-sync-exporter"}, rule="IdaasSyncJobFailed")

    async def scraped_evaluated_and_quiet() -> bool:
        up = await rig.query(f'up{{job="{JOB}"}} == 1')
        thresholds = await rig.query("idaas_sync:success_max_age_seconds")
        targets = {s["metric"]["target_id"] for s in thresholds}
        return bool(up) and targets == {HEALTHY, BROKEN} and not await rig.prometheus_alerts()

    try:
        await wait_until(scraped_evaluated_and_quiet, timeout=20, what="a quiet, evaluated start")
    except AssertionError:
        alerts = await rig.prometheus_alerts()
        raise AssertionError(f"Prometheus alerts: {alerts}\n{rig.logs()}") from None
    assert not await rig.query('ALERTS{alertstate="firing"}')

    # 2. The application starts failing: its next job fails. The world's clock moves on by
    #    35 minutes, so each target runs one more scheduled job (every 30 min, 1-2 min long).
    await rig.control(
        f"/targets/{BROKEN}/fail",
        {
            "error_code": "InvalidCredential.ScimToken",
            "error_message": "SCIM endpoint rejected the bearer token: HTTP 401 Unauthorized",
        },
    )
    await rig.control("/clock/advance", {"by": "35m"})

    # 3. The failed-sync alert travels exporter → Prometheus → Alertmanager → webhook.
    def delivered() -> list[dict[str, Any]]:
        return [
            alert
            for alert in rig.webhook.alerts()
            if _labels(alert).get("alertname") == "IdaasSyncJobFailed"
            and _labels(alert).get("target_id") == BROKEN
        ]

    async def arrived() -> bool:
        return bool(delivered())

    try:
        await wait_until(arrived, timeout=25, what="IdaasSyncJobFailed at the webhook", step=0.1)
    except AssertionError:
        alerts = await rig.prometheus_alerts()
        raise AssertionError(f"Prometheus alerts: {alerts}\n{rig.logs()}") from None

    alert = delivered()[0]
    assert alert["status"] == "firing"
    assert _labels(alert) == {
        "alertname": "IdaasSyncJobFailed",
        "severity": "warning",
        "job": JOB,  # no instance: a restarted pod's new address continues the same alert
        "instance_id": INSTANCE,
        "target_type": "application",
        "target_id": BROKEN,
        "direction": "egress",
        "status": "failed",
    }
    annotations = alert["annotations"]
    # the summary names the target by its IDaaS name (a template query of target_info)
    assert annotations["summary"] == f"IDaaS sync of {BROKEN_NAME} (egress) failed"
    assert annotations["runbook_url"].endswith("/README.md#idaassyncjobfailed")
    assert INSTANCE in annotations["description"]

    # 4. The healthy target raised nothing — neither at the webhook nor in Prometheus (pending
    #    included) — and nothing at all fired but the broken target's failed-sync alert. First
    #    let three more evaluations of the alerting rules pass on the new data.
    since = await rig.last_evaluation("idaas-sync-exporter")

    async def evaluated_thrice_more() -> bool:
        return await rig.last_evaluation("idaas-sync-exporter") >= since + 3

    await wait_until(evaluated_thrice_more, timeout=10, what="three more rule evaluations")
    latest = await rig.query(f'idaas_sync_last_job_status{{target_id="{HEALTHY}"}} == 1')
    assert [s["metric"]["status"] for s in latest] == ["success"]
    received = rig.webhook.alerts()
    assert not [a for a in received if _labels(a).get("target_id") == HEALTHY]
    assert {(_labels(a)["alertname"], _labels(a).get("target_id")) for a in received} == {
        ("IdaasSyncJobFailed", BROKEN)
    }
    held = await rig.prometheus_alerts()
    assert not [a for a in held if _labels(a).get("target_id") == HEALTHY], held
    assert {(_labels(a)["alertname"], _labels(a).get("target_id")) for a in held} == {
        ("IdaasSyncJobFailed", BROKEN)
    }
