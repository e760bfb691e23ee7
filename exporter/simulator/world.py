"""The simulated world: instances, targets, and the synchronization jobs they run over time.

Why lazy: the world is a *schedule*, not a table that a background task fills in. Each request
asks the world to :meth:`World.advance` to the clock's current time, which materialises every job
whose start time has passed — in start-time order, with each draw taken from the target's own
seeded random stream — so the same seed and the same clock readings always give the same jobs,
the same IDs and the same statistics, however often or rarely the world is looked at.

Lifecycle: a job is ``pending`` from its StartTime until it begins running a few seconds later,
``running`` until its EndTime, then terminal (``success``, ``partial_success`` or ``failed``).
Status is a function of the job's times and the clock, so time can jump (manual clock) and every
job is where it should be. One job per scenario may be stuck running forever.

Visibility: a job is listed from its StartTime on, unless a visibility rule (the late faults,
:meth:`World.set_visibility`) or a per-job choice (:meth:`World.add_job`'s ``visible_after_ms``
and ``visible_when_terminal``) makes it appear later — as a real listing might that is
eventually consistent, or that writes a job's record only when it ends. Until then
``list_jobs`` and ``get_job`` do not show it, and the ground truth does not expect it.

Compactness: a job is a ``__slots__`` record of about 400 bytes; its 26 statistics blocks are
drawn on demand from a per-job seed (:mod:`exporter.simulator.jobstats`). Jobs are kept sorted by
an integer key ``(StartTime << 32) | sequence``, per instance and per (target, direction), so a
time-window query is two bisections and a keyset cursor is one.

>>> from exporter.simulator.clock import ManualClock
>>> from exporter.simulator.scenarios import load_scenario
>>> clock = ManualClock(1_735_689_600_000)
>>> world = World(load_scenario("small"), seed=7, now_ms=clock)
>>> instance = world.instances[0]
>>> page = world.list_jobs(instance.instance_id, JobFilter(), limit=5)
>>> len(page.jobs), page.total > 20, page.has_more
(5, True, True)
>>> page.jobs[0].start_ms >= page.jobs[1].start_ms  # newest first
True
"""

from __future__ import annotations

import base64
import heapq
import itertools
import math
import random
import threading
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.simulator.clock import Clock, wall_clock_ms
from exporter.simulator.jobstats import VARIANTS, JobStatistics, generate_statistics
from exporter.simulator.scenarios import (
    DEFAULT_ERRORS,
    PARTIAL_ERRORS,
    Scenario,
    TargetSpec,
)

__all__ = [
    "KEY_SHIFT",
    "NEVER",
    "FailureWindow",
    "Instance",
    "Job",
    "JobFilter",
    "JobPage",
    "Stream",
    "Target",
    "VisibilityRule",
    "World",
    "WorldError",
    "seeded_random",
]

KEY_SHIFT = 32
"""A job's sort key is ``(start_ms << KEY_SHIFT) | sequence``."""
NEVER = 1 << 62
"""EndTime of a job that never ends (stuck running)."""

_PENDING_MIN_MS = 1_000
_PENDING_SPAN_MS = 14_000

_DESCRIPTIONS = {
    ("auto", "ingress"): "Scheduled inbound synchronization",
    ("auto", "egress"): "Scheduled outbound provisioning",
    ("manual", "ingress"): "Manual inbound synchronization",
    ("manual", "egress"): "Manual full provisioning",
}


VisibilityRule = Callable[["Job"], int]
"""From when (epoch ms) a job is listed; at least its StartTime."""


class WorldError(ValueError):
    """A control request the world cannot honour (unknown target, job in the future, …)."""


@dataclass(frozen=True, slots=True)
class FailureWindow:
    """Jobs of a target starting in ``[from_ms, until_ms)`` fail with this error."""

    from_ms: int
    until_ms: int | None
    error: tuple[str, str]
    midway: bool = False

    def covers(self, start_ms: int) -> bool:
        return self.from_ms <= start_ms and (self.until_ms is None or start_ms < self.until_ms)


