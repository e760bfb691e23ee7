"""The exporter daemon: state, clients, one poller per instance, the web server, clean shutdown.

Start-up order matters and is the one an operator can reason about:

1. configuration is already valid (``load_settings``);
2. the state file is checked writable and loaded: a corrupt or future-version file stops here;
3. the web config is loaded and the listen socket bound: a bad TLS file or a busy port stops
   here — before any API call;
4. the restored state is rendered at once, so a restart serves continued counters immediately;
5. one poller task per instance starts, staggered over the first interval.

Commit discipline (:meth:`Daemon.commit`): a poll's candidate state is written to the state
file first and becomes the committed (served) state only when that succeeded. A failed write
keeps the old state and marks the poll failed (``idaas_exporter_up`` 0, error code
``StateWriteError``); the next poll redoes the work. SIGTERM/SIGINT cancel the pollers, write
the committed state once more, stop the server and return exit code 0. SIGHUP re-reads the web
config (:meth:`Daemon.reload_web_config`: new certificates for new connections, new users); a
config that does not load is logged and the one in force is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from exporter import __version__, loop_errors
from exporter.config import Settings, parse_listen_address
from exporter.core.contract import ApiRequestStats, ExporterView, PollStatus, build_families
from exporter.core.exposition import Snapshot
from exporter.core.instance import InstanceState
from exporter.core.statecodec import StateFileError
from exporter.core.tracker import TrackerConfig
from exporter.eiam.credentials.base import CredentialsProvider
from exporter.eiam.errors import EiamError
from exporter.service.clients import InstanceClients
from exporter.service.poller import InstancePoller, PollOutcome
from exporter.service.sharding import ShardError, select_shard
from exporter.service.state_store import StateStore
from exporter.web.app import HEALTH_PATHS, InstanceSummary, ServingStats, WebApp
from exporter.web.config import WebConfig, load_web_config
from exporter.web.server import HTTPServer, Limits

__all__ = ["Daemon", "StartupError"]

_log = structlog.get_logger(__name__)


class StartupError(RuntimeError):
    """The daemon cannot start; the message says why and what to do. ``exit_code`` 1 or 2."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(slots=True)
class _Instance:
    poller: InstancePoller
    endpoint: str
    restored: bool


