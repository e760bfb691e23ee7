"""Alibaba Cloud credentials: the value type, the provider interface and the default chain.

Most code needs only :func:`default_credentials_provider`, which picks the source the way the
official SDKs do (environment, RRSA/OIDC, CLI profile, ``credentials.ini``, ECS instance role)
and returns a :class:`CredentialsProvider`::

    provider = default_credentials_provider()
    credential = await provider.get()
"""

from exporter.eiam.credentials.base import (
    Credential,
    CredentialsProvider,
    StaticCredentialsProvider,
)
from exporter.eiam.credentials.chain import default_credentials_provider
from exporter.eiam.credentials.ecs import EcsRamRoleCredentialsProvider
from exporter.eiam.credentials.environment import environment_credentials_provider
from exporter.eiam.credentials.oidc import (
    OidcRoleArnCredentialsProvider,
    StsCredentialsError,
    oidc_credentials_provider,
    sts_endpoint_from_environ,
)
from exporter.eiam.credentials.profiles import (
    ProfileNotFoundError,
    cli_profile_credentials_provider,
    ini_credentials_provider,
    load_cli_profile,
    load_credentials_ini,
)
from exporter.eiam.credentials.refreshing import RefreshingCredentialsProvider

__all__ = [
    "Credential",
    "CredentialsProvider",
    "EcsRamRoleCredentialsProvider",
    "OidcRoleArnCredentialsProvider",
    "ProfileNotFoundError",
    "RefreshingCredentialsProvider",
    "StaticCredentialsProvider",
    "StsCredentialsError",
    "cli_profile_credentials_provider",
    "default_credentials_provider",
    "environment_credentials_provider",
    "ini_credentials_provider",
    "load_cli_profile",
    "load_credentials_ini",
    "oidc_credentials_provider",
    "sts_endpoint_from_environ",
]
