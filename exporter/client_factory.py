"""From validated :class:`~exporter.config.Settings` to a ready :class:`EiamClient`.

Why one place: the commands and the daemon must build clients the same way (credential chain,
shared rate limit, timeouts, retry bounds), and tests replace the credentials here and nowhere
else.
"""

from __future__ import annotations

from exporter.config import Settings
from exporter.eiam.client import ClientTimeouts, EiamClient, RequestObserver
from exporter.eiam.credentials.base import CredentialsProvider
from exporter.eiam.ratelimit import RateLimiter
from exporter.eiam.retry import RetryPolicy

__all__ = ["build_client", "build_credentials"]


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
