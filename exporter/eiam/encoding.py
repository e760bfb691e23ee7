"""RFC 3986 percent-encoding and the flat parameter encoding of Alibaba Cloud RPC APIs.

Why a module of its own: the same bytes must appear on the wire and in the canonical string that
is signed. Any divergence (``+`` versus ``%20``, ``*`` left bare, lowercase hex) yields
``SignatureDoesNotMatch`` for some values only, the worst kind of bug. Both the client and the
simulator's verifier use these functions, so there is exactly one definition.

>>> percent_encode(" ~/*-+")
'%20~%2F%2A-%2B'
>>> flatten_params({"TargetIds": ["idp_1", "idp_2"], "Filters": [{"Key": "k", "Values": ["v"]}]})
{'TargetIds.1': 'idp_1', 'TargetIds.2': 'idp_2', 'Filters.1.Key': 'k', 'Filters.1.Values.1': 'v'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "canonical_query_string",
    "flatten_params",
    "parse_query_string",
    "percent_encode",
]


def percent_encode(value: str) -> str:
    """Encode *value* as UTF-8 and percent-encode all but RFC 3986 unreserved characters.

    Unreserved means ``A-Z a-z 0-9 - _ . ~``; everything else becomes ``%XX`` with uppercase hex.
    """
    # quote() never escapes letters, digits and "_.-~"; safe="" makes it escape "/" as well.
    return quote(value, safe="")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    return str(value)


def _flatten_into(out: dict[str, str], prefix: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten_into(out, f"{prefix}.{key}" if prefix else str(key), item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value, start=1):
            _flatten_into(out, f"{prefix}.{index}", item)
    else:
        out[prefix] = _scalar(value)


def flatten_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Flatten nested parameters the way RPC-style Alibaba Cloud APIs expect them.

    Lists become ``Name.N`` (1-based), mappings ``Name.Key``; ``None`` values are dropped and
    booleans become ``true``/``false``. Arrays and objects are never sent as JSON.
    """
    out: dict[str, str] = {}
    for key, value in params.items():
        _flatten_into(out, key, value)
    return out


def canonical_query_string(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Sort by name, encode name and value, join as ``k=v`` with ``&`` (``k=`` when empty).

    This string is both the canonical query that is signed and the query sent on the wire.
    """
    items = params.items() if isinstance(params, Mapping) else params
    return "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(items, key=lambda kv: kv[0])
    )


def parse_query_string(query: str) -> list[tuple[str, str]]:
    """Decode a query string into (name, value) pairs, keeping blank values and order.

    Accepts ``+`` as a space too (form encoding), since some clients send it that way.
    """
    pairs: list[tuple[str, str]] = []
    if not query:
        return pairs
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote(name.replace("+", " ")), unquote(value.replace("+", " "))))
    return pairs
