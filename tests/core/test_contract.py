"""The metric families built from a state: presence rules, last-* semantics, rendering."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.contract import ApiRequestStats, ExporterView, PollStatus, build_families
from exporter.core.exposition import render
from exporter.core.instance import InstanceState
from exporter.core.tracker import InProgressJob, TrackerState
from exporter.eiam.models import SynchronizationJob


def job(n: int, target: str, status: str, end: int | None, **extra: Any) -> SynchronizationJob:
    return SynchronizationJob.model_validate(
        {
            "SynchronizationJobId": f"sync_{n}",
            "TargetType": "identity_provider",
            "TargetId": target,
            "Direction": "ingress",
            "TriggerType": "auto",
            "Status": status,
            "StartTime": n * 1000,
            "EndTime": end,
            **extra,
        }
    )


def view(
    instances: dict[str, InstanceState], polls: dict[str, PollStatus] | None = None
) -> ExporterView:
    return ExporterView(instances, polls or {}, ApiRequestStats(), {"success": 3}, 60.0)


def samples(state: InstanceState) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(
        build_families(view({"idaas_x": state}, {"idaas_x": PollStatus(up=True)})),
        openmetrics=False,
    ).decode()
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "instance_id"))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def target(name: str) -> tuple[tuple[str, str], ...]:
    return (("direction", "ingress"), ("target_id", name), ("target_type", "identity_provider"))


def key(name: str, *pairs: tuple[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(pairs))


def test_last_status_in_progress_and_removed_targets() -> None:
    done = [
        job(1, "idp_a", "failed", 5_000, Result={"ErrorCode": "X.Y"}),
        job(2, "idp_a", "success", 9_000),
        job(3, "idp_b", "success", 4_000),
    ]
    running = job(4, "idp_a", "running", None)
    state = InstanceState.initial()
    state = replace(
        state,
        ledger=state.ledger.with_jobs(done),
        tracker=TrackerState(
            window_start_ms=0, watermark_ms=4000,
            in_progress={"sync_4": InProgressJob(running, 4000, 4000)},
        ),
    )  # fmt: skip
    shown = samples(state)
    a, b = target("idp_a"), target("idp_b")
    assert shown[key("idaas_sync_last_job_status", *a, ("status", "success"))] == 1
    assert shown[key("idaas_sync_last_job_status", *a, ("status", "failed"))] == 0
    assert shown[("idaas_sync_last_success_timestamp_seconds", a)] == 9.0
    assert shown[("idaas_sync_jobs_in_progress", a)] == 1
    assert shown[("idaas_sync_jobs_in_progress", b)] == 0  # known target: 0, not absent
    assert shown[("idaas_sync_oldest_in_progress_start_timestamp_seconds", a)] == 4.0
    assert ("idaas_sync_oldest_in_progress_start_timestamp_seconds", b) not in shown
    assert shown[key("idaas_sync_job_errors_total", *a, ("error_code", "X.Y"))] == 1

    # idp_b disappears from a successful names listing: its gauges go, its counters stay
    named = replace(state, target_names={("identity_provider", "idp_a"): "Corp AD"})
    shown = samples(named)
    assert ("idaas_sync_last_success_timestamp_seconds", b) not in shown
    assert ("idaas_sync_jobs_in_progress", b) not in shown
    jobs_b = key("idaas_sync_jobs_total", *b, ("status", "success"), ("trigger_type", "auto"))
    assert shown[jobs_b] == 1
    info = ("idaas_sync_target_info", (("target_id", "idp_a"), ("target_name", "Corp AD"),
                                       ("target_type", "identity_provider")))  # fmt: skip
    assert shown[info] == 1


def test_a_target_newer_than_the_names_listing_is_not_taken_for_removed() -> None:
    """A new application's first job may end minutes before the next names listing (every
    target_names_refresh_seconds) includes it: its gauges must show at once, or its first
    failures alert only after that listing. A listing newer than its last job decides."""
    state = InstanceState.initial()
    state = replace(
        state,
        ledger=state.ledger.with_jobs([job(3, "idp_old", "success", 4_000),
                                       job(11, "idp_new", "failed", 12_000)]),
        target_names={("identity_provider", "idp_other"): "Other"},
        names_refreshed_ms=10_000,
    )  # fmt: skip
    shown = samples(state)
    new, old = target("idp_new"), target("idp_old")
    assert shown[key("idaas_sync_last_job_status", *new, ("status", "failed"))] == 1
    assert shown[("idaas_sync_jobs_in_progress", new)] == 0
    # idp_old's last job ended before the listing that no longer has it: removed
    assert ("idaas_sync_last_job_end_timestamp_seconds", old) not in shown
    # the next listing, still without idp_new, is newer than its job: now it is removed
    later = samples(replace(state, names_refreshed_ms=13_000))
    assert ("idaas_sync_last_job_end_timestamp_seconds", new) not in later


def test_text_and_openmetrics_renderings_parse_to_the_same_samples() -> None:
    """Both formats, read back by prometheus-client's own parsers, hold the same numbers."""
    state = InstanceState.initial()
    jobs = [job(n, f"idp_{n % 3}", "success", n * 1000 + 500) for n in range(30)]
    state = replace(state, ledger=state.ledger.with_jobs(jobs))
    families = build_families(view({"idaas_x": state}))

    def parsed(text: str, parser: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name.removesuffix("_total"), tuple(sorted(s.labels.items()))): s.value
            for f in parser(text)
            for s in f.samples
            if not s.name.endswith("_created")
        }

    text = parsed(render(families, openmetrics=False).decode(), text_string_to_metric_families)
    openmetrics = parsed(render(families, openmetrics=True).decode(), parse_om)
    assert text == openmetrics
    assert len(text) > 50
    writes = ("idaas_exporter_state_writes", (("result", "success"),))
    assert text[writes] == 3  # the exporter's own families are part of the one contract


