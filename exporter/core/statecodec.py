"""The state file's format: every instance's tracker and ledger as one versioned JSON document.

Why it exists: counters must continue across restarts (no reset, no double count), so the
exporter keeps, per instance, the window and the IDs it counted *and* the counters those jobs
produced. This module is the pure codec (bytes in, bytes out); writing the file atomically is
:mod:`exporter.service.state_store`'s job.

Refusing to guess: a file that cannot be read, does not parse, or was written by a newer
schema stops start-up with :class:`StateFileError`, whose message says how to start fresh
(move the file away). Silently starting from zero would make every counter jump backwards.

Layout (``schema_version`` 2)::

    {"schema_version": 2, "exporter_version": "0.1.0", "written_at": "2026-…Z",
     "duration_buckets": [1.0, 5.0, …],
     "instances": {"idaas_x": {
         "tracker": {"window_start_ms": …, "watermark_ms": …,
                     "counted": {"sync_…": start_ms, …},
                     "in_progress": [{"job": {API fields…}, "first_seen_ms": …,
                                      "last_checked_ms": …, "late": true}],
                     "retained": {"from_ms": …, "minutes": "<base64>", "sizes": "<base64>",
                                  "prints": "<base64>"},
                     "next_sweep_ms": …, "last_sweep_ms": …, "late_jobs": n},
         "targets": [{"target_type": …, "target_id": …, "direction": …,
                      "jobs": [[trigger, status, n], …],
                      "objects": [[entity, action, result, n], …],
                      "errors": [[code, n], …], "duration": {"buckets": […], "sum": …, "count": …},
                      "last_end_ms": …, "last_status": …, "last_order": [end, start, id],
                      "last_success_end_ms": …, "statuses": […],
                      "exemplars": [[trigger, status, job_id, ms], …],
                      "recent_jobs": [[start_ms, trigger], …]}],
         "target_names": [[target_type, target_id, name], …], "names_refreshed_ms": …}}}

Schema 2 added, all optional (a schema-1 file loads):

- ``recent_jobs`` per target, the cadence window (:mod:`exporter.core.cadence`): absent, it is
  empty, and the cadence is learned afresh from the jobs counted from then on;
- the reconciliation sweep's tracker keys (``retained``: the counted IDs kept below the window,
  as base64 of little-endian 64-bit integers — the minutes of StartTime, the IDs in each minute,
  their fingerprints — see :mod:`exporter.core.retained`; ``next_sweep_ms``, ``last_sweep_ms``,
  ``late_jobs``; ``late`` on a job in progress, written only when true): absent, nothing is
  retained below the window (so the sweep starts there) and the first sweep comes an interval
  after the first poll.

A file newer than :data:`SCHEMA_VERSION` is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pydantic

from exporter import __version__
from exporter.core.cadence import RecentJob, remember
from exporter.core.instance import InstanceState
from exporter.core.ledger import DURATION_BUCKETS, InstanceLedger, TargetStats
from exporter.core.retained import RetainedIds
from exporter.core.tracker import InProgressJob, TrackerState
from exporter.eiam.models import SynchronizationJob

__all__ = [
    "SCHEMA_VERSION",
    "StateFileError",
    "decode_state",
    "encode_state",
]

SCHEMA_VERSION = 2


class StateFileError(RuntimeError):
    """The state file cannot be used. The message names the file, the problem and the fix."""


# -- encoding (pure) -----------------------------------------------------------------------


def _encode_target(key: tuple[str, str, str], stats: TargetStats) -> dict[str, Any]:
    return {
        "target_type": key[0],
        "target_id": key[1],
        "direction": key[2],
        "jobs": [[t, s, n] for (t, s), n in stats.jobs.items()],
        "objects": [[e, a, r, n] for (e, a, r), n in stats.objects.items()],
        "errors": [[c, n] for c, n in stats.errors.items()],
        "duration": {
            "buckets": list(stats.duration_buckets),
            "sum": stats.duration_sum,
            "count": stats.duration_count,
        },
        "last_end_ms": stats.last_end_ms,
        "last_status": stats.last_status,
        "last_order": list(stats.last_order) if stats.last_order else None,
        "last_success_end_ms": stats.last_success_end_ms,
        "statuses": sorted(stats.statuses),
        "exemplars": [[t, s, job_id, ms] for (t, s), (job_id, ms) in stats.exemplars.items()],
        "recent_jobs": [[start, trigger] for start, trigger in stats.recent],
    }


def _encode_in_progress(progress: InProgressJob) -> dict[str, Any]:
    item = {
        "job": progress.job.to_api(),
        "first_seen_ms": progress.first_seen_ms,
        "last_checked_ms": progress.last_checked_ms,
    }
    if progress.late:
        item["late"] = True
    return item


def _encode_retained(retained: RetainedIds) -> dict[str, Any]:
    minutes, sizes, prints = retained.to_bytes()
    return {
        "from_ms": retained.from_ms,
        "minutes": base64.b64encode(minutes).decode("ascii"),
        "sizes": base64.b64encode(sizes).decode("ascii"),
        "prints": base64.b64encode(prints).decode("ascii"),
    }


def _encode_instance(state: InstanceState) -> dict[str, Any]:
    tracker = state.tracker
    return {
        "tracker": {
            "window_start_ms": tracker.window_start_ms,
            "watermark_ms": tracker.watermark_ms,
            "counted": dict(tracker.counted),
            "in_progress": [_encode_in_progress(p) for p in tracker.in_progress.values()],
            "retained": _encode_retained(tracker.retained),
            "next_sweep_ms": tracker.next_sweep_ms,
            "last_sweep_ms": tracker.last_sweep_ms,
            "late_jobs": tracker.late_jobs,
        },
        "targets": [_encode_target(k, v) for k, v in state.ledger.targets.items()],
        "target_names": [[t, i, n] for (t, i), n in state.target_names.items()],
        "names_refreshed_ms": state.names_refreshed_ms,
    }


def encode_state(instances: Mapping[str, InstanceState], now: datetime | None = None) -> bytes:
    """The whole document as UTF-8 JSON bytes."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "exporter_version": __version__,
        "written_at": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_buckets": list(DURATION_BUCKETS),
        "instances": {iid: _encode_instance(s) for iid, s in instances.items()},
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _int(value: Any, where: str, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where} must be an integer, not {type(value).__name__}")
    return value


