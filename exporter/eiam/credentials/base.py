"""The credential value and the provider interface every credential source implements.

Why separate from the sources: the signer and the client only need "give me a valid credential
now" and "that one was rejected, get a fresh one"; where it came from (environment, RRSA,
profile file, ECS metadata) is the chain's business.

Holding a credential registers its values with :mod:`exporter.eiam.redaction`, so that a server
echoing them back (a refused signature quotes the security token) cannot put them in an error
message, a log line or command output; its repr shows a prefix of the AccessKey ID only.

>>> cred = Credential("LTAI5tExample01", SecretStr("s3cr3t-example-value"), source="environment")
>>> cred
Credential(access_key_id='LTAI5***', source='environment', sts=False)
>>> "s3cr3t" in repr(cred) or "s3cr3t" in str(cred)
False
>>> from exporter.eiam.redaction import redact
>>> redact("echoed: s3cr3t-example-value by LTAI5tExample01")
'echoed: <redacted:access-key-secret> by LTAI5***'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from exporter.eiam.redaction import mask_access_key_id, register

__all__ = ["Credential", "CredentialsProvider", "StaticCredentialsProvider"]


@dataclass(frozen=True, slots=True)
class Credential:
    """An AccessKey pair, optionally with an STS token and its expiry.

    The secret and the token are ``SecretStr``: they print as ``**********`` and the repr below
    leaves them out entirely, so a credential logged or raised by accident leaks nothing. All
    three values are registered for redaction on construction.
    """

    access_key_id: str
    access_key_secret: SecretStr
    security_token: SecretStr | None = None
    expiration: datetime | None = None
    source: str = "static"

    def __post_init__(self) -> None:
        # The moment the process holds a credential, it is masked wherever it might surface.
        register(self.access_key_id, "access-key-id")
        register(self.access_key_secret, "access-key-secret")
        register(self.security_token, "security-token")

    def __repr__(self) -> str:
        return (
            f"Credential(access_key_id={mask_access_key_id(self.access_key_id)!r}, "
            f"source={self.source!r}, sts={self.security_token is not None})"
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
