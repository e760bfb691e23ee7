"""How fast each alert pages, and that a dead or restarting exporter never sends an all-clear.

The rig of ``test_alerting``: the daemon in-process against the simulator, a real Prometheus
scraping it and evaluating a test copy of the shipped rules, a real Alertmanager posting to a
webhook receiver of this test (with ``send_resolved: true``). Everything runs 60 times faster
than production: 1 s scrapes and evaluations (production: 60 s), polls at most 1 s apart (see
POLL_INTERVAL), every ``for:`` and ``keep_firing_for:`` divided by 60, Alertmanager's
``group_wait`` 500 ms (production: 30 s). The
simulated world's clock is manual: it moves only when the test moves it, so a target's last
success can age past its threshold in one step.

One run, one scenario, in this order:

1. a healthy identity provider, an application that starts failing (IdaasSyncJobFailed), a new
   application whose every job fails (IdaasSyncNeverSucceeded at its third failed job; created
   11 simulated minutes before its first job, see step 1 of the test), a
   directory failing since 30 minutes before the start (IdaasSyncNoRecentSuccess once its last
   success is older than its threshold), an application with a job running since then
   (IdaasSyncJobStuck once it is older than its threshold), a directory synchronized every
   10 minutes whose schedule stops at the start (IdaasSyncOverdue once 30 min have passed
   since its last scheduled run), and an IDaaS instance the exporter is configured for that
   does not exist (IdaasExporterPollsFailing);
2. the exporter is stopped (IdaasExporterDown), then restarted with the same state file on the
   same address;
3. the failing application recovers: only now, on fresh data, may its alert resolve.

Latency: for each alert, the wall time from the fault (the clock step that ends the failed job,
crosses the threshold; the exporter's stop) to the first firing notification at the webhook,
times 60, must be within the production bound (fault → webhook at a 60 s scrape, evaluation and
poll interval and a 30 s group_wait): the sum of one poll, one scrape and one evaluation interval
(each at most one interval late), the alert's ``for`` and group_wait. For IdaasExporterDown there
is no poll: one scrape, one evaluation, ``for`` and group_wait. IdaasExporterPollsFailing is
measured from the moment the rules are loaded (the unknown instance's polls fail from the
exporter's start, before any rule can see them) against the bound from its first failed poll:
one scrape, one evaluation, ``for`` and group_wait. The figures are printed (``-s``)
and written to ``alert_latency.json`` in pytest's tmp_path.

What the rig does beyond a bare start, each for a stated reason:

- The rules are loaded (SIGHUP) only once Prometheus has scraped the exporter. Prometheus applies
  discovered targets on a 5 s tick that is not scaled by 60, so before its first scrape
  ``absent(up)`` can hold for 5 s — IdaasExporterAbsent's scaled ``for`` — and fire: an artefact
  of the scaling, not of the rules (in production 5 s is nothing next to 5 minutes).
- The daemon is given the simulated clock (``clock_ms``): it stamps its polls with it, so
  ``idaas_exporter_last_poll_success_timestamp_seconds`` and the job timestamps the thresholds
  subtract from it live in one time frame, as in production, where both are the wall clock.
- The rule file's name is chosen so that, in each cycle, the alert group runs after the scrape
  and before the recording group (DEATH_ORDER): the hard case for alerts that read recorded
  series beside raw ones when the raw ones vanish. A deployment has one fixed order, so a run
  in a random order would pass or fail by chance; this one is the order a rule set must survive.
- Prometheus resends firing alerts every second (``--rules.alert.resend-delay``, production's
  1 min / 60), so an alert that fired before Alertmanager was discovered is not held back.

Every wait has a deadline, ports are ephemeral, state lives in tmp_path. Bounded to 120 s
(about 60 s on two cores).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.config import Settings
from exporter.eiam.credentials.base import CredentialsProvider
from exporter.service.daemon import Daemon
from exporter.simulator import ManualClock, Scenario, SimulatorServer, World

from .support import daemon_settings, simulator_credentials, wait_until
from .test_alerting import (
    RULES,
    Rig,
    Server,
    Webhook,
    _rfc3339,
    alerting_servers,
    free_port,
    rules_60_times_faster,
    webhook_receiver,
)

pytestmark = pytest.mark.timeout(120)

SCALE = 60
"""Production seconds per test second."""
POLL_INTERVAL = 60 / SCALE / 1.1
"""The exporter waits its poll interval ±10 % between polls, so polls every 60 s / 60 would be up
to 1.1 s apart. The production bounds below count one poll interval (60 s) from a fault to the
poll that sees it; polling every 1/1.1 s makes the longest gap 1 s, the bounds' premise. (At
`poll_interval_seconds: 60` the longest gap is 66 s: the bounds are then 6 s short.)"""
JOB = "idaas-sync-exporter"

INSTANCE = "idaas_e2elatency00000000000000"
UNKNOWN_INSTANCE = "idaas_e2eunknown00000000000000"
"""Configured in the exporter, unknown to the simulator: every poll of it fails."""
HEALTHY = "idp_e2ehealthy00000000000000000"
FAILING = "app_e2efailing00000000000000000"
STALE = "idp_e2estale0000000000000000000"
STUCK = "app_e2estuck0000000000000000000"
OVERDUE = "idp_e2eoverdue00000000000000000"
NEW = "app_e2enew000000000000000000000"

DEATH_ORDER = ("scrape", "alerts", "recording")
"""The order in which, within each 1 s cycle, the test has Prometheus scrape and evaluate the
two rule groups. Prometheus places a rule group in the cycle by a hash of its name and file, a
scrape by a hash of its target, so a deployment has one fixed order. This one is the hard case
for a rule that reads raw series and recorded ones together: after the exporter's first failed
scrape, the alert group sees the raw series gone (stale) before the recording group has
re-evaluated what it derives from them."""
CYCLE_MARGIN = 0.08
"""Seconds between consecutive members of the order, so that scheduling noise cannot swap them."""

MINUTE_MS = 60_000
SIM_ERROR = {
    "error_code": "InvalidCredential.ScimToken",
    "error_message": "SCIM endpoint rejected the bearer token: HTTP 401 Unauthorized",
}


def _quiet(**overrides: Any) -> dict[str, Any]:
    """A scenario target that runs exactly on schedule and always succeeds (unless told)."""
    return {
        "jitter": 0.0,
        "manual_rate": 0.0,
        "partial_rate": 0.0,
        "failure_rate": 0.0,
        **overrides,
    }


SCENARIO = {
    "name": "alert-latency",
    "description": "one target per alert, and one that must stay quiet",
    "history": "6h",
    "instances": [
        {
            "id": INSTANCE,
            "targets": [
                _quiet(
                    type="identity_provider",
                    kind="ad",
                    id=HEALTHY,
                    name="E2E corporate AD",
                    interval="30m",
                    duration="2m",
                ),
                # fails from step 2 (11 min after the start) on; every 20 min, so its last
                # success stays younger than the 1 h floor of IdaasSyncNoRecentSuccess
                _quiet(
                    type="application",
                    id=FAILING,
                    name="E2E SCIM application",
                    interval="20m",
                    duration="1m",
                ),
                # failing since 30 min before the start: its last success is 30 to 41 min old
                _quiet(
                    type="identity_provider",
                    kind="ldap",
                    id=STALE,
                    name="E2E LDAP directory",
                    interval="10m",
                    duration="1m",
                    failures=[{"from": "-30m", **SIM_ERROR}],
                ),
                # every 10 min until its schedule is stopped at the start (IdaasSyncOverdue)
                _quiet(
                    type="identity_provider",
                    kind="dingtalk",
                    id=OVERDUE,
                    name="E2E DingTalk directory",
                    interval="10m",
                    duration="1m",
                ),
                # one job, running since 30 min before the start; no scheduled run in the test
                _quiet(
                    type="application",
                    id=STUCK,
                    name="E2E HR application",
                    interval="30d",
                    duration="5m",
                    stuck_job_at="-30m",
                ),
            ],
        }
    ],
}

NEW_TARGET = {
    "instance_id": INSTANCE,
    "type": "application",
    "id": NEW,
    "name": "E2E new application",
    "interval": "30d",
    "duration": "1m",
    "jitter": 0.0,
    "manual_rate": 0.0,
    "partial_rate": 0.0,
    "failure_rate": 1.0,  # every job it ever runs fails
}


# -- what is measured against what -----------------------------------------------------------

Ident = tuple[str, str]
"""(alertname, target_id | instance_id | "") — one alert of this scenario."""


@dataclass(frozen=True)
class Bound:
    ident: Ident
    fault: str
    """Which recorded moment the latency is measured from."""
    production_seconds: float
    derivation: str


BOUNDS = (
    Bound(
        ("IdaasSyncJobFailed", FAILING),
        "jobs_end",
        4.5 * 60,
        "the failed job's end: poll 1 + scrape 1 + evaluation 1 + for 1 + group_wait 0.5 (min)",
    ),
    Bound(
        ("IdaasSyncJobFailed", NEW),
        "jobs_end",
        4.5 * 60,
        "the new application's first failed job's end: as above",
    ),
    Bound(
        ("IdaasSyncNeverSucceeded", NEW),
        "third_failure",
        8.5 * 60,
        "the 3rd failed job's end: poll 1 + scrape 1 + evaluation 1 + for 5 + group_wait 0.5 (min)",
    ),
    Bound(
        ("IdaasSyncNoRecentSuccess", STALE),
        "thresholds_crossed",
        8.5 * 60,
        "the threshold crossed: poll 1 + scrape 1 + evaluation 1 + for 5 + group_wait 0.5 (min)",
    ),
    Bound(
        ("IdaasSyncOverdue", OVERDUE),
        "thresholds_crossed",
        8.5 * 60,
        "the threshold crossed: poll 1 + scrape 1 + evaluation 1 + for 5 + group_wait 0.5 (min)",
    ),
    Bound(
        ("IdaasSyncJobStuck", STUCK),
        "thresholds_crossed",
        8.5 * 60,
        "the threshold crossed: poll 1 + scrape 1 + evaluation 1 + for 5 + group_wait 0.5 (min)",
    ),
    Bound(
        ("IdaasExporterPollsFailing", UNKNOWN_INSTANCE),
        "rules_loaded",
        17.5 * 60,
        "the rules loaded while every poll of the instance already fails: scrape 1 + evaluation"
        " 1 + for 15 + group_wait 0.5 (min), the README's bound from the first failed poll (the"
        " failed polls and their scrape are past, the wait for the first evaluation is not)",
    ),
    Bound(
        ("IdaasExporterDown", ""),
        "exporter_stopped",
        7.5 * 60,
        "the exporter's death: scrape 1 + evaluation 1 + for 5 + group_wait 0.5 (min)",
    ),
)

HELD: frozenset[Ident] = frozenset(
    {
        ("IdaasSyncJobFailed", STALE),
        ("IdaasSyncJobFailed", FAILING),
        ("IdaasSyncJobFailed", NEW),
        ("IdaasSyncNeverSucceeded", NEW),
        ("IdaasSyncNoRecentSuccess", STALE),
        ("IdaasSyncJobStuck", STUCK),
        ("IdaasSyncOverdue", OVERDUE),
        ("IdaasExporterPollsFailing", UNKNOWN_INSTANCE),
    }
)
"""Firing when the exporter dies: none may resolve or start anew until fresh data says so."""


def ident(alert: dict[str, Any]) -> Ident:
    labels: dict[str, str] = alert["labels"]
    key = labels.get("target_id") or labels.get("instance_id") or ""
    return labels["alertname"], key


# -- the exporter, stoppable and restartable --------------------------------------------------


@dataclass
class Exporter:
    """The daemon, run in this event loop; :meth:`start` again reuses settings and state file."""

    settings: Settings
    credentials: CredentialsProvider
    clock: ManualClock
    daemon: Daemon | None = None
    task: asyncio.Task[int] | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        assert self.task is None, "already running"
        self.daemon = Daemon(self.settings, credentials=self.credentials, clock_ms=self.clock)
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(self.daemon.run(self.stop_event))
        started = asyncio.create_task(self.daemon.started.wait())
        done, _ = await asyncio.wait(
            {self.task, started}, timeout=10, return_when=asyncio.FIRST_COMPLETED
        )
        if started not in done:
            started.cancel()
            if self.task in done:
                self.task.result()  # raises the start-up error
            raise AssertionError("the daemon did not start within 10 s")

    async def stop(self) -> None:
        if self.task is None:
            return
        self.stop_event.set()
        task, self.task = self.task, None
        assert await asyncio.wait_for(task, 10) == 0


@dataclass
class LatencyRig(Rig):
    world: World
    clock: ManualClock
    exporter: Exporter
    rules_dir: Path
    alert_group: str = ""
    recording_group: str = ""
    rule_file_attempts: int = 0
    rules_loaded_at: float = 0.0
    """``time.monotonic()`` just before the shipped rules were loaded (SIGHUP)."""
    scale_windows: bool = False
    """Divide the rules' range windows by 60 too (see ``rules_60_times_faster``)."""

    def received(self) -> list[tuple[float, dict[str, Any]]]:
        """Every alert the webhook received, with its monotonic arrival time."""
        return self.webhook.timed_alerts()

    def notified(self, key: Ident, status: str = "firing", after: float = 0.0) -> float | None:
        """Arrival of the first *status* notification of *key* at the webhook (after *after*)."""
        return next(
            (
                t
                for t, a in self.received()
                if ident(a) == key and a["status"] == status and t > after
            ),
            None,
        )

    async def wait_notified(self, keys: set[Ident], timeout: float, what: str) -> None:
        """Return once every alert of *keys* has been notified firing."""

        async def arrived() -> bool:
            return all(self.notified(key) is not None for key in keys)

        try:
            await wait_until(arrived, timeout=timeout, what=what, step=0.05)
        except AssertionError:
            missing = sorted(k for k in keys if self.notified(k) is None)
            held = await self.prometheus_alerts()
            raise AssertionError(
                f"{what}: missing {missing}\nPrometheus alerts: {held}\n{self.logs()}"
            ) from None

    async def scalar(self, promql: str) -> float | None:
        """The value of a query expected to return at most one series."""
        result = await self.query(promql)
        assert len(result) <= 1, (promql, result)
        return float(result[0]["value"][1]) if result else None

    async def alerts_by_ident(self) -> dict[Ident, dict[str, Any]]:
        held: dict[Ident, dict[str, Any]] = {}
        for alert in await self.prometheus_alerts():
            key = ident(alert)
            assert key not in held, f"two alerts {key} in Prometheus: {alert} and {held[key]}"
            held[key] = alert
        return held

    async def evaluations(self, count: int, *, group: str | None = None) -> None:
        """Return once *group* (default: the alert group) has been evaluated *count* more
        times."""
        name = group or self.alert_group
        since = await self.last_evaluation(name)

        async def done() -> bool:
            return await self.last_evaluation(name) >= since + count - 0.5

        await wait_until(done, timeout=count + 5, what=f"{count} evaluations of {name}", step=0.1)

    async def phases(self) -> dict[str, float]:
        """Where in each 1 s cycle the scrape and the two rule groups run (0 <= phase < 1)."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self.prometheus.url + "/api/v1/targets")
        response.raise_for_status()
        (target,) = response.json()["data"]["activeTargets"]
        scrape = _rfc3339(target["lastScrape"])
        return {
            "scrape": round(scrape % 1, 3),
            "recording": round(await self.last_evaluation(self.recording_group) % 1, 3),
            "alerts": round(await self.last_evaluation(self.alert_group) % 1, 3),
        }

    async def load_rules(self, order: tuple[str, ...]) -> tuple[Path, str]:
        """Load the test copy of the rules under a file name that places the alert group and
        the recording group in *order* after the scrape (see DEATH_ORDER); return the copy and
        the order (``one group`` when the alerts are evaluated with the recording rules).

        A file name is tried with placeholder groups of the same names (a group's place in the
        cycle depends on its name and file only), so no real alert fires and is dropped while
        looking; about one name in three fits.
        """
        staged = self.rules_dir.parent / "rules-copy.yml"
        self.scaled_for.update(rules_60_times_faster(RULES, staged, windows=self.scale_windows))
        groups = yaml.safe_load(staged.read_text())["groups"]

        def group_of(rule: str) -> str:
            return next(
                str(g["name"])
                for g in groups
                if rule in {r.get("alert") or r.get("record") for r in g["rules"]}
            )

        self.alert_group = group_of("IdaasSyncJobFailed")
        self.recording_group = group_of("idaas_sync:instance_fresh")
        names = {g["name"] for g in groups}
        placeholder = {
            "groups": [
                {"name": name, "rules": [{"record": "idaas_test:placeholder", "expr": "vector(1)"}]}
                for name in sorted(names)
            ]
        }
        wanted = " < ".join(order)
        found = "one group"
        tried: list[dict[str, float]] = []
        for attempt in range(40):
            for old in self.rules_dir.glob("*.yml"):
                old.unlink()
            path = self.rules_dir / f"idaas-sync-exporter-{attempt}.rules.yml"
            path.write_text(yaml.safe_dump(placeholder))
            await self.reload(path, names=names, rule="idaas_test:placeholder")
            self.rule_file_attempts = attempt + 1
            if self.alert_group == self.recording_group:
                break  # each evaluation records, then alerts on what it recorded: no race
            phases = await self.phases()
            tried.append(phases)
            found = _cycle_order(phases, margin=CYCLE_MARGIN)
            if found == wanted:
                break
        else:
            raise AssertionError(f"no rule file name gave the order {wanted}: {tried}")
        path.write_text(staged.read_text())
        self.rules_loaded_at = time.monotonic()
        await self.reload(path, names=names, rule="IdaasSyncJobFailed")
        return path, found

    async def advance_to(self, now_ms: int) -> float:
        """Move the simulated clock to *now_ms*; return the monotonic time just before."""
        before = time.monotonic()
        await self.control("/clock/set", {"now_ms": now_ms})
        return before


def address(url: str) -> str:
    """``host:port`` of a URL, as a scrape target."""
    return url.split("://", 1)[1]


def latency_servers(
    tmp_path: Path, webhook: Webhook, scrape_configs: list[dict[str, Any]], rules_dir: Path
) -> AbstractAsyncContextManager[tuple[Server, Server]]:
    """Prometheus and Alertmanager at 60 times production's pace, rules from *rules_dir*."""
    return alerting_servers(
        tmp_path,
        webhook,
        scrape_configs,
        # a glob: no rule file yet, the test copy arrives after the 1st scrape
        rule_files=[str(rules_dir / "*.yml")],
        route={
            "group_wait": f"{30_000 // SCALE}ms",
            # shorter than production's 5 min / 60: a resolved notification would reach the
            # webhook within a second, so none is missed
            "group_interval": "1s",
            "repeat_interval": "4h",  # no repeat during the test
        },
        send_resolved=True,
        # production's 1 min / 60: an alert that fired while no Alertmanager was discovered yet
        # (for 5 s after a reload) is sent again 1 s later
        prometheus_flags=(f"--rules.alert.resend-delay={60 // SCALE}s",),
    )


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[LatencyRig]:
    clock = ManualClock(int(time.time() * 1000))
    world = World(Scenario.model_validate(SCENARIO), seed=11, now_ms=clock)
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    exporter_port = free_port()

    async with SimulatorServer(world, control=True) as simulator:
        settings = daemon_settings(
            simulator.base_url,
            [INSTANCE, UNKNOWN_INSTANCE],
            poll_interval_seconds=POLL_INTERVAL,
            state_file=tmp_path / "state.json",
            web_listen_address=f"127.0.0.1:{exporter_port}",
        )
        exporter = Exporter(settings, simulator_credentials(simulator.access_key), clock)
        try:
            await exporter.start()
            assert exporter.daemon is not None and exporter.daemon.server is not None
            daemon_url = exporter.daemon.server.url
            with webhook_receiver() as webhook:
                scrape = [{"job_name": JOB, "static_configs": [{"targets": [address(daemon_url)]}]}]
                async with latency_servers(tmp_path, webhook, scrape, rules_dir) as (
                    prometheus,
                    alertmanager,
                ):
                    yield LatencyRig(
                        simulator,
                        daemon_url,
                        prometheus,
                        alertmanager,
                        webhook,
                        {},
                        world,
                        clock,
                        exporter,
                        rules_dir,
                    )
        finally:
            await exporter.stop()


