"""From validated :class:`~exporter.config.Settings` to ready :class:`EiamClient` s.

Why one place: the commands and the daemon must build clients the same way (credential chain,
one shared rate limit, timeouts, retry bounds), one client per distinct endpoint, and tests
replace the credentials here and nowhere else.
"""

from __future__ import annotations

from types import TracebackType

from exporter.config import Settings
from exporter.eiam.client import ClientTimeouts, EiamClient, RequestObserver
from exporter.eiam.credentials.base import CredentialsProvider
from exporter.eiam.ratelimit import RateLimiter
from exporter.eiam.retry import RetryPolicy

__all__ = ["InstanceClients", "build_client", "build_credentials"]


def build_credentials() -> CredentialsProvider:
    """The default Alibaba Cloud credential chain, read from this process's environment."""
    from exporter.eiam.credentials.chain import default_credentials_provider

    return default_credentials_provider()


def build_client(
    settings: Settings,
    *,
    credentials: CredentialsProvider | None = None,
    rate_limiter: RateLimiter | None = None,
    observer: RequestObserver | None = None,
    endpoint: str | None = None,
) -> EiamClient:
    """A client for ``settings``' endpoint (or *endpoint*), sharing *rate_limiter* if given."""
    timeout = settings.api_timeout_seconds
    return EiamClient(
        endpoint or settings.endpoint_url(),
        credentials or build_credentials(),
        timeouts=ClientTimeouts(read=min(15.0, timeout), total=timeout),
        retry=RetryPolicy(max_attempts=settings.api_max_attempts),
        rate_limiter=rate_limiter or RateLimiter(settings.api_rate_limit),
        observer=observer,
    )


class InstanceClients:
    """One client per distinct endpoint, all sharing one credential chain and one rate limit.

    ``clients[instance_id]`` is the client for that instance. Use as an async context manager
    (or call :meth:`aclose`) to close the connection pools.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        credentials: CredentialsProvider | None = None,
        observer: RequestObserver | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.credentials = credentials or build_credentials()
        self.rate_limiter = RateLimiter(settings.api_rate_limit)
        by_endpoint: dict[str, EiamClient] = {}
        self.clients: dict[str, EiamClient] = {}
        for instance in settings.all_instances():
            url = endpoint or str(settings.endpoint_url(instance))
            if url not in by_endpoint:
                by_endpoint[url] = build_client(
                    settings,
                    credentials=self.credentials,
                    rate_limiter=self.rate_limiter,
                    observer=observer,
                    endpoint=url,
                )
            self.clients[instance.id] = by_endpoint[url]
        self._unique = list(by_endpoint.values())

    @property
    def endpoints(self) -> int:
        """Distinct endpoints, each with its own connection pool."""
        return len(self._unique)

    async def __aenter__(self) -> InstanceClients:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for client in self._unique:
            await client.aclose()
