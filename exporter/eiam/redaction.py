"""Every credential value this process holds, and :func:`redact`, which masks them in any text.

Why by value and not by key: servers answer with what they received. Alibaba's gateway refuses a
signature with its string to sign (every RPC parameter, ``SecurityToken`` included) or its V3
canonical request (every signed header, ``x-acs-security-token`` included); a proxy's error page
dumps the request; STS may quote the OIDC token it rejected. Such text reaches exception
messages, log lines and command output under keys like ``error`` or ``message``, where masking
by key name cannot see it. So every credential is registered here the moment the process holds
it (:class:`~exporter.eiam.credentials.base.Credential` does it on construction, the RRSA and
ECS providers for the OIDC and metadata tokens), and :func:`redact` runs where server text
enters the process (the :mod:`~exporter.eiam.errors` constructors, the snippets of bodies the
client and the providers quote) and, as a second line of defence, over every rendered log line
and command output.

What is caught: the raw value and the encodings it comes back in: percent-encoded any number of
times in either hex case (an RPC string to sign holds values encoded twice: ``+`` as
``%252B``), form-encoded, JSON (``\\/``, ``\\u002B``), HTML character references, a
backslash-escaped repr. What is not: a value cut short by someone else's truncation; so code
that quotes a body redacts it first and truncates afterwards.

Masks: secrets and tokens become a fixed marker (``<redacted:security-token>``); an AccessKey
ID keeps a short prefix (``LTAI5t***``), enough to tell a long-lived key from an STS one.

Cost: registering a value compiles its pattern, once; :func:`redact` checks, with a plain
substring search per value, for a run of characters every encoding of that value keeps, and
runs the value's pattern only then. With the registry full, a log line that holds no credential
costs some 20 µs, one that quotes an STS token some 50 µs more, and registering a new value some
5 ms. Nothing scans successful response bodies. The registry is bounded (the most recent
:data:`DEFAULT_CAPACITY` values), since RRSA and ECS credentials rotate every hour or so for
months: an evicted value is one that expired long ago.

>>> local = CredentialRegistry()
>>> local.register("CAIS+token/with=base64", "security-token")
>>> local.register("LTAI5tExampleKeyId0001", "access-key-id")
>>> local.redact("x-acs-security-token:CAIS+token/with=base64 Credential=LTAI5tExampleKeyId0001")
'x-acs-security-token:<redacted:security-token> Credential=LTAI5t***'
>>> local.redact("SecurityToken%3DCAIS%252Btoken%252Fwith%253Dbase64")
'SecurityToken%3D<redacted:security-token>'
>>> local.redact('{"token": "CAIS\\\\u002Btoken\\\\/with\\\\u003Dbase64"}')
'{"token": "<redacted:security-token>"}'
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import SecretStr

__all__ = [
    "DEFAULT_CAPACITY",
    "MIN_LENGTH",
    "CredentialKind",
    "CredentialRegistry",
    "mask_access_key_id",
    "redact",
    "register",
    "registry",
]

CredentialKind = Literal[
    "access-key-id", "access-key-secret", "security-token", "oidc-token", "metadata-token"
]

DEFAULT_CAPACITY: Final = 256
"""Values kept: three per STS credential, so about 80 rotations (days of hourly refreshes)."""
MIN_LENGTH: Final = 8
"""Shorter values are not registered: no issued credential is that short, and masking every
occurrence of, say, ``test`` would mangle unrelated text."""
ACCESS_KEY_ID_PREFIX: Final = 6

_MARKER = re.compile(r"<redacted:[a-z-]+>")
_LITERAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
"""Characters no encoder changes. Everything else, ``-_.~`` included, has its escaped forms
too: Java's URLEncoder encodes ``~``, aggressive HTML and JSON encoders everything else."""
_HTML_NAMED = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}