class Job:
    """One synchronization job. Times are epoch ms; status is derived from them and the clock."""

    __slots__ = (
        "description",
        "end_ms",
        "error",
        "final",
        "job_id",
        "key",
        "midway",
        "running_ms",
        "seed",
        "start_ms",
        "stats",
        "stream",
        "trigger",
    )

    def __init__(
        self,
        *,
        job_id: str,
        stream: Stream,
        trigger: str,
        start_ms: int,
        running_ms: int,
        end_ms: int,
        final: str,
        error: tuple[str, str] | None,
        seed: int,
        midway: bool,
        description: str,
        stats: JobStatistics | None = None,
    ) -> None:
        self.key = 0
        self.job_id = job_id
        self.stream = stream
        self.trigger = trigger
        self.start_ms = start_ms
        self.running_ms = running_ms
        self.end_ms = end_ms
        self.final = final
        self.error = error
        self.seed = seed
        self.midway = midway
        self.description = description
        self.stats = stats

    @property
    def target_type(self) -> str:
        return self.stream.target.target_type

    @property
    def target_id(self) -> str:
        return self.stream.target.target_id

    @property
    def direction(self) -> str:
        return self.stream.direction

    @property
    def instance_id(self) -> str:
        return self.stream.target.instance.instance_id

    def status_at(self, now_ms: int) -> str:
        """``pending``, ``running`` or the final status, as seen at *now_ms*."""
        if now_ms < self.running_ms:
            return "pending"
        if now_ms < self.end_ms:
            return "running"
        return self.final

    def terminal_at(self, now_ms: int) -> bool:
        """Terminal per the metric contract: a final status, or any status with an EndTime."""
        return now_ms >= self.end_ms

    def next_change_ms(self, now_ms: int) -> int:
        """When the visible status next changes (``NEVER`` once terminal or stuck)."""
        if now_ms < self.running_ms:
            return self.running_ms
        if now_ms < self.end_ms:
            return self.end_ms
        return NEVER

    def statistics(self) -> JobStatistics:
        """The ``Result`` statistics (meaningful once terminal)."""
        if self.stats is not None:
            return self.stats
        return self.stream.statistics(self.trigger, self.final, self.midway, self.seed % VARIANTS)

    def __repr__(self) -> str:
        return (
            f"Job({self.job_id}, {self.target_id}/{self.direction}, {self.trigger}, "
            f"start={self.start_ms}, end={self.end_ms if self.end_ms < NEVER else None}, "
            f"final={self.final})"
        )


_Planned = tuple[int, int, str, int, float, float, float, int, int, bool]
"""(start_ms, plan_seq, trigger, pending_ms, duration_factor, u_outcome, u_pick, seed, id_bits,
stuck) — the draws of a job that has not started yet."""


class Stream:
    """The schedule and the jobs of one (target, direction).

    Interval *k* has its automatic run at ``epoch + phase + k * interval`` plus jitter, and with
    probability ``manual_rate`` a manual run somewhere inside the interval. A target whose
    schedule is ``manual`` or ``random`` has instead runs at random times inside each interval
    (a Poisson process of one run per interval on average), triggered ``manual`` or ``auto``.
    All draws come from this stream's own random generator, in interval order, so a stream's
    jobs do not depend on when (or whether) other streams were advanced.
    """

    __slots__ = (
        "_heap",
        "_plan_seq",
        "_rng",
        "direction",
        "duration_ms",
        "epoch_ms",
        "index",
        "interval_ms",
        "jitter_ms",
        "jobs",
        "keys",
        "next_k",
        "pending_scale",
        "phase_ms",
        "stats_cache",
        "target",
    )

    def __init__(
        self,
        target: Target,
        direction: str,
        index: int,
        *,
        rng: random.Random,
        epoch_ms: int,
        interval_ms: float | None,
        duration_ms: float,
        jitter: float,
        first_ms: int,
        speed: float,
    ) -> None:
        self.target = target
        self.direction = direction
        self.index = index
        self._rng = rng
        self.epoch_ms = epoch_ms
        self.interval_ms = interval_ms
        self.duration_ms = duration_ms
        self.pending_scale = 1.0 / speed
        self.jitter_ms = (interval_ms or 0.0) * jitter
        self._heap: list[tuple[int, int, _Planned]] = []
        self._plan_seq = 0
        self.keys: list[int] = []
        self.jobs: list[Job] = []
        self.stats_cache: dict[tuple[str, str, bool, int], JobStatistics] = {}
        if interval_ms is None:
            self.phase_ms = 0.0
            self.next_k = 0
        else:
            self.phase_ms = 1.0 + rng.random() * (interval_ms - 1.0)
            # First interval whose nominal start is at or after first_ms.
            self.next_k = math.ceil((first_ms - epoch_ms - self.phase_ms) / interval_ms)

    def statistics(self, trigger: str, outcome: str, midway: bool, variant: int) -> JobStatistics:
        """Statistics pattern *variant* of this stream for a (trigger, outcome), memoised."""
        key = (trigger, outcome, midway, variant)
        stats = self.stats_cache.get(key)
        if stats is None:
            seed = zlib.crc32(f"{self.target.target_id}/{self.direction}/{key}".encode())
            stats = generate_statistics(
                seed, self.target.population, self.direction, trigger, outcome, midway
            )
            self.stats_cache[key] = stats
        return stats

    def nominal_ms(self, k: int) -> int:
        assert self.interval_ms is not None
        return int(self.epoch_ms + self.phase_ms + k * self.interval_ms)

    def next_event_ms(self) -> int:
        """Earliest time at which this stream may start a job."""
        nxt = self._heap[0][0] if self._heap else NEVER
        if self.interval_ms is not None:
            nxt = min(nxt, self.nominal_ms(self.next_k))
        return nxt

    def _draw(self, start_ms: int, trigger: str, stuck: bool = False) -> None:
        r = self._rng.random
        pending = int((_PENDING_MIN_MS + r() * _PENDING_SPAN_MS) * self.pending_scale)
        factor = 0.6 + 0.8 * r()
        if r() < 0.05:
            factor *= 2.5  # an occasional slow run
        planned: _Planned = (
            start_ms,
            self._plan_seq,
            trigger,
            max(1, pending),
            factor,
            r(),
            r(),
            self._rng.getrandbits(63),
            self._rng.getrandbits(192),
            stuck,
        )
        self._plan_seq += 1
        heapq.heappush(self._heap, (start_ms, planned[1], planned))

    def plan_stuck(self, start_ms: int) -> None:
        self._draw(start_ms, "manual", stuck=True)

    def plan_until(self, now_ms: int) -> None:
        """Draw every interval whose nominal start is at or before *now_ms*."""
        interval = self.interval_ms
        if interval is None:
            return
        target = self.target
        r = self._rng.random
        schedule = target.spec.schedule
        while (nominal := self.nominal_ms(self.next_k)) <= now_ms:
            paused = target.paused_from_ms
            if paused is not None and nominal >= paused:
                self.next_k += 1  # the scheduler is stopped: neither its run nor a manual one
                continue
            if schedule != "interval":
                # memoryless: restarting the arrivals at every interval is one Poisson process
                trigger = "manual" if schedule == "manual" else "auto"
                offset = self._rng.expovariate(1.0)
                while offset < 1.0:
                    self._draw(nominal + int(offset * interval), trigger)
                    offset += self._rng.expovariate(1.0)
                self.next_k += 1
                continue
            self._draw(nominal + int(r() * self.jitter_ms), "auto")
            if target.manual_rate > 0.0 and r() < target.manual_rate:
                self._draw(nominal + int((0.1 + 0.8 * r()) * interval), "manual")
            self.next_k += 1

    def pop_started(self, now_ms: int) -> Iterator[_Planned]:
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            yield heapq.heappop(heap)[2]


