"""Hand-built exporter views for the landing-page tests: targets in every state a page shows.

The view is the same immutable :class:`~exporter.core.contract.ExporterView` the daemon renders
``/metrics`` from, built from real jobs through the real ledger and tracker types.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from exporter.core.contract import ApiRequestStats, ExporterView, PollStatus
from exporter.core.instance import InstanceState
from exporter.core.ledger import InstanceLedger
from exporter.core.tracker import InProgressJob, TrackerState
from exporter.eiam.models import SynchronizationJob
from exporter.web.app import InstanceSummary

HOSTILE = "<script>alert(1)</script>"
INSTANCE = "idaas_main"
OTHER = "idaas_other"


def job(
    job_id: str,
    target_id: str,
    status: str,
    *,
    end_ago_s: float | None,
    start_ago_s: float = 0.0,
    now: float,
    target_type: str = "identity_provider",
) -> SynchronizationJob:
    """A job of *target_id* that ended *end_ago_s* seconds before *now* (None: still open)."""
    start_s = now - (end_ago_s or 0.0) - 60.0 if end_ago_s is not None else now - start_ago_s
    return SynchronizationJob.model_validate(
        {
            "SynchronizationJobId": job_id,
            "TargetType": target_type,
            "TargetId": target_id,
            "Direction": "ingress",
            "TriggerType": "auto",
            "Status": status,
            "StartTime": int(start_s * 1000),
            **({"EndTime": int((now - end_ago_s) * 1000)} if end_ago_s is not None else {}),
        }
    )


def varied_state(now: float, *, stuck_after_s: float = 3600.0) -> InstanceState:
    """One instance whose targets show every health state:

    ``idp_failed``   last job failed, succeeded 2 h ago
    ``idp_partial``  last job partially succeeded, succeeded 1 d ago
    ``idp_never``    failed twice, never succeeded
    ``idp_stuck``    succeeded 10 min ago, a job running for 3 h (past *stuck_after_s*)
    ``idp_running``  succeeded 5 min ago, a job running for 30 s
    ``idp_ok``       succeeded 1 min ago
    ``app_hostile``  an application named :data:`HOSTILE`, last job failed
    ``idp_pending``  no terminal job yet, one pending for 20 s
    """
    done = [
        job("j1", "idp_failed", "success", end_ago_s=7200, now=now),
        job("j2", "idp_failed", "failed", end_ago_s=600, now=now),
        job("j3", "idp_partial", "success", end_ago_s=86400, now=now),
        job("j4", "idp_partial", "partial_success", end_ago_s=900, now=now),
        job("j5", "idp_never", "failed", end_ago_s=4000, now=now),
        job("j6", "idp_never", "failed", end_ago_s=400, now=now),
        job("j7", "idp_stuck", "success", end_ago_s=600, now=now),
        job("j8", "idp_running", "success", end_ago_s=300, now=now),
        job("j9", "idp_ok", "success", end_ago_s=60, now=now),
        job("j10", "app_hostile", "failed", end_ago_s=120, now=now, target_type="application"),
    ]
    assert stuck_after_s < 3 * 3600
    running = {
        "r1": job("r1", "idp_stuck", "running", end_ago_s=None, start_ago_s=3 * 3600, now=now),
        "r2": job("r2", "idp_running", "running", end_ago_s=None, start_ago_s=30, now=now),
        "r3": job("r3", "idp_pending", "pending", end_ago_s=None, start_ago_s=20, now=now),
    }
    now_ms = int(now * 1000)
    tracker = TrackerState(
        window_start_ms=now_ms - 86400_000 * 2,
        watermark_ms=now_ms,
        counted={j.synchronization_job_id: j.start_time or 0 for j in done},
        in_progress={
            job_id: InProgressJob(j, (j.start_time or now_ms), now_ms)
            for job_id, j in running.items()
        },
    )
    # the names listing holds every target (one missing would mean: removed from IDaaS)
    names = {
        ("identity_provider", target): target.removeprefix("idp_").title()
        for target in ("idp_partial", "idp_never", "idp_stuck", "idp_running", "idp_pending")
    }
    names[("identity_provider", "idp_failed")] = "Corporate AD"
    names[("identity_provider", "idp_ok")] = "Okta & friends"
    names[("application", "app_hostile")] = HOSTILE
    return InstanceState(
        tracker=tracker, ledger=InstanceLedger().with_jobs(done), target_names=names
    )


def many_ok_state(now: float, count: int, *, name: str = "ok") -> InstanceState:
    """*count* healthy targets (each succeeded a minute ago), named *name*."""
    done = [job(f"k{n}", f"idp_{n:05d}", "success", end_ago_s=60, now=now) for n in range(count)]
    names = {("identity_provider", f"idp_{n:05d}"): name for n in range(count)}
    return InstanceState(
        tracker=TrackerState.initial(),
        ledger=InstanceLedger().with_jobs(done),
        target_names=names,
    )


def view_of(
    instances: Mapping[str, InstanceState], polls: Mapping[str, PollStatus]
) -> ExporterView:
    return ExporterView(
        instances=dict(instances),
        polls=dict(polls),
        api=ApiRequestStats(),
        state_writes={"success": 1, "error": 0},
        poll_interval=60.0,
    )


def polls(now: float) -> dict[str, PollStatus]:
    """``idaas_main`` polled fine 10 s ago; ``idaas_other`` fails with Throttling since 15 min."""
    good = PollStatus().after_poll(ok=True, code=None, now=now - 10, duration=0.2)
    bad = PollStatus().after_poll(ok=True, code=None, now=now - 900, duration=0.2)
    bad = bad.after_poll(ok=False, code="Throttling", now=now - 5, duration=3.0)
    return {INSTANCE: good, OTHER: bad}


def summaries(status: Mapping[str, PollStatus]) -> list[InstanceSummary]:
    """The rows the daemon's ``instances`` callback gives, from the same poll statuses."""
    return [
        InstanceSummary(
            instance_id=iid,
            endpoint="https://eiam.cn-hangzhou.aliyuncs.com/",
            up=poll.up,
            last_poll=poll.last_poll_s,
            last_success=poll.last_success_s,
            last_error=poll.last_error,
            in_progress=0,
        )
        for iid, poll in status.items()
    ]


def varied_view(now: float | None = None) -> tuple[ExporterView, list[InstanceSummary]]:
    """The varied instance plus a second, healthy-targets instance whose polls fail."""
    now = time.time() if now is None else now
    status = polls(now)
    view = view_of({INSTANCE: varied_state(now), OTHER: many_ok_state(now, 3)}, status)
    return view, summaries(status)
