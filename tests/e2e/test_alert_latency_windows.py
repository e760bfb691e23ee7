"""How fast the alerts whose latency hangs on a range window page, against their production bounds.

The rig of ``test_alert_latency`` (real Prometheus and Alertmanager, in-process daemons against
the simulator, everything 60 times faster than production, the figure times 60 compared with
the bound), with one difference: the test copy of the rules divides the range windows by 60
too, not only ``for:`` and ``keep_firing_for:`` — ``[1h]`` → ``[60s]``, ``[5m]`` → ``[5s]``,
``[30m]`` → ``[30s]``, ``[1d]`` → ``[1440s]``, ``[7d]`` → ``[10080s]``. A window then spans as
many scrapes and evaluations as in production (5 in ``[5m]``), so a window's share of a
latency is production's divided by 60, like every other term.

What is not scaled, and why: thresholds that compare exporter timestamps (the 1 h floors of
``idaas_sync:success_max_age_seconds`` and ``idaas_sync:stuck_after_seconds``, the 1-day default
interval, PollsStalled's 1800). Job times come from the simulated clock, and the daemons stamp
their polls with that clock too (the daemon's ``clock_ms``); the test moves it in production-sized
steps (a job's minute is a simulated minute). Those differences are production seconds
already: divided by 60, a 1 h threshold would be one simulated minute and every target stale.
Ratios and counts (1 %, 5 objects, 10 %, 2 changes) are no durations and stay as they are.

The exporters, each with one fault of its own, so that no fault disturbs another's measurement:

- ``main`` polls SYNC and SHARED. A job of RATIO ends ``partial_success`` with 10 of its 100
  objects failed: IdaasSyncJobPartialSuccess and IdaasSyncHighObjectFailureRatio.
- ``throttled`` polls the instance of a second simulator, which starts throttling 80 % of the
  requests (``x-acs-retry-after`` 17 ms, production's 1 s / 60): IdaasExporterApiThrottled. A
  simulator of its own, because throttling is server-wide and failed polls of SYNC would make
  its data stale, which drops a pending sync alert.
- ``writer`` polls WRITES. It writes a change successfully, then its state directory turns
  read-only (a read-only bind mount as root, as in ``test_soak``; the directory's permissions
  otherwise) and the next change fails to be written: IdaasExporterStateWritesFailing. The
  successful write one poll before is the worst case of the rule's ``unless`` (its increase must
  leave the 5-minute window first). The directory turns writable again once the alert fired.
- ``duplicate`` starts during the test and polls SHARED, which ``main`` polls too:
  IdaasExporterDuplicatePolling. It is scraped under a job of its own (not matching
  ``.*idaas-sync-exporter.*``) whose address Prometheus knows from the start: a target
  discovered later would wait for Prometheus's 5 s discovery tick, which is not scaled (5
  production minutes here, nothing in production), and a target of the exporter job that is
  down until the test starts it would raise IdaasExporterDown. A separate instance (SHARED,
  not SYNC) because a new exporter of SYNC would suspend SYNC's ratio alert for an hour.
- ``loop`` is a real process (``process_start_time_seconds`` is the process's, so an in-process
  daemon never restarts), on a fixed port: killed and started twice, IdaasExporterCrashLooping
  at its third start. Measured from the moment the third process serves (its log line), not
  from its exec: the interpreter's start-up takes a second, which is a minute at this scale and
  a second in production.

Finally every target of the exporter job is removed from Prometheus's configuration:
IdaasExporterAbsent. Measured from the moment Prometheus dropped them (its targets API; the
last look that still listed one), not from the reload: applying a configuration waits for the
same unscaled 5 s tick.

Each latency, times 60, must be within its bound (``BOUNDS``, derivation in each entry). The
figures are printed (``-s``) and written to ``alert_latency_windows.json`` in tmp_path. Every
wait has a deadline, ports are ephemeral, state lives in tmp_path. Bounded to 120 s (about 60 s
on two cores).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.core.instance import InstanceState
from exporter.simulator import ManualClock, Scenario, SimulatorServer, World

from .processes import ExporterProcess
from .support import daemon_settings, simulator_credentials, wait_until
from .test_alert_latency import (
    DEATH_ORDER,
    MINUTE_MS,
    POLL_INTERVAL,
    SCALE,
    Bound,
    Exporter,
    LatencyRig,
    _quiet,
    _rfc3339,
    ident,
    late_rows,
    latency_rows,
    latency_servers,
    print_latency_table,
)
from .test_alerting import free_port, webhook_receiver
from .test_soak import ReadOnlyDirectory

pytestmark = pytest.mark.timeout(120)

JOB = "idaas-sync-exporter"
OTHER_JOB = "idaas-duplicate"
"""The duplicate's job: not matched by ``.*idaas-sync-exporter.*`` (see the docstring)."""