# -- the test ----------------------------------------------------------------------------------


async def test_alert_latency_and_no_all_clear_from_a_dead_exporter(
    rig: LatencyRig, tmp_path: Path
) -> None:
    began = time.monotonic()
    faults: dict[str, float] = {}
    violations: list[str] = []
    """What the rules got wrong; reported together at the end, after the figures."""

    received, notified, wait_notified = rig.received, rig.notified, rig.wait_notified

    def resolved_between(since: float, until: float) -> list[Ident]:
        return [ident(a) for t, a in received() if a["status"] == "resolved" and since <= t < until]

    async def compare_held(when: str, reference: dict[Ident, dict[str, Any]]) -> None:
        """Every held alert still firing in Prometheus, from the same moment on."""
        now_held = await rig.alerts_by_ident()
        for key in sorted(HELD):
            alert = now_held.get(key)
            if alert is None or alert["state"] != "firing":
                state = alert["state"] if alert else "gone"
                violations.append(f"{when}: {key} is {state} in Prometheus")
            elif alert["activeAt"] != reference[key]["activeAt"]:
                violations.append(
                    f"{when}: {key} active since {alert['activeAt']}, "
                    f"was {reference[key]['activeAt']} (resolved and raised anew)"
                )

    # 0. Prometheus scrapes the exporter; then the test copy of the rules is loaded, under a
    #    file name that puts the alert group between the scrape and the recording group.
    async def scraped() -> bool:
        return bool(await rig.query(f'up{{job="{JOB}"}} == 1'))

    await wait_until(scraped, timeout=20, what="Prometheus's first scrape of the exporter")
    copy, order = await rig.load_rules(DEATH_ORDER)
    faults["rules_loaded"] = rig.rules_loaded_at
    scaled = {
        r["alert"]: r
        for g in yaml.safe_load(copy.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    assert rig.scaled_for["IdaasSyncJobFailed"] == "1s"
    assert rig.scaled_for["IdaasSyncNeverSucceeded"] == "5s"
    assert rig.scaled_for["IdaasExporterDown"] == "5s"
    assert scaled["IdaasExporterDown"]["keep_firing_for"] == "10s"

    # The start: only the directory failing since before it is alerting (and the unknown
    # instance's failing polls are pending); every threshold is computed.
    t0 = rig.clock()
    start_alerts = {("IdaasSyncJobFailed", STALE), ("IdaasExporterPollsFailing", UNKNOWN_INSTANCE)}

    async def settled_start() -> bool:
        alerts = await rig.alerts_by_ident()
        ages = await rig.query("idaas_sync:success_max_age_seconds")
        stuck = await rig.scalar(f'idaas_sync:stuck_after_seconds{{target_id="{STUCK}"}}')
        return (
            set(alerts) == start_alerts
            and alerts[("IdaasSyncJobFailed", STALE)]["state"] == "firing"
            and {s["metric"]["target_id"] for s in ages} == {HEALTHY, FAILING, STALE, OVERDUE}
            and stuck is not None
        )

    try:
        await wait_until(settled_start, timeout=15, what="the start to settle", step=0.1)
    except AssertionError:
        raise AssertionError(f"Prometheus: {await rig.prometheus_alerts()}\n{rig.logs()}") from None
    polled = f'idaas_exporter_last_poll_success_timestamp_seconds{{instance_id="{INSTANCE}"}}'

    async def polled_since(now_ms: int) -> bool:
        """Prometheus holds a successful poll of INSTANCE made at simulated time *now_ms*."""
        last_poll = await rig.scalar(polled)
        return last_poll is not None and last_poll >= now_ms / 1000

    # The DingTalk directory's periodic sync is switched off now: its last scheduled run
    # started within 10 min before t0, so it is overdue 30 min after that run (the 1800 s floor
    # of 3 x its 10 min cadence).
    await rig.control(f"/targets/{OVERDUE}/pause", {})

    # 1. A new application is created in IDaaS. The exporter lists target names every 10 min;
    #    11 min pass before its first job, so its alerts' summaries can name it.
    await rig.control("/targets", NEW_TARGET)
    now = t0 + 11 * MINUTE_MS
    await rig.advance_to(now)
    new_info = f'idaas_sync_target_info{{target_id="{NEW}"}}'

    async def new_target_listed() -> bool:
        return await polled_since(now) and await rig.scalar(new_info) == 1

    await wait_until(new_target_listed, timeout=10, what="the new application in the listing")
    in_progress = {job.target_id for job in rig.world.in_progress(INSTANCE, now_ms=now)}
    assert in_progress == {STUCK}, in_progress  # nothing of FAILING can still end successfully

    # 2. FAILING fails from now on, and its manual re-run fails; the new application's first two
    #    jobs fail. One clock step (1 min) ends all three jobs.
    await rig.control(f"/targets/{FAILING}/fail", SIM_ERROR)
    for target, duration in ((FAILING, 20_000), (NEW, 5_000), (NEW, 10_000)):
        job = {"instance_id": INSTANCE, "target_id": target, "status": "failed"}
        await rig.control("/jobs", {**job, **SIM_ERROR, "duration_ms": duration})
    now += MINUTE_MS
    faults["jobs_end"] = await rig.advance_to(now)

    # 3. Once Prometheus shows the new application's two failed jobs, its third ends.
    new_jobs = f'sum(idaas_sync_jobs_total{{target_id="{NEW}"}})'
    new_failed = f'idaas_sync_last_job_status{{target_id="{NEW}",status="failed"}}'

    async def two_new_jobs_known() -> bool:
        return await rig.scalar(new_jobs) == 2 and await rig.scalar(new_failed) == 1

    await wait_until(two_new_jobs_known, timeout=10, what="the new application's 2 failed jobs")
    await rig.evaluations(1)
    assert ("IdaasSyncNeverSucceeded", NEW) not in await rig.alerts_by_ident()
    third = {"instance_id": INSTANCE, "target_id": NEW, "status": "failed", "duration_ms": 20_000}
    await rig.control("/jobs", {**third, **SIM_ERROR})
    now += MINUTE_MS
    faults["third_failure"] = await rig.advance_to(now)

    # 4. The thresholds are known (the directory's and the stopped DingTalk directory's from
    #    the cadence the exporter learned, 10 min: the 1 h and 30 min floors); none is crossed.
    j1 = now
    stale_age = f'idaas_sync:success_max_age_seconds{{target_id="{STALE}"}}'
    stuck_after = f'idaas_sync:stuck_after_seconds{{target_id="{STUCK}"}}'
    overdue_after = f'idaas_sync:overdue_after_seconds{{target_id="{OVERDUE}"}}'

    async def thresholds_known() -> bool:
        return (
            await polled_since(j1)
            and await rig.scalar(stale_age) == 3600
            and await rig.scalar(stuck_after) == 3600
            and await rig.scalar(overdue_after) == 1800
        )

    await wait_until(thresholds_known, timeout=10, what="1 h thresholds on data as of J1")
    await rig.evaluations(2, group=rig.recording_group)
    await rig.evaluations(2)
    last_success = await rig.scalar(
        f'idaas_sync_last_success_timestamp_seconds{{target_id="{STALE}"}}'
    )
    stuck_since = await rig.scalar(
        f'idaas_sync_oldest_in_progress_start_timestamp_seconds{{target_id="{STUCK}"}}'
    )
    scheduled = await rig.scalar(
        f'idaas_sync_last_scheduled_job_start_timestamp_seconds{{target_id="{OVERDUE}"}}'
    )
    assert last_success is not None and stuck_since is not None and scheduled is not None
    crossings = {
        "IdaasSyncNoRecentSuccess": last_success + (await rig.scalar(stale_age) or 0),
        "IdaasSyncJobStuck": stuck_since + (await rig.scalar(stuck_after) or 0),
        "IdaasSyncOverdue": scheduled + (await rig.scalar(overdue_after) or 0),
    }
    alerts = await rig.alerts_by_ident()
    assert ("IdaasSyncNoRecentSuccess", STALE) not in alerts, alerts
    assert ("IdaasSyncJobStuck", STUCK) not in alerts, alerts
    assert ("IdaasSyncOverdue", OVERDUE) not in alerts, alerts
    # every threshold lies at least a (production) minute ahead of the data as of J1
    assert j1 / 1000 + 60 < min(crossings.values()), (j1, crossings)

    # 5. One step past every threshold.
    j2 = math.ceil(max(crossings.values()) + 30) * 1000
    assert j2 - j1 <= 20 * MINUTE_MS, (j1, j2)  # the directory's cadence stays below 24 min
    faults["thresholds_crossed"] = await rig.advance_to(j2)
    measured_sync = {b.ident for b in BOUNDS if b.fault != "exporter_stopped"}
    await wait_notified(measured_sync | HELD, timeout=25, what="every sync alert at the webhook")

    async def all_firing() -> bool:
        alerts = await rig.alerts_by_ident()
        return set(alerts) == HELD and all(a["state"] == "firing" for a in alerts.values())

    try:
        await wait_until(all_firing, timeout=5, what="only the expected alerts, all firing")
    except AssertionError:
        raise AssertionError(f"Prometheus: {await rig.prometheus_alerts()}") from None
    before_death = await rig.alerts_by_ident()
    assert not resolved_between(0, math.inf), received()
    phases = await rig.phases()
    if order != "one group":  # still as chosen when the rules were loaded
        assert _cycle_order(phases) == order == " < ".join(DEATH_ORDER), phases

    # 6. The exporter dies: its scrapes fail. Nothing held may resolve meanwhile.
    faults["exporter_stopped"] = died = time.monotonic()
    await rig.exporter.stop()
    await wait_notified({("IdaasExporterDown", "")}, timeout=15, what="IdaasExporterDown")
    await rig.evaluations(2)
    await compare_held("while the exporter was dead", before_death)

    # 7. The exporter restarts with its state file, on the same address.
    restarted = time.monotonic()
    violations.extend(
        f"resolved while the exporter was dead: {key}"
        for key in resolved_between(died, restarted)
        if key in HELD
    )
    await rig.exporter.start()
    fresh = f'idaas_sync:instance_fresh{{instance_id="{INSTANCE}"}}'

    async def fresh_again() -> bool:
        return await rig.scalar(fresh) == 1

    await wait_until(fresh_again, timeout=10, what="fresh data after the restart", step=0.1)
    await rig.evaluations(3)
    # IdaasExporterDown resolves, no sooner than its keep_firing_for after the restart; by then
    # the sync alerts have been judged on fresh data for 10 s and must all still fire.
    down_resolved: float | None = None

    async def down_resolves() -> bool:
        nonlocal down_resolved
        down_resolved = notified(("IdaasExporterDown", ""), "resolved")
        return down_resolved is not None

    await wait_until(down_resolves, timeout=20, what="IdaasExporterDown to resolve", step=0.1)
    assert down_resolved is not None
    assert down_resolved - restarted >= 10, (down_resolved - restarted, "keep_firing_for 10 s")
    await compare_held("10 s after the restart", before_death)

    # 8. Fresh data says FAILING is fine again: its alert resolves (now, and not before).
    recovering = time.monotonic()
    violations.extend(
        f"resolved across the restart: {key}"
        for key in resolved_between(restarted, recovering)
        if key in HELD
    )
    await rig.control(f"/targets/{FAILING}/recover", {})
    await rig.control(
        "/jobs", {"instance_id": INSTANCE, "target_id": FAILING, "duration_ms": 20_000}
    )
    recovered = await rig.advance_to(j2 + MINUTE_MS)

    async def failing_resolves() -> bool:
        return notified(("IdaasSyncJobFailed", FAILING), "resolved", after=recovered) is not None

    await wait_until(failing_resolves, timeout=10, what="FAILING's alert to resolve", step=0.1)
    await rig.evaluations(2)
    ended = time.monotonic()

    # -- what reached the webhook ----------------------------------------------------------------
    everything = received()
    # (b) the healthy target never appears
    healthy = [a for _t, a in everything if a["labels"].get("target_id") == HEALTHY]
    if healthy:
        violations.append(f"the healthy target reached the webhook: {healthy}")
    unexpected = {ident(a) for _t, a in everything} - HELD - {("IdaasExporterDown", "")}
    if unexpected:
        violations.append(f"unexpected alerts at the webhook: {sorted(unexpected)}")
    # (c) after the restart nothing resolved but FAILING's alert, once fresh data said so
    late_resolved = resolved_between(recovering, ended)
    if late_resolved != [("IdaasSyncJobFailed", FAILING)]:
        violations.append(f"resolved after the recovery: {late_resolved}")
    # (a) each held alert was notified firing once, with one label set and no `instance`: never
    # raised anew after the restart
    for key in sorted(HELD):
        firing = [a for _t, a in everything if ident(a) == key and a["status"] == "firing"]
        if len(firing) != 1:
            starts = [a["startsAt"] for a in firing]
            violations.append(f"{key} notified firing {len(firing)} times, starting {starts}")
        if len({a["fingerprint"] for a in firing}) > 1:
            violations.append(f"{key} had {len({a['fingerprint'] for a in firing})} label sets")
        if any("instance" in a["labels"] for a in firing):
            violations.append(f"{key} carries the exporter's instance label")
    # the scenario held: the stuck target ran one job, the new application three
    stuck_target = rig.world.find_target(STUCK)
    new_target = rig.world.find_target(NEW)
    assert stuck_target is not None and new_target is not None
    assert sum(len(s.jobs) for s in stuck_target.streams.values()) == 1
    assert sum(len(s.jobs) for s in new_target.streams.values()) == 3

    # -- the figures -------------------------------------------------------------------------------
    rows = latency_rows(BOUNDS, faults, notified)
    late = late_rows(rows)
    report = {
        "scale": SCALE,
        "intervals_seconds": {
            "scrape": 1,
            "evaluation": 1,
            "poll": round(POLL_INTERVAL, 3),
            "longest_poll_gap": round(POLL_INTERVAL * 1.1, 3),
        },
        "alertmanager_seconds": {"group_wait": 0.5, "group_interval": 1, "repeat_interval": 14400},
        "alerts": rows,
        "exporter_down_resolved_after_restart_seconds": round(down_resolved - restarted, 3),
        "cycle_phases": phases,
        "cycle_order": order,
        "rule_file_attempts": rig.rule_file_attempts,
        "late": late,
        "violations": violations,
        "test_seconds": round(time.monotonic() - began, 1),
    }
    (tmp_path / "alert_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print_latency_table(rows)
    print(f"cycle: {order} {phases} ({rig.rule_file_attempts} rule file name(s) tried)")
    print(f"written to {tmp_path / 'alert_latency.json'}")
    problems = [*late, *violations]
    assert not problems, "\n".join(problems)


def latency_rows(
    bounds: tuple[Bound, ...],
    faults: dict[str, float],
    notified: Callable[[Ident], float | None],
) -> list[dict[str, Any]]:
    """One row per bound: fault → first firing notification, in test and production time."""
    rows: list[dict[str, Any]] = []
    for bound in bounds:
        arrived = notified(bound.ident)
        assert arrived is not None, bound.ident
        seconds = arrived - faults[bound.fault]
        rows.append(
            {
                "alert": bound.ident[0],
                "target": bound.ident[1],
                "from": bound.derivation.split(":", 1)[0],
                "measured_seconds": round(seconds, 3),
                "production_equivalent_seconds": round(seconds * SCALE, 1),
                "production_bound_seconds": bound.production_seconds,
                "bound_derivation": bound.derivation,
            }
        )
    return rows


OVERHEAD_S = 0.2
"""Test seconds by which a latency may exceed its bound divided by 60. The bounds count whole
intervals; work that does not scale — an evaluation's own duration, Alertmanager's dispatch, the
webhook's HTTP round trip, tens of milliseconds each — is multiplied by 60 in the
production-equivalent figure. 0.2 s is 12 s of production time, next to bounds of 3.5 to
20 minutes: a rule whose `for` or window were a minute too long still fails."""


def late_rows(rows: list[dict[str, Any]]) -> list[str]:
    """The rows whose latency exceeds their bound (plus OVERHEAD_S), readable."""
    return [
        f"{row['alert']} {row['target']}: {_mmss(row['production_equivalent_seconds'])} "
        f"> {_mmss(row['production_bound_seconds'])}"
        for row in rows
        if row["measured_seconds"] > row["production_bound_seconds"] / SCALE + OVERHEAD_S
    ]


def print_latency_table(rows: list[dict[str, Any]]) -> None:
    """The figures, for ``pytest -s``."""
    print()
    print(f"{'alert':<32} {'target':<32} {'test s':>7} {'x60':>7} {'bound':>7}")
    for row in rows:
        print(
            f"{row['alert']:<32} {row['target'] or '-':<32} {row['measured_seconds']:>7.2f} "
            f"{_mmss(row['production_equivalent_seconds']):>7} "
            f"{_mmss(row['production_bound_seconds']):>7}"
        )


def _cycle_order(phases: dict[str, float], *, margin: float = 0.0) -> str:
    """The order in which they run from a scrape on, e.g. ``scrape < alerts < recording``;
    ``unclear`` when two of them lie less than *margin* seconds apart in that order."""
    offsets = {name: (phase - phases["scrape"]) % 1 for name, phase in phases.items()}
    after = sorted(offsets, key=offsets.__getitem__)
    gaps = [offsets[b] - offsets[a] for a, b in itertools.pairwise(after)]
    return " < ".join(after) if min(gaps) >= margin else "unclear"


def _mmss(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"
