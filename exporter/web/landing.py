"""The landing page (``GET /``): what fails now, per target and per instance, on one small page.

Built from the same immutable :class:`~exporter.core.contract.ExporterView` the daemon renders
``/metrics`` from (nothing is copied for it), by :func:`render_page`, pure apart from the
clock it is given. :class:`LandingCache` renders it at most once per view and
:data:`PAGE_MAX_AGE_S`, in a worker thread: a tenant with thousands of targets costs one
render every few seconds while someone looks at the page, never a stall of the event loop
that serves the scrapes, and concurrent visitors share that one render.

What the page shows, failing first:

* every target's health (:data:`HEALTH_ORDER`) — its latest terminal job failed, partially
  succeeded or ended in a status the API does not document; a job in progress for longer
  than ``--poll.stuck-after-seconds``; a job in progress; no terminal job yet; ok — with the
  age of its latest terminal job and of its latest success ("never" when the exporter has
  seen none), and what is in progress for how long;
* every instance's latest poll (ok, or its error code), the age of its latest successful
  poll, its jobs in progress and failing targets, and the API endpoint (scheme, host, port
  and path only: no credentials of a URL can reach the page);
* with ``--demo``, a banner saying the data is simulated.

Bounded: at most ``max_rows`` targets and :data:`MAX_INSTANCE_ROWS` instances are listed
(the rest counted, "N more"), and every value from the API is shortened and HTML-escaped —
target names are free text a tenant's admin typed, and the page's Content-Security-Policy
(:data:`HEADERS`) forbids scripts outright should an escape ever be missed. No JavaScript,
no external assets: inline CSS only.
"""

from __future__ import annotations

import asyncio
import heapq
import html
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from exporter import __version__
from exporter.core.contract import ExporterView
from exporter.core.instance import InstanceState, in_progress_by_target
from exporter.core.ledger import TargetKey

__all__ = [
    "FAILING",
    "HEADERS",
    "HEALTH_ORDER",
    "MAX_INSTANCE_ROWS",
    "PAGE_MAX_AGE_S",
    "InstanceSummary",
    "LandingCache",
    "PageContext",
    "TargetHealth",
    "TargetRow",
    "age",
    "classify",
    "health_of",
    "render_page",
    "wall_clock",
]

HEALTH_ORDER = (
    "failed",
    "partial success",
    "unknown status",
    "stuck",
    "in progress",
    "no job yet",
    "ok",
)
"""A target's health, worst first: the order of the page's rows."""

FAILING = frozenset({"failed", "partial success", "unknown status", "stuck"})
"""The healths that count as failing (an instance's "Failing targets", the "N more" note)."""

PAGE_MAX_AGE_S = 5.0
"""A rendered page is served for at most this long (its ages are that fresh) or until the next
view is published, whichever comes first."""

MAX_INSTANCE_ROWS = 100
_MAX_NAME = 64
_MAX_TEXT = 128
_NAMED_TYPES = frozenset({"identity_provider", "application"})

HEADERS = (
    ("content-type", "text/html; charset=utf-8"),
    # no script of any origin, no external resource: only the inline style sheet
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        "form-action 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
)


def wall_clock() -> float:
    """The clock ages are measured with (Unix seconds; replaced in tests)."""
    return time.time()


@dataclass(frozen=True, slots=True)
class InstanceSummary:
    """One instance's row on the page, from the daemon's poll status. Nothing secret goes in
    here (and of the endpoint only scheme, host, port and path are shown)."""

    instance_id: str
    endpoint: str
    up: bool
    last_poll: float | None
    last_success: float | None
    last_error: str | None
    in_progress: int


def health_of(
    status: str | None, oldest_start_s: float | None, now: float, stuck_after: float
) -> str:
    """A target's entry of :data:`HEALTH_ORDER` at *now*, from the status of its latest
    terminal job and the StartTime of its oldest job in progress.

    >>> health_of("partial_success", None, 0, 60), health_of("suspending", None, 0, 60)
    ('partial success', 'unknown status')
    >>> health_of("success", 100.0, 150.0, 60.0), health_of("success", 100.0, 200.0, 60.0)
    ('in progress', 'stuck')
    >>> health_of(None, None, 0, 60), health_of("success", None, 0, 60)
    ('no job yet', 'ok')
    """
    if status is not None and status != "success":
        if status == "failed":
            return "failed"
        return "partial success" if status == "partial_success" else "unknown status"
    if oldest_start_s is not None:
        return "stuck" if now - oldest_start_s > stuck_after else "in progress"
    return "no job yet" if status is None else "ok"


