"""The Alibaba Cloud default credential chain, chosen once at start-up.

Why: operators expect the exporter to find credentials the way the ``aliyun`` CLI and the official
SDKs do, in the same order (``eiam-api.md`` §7):

1. environment: ``ALIBABA_CLOUD_ACCESS_KEY_ID`` + ``ALIBABA_CLOUD_ACCESS_KEY_SECRET``
   (+ ``ALIBABA_CLOUD_SECURITY_TOKEN``);
2. RRSA/OIDC on Kubernetes: ``ALIBABA_CLOUD_ROLE_ARN``, ``ALIBABA_CLOUD_OIDC_PROVIDER_ARN``,
   ``ALIBABA_CLOUD_OIDC_TOKEN_FILE``;
3. the ``aliyun`` CLI profile ``~/.aliyun/config.json``;
4. ``~/.alibabacloud/credentials.ini`` (or ``ALIBABA_CLOUD_CREDENTIALS_FILE``);
5. the ECS instance RAM role from the metadata service.

Unlike the official chain, which tries every source on every call until one works, the choice is
made once, at construction, from what is *configured* (variables set, files present) without
network I/O. So the exporter logs at start-up exactly which source it uses, a misconfigured source
is an error instead of a silent fall-through to another identity, and a transient STS failure never
flips the exporter to a different credential. The ECS role is the exception: it can only be
detected by asking, so it is chosen when nothing else is configured, and its first ``get()`` either
works or raises a :class:`CredentialsError` listing every source that was tried and how to
configure one.

Example::

    provider = default_credentials_provider({
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5example",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cr3t",
    })
    # logs: credentials selected  source='environment (ALIBABA_CLOUD_ACCESS_KEY_ID)'
    credential = await provider.get()
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog

from exporter.eiam.credentials.base import Credential, CredentialsProvider
from exporter.eiam.credentials.ecs import (
    ECS_METADATA_DISABLED_ENV,
    EcsRamRoleCredentialsProvider,
    ecs_metadata_disabled,
    ecs_metadata_endpoint_from_environ,
    ecs_role_name_from_environ,
)
from exporter.eiam.credentials.environment import (
    ACCESS_KEY_ID_ENV,
    ACCESS_KEY_SECRET_ENV,
    SECURITY_TOKEN_ENV,
    env_value,
    environment_credentials_provider,
)
from exporter.eiam.credentials.oidc import (
    OIDC_PROVIDER_ARN_ENV,
    OIDC_TOKEN_FILE_ENV,
    ROLE_ARN_ENV,
    oidc_credentials_provider,
)
from exporter.eiam.credentials.profiles import (
    CLI_CONFIG_PATH,
    CREDENTIALS_INI_PATH,
    PROFILE_ENV,
    cli_profile_credentials_provider,
    ini_credentials_provider,
)
from exporter.eiam.credentials.refreshing import Clock, HttpClientFactory
from exporter.eiam.errors import CredentialsError

__all__ = ["HOW_TO_CONFIGURE", "default_credentials_provider"]

_log = structlog.get_logger(__name__)

HOW_TO_CONFIGURE = (
    f"Configure one: set {ACCESS_KEY_ID_ENV} and {ACCESS_KEY_SECRET_ENV} (plus "
    f"{SECURITY_TOKEN_ENV} for an STS token); on ACK enable RRSA for the pod ({ROLE_ARN_ENV}, "
    f"{OIDC_PROVIDER_ARN_ENV}, {OIDC_TOKEN_FILE_ENV}); write an AK profile to "
    f"~/{CLI_CONFIG_PATH} (aliyun configure) or ~/{CREDENTIALS_INI_PATH}; or attach a RAM role "
    "to this ECS instance"
)


def _nothing_found(tried: Sequence[str]) -> str:
    return "no Alibaba Cloud credentials found; tried, in order: " + "; ".join(tried)


class _LastResortProvider:
    """The ECS role chosen because nothing else was configured.

    Until it has worked once, its failures are reported as "no credentials found", with the list
    of sources tried: someone running the exporter on a laptop with nothing configured should
    learn how to configure credentials, not why 100.100.100.200 timed out.
    """

    def __init__(self, inner: CredentialsProvider, tried: Sequence[str]) -> None:
        self._inner = inner
        self._tried = tuple(tried)
        self._succeeded = False

    @property
    def source(self) -> str:
        return self._inner.source

    async def get(self) -> Credential:
        try:
            credential = await self._inner.get()
        except CredentialsError as exc:
            if self._succeeded:
                raise
            tried = [*self._tried, f"ECS instance RAM role: {exc.message}"]
            raise CredentialsError(_nothing_found(tried), hint=HOW_TO_CONFIGURE) from exc
        self._succeeded = True
        return credential

    def invalidate(self) -> None:
        self._inner.invalidate()

    def __repr__(self) -> str:
        return f"{self._inner!r} (last resort)"


def _home(environ: Mapping[str, str]) -> Path:
    home = env_value(environ, "HOME")
    return Path(home) if home else Path.home()


def default_credentials_provider(
    environ: Mapping[str, str] = os.environ,
    *,
    home: Path | None = None,
    sts_endpoint: str | None = None,
    metadata_endpoint: str | None = None,
    http_client_factory: HttpClientFactory | None = None,
    clock: Clock | None = None,
) -> CredentialsProvider:
    """Pick the first configured credential source, in the official order, and log which.

    *environ* and *home* (default ``$HOME``) are the inputs; *sts_endpoint* and
    *metadata_endpoint* override the STS and metadata base URLs (the environment may name them
    too: ``ALIBABA_CLOUD_STS_ENDPOINT``, ``IDAAS_EXPORTER_ECS_METADATA_ENDPOINT``),
    *http_client_factory* builds the ``httpx.AsyncClient`` for STS and metadata calls, and
    *clock* drives refresh timing; all four exist for tests and unusual networks.

    Raises :class:`CredentialsError` when a source is misconfigured (half an AccessKey pair,
    half an RRSA set-up, a broken profile file, a profile that no file defines), and when nothing
    is configured and the ECS role is disabled.

    Example::

        provider = default_credentials_provider()
        auth = AcsV3Auth(provider)   # signs with whatever the chain found
    """
    home_dir = home if home is not None else _home(environ)
    steps: list[Callable[[], tuple[CredentialsProvider | None, str]]] = [
        lambda: environment_credentials_provider(environ),
        lambda: oidc_credentials_provider(
            environ,
            sts_endpoint=sts_endpoint,
            http_client_factory=http_client_factory,
            clock=clock,
        ),
        lambda: cli_profile_credentials_provider(environ, home_dir),
        lambda: ini_credentials_provider(environ, home_dir),
    ]
    tried: list[str] = []
    for step in steps:
        provider, detail = step()
        if provider is not None:
            _log.info("credentials selected", source=provider.source)
            _log.debug("credential sources skipped", skipped=tried)
            return provider
        tried.append(detail)

    profile = env_value(environ, PROFILE_ENV)
    if profile is not None:
        raise CredentialsError(
            f"{PROFILE_ENV}={profile} names a profile that no profile file defines; tried, in "
            "order: " + "; ".join(tried),
            hint=f"Create the profile, or unset {PROFILE_ENV}",
        )
    if ecs_metadata_disabled(environ):
        tried.append(f"ECS instance RAM role: disabled by {ECS_METADATA_DISABLED_ENV}=true")
        raise CredentialsError(_nothing_found(tried), hint=HOW_TO_CONFIGURE)

    ecs = EcsRamRoleCredentialsProvider(
        ecs_role_name_from_environ(environ),
        metadata_endpoint=metadata_endpoint or ecs_metadata_endpoint_from_environ(environ),
        http_client_factory=http_client_factory,
        clock=clock,
    )
    _log.info(
        "credentials selected",
        source=ecs.source,
        note="nothing else is configured; the first request asks the ECS metadata service",
    )
    _log.debug("credential sources skipped", skipped=tried)
    return _LastResortProvider(ecs, tried)