class Target:
    """An identity provider or application that jobs synchronise with, in one or two directions."""

    __slots__ = (
        "created_ms",
        "failure_rate",
        "failures",
        "instance",
        "kind",
        "manual_rate",
        "name",
        "partial_rate",
        "paused_from_ms",
        "population",
        "spec",
        "status",
        "streams",
        "target_id",
        "target_type",
    )

    def __init__(
        self, instance: Instance, target_id: str, spec: TargetSpec, created_ms: int
    ) -> None:
        self.instance = instance
        self.target_id = target_id
        self.target_type = spec.type
        self.name = spec.name
        self.kind = spec.resolved_kind
        self.spec = spec
        self.status = spec.status
        self.created_ms = created_ms
        self.population = spec.population.as_tuple()
        self.manual_rate = spec.manual_rate
        self.partial_rate = spec.partial_rate
        self.failure_rate = spec.failure_rate
        self.failures: list[FailureWindow] = []
        self.streams: dict[str, Stream] = {}
        self.paused_from_ms: int | None = None
        """Runs whose nominal start is at or after this are not run (a stopped schedule)."""

    def failure_at(self, start_ms: int) -> FailureWindow | None:
        for window in reversed(self.failures):  # the most recently added window wins
            if window.covers(start_ms):
                return window
        return None

    def __repr__(self) -> str:
        return f"Target({self.target_id}, {self.target_type}, {self.name!r})"


class Instance:
    """An IDaaS instance and the index of its jobs."""

    __slots__ = (
        "by_id",
        "created_ms",
        "description",
        "generation",
        "instance_id",
        "jobs",
        "keys",
        "next_event_ms",
        "next_transition_ms",
        "open_jobs",
        "seq",
        "streams",
        "targets",
    )

    def __init__(self, instance_id: str, description: str, created_ms: int) -> None:
        self.instance_id = instance_id
        self.description = description
        self.created_ms = created_ms
        self.targets: list[Target] = []
        self.streams: list[Stream] = []
        self.keys: list[int] = []
        self.jobs: list[Job] = []
        self.by_id: dict[str, Job] = {}
        self.open_jobs: list[Job] = []
        self.seq = 0
        self.generation = 0
        self.next_event_ms = -NEVER
        self.next_transition_ms = NEVER

    def target(self, target_id: str) -> Target | None:
        for target in self.targets:
            if target.target_id == target_id:
                return target
        return None

    def __repr__(self) -> str:
        return f"Instance({self.instance_id}, {len(self.jobs)} jobs)"