def test_poll_status_arithmetic() -> None:
    status = PollStatus()
    for ok, code in ((True, None), (False, "Throttling"), (False, "StateWriteError"), (True, None)):
        status = status.after_poll(ok=ok, code=code, now=1.0, duration=0.1)
    assert status.up and status.last_error is None
    assert dict(status.polls) == {"success": 2, "error": 2}
    assert dict(status.errors) == {"Throttling": 1, "StateWriteError": 1}


def test_cadence_schedule_and_last_scheduled_start_per_target() -> None:
    """A regular target shows its interval; a manual-only one and one still learning show
    their class and no interval; a removed target shows none of them."""
    hourly = [job(n * 3600, "idp_hourly", "success", n * 3_600_000 + 60_000) for n in range(1, 11)]
    manual = [
        job(n * 7000 + 1, "idp_manual", "success", n * 7_000_000 + 2000, TriggerType="manual")
        for n in range(1, 11)
    ]
    young = [job(n * 600 + 2, "idp_young", "success", n * 600_000 + 3000) for n in range(1, 4)]
    state = InstanceState.initial()
    state = replace(state, ledger=state.ledger.with_jobs([*hourly, *manual, *young]))
    shown = samples(state)
    hourly_t, manual_t, young_t = target("idp_hourly"), target("idp_manual"), target("idp_young")
    assert shown[("idaas_sync_target_interval_seconds", hourly_t)] == 3600.0
    assert ("idaas_sync_target_interval_seconds", manual_t) not in shown
    assert ("idaas_sync_target_interval_seconds", young_t) not in shown
    for name, expected in (
        ("idp_hourly", "regular"),
        ("idp_manual", "manual"),
        ("idp_young", "learning"),
    ):
        for schedule in ("learning", "regular", "irregular", "manual"):
            series = key("idaas_sync_target_schedule", *target(name), ("schedule", schedule))
            assert shown[series] == (1 if schedule == expected else 0), (name, schedule)
    last = "idaas_sync_last_scheduled_job_start_timestamp_seconds"
    assert shown[(last, hourly_t)] == 36000.0
    assert shown[(last, young_t)] == 1802.0
    assert (last, manual_t) not in shown  # no scheduled job: nothing to be overdue on

    # idp_hourly is no longer listed by a successful names listing: removed
    named = replace(state, target_names={("identity_provider", "idp_manual"): "Manual"})
    shown = samples(named)
    assert ("idaas_sync_target_interval_seconds", hourly_t) not in shown
    assert (last, hourly_t) not in shown
    assert key("idaas_sync_target_schedule", *hourly_t, ("schedule", "regular")) not in shown