class Daemon:
    """Owns everything long-lived. :meth:`run` returns the process exit code."""

    def __init__(
        self,
        settings: Settings,
        *,
        credentials: CredentialsProvider | None = None,
        endpoint: str | None = None,
        hostname: str | None = None,
        clock_ms: Callable[[], int] | None = None,
        demo: bool = False,
    ) -> None:
        self.settings = settings
        self.demo = demo
        """--demo: the landing page says the data is simulated (set by the demo wiring)."""
        self._clock_ms = clock_ms
        self._credentials = credentials
        self._endpoint_override = endpoint
        self._hostname = hostname
        self.api_stats = ApiRequestStats()
        self.committed: dict[str, InstanceState] = {}
        self.retired: dict[str, InstanceState] = {}
        self.status: dict[str, PollStatus] = {}
        self.instances: dict[str, _Instance] = {}
        self.store = StateStore(settings.state_file) if settings.state_file else None
        self.web: WebApp | None = None
        self.server: HTTPServer | None = None
        self._commit_lock = asyncio.Lock()
        self._publish_lock = asyncio.Lock()
        self._changes = 0  # commits so far; a render covers every change counted before it
        self._published = 0
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False
        self.state_writes = {"success": 0, "error": 0}
        self.started = asyncio.Event()

    # -- start-up --------------------------------------------------------------------------

    def _load_state(self, active: list[str]) -> set[str]:
        loaded: dict[str, InstanceState] = {}
        if self.store is not None:
            try:
                self.store.check_writable()
                loaded = self.store.load() or {}
            except StateFileError as exc:
                raise StartupError(str(exc)) from None
        for iid in active:
            self.committed[iid] = loaded.get(iid, InstanceState.initial())
        self.retired = {iid: s for iid, s in loaded.items() if iid not in self.committed}
        if self.store is not None:
            _log.info(
                "state loaded" if loaded else "no state file yet; starting fresh",
                path=str(self.store.path),
                instances=sorted(loaded),
            )
        return set(loaded) & set(active)

    def _load_web_config(self) -> WebConfig:
        path = self.settings.web_config_file
        if path is None:
            return WebConfig()
        try:
            config = load_web_config(Path(path))
        except ValueError as exc:
            raise StartupError(f"invalid configuration: --web.config.file: {exc}", 2) from None
        if config.ignored:
            _log.warning("web config keys accepted but not applied", keys=list(config.ignored))
        config.authenticator.prepare()
        return config

    async def reload_web_config(self) -> bool:
        """Re-read ``--web.config.file`` (SIGHUP): new TLS certificates and keys for new
        connections (certificate rotation), new users and headers. A file that does not load
        changes nothing and says why. Returns whether the new config is in force."""
        path = self.settings.web_config_file
        if path is None:
            _log.info("SIGHUP received; no --web.config.file to reload")
            return False
        try:
            config = await asyncio.to_thread(_load_prepared, Path(path))
        except ValueError as exc:
            _log.error(
                "web config not reloaded; the previous one stays in force (fix the file and "
                "send SIGHUP again)",
                error=str(exc),
            )
            return False
        if self.server is None or self.web is None:
            return False
        was_tls = self.server.ssl_context is not None
        config.authenticator.adopt(self.web.authenticator)
        self.server.ssl_context = config.ssl_context
        self.web.authenticator = config.authenticator
        self.web.extra_headers = config.headers
        _log.info(
            "web config reloaded",
            path=str(path),
            tls=config.ssl_context is not None,
            basic_auth_users=config.authenticator.users,
        )
        if was_tls != (config.ssl_context is not None):
            _log.warning(
                "the reloaded web config switches TLS "
                + ("off" if was_tls else "on")
                + "; new connections use it, so update the scrape configuration's scheme"
            )
        if config.ignored:
            _log.warning("web config keys accepted but not applied", keys=list(config.ignored))
        return True

    def _on_sighup(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            # the file may have changed again after the running reload read it: read it once
            # more when that one is done
            self._reload_again = True
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reload_until_settled())

    async def _reload_until_settled(self) -> None:
        while True:
            self._reload_again = False
            await self.reload_web_config()
            if not self._reload_again:
                return

    async def run(self, stop: asyncio.Event) -> int:
        settings = self.settings
        loop_errors.install()
        configured = [i.id for i in settings.all_instances()]
        try:
            active = select_shard(
                configured, settings.shard_index, settings.shard_count, self._hostname
            )
        except ShardError as exc:
            raise StartupError(str(exc), exit_code=2) from None
        if not configured:
            raise StartupError(
                "invalid configuration: IDAAS_EXPORTER_INSTANCE_IDS / --instance-id: no IDaaS "
                "instance configured; set at least one (idaas_...), or try --demo",
                exit_code=2,
            )
        restored = self._load_state(active)
        web_config = self._load_web_config()
        host, port = parse_listen_address(settings.web_listen_address)
        self.web = WebApp(
            telemetry_path=settings.web_telemetry_path,
            authenticator=web_config.authenticator,
            extra_headers=web_config.headers,
            ready=self._ready,
            instances=self._summaries,
            poll_interval=settings.poll_interval_seconds,
            serving=self._serving,
            demo=self.demo,
            stuck_after=settings.stuck_after_seconds,
        )
        try:
            clients = InstanceClients(
                settings,
                credentials=self._credentials,
                observer=self.api_stats,
                endpoint=self._endpoint_override,
            )
        except EiamError as exc:  # a half-configured credential source
            raise StartupError(str(exc)) from None
        self.server = HTTPServer(
            self.web,
            host=host,
            port=port,
            ssl_context=web_config.ssl_context,
            # the API clients' pools (10 connections per endpoint), the state file, the logs
            # (GET and HEAD only: no request body is ever needed)
            limits=Limits(reserved_fds=96 + 10 * clients.endpoints, max_body_bytes=0),
            priority_paths=HEALTH_PATHS,
        )
        try:
            await self.server.start()
        except OSError as exc:
            await clients.aclose()
            raise StartupError(
                f"cannot listen on {settings.web_listen_address}: {exc.strerror}; choose another "
                "--web.listen-address"
            ) from None
        tracker = TrackerConfig(
            lookback_ms=int(settings.lookback_seconds * 1000),
            overlap_ms=int(settings.overlap_seconds * 1000),
            stuck_after_ms=int(settings.stuck_after_seconds * 1000),
            recheck_interval_ms=int(settings.recheck_interval_seconds * 1000),
            reconcile_interval_ms=int(settings.reconcile_interval_seconds * 1000),
            reconcile_window_ms=int(settings.reconcile_window_seconds * 1000),
        )
        for iid in active:
            client = clients.clients[iid]
            poller = InstancePoller(
                iid,
                client,
                tracker_config=tracker,
                interval=settings.poll_interval_seconds,
                names_refresh=settings.target_names_refresh_seconds,
                committer=self,
                clock_ms=self._clock_ms or _wall_clock_ms,
            )
            self.instances[iid] = _Instance(poller, str(client.endpoint), iid in restored)
            self.status[iid] = PollStatus()
        await self._publish()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        _log.info(
            "idaas-sync-exporter started",
            version=__version__,
            listen=self.server.url,
            telemetry_path=settings.web_telemetry_path,
            instances=active,
            shard=f"{settings.shard_index}/{settings.shard_count}",
            credentials=clients.credentials.source,
            state_file=str(self.store.path) if self.store else None,
            poll_interval_seconds=settings.poll_interval_seconds,
            connection_cap=self.server.connection_cap,
        )
        self.started.set()
        spread = min(settings.poll_interval_seconds, 5.0)
        tasks = [
            asyncio.create_task(
                item.poller.run(stop, initial_delay=spread * n / max(1, len(self.instances))),
                name=f"poll {iid}",
            )
            for n, (iid, item) in enumerate(self.instances.items())
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)  # restores SIG_DFL, which kills:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a late SIGHUP must not
            await self._final_save()
            await self.server.stop(grace=2.0)
            await clients.aclose()
            _log.info("idaas-sync-exporter stopped")
        return 0

    async def _final_save(self) -> None:
        if self.store is None:
            return
        async with self._commit_lock:
            try:
                await asyncio.to_thread(self.store.save, {**self.retired, **self.committed})
            except OSError as exc:
                _log.error(
                    "state not saved at shutdown; the next start repeats the last polls "
                    "(nothing is lost or double-counted)",
                    path=str(self.store.path),
                    error=exc.strerror,
                )

    # -- commit and publish ----------------------------------------------------------------

    def committed_state(self, instance_id: str) -> InstanceState:
        """The state of *instance_id* as last committed (what a poll starts from)."""
        return self.committed[instance_id]

    async def commit(self, outcome: PollOutcome) -> bool:
        """Persist the poll's candidate, then make it the served state. Returns success."""
        instance_id, candidate, error = outcome.instance_id, outcome.candidate, outcome.error
        duration = outcome.duration
        now = (self._clock_ms or _wall_clock_ms)() / 1000.0
        async with self._commit_lock:
            status = self.status.get(instance_id, PollStatus())
            ok = error is None
            code = error.code if error is not None else None
            if ok and candidate != self.committed.get(instance_id):
                if self.store is not None:
                    document = {**self.retired, **self.committed, instance_id: candidate}
                    try:
                        await asyncio.to_thread(self.store.save, document)
                        self.state_writes["success"] += 1
                    except OSError as exc:
                        self.state_writes["error"] += 1
                        ok, code = False, "StateWriteError"
                        _log.error(
                            "state file not written; new counts stay unpublished until a "
                            "write succeeds (fix the volume or its permissions)",
                            instance_id=instance_id,
                            path=str(self.store.path),
                            error=exc.strerror,
                        )
                if ok:
                    self.committed[instance_id] = candidate
            self._changes += 1
            self.status[instance_id] = status.after_poll(
                ok=ok, code=code, now=now, duration=duration
            )
        await self._publish()
        return ok

    async def _publish(self) -> None:
        """Render the committed state once and swap it in (in a thread: never block scrapes).

        Renders coalesce: commits that arrive while a render runs are all covered by the next
        one, and a caller whose change an already finished render included returns at once. At
        60 instances polled together this is one or two renders, not sixty.
        """
        wanted = self._changes
        async with self._publish_lock:
            if self._published >= wanted and self.web is not None and self._published:
                return
            covered = self._changes
            view = ExporterView(
                instances={iid: self.committed[iid] for iid in self.instances},
                polls=dict(self.status),
                api=self.api_stats.copy(),
                state_writes=dict(self.state_writes),
                poll_interval=self.settings.poll_interval_seconds,
            )
            snapshot = await asyncio.to_thread(_render, view)
            if self.web is not None:
                self.web.snapshot = snapshot
                self.web.view = view  # immutable: the landing page reads it as it is
            self._published = max(self._published, covered)

    # -- web callbacks ---------------------------------------------------------------------

    def _serving(self) -> ServingStats:
        server = self.server
        if server is None:
            return ServingStats(0, 0, {})
        return ServingStats(server.connection_count, server.connection_cap, server.stats)

    def _ready(self) -> bool:
        return all(
            item.restored or self.status[iid].last_success_s is not None
            for iid, item in self.instances.items()
        )

    def _summaries(self) -> list[InstanceSummary]:
        rows = []
        for iid, item in self.instances.items():
            status = self.status[iid]
            rows.append(
                InstanceSummary(
                    instance_id=iid,
                    endpoint=item.endpoint,
                    up=status.up,
                    last_poll=status.last_poll_s,
                    last_success=status.last_success_s,
                    last_error=status.last_error,
                    in_progress=len(self.committed[iid].tracker.in_progress),
                )
            )
        return rows


def _render(view: ExporterView) -> Snapshot:
    return Snapshot.from_families(build_families(view))


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _load_prepared(path: Path) -> WebConfig:
    config = load_web_config(path)
    config.authenticator.prepare()
    return config
