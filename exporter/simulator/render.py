"""JSON bodies of the simulated API, written as bytes directly and cached where immutable.

Why hand-written JSON: a full page of 100 terminal jobs is about 150 kB holding 2,600 action
blocks; building nested dicts and calling ``json.dumps`` costs several milliseconds a page, too
slow for the ≥ 300 pages/s the simulator must sustain. Formatting straight from the statistics
tuples is about five times faster, and a terminal job's fragment never changes, so the most
recently served ones are kept (bounded) and a page of them is a ``join``.

Shapes follow the API reference: pending and running jobs have neither ``EndTime`` nor
``Result``; ``Exported`` appears only for users and organizational units; the
``GetSynchronizationJob`` form has no ``Description`` and no ``Exported`` at all. Strings are
JSON-escaped with the standard library's C escaper, so text supplied through the control API
cannot break the document.

>>> body = error_body("REQ-1", "eiam.cn-hangzhou.aliyuncs.com", "Throttling.User", "Too fast.")
>>> list(json.loads(body))
['RequestId', 'HostId', 'Code', 'Message', 'Recommend']
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Sequence
from typing import Any

from exporter.simulator.jobstats import ACTION_KEYS, ENTITY_KEYS, JobStatistics
from exporter.simulator.world import Job

__all__ = [
    "FragmentCache",
    "error_body",
    "get_job_body",
    "job_fragment",
    "json_body",
    "list_jobs_body",
]

_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii

_EXPORTED = next(i for i, (action, _key) in enumerate(ACTION_KEYS) if action == "exported")
_ACTION_PREFIX = tuple(f'"{key}":{{"Total":' for _action, key in ACTION_KEYS)
_ZERO_BLOCK = tuple(
    f'"{key}":{{"Total":0,"Success":0,"Failed":0,"Skipped":0}}' for _action, key in ACTION_KEYS
)
_ENTITY_PREFIX = tuple(f'"{key}":{{' for _entity, key in ENTITY_KEYS)


_STATS_TEXT: dict[tuple[int, bool], tuple[JobStatistics, bytes]] = {}
"""Rendered statistics by (id of the statistics tuple, with Exported), without the closing brace.
Statistics tuples are memoised per stream (a few hundred per target), so this stays small; it
holds a reference to each tuple so that an id is never reused while cached."""
_STATS_TEXT_MAX = 50_000


def _statistics_text(stats: JobStatistics, with_exported: bool) -> bytes:
    key = (id(stats), with_exported)
    cached = _STATS_TEXT.get(key)
    if cached is not None:
        return cached[1]
    text = _render_statistics(stats, with_exported)
    if len(_STATS_TEXT) >= _STATS_TEXT_MAX:
        _STATS_TEXT.clear()
    _STATS_TEXT[key] = (stats, text)
    return text


def _render_statistics(stats: JobStatistics, with_exported: bool) -> bytes:
    """``{"UserStatistics":{...},...`` — an open object, closed by the caller."""
    parts: list[str] = []
    for index, entity in enumerate(stats):
        if entity is None:
            continue
        blocks: list[str] = []
        for action, counts in enumerate(entity):
            if counts is None or (action == _EXPORTED and not with_exported):
                continue
            total, success, failed, skipped = counts
            if not (total or success or failed or skipped):
                blocks.append(_ZERO_BLOCK[action])
            else:
                blocks.append(
                    f'{_ACTION_PREFIX[action]}{total},"Success":{success},'
                    f'"Failed":{failed},"Skipped":{skipped}}}'
                )
        parts.append(_ENTITY_PREFIX[index] + ",".join(blocks) + "}")
    return ("{" + ",".join(parts)).encode()


def job_fragment(job: Job, now_ms: int, *, list_shape: bool = True) -> bytes:
    """One job as a JSON object, as seen at *now_ms*.

    *list_shape* selects the ``ListSynchronizationJobs`` form (with ``Description`` and
    ``Exported``); otherwise the ``GetSynchronizationJob`` form.
    """
    stream = job.stream
    target = stream.target
    head = (
        f'{{"SynchronizationJobId":{_quote(job.job_id)},'
        f'"TargetType":{_quote(target.target_type)},"TargetId":{_quote(target.target_id)},'
        f'"Direction":{_quote(stream.direction)},"StartTime":{job.start_ms}'
    )
    tail = f',"Description":{_quote(job.description)}}}' if list_shape else "}"
    if now_ms < job.end_ms:
        head += f',"TriggerType":{_quote(job.trigger)},"Status":{_quote(job.status_at(now_ms))}'
        return (head + tail).encode()
    head += (
        f',"EndTime":{job.end_ms},"TriggerType":{_quote(job.trigger)},'
        f'"Status":{_quote(job.final)},"Result":'
    )
    stats = _statistics_text(job.statistics(), list_shape)
    error = job.error
    if error is None:
        return b"".join((head.encode(), stats, b"}", tail.encode()))
    sep = "," if len(stats) > 1 else ""
    error_text = f'{sep}"ErrorMessage":{_quote(error[1])},"ErrorCode":{_quote(error[0])}}}'
    return b"".join((head.encode(), stats, error_text.encode(), tail.encode()))


class FragmentCache:
    """Rendered list-shape fragments of terminal jobs, bounded; evicts the oldest quarter.

    Terminal jobs never change, so a fragment stays valid forever; the bound only caps memory
    (about 1.5 kB a job). Not thread-safe by itself: the server calls it from one event loop.
    """

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._data: dict[Job, bytes] = {}
        self.hits = 0
        self.misses = 0

    def fragment(self, job: Job, now_ms: int) -> bytes:
        if now_ms < job.end_ms:
            return job_fragment(job, now_ms)
        data = self._data.get(job)
        if data is not None:
            self.hits += 1
            return data
        self.misses += 1
        data = job_fragment(job, now_ms)
        if self.max_entries > 0:
            if len(self._data) >= self.max_entries:
                drop = max(1, self.max_entries // 4)
                for old in list(self._data)[:drop]:
                    del self._data[old]
            self._data[job] = data
        return data

    def __len__(self) -> int:
        return len(self._data)


def list_jobs_body(
    request_id: str,
    total: int,
    next_token: str | None,
    fragments: Sequence[bytes],
) -> bytes:
    """The ``ListSynchronizationJobs`` body; ``NextToken`` only when there is a next page."""
    head = f'{{"RequestId":{_quote(request_id)},"TotalCount":{total}'
    if next_token is not None:
        head += f',"NextToken":{_quote(next_token)}'
    head += ',"SynchronizationJobs":['
    return b"".join((head.encode(), b",".join(fragments), b"]}"))


def get_job_body(request_id: str, job: Job, now_ms: int) -> bytes:
    """The ``GetSynchronizationJob`` body."""
    fragment = job_fragment(job, now_ms, list_shape=False)
    return b"".join(
        (f'{{"RequestId":{_quote(request_id)},"SynchronizationJob":'.encode(), fragment, b"}")
    )


def json_body(payload: Any) -> bytes:
    """Compact JSON for the small responses (instances, identity providers, applications)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def error_body(request_id: str, host_id: str, code: str, message: str) -> bytes:
    """The gateway's error shape: ``{RequestId, HostId, Code, Message, Recommend}``."""
    return json_body(
        {
            "RequestId": request_id,
            "HostId": host_id,
            "Code": code,
            "Message": message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=Eiam"
            f"&requestId={request_id}",
        }
    )