def mask_access_key_id(value: str) -> str:
    """A short prefix of an AccessKey ID and ``***``: at most 6 characters, at most a third.

    >>> mask_access_key_id("LTAI5tExampleKeyId0001"), mask_access_key_id("STS.NSexample")
    ('LTAI5t***', 'STS.***')
    """
    return value[: min(ACCESS_KEY_ID_PREFIX, len(value) // 3)] + "***"


def _mask(value: str, kind: CredentialKind) -> str:
    return mask_access_key_id(value) if kind == "access-key-id" else f"<redacted:{kind}>"


def _hex(number: int, width: int = 2) -> str:
    """The hex digits of *number*, matching either case: ``0x2F`` -> ``2[Ff]``."""
    return "".join(f"[{d}{d.lower()}]" if d.isalpha() else d for d in f"{number:0{width}X}")


def _char_pattern(char: str) -> str:
    """Every way *char* may appear in text that went through encoders and escapers."""
    if char in _LITERAL:
        return re.escape(char)
    forms = [re.escape(char)]
    # percent-encoding of its UTF-8 bytes, applied any number of times, either hex case
    forms.append("".join(f"%(?:25)*{_hex(byte)}" for byte in char.encode()))
    # JSON and JavaScript: \uXXXX (a surrogate pair beyond the BMP), \/ \" \\
    code = ord(char)
    if code < 0x10000:
        forms.append(rf"\\u{_hex(code, 4)}")
    else:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.append(rf"\\u{_hex(high, 4)}\\u{_hex(low, 4)}")
    if char in "/\"'\\":
        forms.append(re.escape("\\" + char))
    if char == " ":
        forms.append(r"\+")
    # HTML character references
    forms.append(f"&#(?:[xX]0*{_hex(code, 1)}|0*{code});")
    if char in _HTML_NAMED:
        forms.append(f"&{_HTML_NAMED[char]};")
    return "(?:" + "|".join(forms) + ")"


def _value_pattern(value: str) -> str:
    return "".join(_char_pattern(char) for char in value)


def _anchor(value: str) -> str:
    """The longest run of characters every encoding keeps: present in any form of *value*."""
    runs = re.findall(r"[A-Za-z0-9]+", value)
    return max(runs, key=len) if runs else ""


@dataclass(frozen=True, slots=True)
class _Entry:
    """One registered value: its pattern is compiled once, when it is registered."""

    value: str
    kind: CredentialKind
    anchor: str
    pattern: re.Pattern[str]
    mask: str

    @classmethod
    def build(cls, value: str, kind: CredentialKind) -> _Entry:
        # A mask already in the text is matched first and kept whole: the scan never looks
        # inside one, so a value that happens to be part of ``<redacted:…>`` breaks nothing.
        pattern = re.compile(f"(?P<mask>{_MARKER.pattern})|{_value_pattern(value)}")
        return cls(value, kind, _anchor(value), pattern, _mask(value, kind))

    def sub(self, text: str) -> str:
        mask = self.mask
        return self.pattern.sub(
            lambda match: match.group() if match.group("mask") is not None else mask, text
        )


class CredentialRegistry:
    """The credential values to mask, the most recent *capacity* of them. Thread-safe.

    Most code uses the process-wide :data:`registry` through :func:`register` and
    :func:`redact`; a registry of its own serves tests that must not touch it.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._ordered: tuple[_Entry, ...] = ()
        """Longest value first, so that a value containing another is masked whole. Replaced,
        never mutated: :meth:`redact` reads it without the lock."""

    def register(self, value: str | SecretStr | None, kind: CredentialKind) -> None:
        """Mask *value* from now on. Registering it again makes it the most recent one.

        ``None``, values shorter than :data:`MIN_LENGTH` and values holding the masks' own
        syntax (``<redacted:``, ``***``: such a value could not be told from a mask, and no
        credential looks like that) are ignored. Costs one pattern compilation (about a
        millisecond for an STS token) the first time a value is seen.
        """
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or len(value) < MIN_LENGTH or "<redacted:" in value or "***" in value:
            return
        with self._lock:
            known = self._entries.get(value)
            if known is not None and known.kind == kind:
                self._entries.move_to_end(value)
                return  # already masked: the order of the scan does not change
        entry = _Entry.build(value, kind)  # outside the lock: the slow part
        with self._lock:
            self._entries.pop(value, None)
            self._entries[value] = entry
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            self._ordered = tuple(
                sorted(self._entries.values(), key=lambda e: len(e.value), reverse=True)
            )

    def redact(self, text: str) -> str:
        """*text* with every registered value, in every encoding known here, masked.

        Never raises and is idempotent: an existing mask is left as it is. A value's pattern
        runs only when the text holds its anchor, a run of characters every encoding keeps.
        """
        if not isinstance(text, str):
            return text
        for entry in self._ordered:
            if entry.anchor in text:
                text = entry.sub(text)
        return text

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, value: object) -> bool:
        return value in self._entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._ordered = ()


registry: Final = CredentialRegistry()
"""The process-wide registry every credential source registers into."""


def register(value: str | SecretStr | None, kind: CredentialKind) -> None:
    """Register *value* with the process-wide :data:`registry` (see
    :meth:`CredentialRegistry.register`)."""
    registry.register(value, kind)


def redact(text: str) -> str:
    """*text* with every credential this process holds masked (see the module docs).

    >>> register("Example+Secret/Value=1", "access-key-secret")
    >>> redact("Specified signature is not matched: Example%2BSecret%2FValue%3D1")
    'Specified signature is not matched: <redacted:access-key-secret>'
    """
    return registry.redact(text)
