"""The metric contract: families built from the persisted state and the exporter's own numbers.

Pure: one :class:`ExporterView` in, the :class:`~exporter.core.exposition.Family` list out —
every family the snapshot holds, the exporter's own included. The daemon builds the view after
every commit, :func:`build_families` turns it into families and
:class:`~exporter.core.exposition.Snapshot` renders them once; ``/metrics`` serves those bytes.
(What must be fresh at every scrape — ``process_*``, the HTTP server's own counters — is the web
edge's, see :mod:`exporter.web.app`.)

An excerpt of the exposition for one identity provider::

    # HELP idaas_sync_jobs_total Synchronization jobs counted when first seen terminal, ...
    # TYPE idaas_sync_jobs_total counter
    idaas_sync_jobs_total{instance_id="idaas_x",target_type="identity_provider",
        target_id="idp_ad",direction="ingress",trigger_type="auto",status="success"} 42
    idaas_sync_objects_total{...,entity="user",action="created",result="success"} 120
    idaas_sync_last_success_timestamp_seconds{...} 1.7645e+09
    idaas_sync_last_job_status{...,status="failed"} 0
    idaas_sync_jobs_in_progress{...} 0
    idaas_exporter_up{instance_id="idaas_x"} 1
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter import __version__
from exporter.core.cadence import MIN_JOBS, SCHEDULES, WINDOW, learn
from exporter.core.exposition import Family
from exporter.core.instance import InstanceState, in_progress_by_target
from exporter.core.ledger import DURATION_BUCKETS, KNOWN_STATUSES, label_value
from exporter.eiam.client import RequestEvent

__all__ = [
    "API_DURATION_BUCKETS",
    "PURPOSES",
    "ApiRequestStats",
    "ExporterView",
    "PollStatus",
    "build_families",
]

API_DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PURPOSES: tuple[str, ...] = ("poll", "sweep", "recheck", "names")
"""Why requests are sent (:data:`exporter.eiam.client.request_purpose`), always exported."""
TARGET_LABELS = ("instance_id", "target_type", "target_id", "direction")
_NAMED_TYPES = frozenset({"identity_provider", "application"})
"""Target types whose existence ListIdentityProviders/ListApplications can confirm."""


@dataclass(frozen=True, slots=True)
class PollStatus:
    """The outcome of an instance's latest poll, for ``idaas_exporter_*`` gauges."""

    up: bool = False
    last_poll_s: float | None = None
    last_success_s: float | None = None
    last_duration_s: float | None = None
    polls: Mapping[str, int] = field(default_factory=dict)
    """result (``success``/``error``) → polls."""
    errors: Mapping[str, int] = field(default_factory=dict)
    """error code → failed polls."""
    last_error: str | None = None
    """Error code of the latest poll when it failed."""

    def after_poll(self, *, ok: bool, code: str | None, now: float, duration: float) -> PollStatus:
        """The status once one more poll ended (*code*: its error code when it failed).

        >>> status = PollStatus().after_poll(ok=False, code="Throttling", now=10.0, duration=1.5)
        >>> status = status.after_poll(ok=True, code=None, now=70.0, duration=0.5)
        >>> status.up, dict(status.polls), dict(status.errors), status.last_success_s
        (True, {'error': 1, 'success': 1}, {'Throttling': 1}, 70.0)
        """
        result = "success" if ok else "error"
        polls = {**self.polls, result: self.polls.get(result, 0) + 1}
        errors = dict(self.errors)
        if code is not None:
            errors[code] = errors.get(code, 0) + 1
        return PollStatus(
            up=ok,
            last_poll_s=now,
            last_success_s=now if ok else self.last_success_s,
            last_duration_s=duration,
            polls=polls,
            errors=errors,
            last_error=code,
        )