@dataclass(frozen=True, slots=True)
class JobFilter:
    """The filters of ``ListSynchronizationJobs``; ``None`` means "not filtered".

    ``start_ms``/``end_ms`` bound the job's StartTime, both inclusive.
    """

    start_ms: int | None = None
    end_ms: int | None = None
    target_type: str | None = None
    target_ids: frozenset[str] | None = None
    direction: str | None = None
    status: str | None = None

    def fingerprint(self) -> int:
        """A stable 32-bit digest, bound into NextToken so a token only continues its own query."""
        ids = ",".join(sorted(self.target_ids)) if self.target_ids is not None else "*"
        text = (
            f"{self.start_ms}|{self.end_ms}|{self.target_type}|{ids}|{self.direction}|{self.status}"
        )
        return zlib.crc32(text.encode())


@dataclass(slots=True)
class JobPage:
    """One page of jobs, newest first, with the total count of the whole (uncursored) query."""

    jobs: list[Job]
    total: int
    has_more: bool
    now_ms: int


def seeded_random(text: str) -> random.Random:
    """A generator seeded from *text* (SHA-512 of it: stable across runs and platforms)."""
    return random.Random(text)  # noqa: S311 - reproducible simulation, not security


def _b32(bits: int, nbytes: int, length: int) -> str:
    return base64.b32encode(bits.to_bytes(nbytes, "big")).decode().lower()[:length]


