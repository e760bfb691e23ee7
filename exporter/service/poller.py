"""One instance's polling loop: client → tracker → ledger → commit. The only place they meet.

A poll (:meth:`InstancePoller.poll_once`):

1. plans the listing window from the committed state (:func:`plan_window`);
2. reads *every* page of ListSynchronizationJobs from there (a failure anywhere aborts the
   poll: a partial listing is never applied);
3. folds the listing into the tracker; when due, runs the reconciliation sweep
   (:mod:`exporter.core.reconcile`: a wider listing below the window that counts late jobs);
   re-checks stuck jobs one by one, refreshes target names when due — all on a *candidate*
   state;
4. hands the candidate to ``commit``, which persists it and only then publishes it.

A crash, a cancellation or a failed write before step 4 completes leaves the committed state
untouched: the next poll simply does the same work again, and nothing is counted twice. A
sweep that fails (an API error on one of its pages) is dropped whole — the poll goes on without
it and tries it again a tenth of ``reconcile_interval_seconds`` later.

Every request carries its purpose (:data:`~exporter.eiam.client.request_purpose`): ``poll``
(the listing), ``sweep``, ``recheck`` or ``names``, for
``idaas_exporter_api_requests_by_purpose_total``.

Polls of one instance never overlap (one task, one loop); the interval carries ±10 % jitter so
that many instances (or replicas) do not call the API in lockstep.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Protocol

import structlog

from exporter.core.instance import InstanceState, TargetName, in_progress_by_target
from exporter.core.ledger import InstanceLedger
from exporter.core.reconcile import SweepFold, SweepPlan, plan_sweep, sweep_failed
from exporter.core.tracker import (
    FoldBase,
    ListingFold,
    TrackerConfig,
    TrackerState,
    apply_job_check,
    jobs_to_recheck,
    plan_window,
)
from exporter.eiam.client import MAX_PAGE_SIZE, EiamClient, request_purpose
from exporter.eiam.errors import ApiError, EiamError, InstanceNotFoundError
from exporter.eiam.models import SynchronizationJob

__all__ = ["Committer", "InstancePoller", "PollOutcome", "PollResult", "SweepResult"]

MAX_LOGGED_LATE_IDS = 10

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll found, for the summary log line and the poll gauges."""

    candidate: InstanceState
    listed: int
    new: int
    counted: int
    in_progress: int
    rechecked: int
    pages: int
    name_calls: int = 0
    sweep: SweepResult | None = None


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one reconciliation sweep did (``error``: the code that made it fail)."""

    listed: int
    found: int
    counted: int
    late: int
    pages: int
    error: str | None = None


def _is_job_not_found(error: EiamError) -> bool:
    """GetSynchronizationJob for a job the server no longer knows (code undocumented)."""
    if isinstance(error, InstanceNotFoundError):
        return False
    code = error.code.lower()
    return isinstance(error, ApiError) and (
        error.http_status == 404 or "notexist" in code or "notfound" in code
    )


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """One poll's end, handed to the committer: the candidate state, or the error that
    stopped it (the candidate is then the committed state unchanged)."""

    instance_id: str
    candidate: InstanceState
    error: EiamError | None
    duration: float


class Committer(Protocol):
    """Who owns the committed state (the daemon): a poll starts from it and ends in it."""

    def committed_state(self, instance_id: str) -> InstanceState: ...

    async def commit(self, outcome: PollOutcome) -> bool:
        """Persist, then publish; returns success."""
        ...


class InstancePoller:
    """Polls one instance forever; each poll ends in ``committer.commit``."""

    def __init__(
        self,
        instance_id: str,
        client: EiamClient,
        *,
        tracker_config: TrackerConfig,
        interval: float,
        names_refresh: float,
        committer: Committer,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        rng: random.Random | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.client = client
        self.tracker_config = tracker_config
        self.interval = interval
        self.names_refresh_ms = int(names_refresh * 1000)
        self._committer = committer
        self._clock_ms = clock_ms
        self._rng = rng or random.Random()  # noqa: S311 - scheduling jitter
        self.log = _log.bind(instance_id=instance_id)
        self._names_warned = False

    async def run(self, stop: asyncio.Event, initial_delay: float = 0.0) -> None:
        """Poll until *stop* is set. Never raises for API errors: they are reported instead."""
        if initial_delay > 0 and await _wait(stop, initial_delay):
            return
        while not stop.is_set():
            started = time.monotonic()
            await self.poll_and_commit()
            jitter = self.interval * self._rng.uniform(-0.1, 0.1)
            delay = max(0.0, self.interval + jitter - (time.monotonic() - started))
            if await _wait(stop, delay):
                return

    async def poll_and_commit(self) -> bool:
        """One poll and its commit; True when both succeeded."""
        started = time.monotonic()
        try:
            result = await self.poll_once()
        except EiamError as error:
            duration = time.monotonic() - started
            self.log.error(
                "poll failed",
                code=error.code,
                request_id=getattr(error, "request_id", None),
                error=str(error),
                duration_seconds=round(duration, 3),
            )
            unchanged = self._committer.committed_state(self.instance_id)
            await self._committer.commit(PollOutcome(self.instance_id, unchanged, error, duration))
            return False
        duration = time.monotonic() - started
        outcome = PollOutcome(self.instance_id, result.candidate, None, duration)
        ok = await self._committer.commit(outcome)
        sweep = result.sweep
        sweep_pages = sweep.pages if sweep is not None else 0
        sweep_fields = {"swept": sweep.listed, "late": sweep.late} if sweep is not None else {}
        self.log.info(
            "poll",
            new=result.new,
            counted=result.counted,
            in_progress=result.in_progress,
            listed=result.listed,
            rechecked=result.rechecked,
            api_calls=result.pages + result.rechecked + result.name_calls + sweep_pages,
            committed=ok,
            duration_seconds=round(duration, 3),
            **sweep_fields,
        )
        return ok

    async def poll_once(self) -> PollResult:
        """Compute the candidate state from the API. No side effect on the committed state."""
        token = request_purpose.set("poll")
        try:
            return await self._poll_once()
        finally:
            request_purpose.reset(token)

    async def _poll_once(self) -> PollResult:
        state = self._committer.committed_state(self.instance_id)
        config = self.tracker_config
        now_ms = self._clock_ms()
        window = plan_window(state.tracker, now_ms, config)
        # Fold page by page and hand finished jobs to the ledger as they come: memory stays at
        # one page however long the listing (a first start, a catch-up after downtime).
        fold = ListingFold(state.tracker, window, now_ms, config)
        ledger = state.ledger
        pages = 0
        async for finished_now in self._fold_pages(fold, start_time=window):
            pages += 1
            if finished_now:
                ledger = ledger.with_jobs(finished_now)
        outcome = fold.finish()
        tracker = outcome.state
        finished = list(outcome.newly_terminal)  # none left in practice; taken per page
        counted = fold.counted

        sweep = None
        plan = plan_sweep(tracker, now_ms, config)
        if plan is not None:
            tracker, ledger, sweep = await self._sweep(tracker, ledger, plan, now_ms)
            counted += sweep.counted

        rechecked = 0
        request_purpose.set("recheck")
        for job_id in jobs_to_recheck(tracker, now_ms, config):
            rechecked += 1
            try:
                job: SynchronizationJob | None = await self.client.get_synchronization_job(
                    self.instance_id, job_id
                )
            except EiamError as error:
                if not _is_job_not_found(error):
                    raise
                job = None
                self.log.warning("job in progress vanished; dropped uncounted", job_id=job_id)
            tracker, done = apply_job_check(tracker, job_id, job, now_ms)
            if done is not None:
                finished.append(done)
                counted += 1

        ledger = ledger.with_jobs(finished)
        ledger = ledger.with_targets(in_progress_by_target(tracker))
        candidate = replace(state, tracker=tracker, ledger=ledger)
        request_purpose.set("names")
        candidate, name_calls = await self._refresh_names(candidate, now_ms)
        return PollResult(
            candidate=candidate,
            listed=outcome.listed,
            new=outcome.new,
            counted=counted,
            in_progress=len(tracker.in_progress),
            rechecked=rechecked,
            pages=pages,
            name_calls=name_calls,
            sweep=sweep,
        )

    async def _fold_pages(
        self, fold: FoldBase, *, start_time: int, end_time: int | None = None
    ) -> AsyncIterator[list[SynchronizationJob]]:
        """Fold each page of the listing from *start_time* into *fold*; yield, per page, the
        jobs it made countable (each once), so they reach the ledger page by page and memory
        stays at one page however long the listing."""
        async for page in self.client.list_synchronization_job_pages(
            self.instance_id, start_time=start_time, end_time=end_time
        ):
            for listed in page.synchronization_jobs:
                fold.add(listed)
            del page
            yield fold.take_terminal()

    async def _sweep(
        self, tracker: TrackerState, ledger: InstanceLedger, plan: SweepPlan, now_ms: int
    ) -> tuple[TrackerState, InstanceLedger, SweepResult]:
        """The reconciliation sweep *plan* on the candidate. On an API error it is dropped
        whole (tracker and ledger as they were) and tried again a tenth of the interval later."""
        config = self.tracker_config
        fold = SweepFold(tracker, plan, now_ms, config)
        swept = ledger
        pages = 0
        counted_ids: list[str] = []
        request_purpose.set("sweep")
        try:
            if not plan.empty:
                async for done in self._fold_pages(
                    fold, start_time=plan.from_ms, end_time=plan.until_ms - 1
                ):
                    pages += 1
                    if done:
                        swept = swept.with_jobs(done)
                        counted_ids += [j.synchronization_job_id for j in done]
        except EiamError as error:
            retry = sweep_failed(tracker, now_ms, config)
            self.log.warning(
                "reconciliation sweep failed; the poll goes on without it and the sweep is "
                "tried again later",
                code=error.code,
                error=str(error),
                pages=pages,
                retry_in_seconds=((retry.next_sweep_ms or now_ms) - now_ms) / 1000,
            )
            return retry, ledger, SweepResult(fold.listed, 0, 0, 0, pages, error.code)
        outcome = fold.finish()
        swept = swept.with_jobs(outcome.newly_terminal)
        counted_ids += [j.synchronization_job_id for j in outcome.newly_terminal]
        result = SweepResult(outcome.listed, outcome.found, len(counted_ids), outcome.late, pages)
        fields = {
            "from_ms": plan.from_ms,
            "until_ms": plan.until_ms,
            "listed": outcome.listed,
            "found": outcome.found,
            "late": outcome.late,
            "pages": pages,
        }
        if len(outcome.state.retained) >= config.retained_cap:
            self.log.warning(
                "reconciliation sweep reaches back less than reconcile_window_seconds: the "
                "retained job IDs are at their cap (the oldest go first; nothing is counted "
                "twice); shorten reconcile_window_seconds to match",
                retained=len(outcome.state.retained),
                **fields,
            )
        if outcome.late:
            self.log.warning(
                "late jobs counted by the reconciliation sweep: the listing showed them only "
                "after the poll window had passed their StartTime (see idaas_exporter_late_"
                "jobs_total in README.md)",
                counted_job_ids=counted_ids[:MAX_LOGGED_LATE_IDS],
                **fields,
            )
        else:
            self.log.info("reconciliation sweep", shortened=plan.shortened, **fields)
        return outcome.state, swept, result

    async def _refresh_names(self, state: InstanceState, now_ms: int) -> tuple[InstanceState, int]:
        """Target names every few minutes. Failures keep the old names and never fail a poll.

        Returns the new state and the number of API calls made (pages; retries not included,
        like the other counts of the poll's log line).
        """
        if self.names_refresh_ms <= 0:
            return state, 0
        last = state.names_refreshed_ms
        if last is not None and now_ms - last < self.names_refresh_ms:
            return state, 0
        names: dict[TargetName, str] = {}
        calls = 1
        try:
            idps = await self.client.list_identity_providers(self.instance_id)
            calls += len(idps) // MAX_PAGE_SIZE
            for idp in idps:
                names[("identity_provider", idp.identity_provider_id)] = (
                    idp.identity_provider_name or idp.identity_provider_id
                )
            calls += 1
            apps = await self.client.list_applications(self.instance_id)
            calls += len(apps) // MAX_PAGE_SIZE
            for app in apps:
                names[("application", app.application_id)] = (
                    app.application_name or app.application_id
                )
        except EiamError as error:
            if not self._names_warned:
                self.log.warning(
                    "target names not refreshed; idaas_sync_target_info keeps the last known "
                    "names (grant eiam:ListIdentityProviders and eiam:ListApplications, or set "
                    "target_names_refresh_seconds to 0)",
                    code=error.code,
                    error=str(error),
                )
                self._names_warned = True
            return replace(state, names_refreshed_ms=now_ms), calls
        self._names_warned = False
        return replace(state, target_names=names, names_refreshed_ms=now_ms), calls


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to *seconds*; True when *stop* was set meanwhile."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True
