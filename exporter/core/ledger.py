"""Counters and last-* values built from counted jobs. Pure: jobs in, immutable numbers out.

The ledger is what ``/metrics`` shows and what the state file keeps, so that counters continue
across restarts. It is keyed by *target* (``target_type``, ``target_id``, ``direction``) within
one instance; each :class:`TargetStats` holds the series of that target:

=============================  ==========================================================
``jobs``                       (trigger_type, status) → jobs counted
``objects``                    (entity, action, result) → objects
``errors``                     error_code → jobs that ended with that ErrorCode
``duration_*``                 histogram of EndTime − StartTime in seconds
``last_*``                     the latest terminal job by EndTime, and the latest success
``recent``                     (StartTime, trigger_type) of the latest 20 distinct
                               StartTimes: the window :mod:`~exporter.core.cadence` learns
                               the target's rhythm from
=============================  ==========================================================

Statistics blocks whose ``Total`` exceeds ``Success + Failed + Skipped`` contribute the rest
as ``result="unknown"``, so ``sum by (action)`` over results still equals the API's Total.

>>> from exporter.eiam.models import SynchronizationJob
>>> job = SynchronizationJob.model_validate({
...     "SynchronizationJobId": "sync_1", "TargetType": "identity_provider",
...     "TargetId": "idp_ad", "Direction": "ingress", "TriggerType": "auto",
...     "Status": "success", "StartTime": 1000, "EndTime": 61000,
...     "Result": {"UserStatistics": {"Created": {"Total": 5, "Success": 3, "Failed": 1}}}})
>>> ledger = InstanceLedger().with_jobs([job])
>>> stats = ledger.targets[("identity_provider", "idp_ad", "ingress")]
>>> dict(stats.jobs)
{('auto', 'success'): 1}
>>> for key, value in stats.objects.items():
...     print(key, value)
('user', 'created', 'success') 3
('user', 'created', 'failed') 1
('user', 'created', 'skipped') 0
('user', 'created', 'unknown') 1
>>> stats.last_success_end_ms, stats.duration_sum
(61000, 60.0)
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from exporter.core.cadence import RecentJob, remember
from exporter.eiam.models import (
    ACTIONS,
    ENTITY_BLOCKS,
    RESULTS,
    SynchronizationJob,
    SynchronizationJobResult,
)

__all__ = [
    "DURATION_BUCKETS",
    "KNOWN_STATUSES",
    "InstanceLedger",
    "TargetKey",
    "TargetStats",
    "label_value",
    "target_key",
]

TargetKey = tuple[str, str, str]
"""(target_type, target_id, direction), already normalised for use as label values."""

DURATION_BUCKETS: tuple[float, ...] = (
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
)  # fmt: skip
"""Upper bounds (seconds) of the job duration histogram; ``+Inf`` is implicit."""

KNOWN_STATUSES: tuple[str, ...] = ("success", "failed", "partial_success")
"""Terminal statuses always present (0 or 1) in ``idaas_sync_last_job_status``."""

UNKNOWN = "unknown"
_MAX_LABEL = 128
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.:\-]{1,96}$")


def label_value(value: str | None) -> str:
    """A bounded, non-empty label value: stripped, ``unknown`` when missing, capped length."""
    text = (value or "").strip()
    return text[:_MAX_LABEL] if text else UNKNOWN


def _error_code(value: str | None) -> str | None:
    """API error codes are identifiers; anything else (free text) is folded into ``other``."""
    text = (value or "").strip()
    if not text:
        return None
    return text if _ERROR_CODE.match(text) else "other"


def target_key(job: SynchronizationJob) -> TargetKey:
    return (label_value(job.target_type), label_value(job.target_id), label_value(job.direction))


@dataclass(frozen=True, slots=True)
class TargetStats:
    """All series of one target. Immutable; ``with_job`` returns an updated copy."""

    jobs: Mapping[tuple[str, str], int] = field(default_factory=dict)
    objects: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    errors: Mapping[str, int] = field(default_factory=dict)
    duration_buckets: tuple[int, ...] = (0,) * (len(DURATION_BUCKETS) + 1)
    duration_sum: float = 0.0
    duration_count: int = 0
    last_end_ms: int | None = None
    last_status: str | None = None
    last_order: tuple[int, int, str] | None = None
    last_success_end_ms: int | None = None
    statuses: frozenset[str] = frozenset()
    exemplars: Mapping[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    """(trigger_type, status) → (newest job ID, its EndTime ms): OpenMetrics exemplars."""
    recent: tuple[RecentJob, ...] = ()
    """The cadence window: (StartTime ms, trigger_type) of the latest distinct StartTimes."""

    def with_jobs(self, batch: Iterable[SynchronizationJob]) -> TargetStats:
        """A copy with *batch* (terminal jobs of this target) added; copies once per batch."""
        jobs = dict(self.jobs)
        objects = dict(self.objects)
        errors = dict(self.errors)
        buckets = list(self.duration_buckets)
        duration_sum = self.duration_sum
        duration_count = self.duration_count
        last_end, last_status, last_order = self.last_end_ms, self.last_status, self.last_order
        last_success = self.last_success_end_ms
        statuses = set(self.statuses)
        exemplars = dict(self.exemplars)
        started: list[RecentJob] = []

        for job in batch:
            trigger = label_value(job.trigger_type)
            status = label_value(job.status)
            statuses.add(status)
            jobs[(trigger, status)] = jobs.get((trigger, status), 0) + 1
            if job.start_time is not None:
                started.append((job.start_time, trigger))

            result = job.result
            if result is not None:
                _add_objects(objects, result)
                code = _error_code(result.error_code)
                if code is not None:
                    errors[code] = errors.get(code, 0) + 1

            end = job.end_time
            if job.start_time is not None and end is not None:
                seconds = max(0, end - job.start_time) / 1000.0
                buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
                duration_sum += seconds
                duration_count += 1

            order = (end or 0, job.start_time or 0, job.synchronization_job_id)
            if last_order is None or order > last_order:
                last_order, last_status = order, status
                if end is not None:
                    last_end = end
            if status == "success" and end is not None:
                last_success = end if last_success is None else max(last_success, end)

            stamp = end if end is not None else job.start_time or 0
            previous = exemplars.get((trigger, status))
            # newest by EndTime, ties by ID: the same jobs give the same exemplar in any order
            if previous is None or (stamp, job.synchronization_job_id) >= (
                previous[1],
                previous[0],
            ):
                exemplars[(trigger, status)] = (job.synchronization_job_id, stamp)

        return TargetStats(
            jobs=jobs,
            objects=objects,
            errors=errors,
            duration_buckets=tuple(buckets),
            duration_sum=duration_sum,
            duration_count=duration_count,
            last_end_ms=last_end,
            last_status=last_status,
            last_order=last_order,
            last_success_end_ms=last_success,
            statuses=frozenset(statuses),
            exemplars=exemplars,
            recent=remember(self.recent, started),
        )


def _add_objects(
    objects: dict[tuple[str, str, str], int], result: SynchronizationJobResult
) -> None:
    """Add one job's statistics blocks; the part of Total not broken down goes to unknown."""
    for entity, attribute in ENTITY_BLOCKS:
        block = getattr(result, attribute)
        if not block:
            continue
        for action, action_key in ACTIONS:
            numbers = block.get(action_key)
            if not numbers:
                continue
            parts = 0
            for result_label, result_key in RESULTS:
                count = max(0, numbers.get(result_key) or 0)
                parts += count
                key = (entity, action, result_label)
                objects[key] = objects.get(key, 0) + count  # 0 too: the series exists
            rest = (numbers.get("Total") or 0) - parts
            if rest > 0:
                key = (entity, action, UNKNOWN)
                objects[key] = objects.get(key, 0) + rest


@dataclass(frozen=True, slots=True)
class InstanceLedger:
    """Every target's :class:`TargetStats` of one instance."""

    targets: Mapping[TargetKey, TargetStats] = field(default_factory=dict)

    def with_jobs(self, jobs: Iterable[SynchronizationJob]) -> InstanceLedger:
        """Add terminal jobs (each exactly once: the tracker guarantees it)."""
        batches: dict[TargetKey, list[SynchronizationJob]] = {}
        for job in jobs:
            batches.setdefault(target_key(job), []).append(job)
        if not batches:
            return self
        targets = dict(self.targets)
        for key, batch in batches.items():
            targets[key] = targets.get(key, TargetStats()).with_jobs(batch)
        return replace(self, targets=targets)

    def with_targets(self, keys: Iterable[TargetKey]) -> InstanceLedger:
        """Make sure known targets exist (so their in-progress gauge can show 0)."""
        missing = [key for key in keys if key not in self.targets]
        if not missing:
            return self
        return replace(self, targets={**self.targets, **{key: TargetStats() for key in missing}})