@dataclass(frozen=True, slots=True)
class TargetRow:
    """One listed target of one instance. Times in Unix seconds."""

    health: str
    instance_id: str
    target_type: str
    target_id: str
    direction: str
    name: str | None
    last_status: str | None
    last_end_s: float | None
    last_success_s: float | None
    in_progress: int
    oldest_start_s: float | None


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """Every target of a view classified at one moment: counts, and the rows to list."""

    shown: list[TargetRow]
    counts: Counter[str]
    """health → targets (all of them, listed or not)."""
    hidden_failing: int
    hidden: int
    removed: int
    """Targets left out because the latest names listing no longer holds them (removed from
    IDaaS: the metric contract keeps only their counters)."""
    failing_by_instance: Counter[str]


def classify(
    instances: Mapping[str, InstanceState], now: float, stuck_after: float, max_rows: int
) -> TargetHealth:
    """Every target the metrics show gauges for, worst first, the first *max_rows* as rows.

    One cheap pass builds a sort key per target (health, then the oldest last success,
    "never" first); only the listed ones become :class:`TargetRow` s, so a tenant's thousands
    of healthy targets cost a tuple each.
    """
    order = {name: rank for rank, name in enumerate(HEALTH_ORDER)}
    failing_ranks = {order[name] for name in FAILING}
    keys: list[tuple[int, int, str, TargetKey]] = []
    counts: Counter[int] = Counter()
    failing_by_instance: Counter[str] = Counter()
    removed = 0
    running_by_instance: dict[str, dict[TargetKey, list[int]]] = {}
    for instance_id in sorted(instances):
        state = instances[instance_id]
        running = running_by_instance[instance_id] = in_progress_by_target(state.tracker)
        names = state.target_names
        targets = state.ledger.targets
        for key in state.targets():
            starts = running.get(key)
            if names and not starts and key[0] in _NAMED_TYPES and (key[0], key[1]) not in names:
                removed += 1
                continue
            stats = targets.get(key)
            status = stats.last_status if stats is not None else None
            oldest = min(starts) / 1000.0 if starts else None
            rank = order[health_of(status, oldest, now, stuck_after)]
            counts[rank] += 1
            if rank in failing_ranks:
                failing_by_instance[instance_id] += 1
            success = stats.last_success_end_ms if stats is not None else None
            keys.append((rank, -1 if success is None else success, instance_id, key))
    listed = heapq.nsmallest(max_rows, keys)
    shown = [
        _row(instances[iid], iid, key, HEALTH_ORDER[rank], running_by_instance[iid].get(key, []))
        for rank, _, iid, key in listed
    ]
    hidden_failing = sum(counts[rank] for rank in failing_ranks) - sum(
        1 for row in shown if row.health in FAILING
    )
    return TargetHealth(
        shown=shown,
        counts=Counter({HEALTH_ORDER[rank]: n for rank, n in counts.items()}),
        hidden_failing=hidden_failing,
        hidden=len(keys) - len(shown),
        removed=removed,
        failing_by_instance=failing_by_instance,
    )


def _row(
    state: InstanceState, instance_id: str, key: TargetKey, health: str, starts: list[int]
) -> TargetRow:
    target_type, target_id, direction = key
    stats = state.ledger.targets.get(key)
    return TargetRow(
        health=health,
        instance_id=instance_id,
        target_type=target_type,
        target_id=target_id,
        direction=direction,
        name=state.target_names.get((target_type, target_id)),
        last_status=stats.last_status if stats else None,
        last_end_s=_seconds(stats.last_end_ms if stats else None),
        last_success_s=_seconds(stats.last_success_end_ms if stats else None),
        in_progress=len(starts),
        oldest_start_s=min(starts) / 1000.0 if starts else None,
    )


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0


def age(seconds: float) -> str:
    """A duration in at most two units, rounded down.

    >>> age(0.4), age(59.9), age(125), age(3600), age(5400), age(86400 * 3 + 7200)
    ('0 s', '59 s', '2 min 5 s', '1 h', '1 h 30 min', '3 d 2 h')
    """
    whole = max(0, math.floor(seconds))
    for unit, size, small, small_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "min", 60),
        ("min", 60, "s", 1),
    ):
        if whole >= size:
            big, rest = divmod(whole, size)
            part = rest // small_size
            return f"{big} {unit} {part} {small}" if part else f"{big} {unit}"
    return f"{whole} s"


def _ago(moment: float | None, now: float, never: str = "never") -> str:
    if moment is None:
        return never
    if moment > now + 1:  # the server's clock is ahead of ours
        return f"in {age(moment - now)} (clock skew)"
    return f"{age(now - moment)} ago"


