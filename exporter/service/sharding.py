"""Which instances this replica polls, when several replicas share the work (sharding).

Why a stable hash: every replica must compute the same split without talking to the others, and
a new version or another machine must not move instances between shards (each move restarts an
instance's counters on another replica's state).
"""

from __future__ import annotations

import hashlib
import re
import socket

__all__ = ["ShardError", "select_shard"]


class ShardError(ValueError):
    """The shard settings cannot be used; the message names the setting and the fix."""


def select_shard(
    instance_ids: list[str], index: int | str, count: int, hostname: str | None = None
) -> list[str]:
    """The instances this replica polls: those whose stable hash falls on *index*.

    ``index="auto"`` takes the ordinal at the end of the host name (``exporter-2`` → 2), as
    a StatefulSet names its pods. The hash is SHA-256, stable across versions and machines.

    >>> select_shard(["idaas_a", "idaas_b", "idaas_c"], 0, 1)
    ['idaas_a', 'idaas_b', 'idaas_c']
    >>> sorted(select_shard(["idaas_a", "idaas_b", "idaas_c"], "auto", 2, "exp-1")
    ...        + select_shard(["idaas_a", "idaas_b", "idaas_c"], 0, 2))
    ['idaas_a', 'idaas_b', 'idaas_c']
    """
    if index == "auto":
        name = hostname if hostname is not None else socket.gethostname()
        match = re.search(r"-(\d+)$", name)
        if match is None:
            raise ShardError(
                f"--shard.index=auto needs a host name ending in -<ordinal> (a StatefulSet pod "
                f"name); this host is {name!r}. Set --shard.index to a number instead"
            )
        index = int(match.group(1))
    number = int(index)
    if not 0 <= number < count:
        raise ShardError(f"shard index {number} is outside 0..{count - 1}; check --shard.count")
    return [
        iid
        for iid in instance_ids
        if int.from_bytes(hashlib.sha256(iid.encode()).digest()[:8], "big") % count == number
    ]
