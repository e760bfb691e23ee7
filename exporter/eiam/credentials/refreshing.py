"""A cached, expiring credential refreshed ahead of time: the base of RRSA and the ECS role.

Both hand out STS credentials that live for hours, and both must (a) not call the network on
every request, (b) refresh early enough that a request signed just before expiry still arrives
in time, (c) make exactly one call when many requests find the cache stale at once, and (d)
survive a short STS or metadata outage while the current credential is still valid.

>>> parse_expiration("2024-05-01T12:00:00Z", what="STS")
datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import structlog

from exporter.eiam.credentials.base import Credential
from exporter.eiam.errors import CredentialsError
from exporter.eiam.redaction import mask_access_key_id

__all__ = [
    "DEFAULT_REFRESH_BEFORE",
    "DEFAULT_RETRY_INTERVAL",
    "Clock",
    "HttpClientFactory",
    "RefreshingCredentialsProvider",
    "parse_expiration",
]

#: The official libraries refresh STS credentials 15 minutes before they expire.
DEFAULT_REFRESH_BEFORE = timedelta(minutes=15)
#: After a failed refresh, how long the still-valid old credential is served before trying again.
DEFAULT_RETRY_INTERVAL = timedelta(minutes=1)
#: A cached credential closer than this to its expiry is never served after a failed refresh.
_MIN_REMAINING_VALIDITY = timedelta(minutes=1)

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC ``datetime``; injectable so tests never sleep."""

HttpClientFactory = Callable[[], httpx.AsyncClient]
"""Builds the ``httpx.AsyncClient`` for one refresh; the provider closes it afterwards."""

_log = structlog.get_logger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def parse_expiration(value: object, *, what: str) -> datetime:
    """Parse an STS/metadata ``Expiration`` (``2024-05-01T12:00:00Z``) into an aware UTC datetime.

    Tolerant of fractional seconds and explicit offsets; a value without a zone is taken as UTC,
    which is what Alibaba Cloud documents for these fields.
    """
    if not isinstance(value, str) or not value.strip():
        raise CredentialsError(f"{what} response has no Expiration")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CredentialsError(f"{what} response has an unreadable Expiration {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class RefreshingCredentialsProvider(ABC):
    """Cache an expiring credential and fetch a new one shortly before it expires.

    Why a base class: RRSA and the ECS instance role both hand out STS credentials that live for
    hours, and both must (a) not call the network on every request, (b) refresh early enough that
    a request signed just before expiry still arrives in time, (c) make exactly one call when many
    requests find the cache stale at once, and (d) survive a short STS or metadata outage while
    the current credential is still valid.

    Subclasses implement :meth:`_fetch`. Refresh happens once ``now`` passes
    ``Expiration - refresh_before``; for credentials that live shorter than twice
    ``refresh_before``, at half their lifetime instead, so a 15-minute token is not fetched anew
    on every call. When a refresh fails while the cached credential still has more than a minute
    left, that credential is served (with a warning) and the refresh is retried after
    ``retry_interval``. :meth:`invalidate` drops the cache: the next ``get()`` fetches, and a
    failure then propagates.
    """

    def __init__(
        self,
        *,
        refresh_before: timedelta = DEFAULT_REFRESH_BEFORE,
        retry_interval: timedelta = DEFAULT_RETRY_INTERVAL,
        clock: Clock | None = None,
    ) -> None:
        if refresh_before < timedelta(0):
            raise ValueError("refresh_before must not be negative")
        self._refresh_before = refresh_before
        self._retry_interval = retry_interval
        self._clock: Clock = clock or _utc_now
        self._cached: Credential | None = None
        self._refresh_at: datetime | None = None
        self._lock = asyncio.Lock()

    @property
    @abstractmethod
    def source(self) -> str:
        """Where the credentials come from, secret-free, for logs and errors."""

    @abstractmethod
    async def _fetch(self) -> Credential:
        """Fetch a fresh credential (with ``expiration``); raise only :class:`CredentialsError`."""

    def _fresh(self, now: datetime) -> Credential | None:
        cached = self._cached
        if cached is None:
            return None
        if self._refresh_at is not None and now >= self._refresh_at:
            return None
        return cached

    async def get(self) -> Credential:
        """The cached credential while fresh; otherwise one fetch, shared by concurrent callers."""
        cached = self._fresh(self._clock())
        if cached is not None:
            return cached
        async with self._lock:
            now = self._clock()
            cached = self._fresh(now)
            if cached is not None:  # another caller refreshed while this one waited
                return cached
            stale = self._cached
            try:
                fresh = await self._fetch()
            except CredentialsError as exc:
                if (
                    stale is None
                    or self._cached is not stale  # invalidated meanwhile: it was rejected
                    or stale.expiration is None
                    or now >= stale.expiration - _MIN_REMAINING_VALIDITY
                ):
                    raise
                self._refresh_at = min(
                    now + self._retry_interval, stale.expiration - _MIN_REMAINING_VALIDITY
                )
                _log.warning(
                    "credentials refresh failed, still using the current credential",
                    source=self.source,
                    error=str(exc),
                    expires_at=stale.expiration.isoformat(),
                    retry_at=self._refresh_at.isoformat(),
                )
                return stale
            self._store(fresh)
            return fresh

    def _store(self, credential: Credential) -> None:
        fetched_at = self._clock()
        self._cached = credential
        if credential.expiration is None:
            self._refresh_at = None
            return
        lifetime = credential.expiration - fetched_at
        margin = min(self._refresh_before, max(lifetime / 2, timedelta(0)))
        self._refresh_at = credential.expiration - margin
        _log.debug(
            "credentials refreshed",
            source=self.source,
            access_key_id=mask_access_key_id(credential.access_key_id),
            expires_at=credential.expiration.isoformat(),
            refresh_at=self._refresh_at.isoformat(),
        )

    def invalidate(self) -> None:
        """Forget the cached credential (the server rejected it); the next ``get()`` fetches."""
        self._cached = None
        self._refresh_at = None