SYNC = "idaas_e2ewindows00000000000000"
SHARED = "idaas_e2eshared000000000000000"
WRITES = "idaas_e2ewrites000000000000000"
LOOP = "idaas_e2eloop00000000000000000"
THROTTLED = "idaas_e2ethrottled000000000000"
RATIO = "app_e2eratio0000000000000000000"
WRITES_APP = "app_e2ewrites000000000000000000"

THROTTLE = "throttle=0.8,retry-after=17ms"
"""80 % of the requests throttled; the API's retry-after (about 1 s) divided by 60."""
FAILED_OBJECTS = {"UserStatistics": {"Updated": {"Total": 100, "Success": 90, "Failed": 10}}}
"""The job's statistics: 10 % failed, 10 objects (the rule: more than 1 % and at least 5)."""


def _instance(instance_id: str, target_id: str, kind: str = "application") -> dict[str, Any]:
    """An instance with one target that ran once in the last 6 h and runs again in 6 h."""
    target = _quiet(type=kind, id=target_id, name=f"E2E {target_id[4:12]}", interval="6h")
    return {"id": instance_id, "targets": [{**target, "duration": "1m"}]}


SCENARIO = {
    "name": "alert-latency-windows",
    "description": "one instance per exporter; RATIO's objects will fail",
    "history": "6h",
    "instances": [
        _instance(SYNC, RATIO),
        _instance(SHARED, "idp_e2eshared000000000000000000", "identity_provider"),
        _instance(WRITES, WRITES_APP),
        _instance(LOOP, "app_e2eloop00000000000000000000"),
    ],
}
THROTTLED_SCENARIO = {
    "name": "alert-latency-throttled",
    "description": "the instance behind the throttling API",
    "history": "6h",
    "instances": [_instance(THROTTLED, "idp_e2ethrottled000000000000000", "identity_provider")],
}

BOUNDS = (
    Bound(
        ("IdaasSyncJobPartialSuccess", RATIO),
        "job_ended",
        4.5 * 60,
        "the job's end: poll 1 + scrape 1 + evaluation 1 + for 1 + group_wait 0.5 (min)",
    ),
    Bound(
        ("IdaasSyncHighObjectFailureRatio", RATIO),
        "job_ended",
        18.5 * 60,
        "the job's end: poll 1 + scrape 1 + evaluation 1 + for 15 + group_wait 0.5 (min); the "
        "1 h increase counts the job's objects from the first evaluation that sees them",
    ),
    Bound(
        ("IdaasExporterApiThrottled", ""),
        "throttling_started",
        20 * 60,
        "throttling's start: poll 1 + scrape 1 + another scrape (the Throttling.* series appears "
        "with the first throttled request; rate() counts from its second sample) + the window's "
        "share 0.5 (at 80 % throttled, retries included, 10 % of the 5-minute window's requests "
        "within 0.2) + evaluation 1 + for 15 + group_wait 0.5 (min)",
    ),
    Bound(
        ("IdaasExporterStateWritesFailing", ""),
        "first_failed_write",
        9.5 * 60,
        "the first failed write, one poll after a successful one: scrape 1 + evaluation 1 + "
        "window 5 (the successful write's increase leaves the 5-minute window) + for 2 + "
        "group_wait 0.5 (min)",
    ),
    Bound(
        ("IdaasExporterDuplicatePolling", SHARED),
        "duplicate_started",
        17.5 * 60,
        "the second exporter's start: scrape 1 + evaluation 1 + for 15 + group_wait 0.5 (min)",
    ),
    Bound(
        ("IdaasExporterCrashLooping", ""),
        "third_start",
        3.5 * 60,
        "the third process serving: scrape 1 + evaluation 1 + for 1 + group_wait 0.5 (min); the "
        "30-minute window holds all three starts",
    ),
    Bound(
        ("IdaasExporterAbsent", ""),
        "targets_dropped",
        8.6 * 60,
        "the last target dropped: its `up` is marked stale just over 2 scrape intervals later "
        "(Prometheus waits two ticks and a tenth in case the target returns) 2.1 + evaluation 1 "
        "+ for 5 + group_wait 0.5 (min)",
    ),
)
EXPORTER_OF = {
    "IdaasExporterApiThrottled": "throttled",
    "IdaasExporterStateWritesFailing": "writer",
    "IdaasExporterCrashLooping": "loop",
}
"""The exporter (``instance`` label) each exporter-level alert must name."""