def _decode_target(
    raw: Mapping[str, Any], buckets: int
) -> tuple[tuple[str, str, str], TargetStats]:
    key = (str(raw["target_type"]), str(raw["target_id"]), str(raw["direction"]))
    duration = raw["duration"]
    duration_buckets = tuple(int(n) for n in duration["buckets"])
    if len(duration_buckets) != buckets:
        raise ValueError(
            f"target {key[1]}: {len(duration_buckets)} histogram buckets, not {buckets}"
        )
    order = raw.get("last_order")
    stats = TargetStats(
        jobs={(str(t), str(s)): int(n) for t, s, n in raw["jobs"]},
        objects={(str(e), str(a), str(r)): int(n) for e, a, r, n in raw["objects"]},
        errors={str(c): int(n) for c, n in raw["errors"]},
        duration_buckets=duration_buckets,
        duration_sum=float(duration["sum"]),
        duration_count=int(duration["count"]),
        last_end_ms=_int(raw.get("last_end_ms"), "last_end_ms"),
        last_status=raw.get("last_status"),
        last_order=(int(order[0]), int(order[1]), str(order[2])) if order else None,
        last_success_end_ms=_int(raw.get("last_success_end_ms"), "last_success_end_ms"),
        statuses=frozenset(str(s) for s in raw.get("statuses", [])),
        exemplars={(str(t), str(s)): (str(j), int(ms)) for t, s, j, ms in raw.get("exemplars", [])},
        recent=_decode_recent(raw.get("recent_jobs", []), key),
    )
    if any(n < 0 for n in (*stats.jobs.values(), *stats.objects.values(), *stats.errors.values())):
        raise ValueError(f"target {key[1]}: negative counter")
    return key, stats


def _decode_recent(raw: Any, key: tuple[str, str, str]) -> tuple[RecentJob, ...]:
    """The cadence window (absent before schema 2: empty, learned afresh)."""
    recent: list[RecentJob] = []
    for start, trigger in raw:
        if isinstance(start, bool) or not isinstance(start, int):
            raise ValueError(
                f"target {key[1]}: recent_jobs holds a StartTime that is not an integer"
            )
        recent.append((start, str(trigger)))
    return remember((), recent)


