"""Credentials from environment variables, the first link of the Alibaba Cloud default chain.

Why first: an operator who exports ``ALIBABA_CLOUD_ACCESS_KEY_ID`` and
``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` means "use exactly this key", whatever else the machine offers
(a profile file, an ECS role). The official SDKs agree, so the exporter behaves like the
``aliyun`` CLI and every other Alibaba Cloud tool the operator already knows.

A half-set pair is a configuration mistake, not "not configured": the exporter says which variable
is missing instead of silently falling through to another source with different permissions.

This module also holds the two small environment helpers the other sources share: blank values
count as unset (``FOO=`` in a Kubernetes manifest), and boolean flags accept ``true``/``1``/``yes``.

>>> provider, _ = environment_credentials_provider({
...     "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5example",
...     "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cr3t",
... })
>>> provider.source
'environment (ALIBABA_CLOUD_ACCESS_KEY_ID)'
>>> environment_credentials_provider({})
(None, 'environment: ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET are not set')
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider
from exporter.eiam.errors import CredentialsError

__all__ = [
    "ACCESS_KEY_ID_ENV",
    "ACCESS_KEY_SECRET_ENV",
    "SECURITY_TOKEN_ENV",
    "env_flag",
    "env_value",
    "environment_credentials_provider",
]

ACCESS_KEY_ID_ENV = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ACCESS_KEY_SECRET_ENV = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 - a variable name
SECURITY_TOKEN_ENV = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105 - a variable name

_TRUE = frozenset({"true", "1", "yes", "on"})


def env_value(environ: Mapping[str, str], name: str) -> str | None:
    """The value of *name* with surrounding whitespace removed, or ``None`` when unset or blank.

    Stripping matters for keys pasted from a file or a Kubernetes Secret with a trailing newline:
    AccessKeys and STS tokens never contain whitespace, and a stray ``\\n`` would otherwise show up
    much later as ``SignatureDoesNotMatch``.

    >>> env_value({"A": "  x\\n", "B": " "}, "A"), env_value({"B": " "}, "B"), env_value({}, "C")
    ('x', None, None)
    """
    value = environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def env_flag(environ: Mapping[str, str], name: str) -> bool:
    """True when *name* is ``true`` (the official spelling), ``1``, ``yes`` or ``on``, any case.

    >>> env_flag({"X": "TRUE"}, "X"), env_flag({"X": "false"}, "X"), env_flag({}, "X")
    (True, False, False)
    """
    return (env_value(environ, name) or "").lower() in _TRUE


def environment_credentials_provider(
    environ: Mapping[str, str],
) -> tuple[StaticCredentialsProvider | None, str]:
    """A provider for the AccessKey in the environment, or ``None`` and why it is not configured.

    Returns ``(provider, provider.source)`` when both ``ALIBABA_CLOUD_ACCESS_KEY_ID`` and
    ``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` are set (with ``ALIBABA_CLOUD_SECURITY_TOKEN`` when present,
    for an STS token), and ``(None, reason)`` when neither is set.

    Raises :class:`CredentialsError` naming the missing variable when only one of the pair is set,
    or when a security token is set without the pair it belongs to. Values never appear in
    the error.
    """
    key_id = env_value(environ, ACCESS_KEY_ID_ENV)
    secret = env_value(environ, ACCESS_KEY_SECRET_ENV)
    token = env_value(environ, SECURITY_TOKEN_ENV)

    if key_id is None and secret is None:
        if token is not None:
            raise CredentialsError(
                f"{SECURITY_TOKEN_ENV} is set but {ACCESS_KEY_ID_ENV} and "
                f"{ACCESS_KEY_SECRET_ENV} are not",
                hint="An STS token only works together with the temporary AccessKey pair it "
                f"was issued with: set all three variables, or unset {SECURITY_TOKEN_ENV}",
            )
        return None, f"environment: {ACCESS_KEY_ID_ENV} and {ACCESS_KEY_SECRET_ENV} are not set"
    if key_id is None:
        raise CredentialsError(
            f"{ACCESS_KEY_SECRET_ENV} is set but {ACCESS_KEY_ID_ENV} is missing",
            hint=f"Set {ACCESS_KEY_ID_ENV} to the AccessKey ID that belongs to the secret, "
            f"or unset {ACCESS_KEY_SECRET_ENV} to use another credential source",
        )
    if secret is None:
        raise CredentialsError(
            f"{ACCESS_KEY_ID_ENV} is set but {ACCESS_KEY_SECRET_ENV} is missing",
            hint=f"Set {ACCESS_KEY_SECRET_ENV} to the AccessKey secret of this AccessKey ID, "
            f"or unset {ACCESS_KEY_ID_ENV} to use another credential source",
        )

    source = f"environment ({ACCESS_KEY_ID_ENV}" + (
        f" + {SECURITY_TOKEN_ENV})" if token is not None else ")"
    )
    credential = Credential(
        access_key_id=key_id,
        access_key_secret=SecretStr(secret),
        security_token=SecretStr(token) if token is not None else None,
        source=source,
    )
    return StaticCredentialsProvider(credential), source
