"""The exporter's HTTP endpoints: ``/metrics`` from a pre-rendered snapshot, landing page, health.

Why a snapshot: a scrape must never wait on the API, and must cost the same at 50,000 series
as at 50. The poller renders the exposition once per poll, in both formats and gzipped
(:class:`Snapshot`); a scrape picks the bytes that match its ``Accept`` and
``Accept-Encoding`` and appends the small, always-fresh ``process_*`` metrics. For gzip, the
snapshot is compressed once up to a sync flush, and each scrape continues a *copy* of that
compressor with the process metrics: one valid gzip member, without recompressing the bulk
(concatenated gzip members would be simpler, but some clients read only the first one).

Endpoints::

    GET /               landing page: what fails now per target and per instance, links
                        (:mod:`exporter.web.landing`)
    GET /metrics        the exposition (path set by --web.telemetry-path)
    GET /-/healthy      200 while the process serves
    GET /-/ready        200 once every instance polled successfully or state was restored

With ``basic_auth_users`` in the web config every endpoint but the two health checks needs
credentials (health probes carry none and reveal nothing). Passwords are checked off the event
loop, a bounded number at a time (:class:`exporter.web.config.BasicAuthenticator`); when too
many checks are queued the answer is 429 with ``Retry-After``, so a password-guessing client
can slow itself down but not the scrapes, probes and polls.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client import generate_latest as text_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from exporter.core.contract import ExporterView
from exporter.core.exposition import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, Snapshot
from exporter.web import landing
from exporter.web.config import AuthenticatorBusy, BasicAuthenticator
from exporter.web.landing import InstanceSummary
from exporter.web.server import Chunks, Request, Response

__all__ = [
    "DROP_REASONS",
    "HEALTH_PATHS",
    "InstanceSummary",
    "ServingStats",
    "WebApp",
]


DROP_REASONS = (
    "evicted_waiting",
    "evicted_idle",
    "evicted_handshake",
    "head_timeout",
    "request_timeout",
    "write_timeout",
    "refused",
    "bad_request",
)
"""Why the server dropped a connection (:attr:`exporter.web.server.HTTPServer.stats` keys)."""


@dataclass(frozen=True, slots=True)
class ServingStats:
    """What the HTTP server reports about its connections, read at every scrape."""

    connections: int
    connection_cap: int
    dropped: Mapping[str, int]


class _ServingCollector:
    """The exporter's own HTTP side, fresh at every scrape (never part of the snapshot)::

    # HELP idaas_exporter_http_connections Open HTTP connections to the exporter.
    # TYPE idaas_exporter_http_connections gauge
    idaas_exporter_http_connections 3.0
    # HELP idaas_exporter_http_connection_cap Connections above which a new one evicts ...
    # TYPE idaas_exporter_http_connection_cap gauge
    idaas_exporter_http_connection_cap 902.0
    # HELP idaas_exporter_http_connections_dropped_total HTTP connections the exporter ...
    # TYPE idaas_exporter_http_connections_dropped_total counter
    idaas_exporter_http_connections_dropped_total{reason="evicted_waiting"} 0.0
    ...
    # HELP idaas_exporter_http_auth_failures_total Requests refused by basic auth ...
    # TYPE idaas_exporter_http_auth_failures_total counter
    idaas_exporter_http_auth_failures_total{reason="wrong_credentials"} 0.0
    idaas_exporter_http_auth_failures_total{reason="busy"} 0.0
    """

    def __init__(self, app: WebApp) -> None:
        self._app = app

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        app = self._app
        if app.serving is not None:
            stats = app.serving()
            yield GaugeMetricFamily(
                "idaas_exporter_http_connections",
                "Open HTTP connections to the exporter.",
                value=stats.connections,
            )
            yield GaugeMetricFamily(
                "idaas_exporter_http_connection_cap",
                "Connections above which a new one evicts the oldest still sending its request "
                "head (derived from the file-descriptor limit).",
                value=stats.connection_cap,
            )
            dropped = CounterMetricFamily(
                "idaas_exporter_http_connections_dropped",
                "HTTP connections the exporter closed itself, by reason: evicted to make room, "
                "too slow (head, request or response), refused (cap reached), malformed.",
                labels=["reason"],
            )
            for reason in DROP_REASONS:
                dropped.add_metric([reason], stats.dropped.get(reason, 0))
            yield dropped
        failures = CounterMetricFamily(
            "idaas_exporter_http_auth_failures",
            "Requests refused by basic auth: wrong_credentials (401) or busy (429: too many "
            "password checks queued).",
            labels=["reason"],
        )
        for reason in ("wrong_credentials", "busy"):
            failures.add_metric([reason], app.auth_failures[reason])
        yield failures


HEALTH_PATHS = ("/-/healthy", "/-/ready")
"""Answered without credentials, and never refused by the server (see ``priority_paths``)."""


class WebApp:
    """The request handler. Swap :attr:`snapshot` to publish a new rendering (atomic), and
    :attr:`view` with it: the immutable view it was rendered from, which the landing page
    shows; :attr:`authenticator` and :attr:`extra_headers` may be replaced the same way
    (SIGHUP). *demo*: the data comes from the built-in simulator (the page says so);
    *stuck_after*: seconds in progress after which a job is shown stuck; *landing_rows*: the
    most targets the landing page lists."""

    def __init__(
        self,
        *,
        telemetry_path: str = "/metrics",
        authenticator: BasicAuthenticator | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
        ready: Callable[[], bool] = lambda: True,
        instances: Callable[[], list[InstanceSummary]] = list,
        poll_interval: float = 60.0,
        serving: Callable[[], ServingStats] | None = None,
        demo: bool = False,
        stuck_after: float = 3600.0,
        landing_rows: int = 50,
    ) -> None:
        self.telemetry_path = telemetry_path
        self.serving = serving
        self.auth_failures: Counter[str] = Counter()
        self.snapshot = Snapshot.empty()
        self.view: ExporterView | None = None
        self.demo = demo
        self._stuck_after = stuck_after
        self._landing_rows = landing_rows
        self._landing_cache = landing.LandingCache()
        self.authenticator = authenticator or BasicAuthenticator({})
        self.extra_headers = tuple(extra_headers)
        self._ready = ready
        self._instances = instances
        self._poll_interval = poll_interval
        self._process = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._process)
        PlatformCollector(registry=self._process)
        GCCollector(registry=self._process)
        self._process.register(_ServingCollector(self))
        self.scrapes = 0

    async def __call__(self, request: Request) -> Response:
        path = request.path
        if request.method not in ("GET", "HEAD"):
            return self._respond(
                Response.text("method not allowed\n", 405, headers=[("allow", "GET, HEAD")]),
            )
        if path == "/-/healthy":
            return self._respond(Response.text("Healthy.\n"))
        if path == "/-/ready":
            if self._ready():
                return self._respond(Response.text("Ready.\n"))
            return self._respond(Response.text("Not ready: no successful poll yet.\n", 503))
        authenticator = self.authenticator
        if authenticator:
            try:
                authorized = await self._authorized(authenticator, request)
            except AuthenticatorBusy:
                self.auth_failures["busy"] += 1
                return self._respond(
                    Response.text(
                        "too many password checks in progress; retry in a second\n",
                        429,
                        headers=[("retry-after", "1")],
                    )
                )
            if not authorized:
                self.auth_failures["wrong_credentials"] += 1
                return self._respond(
                    Response.text(
                        "unauthorized\n",
                        401,
                        headers=[("www-authenticate", 'Basic realm="idaas-sync-exporter"')],
                    )
                )
        if path == self.telemetry_path:
            return self._respond(self._metrics(request))
        if path == "/":
            return self._respond(await self._landing())
        return self._respond(Response.text("not found\n", 404))

    def _respond(self, response: Response) -> Response:
        # HEAD: the server sends the head (with the true Content-Length) and drops the body
        return Response(response.status, [*response.headers, *self.extra_headers], response.body)

    @staticmethod
    async def _authorized(authenticator: BasicAuthenticator, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded or len(encoded) > 4096:
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        return bool(sep) and await authenticator.verify(user, password)

    def _metrics(self, request: Request) -> Response:
        """The snapshot's own bytes plus this scrape's process metrics: no copy of the snapshot
        is made, whatever the format and however many scrapes are in flight."""
        self.scrapes += 1
        snapshot = self.snapshot
        _, content_type = choose_encoder(request.headers.get("accept", ""))
        openmetrics = content_type.startswith("application/openmetrics-text")
        if openmetrics:
            head_gz = snapshot.openmetrics_gzip
            tail = openmetrics_latest(self._process)  # type: ignore[no-untyped-call]
            content_type = CONTENT_TYPE_OPENMETRICS
        else:
            head_gz = snapshot.text_gzip
            tail = text_latest(self._process)
            content_type = CONTENT_TYPE_TEXT
        headers = [("content-type", content_type), ("vary", "Accept, Accept-Encoding")]
        if _accepts_gzip(request.headers.get("accept-encoding", "")):
            headers.append(("content-encoding", "gzip"))
            return Response(200, headers, Chunks.of(*head_gz.parts(tail)))
        if not openmetrics:
            return Response(200, headers, Chunks.of(snapshot.text, tail))

        def inflated() -> Iterator[bytes]:
            yield from head_gz.inflate()
            yield tail

        return Response(200, headers, Chunks(snapshot.openmetrics_length + len(tail), inflated))

    async def _landing(self) -> Response:
        """The landing page of the current view (rendered at most once per view and a few
        seconds, off the event loop: see :class:`exporter.web.landing.LandingCache`)."""

        def context() -> landing.PageContext:
            snapshot = self.snapshot
            return landing.PageContext(
                telemetry_path=self.telemetry_path,
                poll_interval=self._poll_interval,
                stuck_after=self._stuck_after,
                demo=self.demo,
                max_rows=self._landing_rows,
                series=snapshot.series,
                rendered_at=snapshot.rendered_at,
                instances=self._instances(),
            )

        body = await self._landing_cache.page(self.view, context)
        return Response(200, landing.HEADERS, body)


def _accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` header admits gzip (RFC 9110 §12.5.3; ``q=0`` refuses).

    >>> _accepts_gzip("gzip"), _accepts_gzip("br, gzip;q=0.5"), _accepts_gzip("gzip;q=0")
    (True, True, False)
    >>> _accepts_gzip("identity"), _accepts_gzip("*"), _accepts_gzip("*, gzip;q=0")
    (False, True, False)
    """
    wildcard: bool | None = None
    for item in header.lower().split(","):
        coding, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if coding.strip() in ("gzip", "x-gzip"):
            return quality > 0
        if coding.strip() == "*":
            wildcard = quality > 0
    return bool(wildcard)