class Unwritable:
    """Makes a directory unwritable for the exporter: a read-only bind mount as root (root
    writes through permissions), the directory's permissions otherwise."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mount = ReadOnlyDirectory(path)
        self.how = ""

    def available(self) -> bool:
        if os.geteuid() != 0:
            self.how = "permissions"
        elif self.mount.available():
            self.how = "read-only bind mount"
        return bool(self.how)

    def set(self, unwritable: bool) -> None:
        if self.how == "permissions":
            self.path.chmod(0o555 if unwritable else 0o755)
        else:
            self.mount.set(unwritable)

    def release(self) -> None:
        if self.how == "permissions":
            self.path.chmod(0o755)
        self.mount.release()


@dataclass
class Stage:
    """The rig (Prometheus, Alertmanager, webhook, SYNC's simulator, ``main``) and the rest."""

    rig: LatencyRig
    throttled_simulator: SimulatorServer
    exporters: dict[str, Exporter]
    loop: ExporterProcess
    addresses: dict[str, str]
    """Role → scrape address."""
    writer_dir: Unwritable
    prometheus_config: Path


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    clock = ManualClock(int(time.time() * 1000))
    world = World(Scenario.model_validate(SCENARIO), seed=13, now_ms=clock)
    throttled_world = World(Scenario.model_validate(THROTTLED_SCENARIO), seed=13, now_ms=clock)
    rules_dir = tmp_path / "rules"
    for directory in (rules_dir, *(tmp_path / n for n in ("main", "throttled", "writer", "dup"))):
        directory.mkdir()
    writer_dir = Unwritable(tmp_path / "writer")

    async with (
        SimulatorServer(world, control=True) as simulator,
        SimulatorServer(throttled_world, control=True) as throttled_simulator,
    ):

        def exporter(sim: SimulatorServer, instance_ids: list[str], name: str) -> Exporter:
            settings = daemon_settings(
                sim.base_url,
                instance_ids,
                poll_interval_seconds=POLL_INTERVAL,
                state_file=tmp_path / name / "state.json",
                web_listen_address=f"127.0.0.1:{free_port()}",
            )
            return Exporter(settings, simulator_credentials(sim.access_key), clock)

        exporters = {
            "main": exporter(simulator, [SYNC, SHARED], "main"),
            "throttled": exporter(throttled_simulator, [THROTTLED], "throttled"),
            "writer": exporter(simulator, [WRITES], "writer"),
            "duplicate": exporter(simulator, [SHARED], "dup"),
        }
        addresses = {n: e.settings.web_listen_address for n, e in exporters.items()}
        addresses["loop"] = f"127.0.0.1:{free_port()}"
        loop = ExporterProcess(
            simulator, [LOOP], tmp_path / "loop" / "state.json", listen=addresses["loop"]
        )
        try:
            writer_dir.available()
            for name in ("main", "throttled", "writer"):  # the duplicate starts in the test
                await exporters[name].start()
            await loop.start()
            main_url = f"http://{addresses['main']}"
            scrape = [
                {
                    "job_name": JOB,
                    "static_configs": [
                        {"targets": [addresses[n] for n in ("main", "throttled", "writer", "loop")]}
                    ],
                },
                {"job_name": OTHER_JOB, "static_configs": [{"targets": [addresses["duplicate"]]}]},
            ]
            with webhook_receiver() as webhook:
                async with latency_servers(tmp_path, webhook, scrape, rules_dir) as (
                    prometheus,
                    alertmanager,
                ):
                    rig = LatencyRig(
                        simulator,
                        main_url,
                        prometheus,
                        alertmanager,
                        webhook,
                        {},
                        world,
                        clock,
                        exporters["main"],
                        rules_dir,
                        scale_windows=True,
                    )
                    yield Stage(
                        rig,
                        throttled_simulator,
                        exporters,
                        loop,
                        addresses,
                        writer_dir,
                        tmp_path / "prometheus.yml",
                    )
        finally:
            if loop.alive():
                loop.send_signal(signal.SIGKILL)
                await loop.wait()
            for each in exporters.values():
                await each.stop()
            writer_dir.release()


# -- the test ----------------------------------------------------------------------------------


async def test_window_alert_latency(stage: Stage, tmp_path: Path) -> None:
    rig = stage.rig
    began = time.monotonic()
    faults: dict[str, float] = {}
    violations: list[str] = []
    bounds = tuple(
        b for b in BOUNDS if stage.writer_dir.how or b.ident[0] != "IdaasExporterStateWritesFailing"
    )

    # 0. Prometheus scrapes the four exporters; then the test copy of the rules is loaded.
    async def all_scraped() -> bool:
        return len(await rig.query(f'up{{job="{JOB}"}} == 1')) == 4

    await wait_until(all_scraped, timeout=20, what="Prometheus's first scrape of each exporter")
    copy, _order = await rig.load_rules(DEATH_ORDER)
    text = copy.read_text()
    assert not re.findall(r"\[\d+[mhd]\]", text), "a range window left unscaled"
    scaled = {
        r.get("alert") or r["record"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"]
    }
    assert "[60s]" in scaled["idaas_sync:objects_failed:increase1h"]["expr"]
    assert "[60s]" in scaled["idaas_sync:instance_fresh:settled1h"]["expr"]
    assert "[5s]" in scaled["IdaasExporterApiThrottled"]["expr"]
    assert "[5s]" in scaled["IdaasExporterStateWritesFailing"]["expr"]
    assert "[30s]" in scaled["IdaasExporterCrashLooping"]["expr"]
    assert "[1440s]" in scaled["idaas_sync:instance_polled:max1d"]["expr"]
    assert "3600" in scaled["idaas_sync:success_max_age_seconds"]["expr"]  # thresholds kept
    assert rig.scaled_for["IdaasSyncHighObjectFailureRatio"] == "15s"
    assert rig.scaled_for["IdaasExporterApiThrottled"] == "15s"

    # The start: nothing pending or firing, RATIO's hourly increase computed and judged.
    async def quiet_and_judged() -> bool:
        increase = await rig.scalar(f'idaas_sync:objects:increase1h{{target_id="{RATIO}"}}')
        settled = await rig.scalar(f'idaas_sync:instance_fresh:settled1h{{instance_id="{SYNC}"}}')
        return increase == 0 and settled == 1 and not await rig.prometheus_alerts()

    try:
        await wait_until(quiet_and_judged, timeout=15, what="a quiet, judged start", step=0.1)
    except AssertionError:
        raise AssertionError(f"Prometheus: {await rig.prometheus_alerts()}\n{rig.logs()}") from None
    ratio_jobs = _jobs(rig.world, RATIO)

    # 1. RATIO's job ends partial_success, 10 of its 100 objects failed: one clock step.
    job = {"instance_id": SYNC, "target_id": RATIO, "status": "partial_success"}
    await rig.control("/jobs", {**job, "duration_ms": 20_000, "result": FAILED_OBJECTS})
    faults["job_ended"] = await rig.advance_to(rig.clock() + MINUTE_MS)

    # 2. Meanwhile, each exporter fault of its own; each waits for its alert.
    async def throttling() -> None:
        faults["throttling_started"] = time.monotonic()
        stage.throttled_simulator.faults.set(THROTTLE)
        await rig.wait_notified({("IdaasExporterApiThrottled", "")}, 30, "ApiThrottled")

    async def duplicate() -> None:
        faults["duplicate_started"] = time.monotonic()
        await stage.exporters["duplicate"].start()
        await rig.wait_notified({("IdaasExporterDuplicatePolling", SHARED)}, 30, "Duplicate")

    async def state_writes() -> None:
        writer = stage.exporters["writer"]
        assert writer.daemon is not None and writer.daemon.store is not None
        saves = _record_saves(writer.daemon.store)

        async def saved(ok: bool, since: float) -> float:
            async def found() -> bool:
                return any(t > since and s == ok for t, s in saves)

            await wait_until(found, timeout=10, what=f"a {'good' if ok else 'failed'} write")
            return next(t for t, s in saves if t > since and s == ok)

        new_job = {"instance_id": WRITES, "target_id": WRITES_APP, "duration_ms": 600_000}
        await rig.control("/jobs", new_job)  # in progress: a change to write
        good = await saved(True, 0.0)
        await asyncio.to_thread(stage.writer_dir.set, True)
        await rig.control("/jobs", new_job)  # another, which cannot be written
        faults["first_failed_write"] = await saved(False, good)
        await rig.wait_notified({("IdaasExporterStateWritesFailing", "")}, 20, "StateWrites")
        await asyncio.to_thread(stage.writer_dir.set, False)  # what silences it

    async def crash_loop() -> None:
        loop, instance = stage.loop, stage.addresses["loop"]
        restarts = f'changes(process_start_time_seconds{{instance="{instance}"}}[30s])'
        for seen in (1, 2):
            await loop.kill()
            await loop.start()
            if seen == 1:  # the 2nd process must be scraped before it dies

                async def scraped() -> bool:
                    return (await rig.scalar(restarts) or 0) >= 1

                await wait_until(scraped, timeout=10, what="a scrape of the 2nd process")
        assert loop.started_at is not None
        faults["third_start"] = loop.started_at - time.time() + time.monotonic()
        await rig.wait_notified({("IdaasExporterCrashLooping", "")}, 15, "CrashLooping")

    tasks = [throttling(), duplicate(), crash_loop()]
    if stage.writer_dir.how:
        tasks.append(state_writes())
    await asyncio.gather(*tasks)
    sync = {("IdaasSyncJobPartialSuccess", RATIO), ("IdaasSyncHighObjectFailureRatio", RATIO)}
    await rig.wait_notified(sync, 30, "the sync alerts of RATIO")

    # 3. Every target of the exporter job leaves Prometheus's configuration.
    config = yaml.safe_load(stage.prometheus_config.read_text())
    for job_config in config["scrape_configs"]:
        if job_config["job_name"] == JOB:
            del job_config["static_configs"]
    stage.prometheus_config.write_text(yaml.safe_dump(config))
    rig.prometheus.process.send_signal(signal.SIGHUP)
    last_listed = time.monotonic()

    async def dropped() -> bool:
        nonlocal last_listed
        looked = time.monotonic()
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(rig.prometheus.url + "/api/v1/targets")
        response.raise_for_status()
        active = response.json()["data"]["activeTargets"]
        if any(t["labels"].get("job") == JOB for t in active):
            last_listed = looked
            return False
        return True

    await wait_until(
        dropped, timeout=15, what="Prometheus to drop the exporter job's targets", step=0.01
    )
    faults["targets_dropped"] = last_listed
    await rig.wait_notified({("IdaasExporterAbsent", "")}, 15, "IdaasExporterAbsent")
    (absent,) = [a for a in await rig.prometheus_alerts() if ident(a)[0] == "IdaasExporterAbsent"]
    absent_after = _rfc3339(absent["activeAt"]) - time.time() + time.monotonic() - last_listed

    # -- what reached the webhook ----------------------------------------------------------------
    expected = {b.ident for b in BOUNDS}
    for _t, alert in rig.received():
        key, labels = ident(alert), alert["labels"]
        if alert["status"] != "firing":
            continue
        if key not in expected:
            violations.append(f"unexpected alert at the webhook: {key} {labels}")
        role = EXPORTER_OF.get(key[0])
        if role is not None and labels.get("instance") != stage.addresses[role]:
            violations.append(f"{key} names {labels.get('instance')}, not the {role} exporter")
    if _jobs(rig.world, RATIO) != ratio_jobs + 1:
        violations.append(f"RATIO ran {_jobs(rig.world, RATIO) - ratio_jobs} jobs, not 1")

    # -- the figures -------------------------------------------------------------------------------
    rows = latency_rows(bounds, faults, rig.notified)
    late = late_rows(rows)
    report = {
        "scale": SCALE,
        "windows": "divided by 60, like for: and keep_firing_for:",
        "intervals_seconds": {"scrape": 1, "evaluation": 1, "poll": round(POLL_INTERVAL, 3)},
        "throttling": THROTTLE,
        "state_directory_made_unwritable_by": stage.writer_dir.how or "(not measured)",
        "alerts": rows,
        "absent_active_after_drop_seconds": round(absent_after, 3),
        "late": late,
        "violations": violations,
        "test_seconds": round(time.monotonic() - began, 1),
    }
    (tmp_path / "alert_latency_windows.json").write_text(json.dumps(report, indent=2) + "\n")
    print_latency_table(rows)
    if not stage.writer_dir.how:
        print(
            "IdaasExporterStateWritesFailing: not measured (no directory could be made read-only)"
        )
    print(f"IdaasExporterAbsent active {absent_after:.2f} s after the targets were dropped")
    print(f"written to {tmp_path / 'alert_latency_windows.json'}")
    problems = [*late, *violations]
    assert not problems, "\n".join(problems)


def _jobs(world: World, target_id: str) -> int:
    target = world.find_target(target_id)
    assert target is not None
    return sum(len(s.jobs) for s in target.streams.values())


def _record_saves(store: Any) -> list[tuple[float, bool]]:
    """Make *store* note when each state write ended and whether it succeeded (monotonic)."""
    saves: list[tuple[float, bool]] = []
    save: Callable[[dict[str, InstanceState]], int] = store.save

    def recorded(instances: dict[str, InstanceState]) -> int:
        try:
            written = save(instances)
        except OSError:
            saves.append((time.monotonic(), False))
            raise
        saves.append((time.monotonic(), True))
        return written

    store.save = recorded
    return saves
