"""Per-job synchronization statistics, drawn on demand from the job's own seed.

Why on demand: a job's ``Result`` holds 26 action blocks of four counters. Storing them for a
100,000-job world would cost hundreds of megabytes; drawing them again from a seed takes
microseconds and always gives the same numbers, so the API response and the ground truth agree by
construction. Each (target, direction, trigger, outcome) has :data:`VARIANTS` patterns and a job
picks one by its seed, so the world keeps a few kilobytes of statistics per target and the server
can cache their JSON.

The shape mirrors the API (and :mod:`exporter.eiam.models`): four entities in ``ENTITY_BLOCKS``
order, each with the seven actions of ``ACTIONS`` (``Exported`` is ``None`` for groups and group
members, which have no such block), each action ``(Total, Success, Failed, Skipped)``.

What the numbers look like: an ingress sync of a 2,400-user directory sees most users ``Same``, a
handful created, updated or deleted; an egress sync ``Pushed`` the changes; a manual egress run
is a full export. A partial success has failures in some blocks; a job that failed at connection
time has all-zero statistics; one that failed midway processed only part of its ``Total`` (the
remainder is what the metric contract calls result ``unknown``).

>>> stats = generate_statistics(42, (100, 10, 5, 50), "ingress", "auto", "success", False)
>>> stats == generate_statistics(42, (100, 10, 5, 50), "ingress", "auto", "success", False)
True
>>> users = stats[0]
>>> same = users[4]
>>> same[0] == same[1] + same[2] + same[3]
True
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Any

from exporter.eiam.models import ACTIONS, ENTITY_BLOCKS, RESULTS, SynchronizationJobResult

__all__ = [
    "ACTION_KEYS",
    "ENTITY_KEYS",
    "EXPORTED_ENTITIES",
    "RESULT_KEYS",
    "VARIANTS",
    "ZERO_STATISTICS",
    "ActionCounts",
    "EntityStats",
    "JobStatistics",
    "generate_statistics",
    "statistics_from_api",
]

ActionCounts = tuple[int, int, int, int]
"""(Total, Success, Failed, Skipped)."""
EntityStats = tuple[ActionCounts | None, ...]
"""Seven entries in ``ACTIONS`` order; ``None`` where the API has no such block."""
JobStatistics = tuple[EntityStats | None, ...]
"""Four entries in ``ENTITY_BLOCKS`` order; ``None`` for an absent statistics block."""

ENTITY_KEYS: tuple[tuple[str, str], ...] = tuple(
    (entity, SynchronizationJobResult.model_fields[attr].alias or attr)
    for entity, attr in ENTITY_BLOCKS
)
"""(metric ``entity`` label, API key such as ``UserStatistics``), in ``ENTITY_BLOCKS`` order."""

ACTION_KEYS: tuple[tuple[str, str], ...] = ACTIONS
"""(metric ``action`` label, API key such as ``Created``), in ``ACTIONS`` order."""

RESULT_KEYS: tuple[tuple[str, str], ...] = RESULTS

EXPORTED_ENTITIES = frozenset({"user", "organizational_unit"})
"""Entities whose statistics carry an ``Exported`` block (per the API reference)."""

VARIANTS = 64
"""Distinct statistics patterns per (target, direction, trigger, outcome): a job picks one by its
seed. Sixty-four look as varied as real syncs while letting the server cache their rendering."""

_EXPORTED_INDEX = next(i for i, (action, _key) in enumerate(ACTIONS) if action == "exported")
_ZERO: ActionCounts = (0, 0, 0, 0)
_ZERO_WITH_EXPORT: EntityStats = (_ZERO,) * len(ACTIONS)
_ZERO_WITHOUT_EXPORT: EntityStats = tuple(
    None if i == _EXPORTED_INDEX else _ZERO for i in range(len(ACTIONS))
)
_HAS_EXPORT = tuple(entity in EXPORTED_ENTITIES for entity, _attr in ENTITY_BLOCKS)

ZERO_STATISTICS: JobStatistics = tuple(
    _ZERO_WITH_EXPORT if has else _ZERO_WITHOUT_EXPORT for has in _HAS_EXPORT
)
"""All blocks present, all counters zero: a job that failed before touching anything."""

# Index of each action in ACTIONS, by label, so the generator below reads like the domain.
_A = {action: i for i, (action, _key) in enumerate(ACTIONS)}
_CREATED, _UPDATED, _BINDED, _DELETED, _SAME, _PUSHED, _EXPORTED = (
    _A["created"],
    _A["updated"],
    _A["binded"],
    _A["deleted"],
    _A["same"],
    _A["pushed"],
    _A["exported"],
)
assert (_CREATED, _UPDATED) == (0, 1), "ACTIONS must start with created, updated"
_UPDATED_OR_CREATED = _UPDATED
_MAY_FAIL = frozenset({_CREATED, _UPDATED, _BINDED, _PUSHED})


def _draws(seed: int) -> tuple[int, ...]:
    """64 pseudo-random 16-bit values from *seed*: cheaper than seeding ``random.Random``."""
    digest = hashlib.shake_128((seed & _MASK63).to_bytes(8, "little")).digest(128)
    return struct.unpack("<64H", digest)


_MASK63 = (1 << 63) - 1
_SCALE = 1.0 / 65536.0


def generate_statistics(
    seed: int,
    population: tuple[int, int, int, int],
    direction: str,
    trigger: str,
    outcome: str,
    midway: bool,
) -> JobStatistics:
    """The statistics of one terminal job; deterministic in all arguments.

    *outcome* is the final status; *midway* says a failed job aborted after processing part of
    its objects (otherwise a failed job processed nothing).
    """
    if outcome == "failed" and not midway:
        return ZERO_STATISTICS
    draws = _draws(seed)
    n = 0  # next draw

    def r() -> float:
        nonlocal n
        value = draws[n & 63] * _SCALE
        n += 1
        return value

    churn = r()
    if r() < 0.03:  # a re-organisation day
        churn *= 8.0
    egress = direction == "egress"
    full_export = egress and trigger == "manual"
    processed = 0.2 + 0.7 * r() if outcome == "failed" else 1.0
    partial = outcome == "partial_success"
    failed_somewhere = False
    entities: list[EntityStats] = []
    for index, size in enumerate(population):
        has_export = _HAS_EXPORT[index]
        if size <= 0:
            entities.append(_ZERO_WITH_EXPORT if has_export else _ZERO_WITHOUT_EXPORT)
            continue
        created = int(size * 0.004 * churn * r() + 0.5)
        updated = int(size * 0.012 * churn * r() + 0.5)
        deleted = int(size * 0.002 * churn * r() + 0.5)
        binded = 0 if egress else int(size * 0.002 * r())
        totals = (
            created,
            updated,
            binded,
            deleted,
            max(0, size - updated - deleted - created),
            created + updated + deleted if egress else 0,
            size if full_export else 0,
        )
        blocks: list[ActionCounts | None] = []
        for action, total in enumerate(totals):
            if action == _EXPORTED and not has_export:
                blocks.append(None)
                continue
            if total == 0:
                blocks.append(_ZERO)
                continue
            skipped = int(total * 0.02 * r()) if action <= _UPDATED_OR_CREATED else 0
            failed = 0
            if partial and action in _MAY_FAIL and r() < 0.6:
                failed = min(1 + int(total * 0.05 * r()), total - skipped)
            success = total - failed - skipped
            if processed < 1.0:
                success = int(success * processed)
                failed = int(failed * processed)
                skipped = int(skipped * processed)
            if failed:
                failed_somewhere = True
            blocks.append((total, success, failed, skipped))
        entities.append(tuple(blocks))
    if partial and not failed_somewhere:
        # A partial success always has at least one failed object: one user update failed.
        users = list(entities[0])
        total, success, _failed, skipped = users[_UPDATED] or _ZERO
        users[_UPDATED] = (total + 1, success, 1, skipped)
        entities[0] = tuple(users)
    return tuple(entities)


def statistics_from_api(result: Mapping[str, Any]) -> JobStatistics:
    """Statistics given in the API's own shape (a ``Result`` object), e.g. from the control API.

    Missing entity blocks stay absent (``None``); missing actions are absent too; missing counters
    are zero. ``Exported`` is dropped for entities that have no such block.
    """
    entities: list[EntityStats | None] = []
    for index, (_entity, key) in enumerate(ENTITY_KEYS):
        block = result.get(key)
        if not isinstance(block, Mapping):
            entities.append(None)
            continue
        actions: list[ActionCounts | None] = []
        for action_index, (_action, action_key) in enumerate(ACTIONS):
            counts = block.get(action_key)
            if not isinstance(counts, Mapping) or (
                action_index == _EXPORTED_INDEX and not _HAS_EXPORT[index]
            ):
                actions.append(None)
                continue
            actions.append(
                (
                    int(counts.get("Total", 0) or 0),
                    int(counts.get("Success", 0) or 0),
                    int(counts.get("Failed", 0) or 0),
                    int(counts.get("Skipped", 0) or 0),
                )
            )
        entities.append(tuple(actions))
    return tuple(entities)