class ApiRequestStats:
    """Accumulates :class:`RequestEvent` s (the client's observer) into counters and a histogram.

    Mutable and process-lifetime: unlike the sync counters these restart at zero with the
    process, as any exporter's own request counters do.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.durations: dict[str, list[int]] = {}
        self.duration_sums: dict[str, float] = {}
        self.purposes: dict[str, int] = dict.fromkeys(PURPOSES, 0)

    def on_request(self, event: RequestEvent) -> None:
        key = (event.action, label_value(event.code))
        self.requests[key] = self.requests.get(key, 0) + 1
        purpose = event.purpose if event.purpose in PURPOSES else "other"
        self.purposes[purpose] = self.purposes.get(purpose, 0) + 1
        buckets = self.durations.setdefault(event.action, [0] * (len(API_DURATION_BUCKETS) + 1))
        index = next(
            (i for i, bound in enumerate(API_DURATION_BUCKETS) if event.duration_seconds <= bound),
            len(API_DURATION_BUCKETS),
        )
        buckets[index] += 1
        self.duration_sums[event.action] = (
            self.duration_sums.get(event.action, 0.0) + event.duration_seconds
        )

    def copy(self) -> ApiRequestStats:
        """A frozen-in-time copy for a render in another thread."""
        copied = ApiRequestStats()
        copied.requests = dict(self.requests)
        copied.durations = {action: list(counts) for action, counts in self.durations.items()}
        copied.duration_sums = dict(self.duration_sums)
        copied.purposes = dict(self.purposes)
        return copied


@dataclass(frozen=True, slots=True)
class ExporterView:
    """Everything the metric contract is built from, as the daemon committed it.

    ``instances``: the committed state of every polled instance; ``polls``: their latest poll
    outcomes; ``api``: the API requests made (a copy); ``state_writes``: result → writes of the
    state file; ``poll_interval``: seconds, for the HELP texts.
    """

    instances: Mapping[str, InstanceState]
    polls: Mapping[str, PollStatus]
    api: ApiRequestStats
    state_writes: Mapping[str, int]
    poll_interval: float


def _every(poll_interval: float) -> str:
    return f"Refreshed every poll (every {poll_interval:g} s)."


def build_families(view: ExporterView) -> list[Family]:
    """All families of the metric contract, in a stable order (sorted label values)."""
    instances = view.instances
    every = _every(view.poll_interval)
    jobs = Family(
        "idaas_sync_jobs",
        "counter",
        "Synchronization jobs, counted once when first seen terminal, by final status. " + every,
        (*TARGET_LABELS, "trigger_type", "status"),
    )
    objects = Family(
        "idaas_sync_objects",
        "counter",
        "Objects processed by terminal synchronization jobs, by entity, action and result "
        "(result=unknown: the part of a Total not broken down by the API). " + every,
        (*TARGET_LABELS, "entity", "action", "result"),
    )
    errors = Family(
        "idaas_sync_job_errors",
        "counter",
        "Terminal synchronization jobs that reported an ErrorCode. " + every,
        (*TARGET_LABELS, "error_code"),
    )
    duration = Family(
        "idaas_sync_job_duration_seconds",
        "histogram",
        "Duration of terminal synchronization jobs (EndTime - StartTime). " + every,
        TARGET_LABELS,
    )
    last_success = Family(
        "idaas_sync_last_success_timestamp_seconds",
        "gauge",
        "EndTime of the latest successful synchronization job (Unix seconds). " + every,
        TARGET_LABELS,
    )
    last_end = Family(
        "idaas_sync_last_job_end_timestamp_seconds",
        "gauge",
        "EndTime of the latest terminal synchronization job (Unix seconds). " + every,
        TARGET_LABELS,
    )
    last_status = Family(
        "idaas_sync_last_job_status",
        "gauge",
        "1 for the status of the latest terminal synchronization job, 0 for the other "
        "statuses. " + every,
        (*TARGET_LABELS, "status"),
    )
    in_progress = Family(
        "idaas_sync_jobs_in_progress",
        "gauge",
        "Synchronization jobs pending or running now (0 for a known target with none). " + every,
        TARGET_LABELS,
    )
    oldest = Family(
        "idaas_sync_oldest_in_progress_start_timestamp_seconds",
        "gauge",
        "StartTime of the oldest job in progress (Unix seconds); absent when none. " + every,
        TARGET_LABELS,
    )
    interval = Family(
        "idaas_sync_target_interval_seconds",
        "gauge",
        f"The target's learned cadence: median gap between the StartTimes of its latest "
        f"{WINDOW} scheduled (not manual) jobs; only for schedule=regular (at least "
        f"{MIN_JOBS} jobs). " + every,
        TARGET_LABELS,
    )
    schedule = Family(
        "idaas_sync_target_schedule",
        "gauge",
        "1 for the target's schedule class, 0 for the others: learning (fewer than "
        f"{MIN_JOBS} jobs known), regular, irregular (gaps too dispersed), manual (most jobs "
        "triggered by hand). " + every,
        (*TARGET_LABELS, "schedule"),
    )
    last_scheduled = Family(
        "idaas_sync_last_scheduled_job_start_timestamp_seconds",
        "gauge",
        "StartTime of the latest terminal scheduled (not manual) job (Unix seconds). " + every,
        TARGET_LABELS,
    )
    target_info = Family(
        "idaas_sync_target",
        "info",
        "Synchronization targets and their names (ListIdentityProviders/ListApplications).",
        ("instance_id", "target_type", "target_id", "target_name"),
    )

    for instance_id in sorted(instances):
        state = instances[instance_id]
        running = in_progress_by_target(state.tracker)
        names = state.target_names
        for key in state.targets():
            labels = (instance_id, *key)
            stats = state.ledger.targets.get(key)
            starts = running.get(key, [])
            # A target that a successful names listing no longer contains was removed from
            # IDaaS: its counters stay (they never go backwards), its gauges go, so no
            # "no recent success" alert fires for it forever. Only a listing taken after its
            # last job decides: a new target's first jobs may end before a listing has it.
            ended_ms = stats.last_end_ms if stats is not None else None
            removed = (
                bool(names)
                and not starts
                and key[0] in _NAMED_TYPES
                and (key[0], key[1]) not in names
                and not (
                    ended_ms is not None
                    and state.names_refreshed_ms is not None
                    and ended_ms > state.names_refreshed_ms
                )
            )
            if not removed:
                in_progress.add(labels, len(starts))
            if starts:
                oldest.add(labels, min(starts) / 1000.0)
            if stats is None:
                continue
            for (trigger, status), count in sorted(stats.jobs.items()):
                example = stats.exemplars.get((trigger, status))
                exemplar = (
                    (("sync_job_id", example[0]), 1.0, example[1] / 1000.0) if example else None
                )
                jobs.add((*labels, trigger, status), count, exemplar)
            for (entity, action, result), count in sorted(stats.objects.items()):
                objects.add((*labels, entity, action, result), count)
            for code, count in sorted(stats.errors.items()):
                errors.add((*labels, code), count)
            if stats.duration_count:
                duration.add_histogram(
                    labels, DURATION_BUCKETS, stats.duration_buckets, stats.duration_sum
                )
            if removed:
                continue
            if stats.last_success_end_ms is not None:
                last_success.add(labels, stats.last_success_end_ms / 1000.0)
            if stats.last_end_ms is not None:
                last_end.add(labels, stats.last_end_ms / 1000.0)
            if stats.last_status is not None:
                for status in sorted(set(KNOWN_STATUSES) | stats.statuses):
                    last_status.add((*labels, status), 1 if status == stats.last_status else 0)
            if not stats.jobs:
                continue  # known only by a job in progress: no rhythm to speak of yet
            cadence = learn(stats.recent)
            for name in SCHEDULES:
                schedule.add((*labels, name), 1 if name == cadence.schedule else 0)
            if cadence.interval_seconds is not None:
                interval.add(labels, cadence.interval_seconds)
            if cadence.last_scheduled_start_ms is not None:
                last_scheduled.add(labels, cadence.last_scheduled_start_ms / 1000.0)
        for (target_type, target_id), name in sorted(state.target_names.items()):
            target_info.add((instance_id, target_type, target_id, label_value(name)), 1)

    return [
        jobs,
        objects,
        errors,
        duration,
        last_success,
        last_end,
        last_status,
        in_progress,
        oldest,
        last_scheduled,
        interval,
        schedule,
        target_info,
        *_exporter_families(view, every),
    ]


def _exporter_families(view: ExporterView, every: str) -> list[Family]:
    instances, polls, api = view.instances, view.polls, view.api
    up = Family(
        "idaas_exporter_up",
        "gauge",
        "1 when the latest poll of the instance succeeded, else 0. " + every,
        ("instance_id",),
    )
    last_poll = Family(
        "idaas_exporter_last_poll_timestamp_seconds",
        "gauge",
        "When the latest poll of the instance finished (Unix seconds).",
        ("instance_id",),
    )
    last_ok = Family(
        "idaas_exporter_last_poll_success_timestamp_seconds",
        "gauge",
        "When the latest successful poll of the instance finished (Unix seconds).",
        ("instance_id",),
    )
    poll_duration = Family(
        "idaas_exporter_last_poll_duration_seconds",
        "gauge",
        "Wall time of the latest poll of the instance, API calls and retries included.",
        ("instance_id",),
    )
    poll_count = Family(
        "idaas_exporter_polls",
        "counter",
        "Polls of the instance since the exporter started, by result.",
        ("instance_id", "result"),
    )
    poll_errors = Family(
        "idaas_exporter_poll_errors",
        "counter",
        "Failed polls since the exporter started, by error code (API Code or failure kind).",
        ("instance_id", "code"),
    )
    tracked = Family(
        "idaas_exporter_tracked_jobs",
        "gauge",
        "Job IDs held in memory and in the state file: counted ones inside the window "
        "(counted), jobs in progress (in_progress), and counted ones below the window kept "
        "for the reconciliation sweep (retained). " + every,
        ("instance_id", "kind"),
    )
    late = Family(
        "idaas_exporter_late_jobs",
        "counter",
        "Jobs counted that only the reconciliation sweep found: the listing showed them after "
        "the poll window had passed their StartTime (kept across restarts). " + every,
        ("instance_id",),
    )
    last_sweep = Family(
        "idaas_exporter_last_sweep_timestamp_seconds",
        "gauge",
        "When the latest reconciliation sweep of the instance completed (Unix seconds); "
        "absent before the first.",
        ("instance_id",),
    )
    for instance_id in sorted(set(instances) | set(polls)):
        status = polls.get(instance_id, PollStatus())
        up.add((instance_id,), 1 if status.up else 0)
        if status.last_poll_s is not None:
            last_poll.add((instance_id,), status.last_poll_s)
        if status.last_success_s is not None:
            last_ok.add((instance_id,), status.last_success_s)
        if status.last_duration_s is not None:
            poll_duration.add((instance_id,), status.last_duration_s)
        for result in ("success", "error"):
            poll_count.add((instance_id, result), status.polls.get(result, 0))
        for code, count in sorted(status.errors.items()):
            poll_errors.add((instance_id, code), count)
        state = instances.get(instance_id)
        if state is not None:
            tracker = state.tracker
            tracked.add((instance_id, "counted"), len(tracker.counted))
            tracked.add((instance_id, "in_progress"), len(tracker.in_progress))
            tracked.add((instance_id, "retained"), len(tracker.retained))
            late.add((instance_id,), tracker.late_jobs)
            if tracker.last_sweep_ms is not None:
                last_sweep.add((instance_id,), tracker.last_sweep_ms / 1000.0)

    requests = Family(
        "idaas_exporter_api_requests",
        "counter",
        "EIAM API requests sent (every attempt, retries included), by action and outcome: "
        "HTTP status, API error Code, or failure kind.",
        ("action", "code"),
    )
    for (action, code), count in sorted(api.requests.items()):
        requests.add((action, code), count)
    purposes = Family(
        "idaas_exporter_api_requests_by_purpose",
        "counter",
        "EIAM API requests sent (as idaas_exporter_api_requests_total), by why: poll (the "
        "listing), sweep (reconciliation), recheck (stuck jobs), names (target names).",
        ("purpose",),
    )
    for purpose, count in sorted(api.purposes.items()):
        purposes.add((purpose,), count)
    latency = Family(
        "idaas_exporter_api_request_duration_seconds",
        "histogram",
        "Duration of EIAM API requests (each attempt).",
        ("action",),
    )
    for action in sorted(api.durations):
        latency.add_histogram(
            (action,), API_DURATION_BUCKETS, api.durations[action], api.duration_sums[action]
        )
    build = Family(
        "idaas_exporter_build",
        "info",
        "Version of the exporter and of Python.",
        ("version", "python_version"),
    )
    build.add((__version__, platform.python_version()), 1)
    writes = Family(
        "idaas_exporter_state_writes",
        "counter",
        "Writes of the state file since the exporter started, by result. Counts only become "
        "visible once written.",
        ("result",),
    )
    for result in ("success", "error"):
        writes.add((result,), view.state_writes.get(result, 0))
    return [
        up,
        last_poll,
        last_ok,
        poll_duration,
        poll_count,
        poll_errors,
        tracked,
        late,
        last_sweep,
        requests,
        purposes,
        latency,
        build,
        writes,
    ]