def _decode_retained(raw: Any, window_start_ms: int | None) -> RetainedIds:
    """Schema 1 had no retained IDs: every counted ID below the window was forgotten, so
    nothing is vouched for below it (the sweep starts there)."""
    if raw is None:
        return RetainedIds(from_ms=window_start_ms)
    try:
        arrays = [
            base64.b64decode(raw[key], validate=True) for key in ("minutes", "sizes", "prints")
        ]
    except (binascii.Error, TypeError) as exc:
        raise ValueError(f"retained IDs are not base64 ({exc})") from None
    return RetainedIds.from_bytes(_int(raw.get("from_ms"), "retained.from_ms"), *arrays)


def _decode_instance(raw: Mapping[str, Any], buckets: int) -> InstanceState:
    tracker_raw = raw["tracker"]
    counted = {str(k): int(v) for k, v in tracker_raw["counted"].items()}
    in_progress: dict[str, InProgressJob] = {}
    for item in tracker_raw["in_progress"]:
        job = SynchronizationJob.model_validate(item["job"])
        in_progress[job.synchronization_job_id] = InProgressJob(
            job,
            int(item["first_seen_ms"]),
            int(item["last_checked_ms"]),
            item.get("late") is True,
        )
    window_start = _int(tracker_raw.get("window_start_ms"), "window_start_ms")
    late_jobs = _int(tracker_raw.get("late_jobs", 0), "late_jobs", optional=False) or 0
    if late_jobs < 0:
        raise ValueError("late_jobs: negative counter")
    tracker = TrackerState(
        window_start_ms=window_start,
        watermark_ms=_int(tracker_raw.get("watermark_ms"), "watermark_ms"),
        counted=counted,
        in_progress=in_progress,
        retained=_decode_retained(tracker_raw.get("retained"), window_start),
        next_sweep_ms=_int(tracker_raw.get("next_sweep_ms"), "next_sweep_ms"),
        last_sweep_ms=_int(tracker_raw.get("last_sweep_ms"), "last_sweep_ms"),
        late_jobs=late_jobs,
    )
    targets = dict(_decode_target(t, buckets) for t in raw["targets"])
    names = {(str(t), str(i)): str(n) for t, i, n in raw.get("target_names", [])}
    return InstanceState(
        tracker=tracker,
        ledger=InstanceLedger(targets=targets),
        target_names=names,
        names_refreshed_ms=_int(raw.get("names_refreshed_ms"), "names_refreshed_ms"),
    )


def decode_state(data: bytes, path: str = "state file") -> dict[str, InstanceState]:
    """Parse a document. Raises :class:`StateFileError` saying what is wrong and what to do."""
    fresh = (
        f"To start fresh, move it away (mv {path} {path}.bad) and restart: counters then "
        "restart from zero and jobs of the last lookback period are counted again"
    )
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateFileError(f"state file {path} is corrupt (not JSON: {exc}). {fresh}") from None
    if not isinstance(document, dict):
        raise StateFileError(f"state file {path} is corrupt (not a JSON object). {fresh}")
    version = document.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise StateFileError(f"state file {path} has no valid schema_version. {fresh}")
    if version > SCHEMA_VERSION:
        raise StateFileError(
            f"state file {path} was written by a newer exporter "
            f"({document.get('exporter_version', '?')}, schema {version} > {SCHEMA_VERSION}); "
            f"run that version or newer. {fresh}"
        )
    if version < 1:
        raise StateFileError(f"state file {path} has unknown schema_version {version}. {fresh}")
    bounds = document.get("duration_buckets")
    if bounds != list(DURATION_BUCKETS):
        raise StateFileError(
            f"state file {path} uses other duration histogram buckets ({bounds}); "
            f"the histogram cannot be continued. {fresh}"
        )
    try:
        instances = document["instances"]
        return {
            str(iid): _decode_instance(raw, len(DURATION_BUCKETS) + 1)
            for iid, raw in instances.items()
        }
    except (KeyError, TypeError, ValueError, AttributeError, pydantic.ValidationError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise StateFileError(f"state file {path} is corrupt ({detail}). {fresh}") from None
