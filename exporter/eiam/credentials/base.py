"""The credential value and the provider interface every credential source implements.

Why separate from the sources: the signer and the client only need "give me a valid credential
now" and "that one was rejected, get a fresh one"; where it came from (environment, RRSA,
profile file, ECS metadata) is the chain's business.

>>> cred = Credential("LTAI5example", SecretStr("s3cr3t"), source="environment")
>>> cred
Credential(access_key_id='LTAI5example', source='environment', sts=False)
>>> "s3cr3t" in repr(cred) or "s3cr3t" in str(cred)
False
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from pydantic import SecretStr

__all__ = ["Credential", "CredentialsProvider", "StaticCredentialsProvider"]


@dataclass(frozen=True, slots=True)
class Credential:
    """An AccessKey pair, optionally with an STS token and its expiry.

    The secret and the token are ``SecretStr``: they print as ``**********`` and the repr below
    leaves them out entirely, so a credential logged or raised by accident leaks nothing.
    """

    access_key_id: str
    access_key_secret: SecretStr
    security_token: SecretStr | None = None
    expiration: datetime | None = None
    source: str = "static"

    def __repr__(self) -> str:
        return (
            f"Credential(access_key_id={self.access_key_id!r}, source={self.source!r}, "
            f"sts={self.security_token is not None})"
        )

    __str__ = __repr__

    def expires_within(self, seconds: float, now: datetime | None = None) -> bool:
        """True when the credential expires within *seconds* from *now* (never for AK pairs)."""
        if self.expiration is None:
            return False
        current = now or datetime.now(UTC)
        return (self.expiration - current).total_seconds() <= seconds


@runtime_checkable
class CredentialsProvider(Protocol):
    """Something that hands out a currently valid credential.

    ``get`` may perform I/O (STS, metadata service) and must be cheap when the cached credential
    is still fresh. ``invalidate`` is called when the server rejected the credential (for example
    an expired STS token) so that the next ``get`` fetches a new one.
    """

    @property
    def source(self) -> str:
        """A short, secret-free description of where credentials come from, for logs."""
        ...

    async def get(self) -> Credential: ...

    def invalidate(self) -> None: ...


class StaticCredentialsProvider:
    """A fixed credential (environment variables, a profile file, tests)."""

    def __init__(self, credential: Credential) -> None:
        self._credential = credential

    @property
    def source(self) -> str:
        return self._credential.source

    async def get(self) -> Credential:
        return self._credential

    def invalidate(self) -> None:
        """Nothing to refresh: a static key that is rejected stays rejected."""

    def __repr__(self) -> str:
        return f"StaticCredentialsProvider({self._credential!r})"