def _utc(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


def _text(value: str, limit: int = _MAX_TEXT) -> str:
    """*value* shortened to *limit* characters and HTML-escaped (quotes included)."""
    shortened = value if len(value) <= limit else value[: limit - 1] + "…"
    return html.escape(shortened, quote=True)


def _endpoint(url: str) -> str:
    """Scheme, host, port and path of *url*: never its user, password, query or fragment.

    >>> _endpoint("https://ak:secret@eiam.example.com:8443/p?Signature=x#y")
    'https://eiam.example.com:8443/p'
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "(not shown)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True, slots=True)
class PageContext:
    """What the page shows besides the view: read on the event loop, handed to the render."""

    telemetry_path: str
    poll_interval: float
    stuck_after: float
    demo: bool
    max_rows: int
    series: int
    rendered_at: float | None
    instances: Sequence[InstanceSummary]


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#1b1b1b;max-width:90em}"
    "h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.4em 0 .4em}"
    "table{border-collapse:collapse;font-size:.92em}"
    "td,th{padding:.25em .7em;text-align:left;vertical-align:top;border-bottom:1px solid #ddd}"
    "th{background:#f3f3f3}code{font-size:.95em;overflow-wrap:anywhere}"
    ".n{white-space:nowrap}.h{font-weight:600;white-space:nowrap}"
    ".bad .h{color:#b00020}.warn .h{color:#8a5a00}"
    ".busy .h{color:#1f5fa8}.good .h{color:#1e7b34}.bad{background:#fff3f3}"
    ".warn{background:#fff9ec}.note{color:#555;font-size:.9em}"
    ".banner{background:#fff3cd;border:2px solid #c99a00;padding:.6em 1em;margin:0 0 1em;"
    "font-weight:600}"
)

_ROW_CLASS = {
    "failed": "bad",
    "partial success": "bad",
    "unknown status": "bad",
    "stuck": "warn",
    "in progress": "busy",
    "no job yet": "busy",
    "ok": "good",
}


def render_page(view: ExporterView | None, context: PageContext, now: float) -> str:
    """The whole page for *view* at *now* (pure; run in a worker thread by the cache)."""
    health = classify(
        view.instances if view is not None else {}, now, context.stuck_after, context.max_rows
    )

    parts = [
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>IDaaS Sync Exporter</title>\n<style>{_STYLE}</style>\n</head><body>\n"
    ]
    if context.demo:
        parts.append(
            '<div class="banner" role="alert">Demo mode: the data on this page and on the '
            "metrics endpoint is simulated. It comes from the built-in simulator, not from "
            "Alibaba Cloud IDaaS.</div>\n"
        )
    path = html.escape(context.telemetry_path, quote=True)
    rendered = "not yet" if context.rendered_at is None else _utc(context.rendered_at)
    parts.append(
        "<h1>IDaaS Sync Exporter</h1>\n"
        f"<p>Version {html.escape(__version__)}. Prometheus metrics of Alibaba Cloud IDaaS "
        f"(EIAM) synchronization jobs, refreshed every {context.poll_interval:g} s; the current "
        f"snapshot has {context.series} samples, rendered {rendered}. This page: as of "
        f"{_utc(now)}.</p>\n"
        f'<p><a href="{path}">Metrics</a> · <a href="/-/healthy">Health</a> · '
        '<a href="/-/ready">Readiness</a></p>\n'
    )
    parts.extend(_targets_section(health, now, context.stuck_after))
    parts.extend(_instances_section(view, context.instances, health.failing_by_instance, now))
    parts.append("</body></html>\n")
    return "".join(parts)


def _targets_section(health: TargetHealth, now: float, stuck_after: float) -> Iterable[str]:
    counts = health.counts
    total = len(health.shown) + health.hidden
    yield "<h2>Targets</h2>\n"
    if total:
        summary = ", ".join(f"{counts[h]} {h}" for h in HEALTH_ORDER if counts[h])
        yield (
            f"<p>{total} target{'s' if total != 1 else ''}: {summary}. Failing first "
            f"(stuck: in progress for more than {age(stuck_after)}).</p>\n"
        )
    else:
        yield "<p>No target known yet: no job seen since the exporter started tracking.</p>\n"
    yield (
        '<table id="targets"><tr><th>Health</th><th>Instance</th><th>Target</th>'
        "<th>Direction</th><th>Last job</th><th>Last success</th><th>In progress</th></tr>\n"
    )
    for row in health.shown:
        name = f"{_text(row.name, _MAX_NAME)}<br>" if row.name else ""
        if row.last_status is None:
            last_job = "none yet"
        else:
            last_job = f"{_text(row.last_status)} {_ago(row.last_end_s, now, 'unknown')}"
        success = _ago(row.last_success_s, now, "never (as far as the exporter knows)")
        running = str(row.in_progress)
        if row.oldest_start_s is not None:
            running += f", oldest for {age(now - row.oldest_start_s)}"
        yield (
            f'<tr class="{_ROW_CLASS[row.health]}"><td class="h">{row.health}</td>'
            f'<td class="n"><code>{_text(row.instance_id)}</code></td>'
            f"<td>{name}<code>{_text(row.target_type)}</code> "
            f"<code>{_text(row.target_id)}</code></td>"
            f'<td class="n">{_text(row.direction)}</td><td>{last_job}</td>'
            f'<td{_title(row.last_success_s)}>{success}</td><td class="n">{running}</td></tr>\n'
        )
    yield "</table>\n"
    if health.hidden:
        failing = health.hidden_failing
        listed_ok = sum(1 for row in health.shown if row.health == "ok")
        if failing:
            which = f"{failing} failing"
        elif counts["ok"] - listed_ok == health.hidden:
            which = "all ok"
        else:
            which = "none failing"
        yield f'<p class="note">{health.hidden} more targets not shown ({which}).</p>\n'
    if health.removed:
        removed = health.removed
        yield (
            f'<p class="note">{removed} target{"s" if removed != 1 else ""} removed from '
            "IDaaS not shown (their counters stay on the metrics endpoint).</p>\n"
        )
    yield (
        '<p class="note">Last success "never": no successful job among those the exporter has '
        "seen (it reads back --poll.lookback-seconds before its first start and keeps its "
        "counts across restarts in the state file).</p>\n"
    )


def _title(moment: float | None) -> str:
    return "" if moment is None else f' title="{_utc(moment)}"'


def _instances_section(
    view: ExporterView | None,
    instances: Sequence[InstanceSummary],
    failing: Counter[str],
    now: float,
) -> Iterable[str]:
    ordered = sorted(instances, key=lambda item: (item.up, item.instance_id))
    shown, hidden = ordered[:MAX_INSTANCE_ROWS], ordered[MAX_INSTANCE_ROWS:]
    yield (
        "<h2>Instances</h2>\n"
        '<table id="instances"><tr><th>Instance</th><th>Last poll</th>'
        "<th>Last successful poll</th><th>Jobs in progress</th><th>Failing targets</th>"
        "<th>Endpoint</th></tr>\n"
    )
    states = view.instances if view is not None else {}
    for item in shown:
        if item.last_poll is None:
            poll, css = "not yet", "busy"
        elif item.up:
            poll, css = f"ok, {_ago(item.last_poll, now)}", "good"
        else:
            code = _text(item.last_error or "unknown error", _MAX_NAME)
            poll, css = f"error <code>{code}</code>, {_ago(item.last_poll, now)}", "bad"
        state = states.get(item.instance_id)
        running = len(state.tracker.in_progress) if state is not None else item.in_progress
        yield (
            f'<tr class="{css}"><td class="n"><code>{_text(item.instance_id)}</code></td>'
            f'<td class="h">{poll}</td>'
            f"<td{_title(item.last_success)}>{_ago(item.last_success, now)}</td>"
            f"<td>{running}</td><td>{failing[item.instance_id]}</td>"
            f"<td><code>{_text(_endpoint(item.endpoint))}</code></td></tr>\n"
        )
    yield "</table>\n"
    if hidden:
        down = sum(1 for item in hidden if not item.up)
        yield (
            f'<p class="note">{len(hidden)} more instances not shown '
            f"({down} with a failed or no poll yet).</p>\n"
        )


@dataclass(frozen=True, slots=True)
class _Rendered:
    view: ExporterView | None
    at: float
    body: bytes


class LandingCache:
    """The latest rendering, reused until the view changes or :data:`PAGE_MAX_AGE_S` passed;
    one render at a time, in a worker thread, shared by every request waiting for it."""

    def __init__(self) -> None:
        self._page: _Rendered | None = None
        self._lock = asyncio.Lock()

    def _fresh(self, view: ExporterView | None, now: float) -> bytes | None:
        page = self._page
        if page is not None and page.view is view and abs(now - page.at) < PAGE_MAX_AGE_S:
            return page.body
        return None

    async def page(self, view: ExporterView | None, context: Callable[[], PageContext]) -> bytes:
        """The page for *view*; *context* is called (on the event loop) only to render."""
        body = self._fresh(view, wall_clock())
        if body is not None:
            return body
        async with self._lock:
            now = wall_clock()
            body = self._fresh(view, now)
            if body is not None:
                return body
            text = await asyncio.to_thread(render_page, view, context(), now)
            body = text.encode()
            self._page = _Rendered(view, now, body)
            return body
