"""Faults on demand: throttling, 5xx, latency, connection resets, truncated bodies, late jobs.

A :class:`FaultPlan` says how often each fault happens, optionally only during a time window; a
:class:`FaultInjector` holds the plan of a running server, can be switched at run time (control
interface) and counts what it injected, so a test can compare the client's retry counters with
what was actually thrown at it.

Spec syntax (``--faults``), comma-separated ``KIND=VALUE[@WINDOW]`` items::

    throttle=RATE      HTTP 400 Throttling.User with x-acs-retry-after (see retry-after)
    5xx=RATE           HTTP 503 ServiceUnavailable or 500 InternalError (2:1)
    reset=RATE         abort the connection with a TCP RST, no response
    truncate=RATE      send a successful response's full Content-Length but only part of the body
    latency=DURATION   delay every API response; DURATION-DURATION for a uniform range
    retry-after=DURATION   value of x-acs-retry-after in milliseconds (default 1s)
    late=RATE          a job is listed (and found by GetSynchronizationJob) only late-delay
                       after its StartTime: an eventually consistent listing, a lagging clock
    late-delay=DURATION    how late (default 30m, on the world's clock)
    late-terminal=RATE a job is listed only once it is terminal: a record written at the end
    seed=N             seed of the fault dice (default: the world's seed)

    RATE     = a probability 0..1, or a percentage like 30%
    DURATION = 250ms | 2s | 1m | 1h | plain milliseconds
    WINDOW   = START-[END]: offsets since the plan was installed; END exclusive, absent = forever

A windowed item overrides the unwindowed item of the same kind while its window is open, which
makes schedules like "throttle everything between 30 s and 90 s" read as written::

    throttle=0.3,5xx=0.05,latency=50ms,reset=0.01,truncate=0.01
    throttle=1@30s-90s,latency=10ms-200ms
    late=0.1,late-delay=20m,late-terminal=0.05
    off                                  (no faults; also the empty string)

The late kinds choose *jobs*, not requests: whether a job is late is a draw from the fault seed
and the job's ID (the same job is late in every answer, the ground truth included), and their
window is matched against the job's StartTime (offsets since the plan was installed). A job
chosen by both is listed from the later of the two moments. :meth:`FaultInjector.set` installs
them in the world (:attr:`~exporter.simulator.world.World.visibility`), which hides the job from
ListSynchronizationJobs and GetSynchronizationJob until then.

For each API request, after the optional latency, at most one of reset → throttle → 5xx happens
(each an independent draw, in that order); a successful response may then be truncated.

>>> plan = FaultPlan.parse("throttle=30%,latency=20ms-80ms,5xx=0.05@1m-2m")
>>> plan.rate("throttle", 0), plan.rate("5xx", 0), plan.rate("5xx", 90_000)
(0.3, 0.0, 0.05)
>>> plan.to_spec()
'throttle=0.3,latency=20ms-80ms,5xx=0.05@60000ms-120000ms'
"""

from __future__ import annotations

import random
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from exporter.simulator.clock import Clock, wall_clock_ms
from exporter.simulator.scenarios import parse_duration
from exporter.simulator.world import Job, World, seeded_random

__all__ = [
    "DEFAULT_LATE_DELAY_MS",
    "LATE_KINDS",
    "RATE_KINDS",
    "FaultDecision",
    "FaultInjector",
    "FaultPlan",
    "FaultRule",
    "FaultSpecError",
]

RATE_KINDS = ("throttle", "5xx", "reset", "truncate")
LATE_KINDS = ("late", "late-terminal")
_KINDS = (*RATE_KINDS, "latency", *LATE_KINDS)
DEFAULT_LATE_DELAY_MS = 30 * 60_000
_ALIASES = {"throttling": "throttle", "5xx": "5xx", "error": "5xx", "errors": "5xx"}