class World:
    """A deterministic, lazily advancing simulation of one or more IDaaS instances.

    *now_ms* is the clock (wall clock by default); *speed* divides every scenario interval,
    duration and offset, so ``speed=60`` turns an hourly sync into one a minute while timestamps
    stay real. *start_ms* is the simulated "start" (default: the clock at construction); the
    scenario's history lies before it.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int = 1,
        now_ms: Clock | None = None,
        speed: float = 1.0,
        start_ms: int | None = None,
    ) -> None:
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.scenario = scenario
        self.seed = seed
        self.clock: Clock = now_ms or wall_clock_ms
        self.speed = float(speed)
        self.start_ms = self.clock() if start_ms is None else int(start_ms)
        self.history_ms = int(scenario.history / self.speed)
        self.instances: list[Instance] = []
        self._by_instance: dict[str, Instance] = {}
        self._lock = threading.RLock()
        self._last_now = -NEVER
        self._next_event_ms = -NEVER
        self._id_rng = seeded_random(f"ids/{seed}/{scenario.name}")
        self._control_rng = seeded_random(f"control/{seed}")
        self._count_cache: dict[tuple[str, JobFilter], tuple[int, int]] = {}
        self._visibility: VisibilityRule | None = None
        self._visible_from: dict[str, int] = {}
        for instance_spec in scenario.instances:
            instance_id = instance_spec.id or "idaas_" + _b32(self._id_rng.getrandbits(160), 20, 26)
            created = self.start_ms - self.history_ms - self._id_rng.randrange(30, 400) * 86_400_000
            instance = Instance(instance_id, instance_spec.description, created)
            self.instances.append(instance)
            self._by_instance[instance_id] = instance
            for target_spec in instance_spec.targets:
                self._add_target(instance, target_spec, first_ms=self.start_ms - self.history_ms)
        self.advance(self.start_ms)

    # -- building ----------------------------------------------------------------------------

    def _new_target_id(self, spec: TargetSpec) -> str:
        prefix = "app_" if spec.type == "application" else "idp_"
        return prefix + _b32(self._id_rng.getrandbits(160), 20, 29)

    def _add_target(self, instance: Instance, spec: TargetSpec, *, first_ms: int) -> Target:
        target_id = spec.id or self._new_target_id(spec)
        if any(t.target_id == target_id for i in self.instances for t in i.targets):
            raise WorldError(f"target {target_id!r} already exists")
        created = min(first_ms, self.start_ms) - self._id_rng.randrange(1, 200) * 86_400_000
        target = Target(instance, target_id, spec, created)
        for failure in spec.failures:
            target.failures.append(
                FailureWindow(
                    from_ms=self.start_ms + int(failure.from_ / self.speed),
                    until_ms=None
                    if failure.until is None
                    else self.start_ms + int(failure.until / self.speed),
                    error=(failure.error_code, failure.error_message),
                    midway=failure.partial,
                )
            )
        for direction in spec.resolved_directions:
            rng = seeded_random(
                f"stream/{self.seed}/{instance.instance_id}/{target_id}/{direction}"
            )
            stream = Stream(
                target,
                direction,
                len(instance.streams),
                rng=rng,
                epoch_ms=self.start_ms,
                interval_ms=spec.interval / self.speed,
                duration_ms=spec.duration / self.speed,
                jitter=spec.jitter,
                first_ms=first_ms,
                speed=self.speed,
            )
            target.streams[direction] = stream
            instance.streams.append(stream)
        if spec.stuck_job_at is not None:
            first = next(iter(target.streams.values()))
            first.plan_stuck(self.start_ms + int(spec.stuck_job_at / self.speed))
        instance.targets.append(target)
        instance.next_event_ms = -NEVER
        self._next_event_ms = -NEVER
        return target

    # -- time ----------------------------------------------------------------------------------

    def now(self) -> int:
        """The clock, never earlier than a time the world has already been advanced to."""
        return max(self.clock(), self._last_now)

    def advance(self, now_ms: int | None = None) -> int:
        """Materialise everything that happened up to *now_ms* (default: the clock); return it."""
        now = self.clock() if now_ms is None else now_ms
        with self._lock:
            now = max(now, self._last_now)
            self._last_now = now
            if now < self._next_event_ms:
                return now
            for instance in self.instances:
                if now >= instance.next_event_ms:
                    self._advance_instance(instance, now)
            self._next_event_ms = min((i.next_event_ms for i in self.instances), default=NEVER)
            return now

    def _advance_instance(self, instance: Instance, now: int) -> None:
        batch: list[tuple[int, int, int, Stream, _Planned]] = []
        for stream in instance.streams:
            stream.plan_until(now)
            batch.extend(
                (planned[0], stream.index, planned[1], stream, planned)
                for planned in stream.pop_started(now)
            )
        changed = False
        if batch:
            batch.sort(key=lambda item: (item[0], item[1], item[2]))
            for _start, _index, _seq, stream, planned in batch:
                job = self._materialise(stream, planned)
                self._append(instance, job)
            changed = True
        if changed or now >= instance.next_transition_ms:
            self._refresh_open(instance, now)
            changed = True
        if changed:
            instance.generation += 1
        instance.next_event_ms = min(
            instance.next_transition_ms,
            min((s.next_event_ms() for s in instance.streams), default=NEVER),
        )

    def _refresh_open(self, instance: Instance, now: int) -> None:
        still = [job for job in instance.open_jobs if job.end_ms > now]
        instance.open_jobs = still
        instance.next_transition_ms = min((j.next_change_ms(now) for j in still), default=NEVER)

    def _append(self, instance: Instance, job: Job) -> None:
        job.key = (job.start_ms << KEY_SHIFT) | instance.seq
        instance.seq += 1
        stream = job.stream
        if not instance.keys or job.key > instance.keys[-1]:
            instance.keys.append(job.key)
            instance.jobs.append(job)
        else:
            at = bisect_right(instance.keys, job.key)
            instance.keys.insert(at, job.key)
            instance.jobs.insert(at, job)
        if not stream.keys or job.key > stream.keys[-1]:
            stream.keys.append(job.key)
            stream.jobs.append(job)
        else:
            at = bisect_right(stream.keys, job.key)
            stream.keys.insert(at, job.key)
            stream.jobs.insert(at, job)
        instance.by_id[job.job_id] = job
        if job.end_ms > self._last_now:
            instance.open_jobs.append(job)

    def _materialise(self, stream: Stream, planned: _Planned) -> Job:
        (start, _seq, trigger, pending, factor, u_outcome, u_pick, seed, id_bits, stuck) = planned
        target = stream.target
        running = start + pending
        error: tuple[str, str] | None = None
        midway = False
        duration = stream.duration_ms * factor
        if stuck:
            final, end = "running", NEVER
        else:
            window = target.failure_at(start)
            if window is not None:
                final, error, midway = "failed", window.error, window.midway
            elif u_outcome < target.failure_rate:
                catalogue = DEFAULT_ERRORS.get(target.kind) or DEFAULT_ERRORS["idaas"]
                code, message, midway = catalogue[int(u_pick * len(catalogue))]
                final, error = "failed", (code, message)
            elif u_outcome < target.failure_rate + target.partial_rate:
                final = "partial_success"
                if u_pick < 0.7:
                    error = PARTIAL_ERRORS[int(u_pick / 0.7 * len(PARTIAL_ERRORS))]
            else:
                final = "success"
            if final == "failed":
                duration *= u_pick if midway else 0.1
            end = running + max(1, int(duration))
        return Job(
            job_id="sync_" + _b32(id_bits, 24, 38),
            stream=stream,
            trigger=trigger,
            start_ms=start,
            running_ms=running,
            end_ms=end,
            final=final,
            error=error,
            seed=seed,
            midway=midway,
            description=_DESCRIPTIONS[(trigger, stream.direction)],
        )

    # -- visibility ---------------------------------------------------------------------------

    def set_visibility(self, rule: VisibilityRule | None) -> None:
        """Install (or, with None, remove) the rule that makes some jobs appear late."""
        with self._lock:
            self._visibility = rule

    @property
    def hides_jobs(self) -> bool:
        """Whether some job may be listed later than its StartTime."""
        return self._visibility is not None or bool(self._visible_from)

    def visible_from(self, job: Job) -> int:
        """From when *job* is listed (epoch ms): its StartTime unless made late."""
        at = job.start_ms
        chosen = self._visible_from.get(job.job_id)
        if chosen is not None:
            at = max(at, chosen)
        if self._visibility is not None:
            at = max(at, self._visibility(job))
        return at

    def visible_at(self, job: Job, now_ms: int) -> bool:
        return not self.hides_jobs or self.visible_from(job) <= now_ms

    def is_late(self, job: Job) -> bool:
        """Whether *job* appears only after its StartTime (a late job)."""
        return self.hides_jobs and self.visible_from(job) > job.start_ms

    # -- queries ------------------------------------------------------------------------------

    def instance(self, instance_id: str) -> Instance | None:
        return self._by_instance.get(instance_id)

    def find_target(self, target_id: str, instance_id: str | None = None) -> Target | None:
        for instance in self.instances:
            if instance_id is not None and instance.instance_id != instance_id:
                continue
            found = instance.target(target_id)
            if found is not None:
                return found
        return None

    def get_job(self, instance_id: str, job_id: str) -> Job | None:
        """The job by ID, or None when there is none — or none to see yet (a late job)."""
        now = self.advance()
        instance = self._by_instance.get(instance_id)
        if instance is None:
            return None
        job = instance.by_id.get(job_id.strip())
        if job is None or not self.visible_at(job, now):
            return None
        return job

    def job_count(self) -> int:
        return sum(len(i.jobs) for i in self.instances)

    def list_jobs(
        self,
        instance_id: str,
        flt: JobFilter,
        *,
        before_key: int | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> JobPage:
        """Jobs matching *flt*, newest first (StartTime, then creation order, descending).

        *before_key* is a keyset cursor (only jobs with a smaller key), *offset* skips jobs
        (PageNumber/PageSize paging). ``total`` counts the whole query, ignoring both.
        """
        if limit < 1:
            raise ValueError("limit must be positive")
        now = self.advance()
        with self._lock:
            instance = self._by_instance.get(instance_id)
            if instance is None:
                raise KeyError(instance_id)
            sources = self._sources(instance, flt)
            ranges = [(keys, jobs, *self._range(keys, flt)) for keys, jobs in sources]
            hides = self.hides_jobs
            if hides:
                total = sum(
                    1
                    for _k, jobs, lo, hi in ranges
                    for index in range(lo, hi)
                    if self._shown(jobs[index], flt.status, now)
                )
            elif flt.status is None:
                total = sum(hi - lo for _k, _j, lo, hi in ranges)
            else:
                total = self._count_with_status(instance, flt, ranges, now)
            if before_key is not None:
                ranges = [
                    (keys, jobs, lo, min(hi, bisect_left(keys, before_key)))
                    for keys, jobs, lo, hi in ranges
                ]
            want = offset + limit + 1
            if flt.status is None and not hides and len(ranges) == 1:
                _keys, jobs, lo, hi = ranges[0]
                top = hi - offset
                chunk = jobs[max(lo, top - limit - 1) : max(lo, top)]
                chunk.reverse()
            elif flt.status is None and not hides:
                parts = []
                for _keys, jobs, lo, hi in ranges:
                    part = jobs[max(lo, hi - want) : hi]
                    part.reverse()
                    parts.append(part)
                merged = heapq.merge(*parts, key=_job_key, reverse=True)
                chunk = list(itertools.islice(merged, offset, want))
            else:
                status = flt.status
                merged = heapq.merge(
                    *(_descending(jobs, lo, hi) for _k, jobs, lo, hi in ranges),
                    key=_job_key,
                    reverse=True,
                )
                matching = (job for job in merged if self._shown(job, status, now))
                chunk = list(itertools.islice(matching, offset, want))
            has_more = len(chunk) > limit
            return JobPage(chunk[:limit], total, has_more, now)

    def _shown(self, job: Job, status: str | None, now: int) -> bool:
        """Listed at *now* with the status filter *status* (None: any)."""
        return (status is None or job.status_at(now) == status) and self.visible_at(job, now)

    @staticmethod
    def _sources(instance: Instance, flt: JobFilter) -> list[tuple[list[int], list[Job]]]:
        if flt.target_type is None and flt.target_ids is None and flt.direction is None:
            return [(instance.keys, instance.jobs)]
        return [
            (stream.keys, stream.jobs)
            for stream in instance.streams
            if (flt.target_type is None or stream.target.target_type == flt.target_type)
            and (flt.target_ids is None or stream.target.target_id in flt.target_ids)
            and (flt.direction is None or stream.direction == flt.direction)
        ]

    @staticmethod
    def _range(keys: list[int], flt: JobFilter) -> tuple[int, int]:
        lo = 0 if flt.start_ms is None else bisect_left(keys, flt.start_ms << KEY_SHIFT)
        hi = len(keys) if flt.end_ms is None else bisect_left(keys, (flt.end_ms + 1) << KEY_SHIFT)
        return lo, max(lo, hi)

    def _count_with_status(
        self,
        instance: Instance,
        flt: JobFilter,
        ranges: Sequence[tuple[list[int], list[Job], int, int]],
        now: int,
    ) -> int:
        cache_key = (instance.instance_id, flt)
        cached = self._count_cache.get(cache_key)
        if cached is not None and cached[0] == instance.generation:
            return cached[1]
        status = flt.status
        count = 0
        for _keys, jobs, lo, hi in ranges:
            for index in range(lo, hi):
                if jobs[index].status_at(now) == status:
                    count += 1
        if len(self._count_cache) > 256:
            self._count_cache.clear()
        self._count_cache[cache_key] = (instance.generation, count)
        return count

    @property
    def lock(self) -> threading.RLock:
        """Hold it to read several views at one consistent time (see ``ground_truth``)."""
        return self._lock

    def in_progress(
        self, instance_id: str, *, now_ms: int | None = None, visible_only: bool = False
    ) -> list[Job]:
        """Jobs not terminal yet, oldest first. *now_ms*: the time already advanced to;
        *visible_only*: only those a listing shows now (not late jobs still hidden)."""
        now = self.advance() if now_ms is None else now_ms
        with self._lock:
            instance = self._by_instance[instance_id]
            return sorted(
                (
                    j
                    for j in instance.open_jobs
                    if not j.terminal_at(now) and (not visible_only or self.visible_at(j, now))
                ),
                key=_job_key,
            )

    def terminal_jobs(
        self,
        instance_id: str,
        since_ms: int | None = None,
        *,
        now_ms: int | None = None,
        visible_only: bool = False,
    ) -> list[Job]:
        """Every terminal job with StartTime ≥ *since_ms*, oldest first (a snapshot);
        *visible_only*: only those a listing shows now."""
        now = self.advance() if now_ms is None else now_ms
        with self._lock:
            instance = self._by_instance[instance_id]
            lo = 0 if since_ms is None else bisect_left(instance.keys, since_ms << KEY_SHIFT)
            if visible_only and self.hides_jobs:
                return [
                    job
                    for job in instance.jobs[lo:]
                    if job.terminal_at(now) and self.visible_from(job) <= now
                ]
            return [job for job in instance.jobs[lo:] if job.terminal_at(now)]

    def hidden_jobs(self, instance_id: str, *, now_ms: int) -> int:
        """Jobs that have started but are not listed yet (late jobs still hidden)."""
        if not self.hides_jobs:
            return 0
        with self._lock:
            instance = self._by_instance[instance_id]
            hi = bisect_right(instance.keys, ((now_ms + 1) << KEY_SHIFT) - 1)
            return sum(1 for job in instance.jobs[:hi] if self.visible_from(job) > now_ms)

    # -- control -----------------------------------------------------------------------------

    def add_target(self, instance_id: str, spec: TargetSpec) -> Target:
        """Add a target whose schedule starts now (no history)."""
        with self._lock:
            instance = self._require_instance(instance_id)
            target = self._add_target(instance, spec, first_ms=self.now())
        self.advance()
        return target

    def add_job(
        self,
        instance_id: str,
        target_id: str,
        *,
        direction: str | None = None,
        trigger: str = "manual",
        outcome: str = "success",
        start_ms: int | None = None,
        pending_ms: int = 1_000,
        duration_ms: int | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        statistics: JobStatistics | None = None,
        description: str | None = None,
        stuck: bool = False,
        visible_after_ms: int | None = None,
        visible_when_terminal: bool = False,
    ) -> Job:
        """Insert one job now (or at a past *start_ms*); durations here are real milliseconds.

        *outcome* is the final status (``success``, ``partial_success``, ``failed``, or any other
        string, which is kept as is); *stuck* makes the job run forever. A late job: listed only
        *visible_after_ms* after its StartTime, or (*visible_when_terminal*) once it ended.
        """
        if visible_after_ms is not None and visible_after_ms < 0:
            raise WorldError("visible_after_ms must not be negative")
        now = self.advance()
        with self._lock:
            instance = self._require_instance(instance_id)
            target = instance.target(target_id)
            if target is None:
                raise WorldError(f"unknown target {target_id!r} in instance {instance_id!r}")
            direction = direction or next(iter(target.streams))
            stream = target.streams.get(direction)
            if stream is None:
                stream = Stream(
                    target,
                    direction,
                    len(instance.streams),
                    rng=seeded_random(f"stream/{self.seed}/{target_id}/{direction}"),
                    epoch_ms=self.start_ms,
                    interval_ms=None,
                    duration_ms=target.spec.duration / self.speed,
                    jitter=0.0,
                    first_ms=now,
                    speed=self.speed,
                )
                target.streams[direction] = stream
                instance.streams.append(stream)
            start = now if start_ms is None else int(start_ms)
            if start > now:
                raise WorldError("a job cannot start in the future")
            running = start + max(0, pending_ms)
            if stuck:
                end = NEVER
            else:
                length = duration_ms if duration_ms is not None else int(stream.duration_ms)
                end = running + max(1, length)
            error = None
            if error_code:
                error = (error_code, error_message or "")
            elif outcome == "failed":
                catalogue = DEFAULT_ERRORS.get(target.kind) or DEFAULT_ERRORS["idaas"]
                error = catalogue[0][:2]
            job = Job(
                job_id="sync_" + _b32(self._control_rng.getrandbits(192), 24, 38),
                stream=stream,
                trigger=trigger,
                start_ms=start,
                running_ms=running,
                end_ms=end,
                final="running" if stuck else outcome,
                error=error,
                seed=self._control_rng.getrandbits(63),
                midway=False,
                description=description or _DESCRIPTIONS.get((trigger, direction), ""),
                stats=statistics,
            )
            if visible_after_ms is not None or visible_when_terminal:
                visible = start + (visible_after_ms or 0)
                self._visible_from[job.job_id] = max(visible, end if visible_when_terminal else 0)
            self._append(instance, job)
            self._refresh_open(instance, now)
            instance.generation += 1
            instance.next_event_ms = -NEVER
            self._next_event_ms = -NEVER
        self.advance()
        return job

    def fail_target(
        self,
        target_id: str,
        *,
        error_code: str,
        error_message: str = "",
        from_ms: int | None = None,
        until_ms: int | None = None,
        midway: bool = False,
        instance_id: str | None = None,
    ) -> Target:
        """Make jobs of *target_id* that start from now (or *from_ms*) on fail with this error."""
        with self._lock:
            target = self._require_target(target_id, instance_id)
            start = self.now() if from_ms is None else from_ms
            target.failures.append(
                FailureWindow(start, until_ms, (error_code, error_message), midway)
            )
        return target

    def pause_target(
        self, target_id: str, *, from_ms: int | None = None, instance_id: str | None = None
    ) -> Target:
        """Stop *target_id*'s schedule: no run whose nominal start is at or after now (or
        *from_ms*) takes place, in any direction, until :meth:`resume_target` (a disabled
        periodic sync, a scheduler that died). Runs already planned before are kept."""
        now = self.advance()
        with self._lock:
            target = self._require_target(target_id, instance_id)
            target.paused_from_ms = now if from_ms is None else from_ms
        return target

    def resume_target(self, target_id: str, *, instance_id: str | None = None) -> Target:
        """Restart *target_id*'s schedule from its next nominal run."""
        with self._lock:
            target = self._require_target(target_id, instance_id)
            target.paused_from_ms = None
        return target

    def recover_target(
        self, target_id: str, *, at_ms: int | None = None, instance_id: str | None = None
    ) -> Target:
        """End every open failure window of *target_id* now (or at *at_ms*)."""
        with self._lock:
            target = self._require_target(target_id, instance_id)
            at = self.now() if at_ms is None else at_ms
            target.failures = [
                FailureWindow(w.from_ms, at, w.error, w.midway)
                if w.until_ms is None or w.until_ms > at
                else w
                for w in target.failures
            ]
        return target

    def _require_instance(self, instance_id: str) -> Instance:
        instance = self._by_instance.get(instance_id)
        if instance is None:
            raise WorldError(f"unknown instance {instance_id!r}")
        return instance

    def _require_target(self, target_id: str, instance_id: str | None) -> Target:
        target = self.find_target(target_id, instance_id)
        if target is None:
            raise WorldError(f"unknown target {target_id!r}")
        return target

    def summary(self) -> dict[str, Any]:
        """A JSON-ready overview: clock, speed, and per instance its targets and job counts."""
        now = self.advance()
        with self._lock:
            return {
                "seed": self.seed,
                "scenario": self.scenario.name,
                "speed": self.speed,
                "start_ms": self.start_ms,
                "now_ms": now,
                "instances": [
                    {
                        "instance_id": i.instance_id,
                        "description": i.description,
                        "jobs": len(i.jobs),
                        "in_progress": sum(1 for j in i.open_jobs if not j.terminal_at(now)),
                        "targets": [
                            {
                                "target_id": t.target_id,
                                "target_type": t.target_type,
                                "kind": t.kind,
                                "name": t.name,
                                "directions": list(t.streams),
                                "failing": t.failure_at(now) is not None,
                            }
                            for t in i.targets
                        ],
                    }
                    for i in self.instances
                ],
            }


def _job_key(job: Job) -> int:
    return job.key


def _descending(jobs: list[Job], lo: int, hi: int) -> Iterable[Job]:
    for index in range(hi - 1, lo - 1, -1):
        yield jobs[index]
