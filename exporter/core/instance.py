"""Everything the exporter knows about one IDaaS instance, as one immutable value.

Why one value: the tracker (which jobs were counted) and the ledger (what they added up to)
must be persisted *together*, atomically, or a crash between the two would lose or double a
job. The poller builds a new :class:`InstanceState` per poll, persists it, and only then
publishes it to ``/metrics``.

>>> state = InstanceState.initial()
>>> state.tracker.window_start_ms is None, dict(state.ledger.targets), dict(state.target_names)
(True, {}, {})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.core.ledger import InstanceLedger, TargetKey, target_key
from exporter.core.tracker import TrackerState

__all__ = ["InstanceState", "TargetName", "in_progress_by_target"]

TargetName = tuple[str, str]
"""(target_type, target_id) → display name, from ListIdentityProviders/ListApplications."""


@dataclass(frozen=True, slots=True)
class InstanceState:
    tracker: TrackerState
    ledger: InstanceLedger
    target_names: Mapping[TargetName, str] = field(default_factory=dict)
    names_refreshed_ms: int | None = None

    @classmethod
    def initial(cls) -> InstanceState:
        return cls(tracker=TrackerState.initial(), ledger=InstanceLedger())

    def targets(self) -> list[TargetKey]:
        """Every target the exporter knows on this instance, sorted: those with counted jobs
        and those with a job in progress (the one definition of "which targets exist")."""
        return sorted(set(self.ledger.targets) | set(in_progress_by_target(self.tracker)))


def in_progress_by_target(tracker: TrackerState) -> dict[TargetKey, list[int]]:
    """The StartTime of every job in progress, by target."""
    running: dict[TargetKey, list[int]] = {}
    for progress in tracker.in_progress.values():
        running.setdefault(target_key(progress.job), []).append(progress.start_time_ms)
    return running
