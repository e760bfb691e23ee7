"""The metric families built from a state: presence rules, last-* semantics, rendering."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.contract import ApiRequestStats, PollStatus, SnapshotCollector, build_families
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


def samples(state: InstanceState) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(
        build_families(
            {"idaas_x": state},
            {"idaas_x": PollStatus(up=True)},
            ApiRequestStats(),
            poll_interval=60,
        ),
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


def test_collector_offers_the_same_samples_as_the_fast_renderer() -> None:
    state = InstanceState.initial()
    jobs = [job(n, f"idp_{n % 3}", "success", n * 1000 + 500) for n in range(30)]
    state = replace(state, ledger=state.ledger.with_jobs(jobs))
    families = build_families({"idaas_x": state}, {}, ApiRequestStats(), poll_interval=60)
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(families))

    def parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }

    ours = parsed(render(families, openmetrics=False).decode())
    theirs = parsed(generate_latest(registry).decode())
    assert ours == theirs
    assert len(ours) > 50
