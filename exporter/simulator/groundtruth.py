"""Ground truth: exactly what the exporter's metrics must show for the jobs terminal so far.

Why here: the simulator knows every job, so it can state the expected value of every series
independently of the exporter's tracker and ledger; end-to-end tests and the soak compare the two.
The computation follows the metric contract word for word:

- a job counts once, when terminal: status ``success``/``failed``/``partial_success``, or any other
  status with an EndTime (in this world: every job whose EndTime has passed);
- **jobs** by (target_type, target_id, direction, trigger_type, status);
- **objects** by (target_type, target_id, direction, entity, action, result), where entity is
  ``user``/``organizational_unit``/``group``/``group_member`` (the four statistics blocks), action
  is ``created``/``updated``/``binded``/``deleted``/``same``/``pushed``/``exported`` and result is
  ``success``/``failed``/``skipped`` (sums of the block's counters), plus ``unknown`` =
  max(0, Total − (Success + Failed + Skipped)) summed per job, listed only when positive;
  a success/failed/skipped row is listed (possibly with count 0) whenever the block was present in
  at least one counted job — ``Exported`` only for users and organizational units, as ``List``
  returns it;
- **errors** by (target_type, target_id, direction, error_code) for terminal jobs with a non-empty
  ``ErrorCode`` (failed and partially successful jobs alike);
- **last_success**: the largest EndTime (ms) of a ``success`` job per (target_type, target_id,
  direction);
- **in_progress**: the jobs not terminal yet;
- **cadence** per (target_type, target_id, direction) with a terminal job: of its latest 20
  distinct StartTimes (a scheduled job wins over a manual one started the same millisecond),
  ``jobs`` how many; ``schedule`` ``learning`` below 8 of them, ``manual`` when more than half
  were triggered manually, ``learning`` below 8 scheduled (not manual) ones, ``irregular`` when
  the interquartile range of the gaps between consecutive scheduled StartTimes exceeds half their
  median, else ``regular``; ``interval_seconds`` that median (regular only);
  ``last_scheduled_start_ms`` the latest scheduled StartTime among them; and, from the scenario,
  ``nominal_interval_seconds``: the interval of an ``interval`` schedule (``null`` for manual
  and random schedules) — what a regular cadence should come close to.
- **late_jobs**: how many of the terminal jobs counted above were *late* — listed only after their
  StartTime by a late fault (``late``, ``late-terminal``) or a job added with
  ``visible_after_ms``/``visible_when_terminal``. Whether the exporter's listing alone would have
  found one depends on its overlap, so this is what ``idaas_exporter_late_jobs_total`` must show
  when every late job appeared later than the overlap (the sweep then finds each one);
- **hidden_jobs**: jobs that have started but that no listing shows yet.

Only jobs a listing shows count anywhere (a late job still hidden is in no section): the
exporter cannot know of them yet.

With ``since`` (epoch ms) only jobs whose StartTime ≥ since count — in every section, in-progress
jobs included — which matches an exporter that started with that look-back.

JSON format (``GET /_sim/ground-truth[?since=MS][&instance_id=ID]``; rows sorted)::

    {
      "now_ms": 1735689600000,            // the world clock the answer is valid at
      "since_ms": null,                   // or the since parameter
      "instances": {
        "idaas_…": {
          "terminal_jobs": 512,
          "late_jobs": 3,
          "hidden_jobs": 1,
          "jobs":    [{"target_type": "identity_provider", "target_id": "idp_…",
                       "direction": "ingress", "trigger_type": "auto", "status": "success",
                       "count": 40}, …],
          "objects": [{"target_type": …, "target_id": …, "direction": …, "entity": "user",
                       "action": "created", "result": "success", "count": 17}, …],
          "errors":  [{"target_type": …, "target_id": …, "direction": …,
                       "error_code": "OperationFailed.WeComApi", "count": 3}, …],
          "last_success": [{"target_type": …, "target_id": …, "direction": …,
                            "end_time_ms": 1735689512345}, …],
          "in_progress":  [{"synchronization_job_id": "sync_…", "target_type": …,
                            "target_id": …, "direction": …, "trigger_type": "manual",
                            "status": "running", "start_time_ms": 1735678800000}, …],
          "cadence": [{"target_type": …, "target_id": …, "direction": …, "jobs": 20,
                       "schedule": "regular", "interval_seconds": 3600.0,
                       "last_scheduled_start_ms": 1735686000000,
                       "nominal_interval_seconds": 3600.0}, …]
        }
      }
    }
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any

from exporter.simulator.jobstats import ACTION_KEYS, ENTITY_KEYS, RESULT_KEYS, JobStatistics
from exporter.simulator.world import Job, World

__all__ = ["ground_truth", "instance_ground_truth"]

_Series = tuple[str, str, str]
_RESULT_LABELS = tuple(label for label, _key in RESULT_KEYS)


_CADENCE_WINDOW = 20
_CADENCE_MIN_JOBS = 8
_CADENCE_SPREAD = 0.5


def _series(job: Job) -> _Series:
    return (job.target_type, job.target_id, job.direction)


def _cadence(jobs: Iterable[Job], nominal_ms: float | None) -> dict[str, Any]:
    """The cadence row of one series from its terminal jobs (see the module's rules)."""
    triggers: dict[int, set[str]] = {}
    for job in jobs:
        triggers.setdefault(job.start_ms, set()).add(job.trigger)
    latest = sorted(triggers)[-_CADENCE_WINDOW:]
    manual = [start for start in latest if triggers[start] == {"manual"}]
    scheduled = [start for start in latest if triggers[start] != {"manual"}]
    schedule, interval = "learning", None
    if len(latest) >= _CADENCE_MIN_JOBS:
        if len(manual) * 2 > len(latest):
            schedule = "manual"
        elif len(scheduled) >= _CADENCE_MIN_JOBS:
            gaps = [b - a for a, b in itertools.pairwise(scheduled)]
            q1, median, q3 = statistics.quantiles(gaps, n=4, method="inclusive")
            if q3 - q1 > _CADENCE_SPREAD * median:
                schedule = "irregular"
            else:
                schedule, interval = "regular", median / 1000
    return {
        "jobs": len(latest),
        "schedule": schedule,
        "interval_seconds": interval,
        "last_scheduled_start_ms": scheduled[-1] if scheduled else None,
        "nominal_interval_seconds": None if nominal_ms is None else nominal_ms / 1000,
    }


def instance_ground_truth(
    world: World, instance_id: str, since_ms: int | None, now_ms: int
) -> dict[str, Any]:
    """The ground truth of one instance at *now_ms*, a time the world was advanced to.

    Call it holding ``world.lock`` so that no job changes state while it is computed.
    """
    jobs: Counter[tuple[str, str, str, str, str]] = Counter()
    errors: Counter[tuple[str, str, str, str]] = Counter()
    last_success: dict[_Series, int] = {}
    # Statistics tuples are shared by many jobs: count each distinct one per series, expand once.
    stats_uses: Counter[tuple[_Series, int]] = Counter()
    stats_by_id: dict[int, JobStatistics] = {}
    terminal = late = 0
    by_series: dict[_Series, list[Job]] = {}
    for job in world.terminal_jobs(instance_id, since_ms, now_ms=now_ms, visible_only=True):
        terminal += 1
        late += world.is_late(job)
        series = _series(job)
        by_series.setdefault(series, []).append(job)
        jobs[(*series, job.trigger, job.final)] += 1
        if job.error is not None and job.error[0].strip():
            errors[(*series, job.error[0].strip())] += 1
        if job.final == "success" and job.end_ms > last_success.get(series, -1):
            last_success[series] = job.end_ms
        stats = job.statistics()
        stats_by_id[id(stats)] = stats
        stats_uses[(series, id(stats))] += 1

    objects: dict[tuple[str, str, str, str, str, str], int] = {}
    for (series, stats_id), uses in stats_uses.items():
        stats = stats_by_id[stats_id]
        for entity_index, entity in enumerate(stats):
            if entity is None:
                continue
            entity_label = ENTITY_KEYS[entity_index][0]
            for action_index, counts in enumerate(entity):
                if counts is None:
                    continue
                action_label = ACTION_KEYS[action_index][0]
                total, success, failed, skipped = counts
                for result, value in (
                    ("success", success),
                    ("failed", failed),
                    ("skipped", skipped),
                ):
                    key = (*series, entity_label, action_label, result)
                    objects[key] = objects.get(key, 0) + value * uses
                unknown = total - (success + failed + skipped)
                if unknown > 0:
                    key = (*series, entity_label, action_label, "unknown")
                    objects[key] = objects.get(key, 0) + unknown * uses

    cadence = []
    for series, series_jobs in sorted(by_series.items()):
        stream = series_jobs[0].stream
        nominal = stream.interval_ms if stream.target.spec.schedule == "interval" else None
        row = {"target_type": series[0], "target_id": series[1], "direction": series[2]}
        cadence.append({**row, **_cadence(series_jobs, nominal)})

    now = now_ms
    in_progress = [
        job
        for job in world.in_progress(instance_id, now_ms=now_ms, visible_only=True)
        if since_ms is None or job.start_ms >= since_ms
    ]
    return {
        "terminal_jobs": terminal,
        "late_jobs": late,
        "hidden_jobs": world.hidden_jobs(instance_id, now_ms=now_ms),
        "jobs": [
            {
                "target_type": k[0],
                "target_id": k[1],
                "direction": k[2],
                "trigger_type": k[3],
                "status": k[4],
                "count": n,
            }
            for k, n in sorted(jobs.items())
        ],
        "objects": [
            {
                "target_type": k[0],
                "target_id": k[1],
                "direction": k[2],
                "entity": k[3],
                "action": k[4],
                "result": k[5],
                "count": n,
            }
            for k, n in sorted(objects.items())
        ],
        "errors": [
            {
                "target_type": k[0],
                "target_id": k[1],
                "direction": k[2],
                "error_code": k[3],
                "count": n,
            }
            for k, n in sorted(errors.items())
        ],
        "last_success": [
            {"target_type": k[0], "target_id": k[1], "direction": k[2], "end_time_ms": v}
            for k, v in sorted(last_success.items())
        ],
        "in_progress": [
            {
                "synchronization_job_id": job.job_id,
                "target_type": job.target_type,
                "target_id": job.target_id,
                "direction": job.direction,
                "trigger_type": job.trigger,
                "status": job.status_at(now),
                "start_time_ms": job.start_ms,
            }
            for job in in_progress
        ],
        "cadence": cadence,
    }


def ground_truth(
    world: World, *, since_ms: int | None = None, instance_id: str | None = None
) -> dict[str, Any]:
    """Ground truth of every instance (or just *instance_id*) at the world's current time.

    ``KeyError`` for an unknown *instance_id*.
    """
    ids = [instance_id] if instance_id is not None else [i.instance_id for i in world.instances]
    for iid in ids:
        if world.instance(iid) is None:
            raise KeyError(iid)
    with world.lock:
        now = world.advance()
        return {
            "now_ms": now,
            "since_ms": since_ms,
            "instances": {iid: instance_ground_truth(world, iid, since_ms, now) for iid in ids},
        }
