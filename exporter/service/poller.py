"""One instance's polling loop: client → tracker → ledger → commit. The only place they meet.

A poll (:meth:`InstancePoller.poll_once`):

1. plans the listing window from the committed state (:func:`plan_window`);
2. reads *every* page of ListSynchronizationJobs from there (a failure anywhere aborts the
   poll: a partial listing is never applied);
3. folds the listing into the tracker, re-checks stuck jobs one by one, refreshes target
   names when due — all on a *candidate* state;
4. hands the candidate to ``commit``, which persists it and only then publishes it.

A crash, a cancellation or a failed write before step 4 completes leaves the committed state
untouched: the next poll simply does the same work again, and nothing is counted twice.

Polls of one instance never overlap (one task, one loop); the interval carries ±10 % jitter so
that many instances (or replicas) do not call the API in lockstep.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import structlog

from exporter.core.instance import InstanceState, TargetName, in_progress_by_target
from exporter.core.tracker import (
    ListingFold,
    TrackerConfig,
    apply_job_check,
    jobs_to_recheck,
    plan_window,
)
from exporter.eiam.client import MAX_PAGE_SIZE, EiamClient
from exporter.eiam.errors import ApiError, EiamError, InstanceNotFoundError
from exporter.eiam.models import SynchronizationJob

__all__ = ["Committer", "InstancePoller", "PollOutcome", "PollResult"]

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
        self.log.info(
            "poll",
            new=result.new,
            counted=result.counted,
            in_progress=result.in_progress,
            listed=result.listed,
            rechecked=result.rechecked,
            api_calls=result.pages + result.rechecked + result.name_calls,
            committed=ok,
            duration_seconds=round(duration, 3),
        )
        return ok

    async def poll_once(self) -> PollResult:
        """Compute the candidate state from the API. No side effect on the committed state."""
        state = self._committer.committed_state(self.instance_id)
        config = self.tracker_config
        now_ms = self._clock_ms()
        window = plan_window(state.tracker, now_ms, config)
        # Fold page by page and hand finished jobs to the ledger as they come: memory stays at
        # one page however long the listing (a first start, a catch-up after downtime).
        fold = ListingFold(state.tracker, window, now_ms, config)
        ledger = state.ledger
        pages = 0
        async for page in self.client.list_synchronization_job_pages(
            self.instance_id, start_time=window
        ):
            pages += 1
            for listed in page.synchronization_jobs:
                fold.add(listed)
            del page
            finished_now = fold.take_terminal()
            if finished_now:
                ledger = ledger.with_jobs(finished_now)
        outcome = fold.finish()
        tracker = outcome.state
        finished = list(outcome.newly_terminal)  # none left in practice; taken per page
        counted = fold.counted

        rechecked = 0
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
        )

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