class FaultSpecError(ValueError):
    """A ``--faults`` spec that cannot be parsed; the message names the offending item."""


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One item of a plan: a rate (or a latency range), optionally within a window."""

    kind: str
    rate: float = 0.0
    latency_ms: tuple[int, int] = (0, 0)
    window: tuple[int, int | None] | None = None

    def active(self, elapsed_ms: int) -> bool:
        if self.window is None:
            return True
        start, end = self.window
        return start <= elapsed_ms and (end is None or elapsed_ms < end)

    def to_spec(self) -> str:
        if self.kind == "latency":
            low, high = self.latency_ms
            value = f"{low}ms" if low == high else f"{low}ms-{high}ms"
        else:
            value = f"{self.rate:g}"
        if self.window is not None:
            start, end = self.window
            value += f"@{start}ms-" + ("" if end is None else f"{end}ms")
        return f"{self.kind}={value}"


def _rate(text: str, item: str) -> float:
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise FaultSpecError(f"{item!r}: {text!r} is not a rate (use 0.3 or 30%)") from None
    if not 0.0 <= value <= 1.0:
        raise FaultSpecError(f"{item!r}: a rate must be between 0 and 1 (0% and 100%)")
    return value


def _duration(text: str, item: str) -> int:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise FaultSpecError(f"{item!r}: {exc}") from None
    if value < 0:
        raise FaultSpecError(f"{item!r}: durations must not be negative")
    return value


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """An immutable set of fault rules; see the module docstring for the spec syntax."""

    rules: tuple[FaultRule, ...] = ()
    retry_after_ms: int = 1000
    seed: int | None = None
    late_delay_ms: int = DEFAULT_LATE_DELAY_MS

    @classmethod
    def parse(cls, spec: str | None) -> FaultPlan:
        text = (spec or "").strip()
        if text.lower() in ("", "off", "none"):
            return cls()
        rules: list[FaultRule] = []
        retry_after = 1000
        seed: int | None = None
        late_delay = DEFAULT_LATE_DELAY_MS
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            if not sep or not value.strip():
                raise FaultSpecError(f"{item!r}: expected KIND=VALUE")
            kind = name.strip().lower().replace("_", "-")
            kind = _ALIASES.get(kind, kind)
            value = value.strip()
            if kind == "retry-after":
                retry_after = _duration(value, item)
                continue
            if kind == "late-delay":
                late_delay = _duration(value, item)
                continue
            if kind == "seed":
                try:
                    seed = int(value)
                except ValueError:
                    raise FaultSpecError(f"{item!r}: seed must be an integer") from None
                continue
            if kind not in _KINDS:
                known = ", ".join([*_KINDS, "retry-after", "late-delay", "seed"])
                raise FaultSpecError(f"{item!r}: unknown fault {name.strip()!r} (known: {known})")
            value, at, window_text = value.partition("@")
            window: tuple[int, int | None] | None = None
            if at:
                start_text, dash, end_text = window_text.partition("-")
                if not dash or not start_text:
                    raise FaultSpecError(f"{item!r}: a window is START-[END], e.g. @30s-90s")
                start = _duration(start_text, item)
                end = _duration(end_text, item) if end_text else None
                if end is not None and end <= start:
                    raise FaultSpecError(f"{item!r}: the window ends before it starts")
                window = (start, end)
            if kind == "latency":
                low_text, dash, high_text = value.partition("-")
                low = _duration(low_text, item)
                high = _duration(high_text, item) if dash else low
                if high < low:
                    raise FaultSpecError(f"{item!r}: latency range must be MIN-MAX")
                rules.append(FaultRule("latency", latency_ms=(low, high), window=window))
            else:
                rules.append(FaultRule(kind, rate=_rate(value, item), window=window))
        return cls(tuple(rules), retry_after, seed, late_delay)

    def to_spec(self) -> str:
        """The plan as a spec string (``off`` when empty); parses back to an equal plan."""
        items = [rule.to_spec() for rule in self.rules]
        if self.retry_after_ms != 1000:
            items.append(f"retry-after={self.retry_after_ms}ms")
        if self.late_delay_ms != DEFAULT_LATE_DELAY_MS:
            items.append(f"late-delay={self.late_delay_ms}ms")
        if self.seed is not None:
            items.append(f"seed={self.seed}")
        return ",".join(items) or "off"

    def _rule(self, kind: str, elapsed_ms: int) -> FaultRule | None:
        base: FaultRule | None = None
        for rule in self.rules:
            if rule.kind != kind or not rule.active(elapsed_ms):
                continue
            if rule.window is not None:
                return rule
            base = rule
        return base

    def rate(self, kind: str, elapsed_ms: int) -> float:
        """The probability of *kind* at *elapsed_ms* after installation."""
        rule = self._rule(kind, elapsed_ms)
        return rule.rate if rule is not None else 0.0

    def latency_range_ms(self, elapsed_ms: int) -> tuple[int, int]:
        rule = self._rule("latency", elapsed_ms)
        return rule.latency_ms if rule is not None else (0, 0)

    @property
    def empty(self) -> bool:
        return not self.rules

    @property
    def request_faults(self) -> bool:
        """Whether any rule acts on requests (the late kinds act on jobs instead)."""
        return any(rule.kind not in LATE_KINDS for rule in self.rules)

    @property
    def late_jobs(self) -> bool:
        return any(rule.kind in LATE_KINDS for rule in self.rules)

    def visible_from_ms(
        self, job_id: str, start_ms: int, end_ms: int, *, installed_at_ms: int, seed: int
    ) -> int:
        """From when a job is listed: its StartTime, or later when a late kind chooses it.

        >>> plan = FaultPlan.parse("late=1,late-delay=10m")
        >>> plan.visible_from_ms("sync_a", 1_000, 5_000, installed_at_ms=0, seed=1)
        601000
        >>> FaultPlan.parse("late-terminal=1").visible_from_ms(
        ...     "sync_a", 1_000, 5_000, installed_at_ms=0, seed=1)
        5000
        """
        visible = start_ms
        elapsed = start_ms - installed_at_ms
        if _chosen(self.rate("late", elapsed), seed, "late", job_id):
            visible = max(visible, start_ms + self.late_delay_ms)
        if _chosen(self.rate("late-terminal", elapsed), seed, "late-terminal", job_id):
            visible = max(visible, end_ms)
        return visible


def _chosen(rate: float, seed: int, kind: str, job_id: str) -> bool:
    """A stable draw per (seed, kind, job): the same job is late in every answer."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    return zlib.crc32(f"{seed}/{kind}/{job_id}".encode()) / 2**32 < rate


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do to one request: wait, then maybe fail it, then maybe truncate its response."""

    latency_ms: int = 0
    action: str | None = None
    """``reset``, ``throttle``, ``5xx`` or ``None``."""
    status: int = 0
    """For ``5xx``: 503 or 500."""
    truncate: float | None = None
    """For a truncation: the fraction of the body to keep, in [0, 1)."""


_NO_FAULT = FaultDecision()


@dataclass
class FaultInjector:
    """The current plan of a server, switchable at run time, with counters of what it injected.

    *clock* measures windows (the world's clock, so a manual clock drives schedules in tests).
    *world*, when given, receives the late kinds of every plan installed (its visibility rule).
    """

    plan: FaultPlan = field(default_factory=FaultPlan)
    clock: Clock = wall_clock_ms
    default_seed: int = 0
    world: World | None = None
    installed_at_ms: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.set(self.plan)

    def set(self, plan: FaultPlan | str | None) -> FaultPlan:
        """Install a new plan (a :class:`FaultPlan` or a spec string); windows restart now."""
        new = plan if isinstance(plan, FaultPlan) else FaultPlan.parse(plan)
        with self._lock:
            self.plan = new
            self.installed_at_ms = self.clock()
            seed = new.seed if new.seed is not None else self.default_seed
            self._rng = seeded_random(f"faults/{seed}")
            installed = self.installed_at_ms
        if self.world is not None:
            rule = _LateRule(new, installed, seed) if new.late_jobs else None
            self.world.set_visibility(rule)
        return new

    def clear(self) -> None:
        self.set(FaultPlan())

    def decide(self) -> FaultDecision:
        """Roll the dice for one API request."""
        plan = self.plan
        if not plan.request_faults:
            return _NO_FAULT
        with self._lock:
            elapsed = self.clock() - self.installed_at_ms
            r = self._rng.random
            low, high = plan.latency_range_ms(elapsed)
            latency = low if high == low else low + int(r() * (high - low + 1))
            action: str | None = None
            status = 0
            if r() < plan.rate("reset", elapsed):
                action = "reset"
            elif r() < plan.rate("throttle", elapsed):
                action = "throttle"
            elif r() < plan.rate("5xx", elapsed):
                action = "5xx"
                status = 503 if r() < 2 / 3 else 500
            truncate = r() if action is None and r() < plan.rate("truncate", elapsed) else None
            if latency:
                self._count("latency")
            if action is not None:
                self._count(action)
            if truncate is not None:
                self._count("truncate")
            return FaultDecision(latency, action, status, truncate)

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready: the spec in force, when it was installed, and the injection counters."""
        with self._lock:
            return {
                "spec": self.plan.to_spec(),
                "installed_at_ms": self.installed_at_ms,
                "retry_after_ms": self.plan.retry_after_ms,
                "injected": dict(sorted(self.counts.items())),
            }


@dataclass(frozen=True, slots=True)
class _LateRule:
    """The late kinds of one installed plan, as the world's visibility rule."""

    plan: FaultPlan
    installed_at_ms: int
    seed: int

    def __call__(self, job: Job) -> int:
        return self.plan.visible_from_ms(
            job.job_id,
            job.start_ms,
            job.end_ms,
            installed_at_ms=self.installed_at_ms,
            seed=self.seed,
        )
