"""A minimal, very fast loopback HTTP/1.1 server of pre-encoded ListSynchronizationJobs pages.

Why a server of its own instead of the project's simulator: the client benchmark must measure the
*client*. This server does as little as possible per request — find the end of the head, read the
``NextToken`` out of the request target, write one pre-built ``bytes`` object (status line,
headers and a ~200 KB JSON body) — and never verifies signatures. It runs in a **separate
process**, pinned to another core than the benchmark when the machine has two, so its cost is not
charged to the client; :func:`measure_ceiling` reports how many pages per second it can deliver to
a do-nothing client, so nobody mistakes server speed for client speed.

The pages are realistic full pages: 100 jobs each with distinct IDs, all four statistics blocks
(``Exported`` for users and OUs only, as in the API), realistic counts, descriptions and error
messages, chained by ``NextToken`` (``p000001``, ``p000002``, ...; the last page has none). Page
contents are deterministic for a given ``(pages, seed)`` so two runs serve the same bytes.

Run it on its own::

    python -m bench.pageserver --pages 200 --cpu 1      # prints "READY <port> <pages> <bytes>"

Protocol details worth knowing: keep-alive by default (``Connection: close`` honoured), always
``Content-Length``, request bodies (the official SDK posts an empty one) are read and skipped;
``GET /__stats`` answers served-request count and the server's own CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = [
    "PageServer",
    "build_page",
    "build_pages",
    "fetch_raw",
    "main",
    "measure_ceiling",
    "page_token",
    "start_server_process",
]

JOBS_PER_PAGE = 100
INSTANCE_ID = "idaas_ue2jvisn35ea5lmthk267bench"

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_ACTIONS = ("Created", "Updated", "Binded", "Deleted", "Same", "Pushed")
_BLOCKS: tuple[tuple[str, bool, int], ...] = (
    # (API block name, has Exported, typical entity count scale)
    ("UserStatistics", True, 20_000),
    ("OrganizationalUnitStatistics", True, 800),
    ("GroupStatistics", False, 1_500),
    ("GroupMemberStatistics", False, 60_000),
)
_STATUSES = (
    ("success", 70),
    ("partial_success", 15),
    ("failed", 10),
    ("running", 3),
    ("pending", 2),
)
_ERRORS = (
    ("", ""),
    (
        "IdentityProvider.SyncFailed",
        "Failed to synchronize 12 users from the identity provider: the upstream directory "
        "returned HTTP 429 Too Many Requests while listing department members; the job will "
        "be retried at the next scheduled run.",
    ),
    (
        "Application.ProvisioningPartiallyFailed",
        "Provisioning to the application completed with errors: 3 accounts were rejected by "
        "the SCIM endpoint (409 Conflict: userName already exists) and were skipped.",
    ),
    (
        "Connection.Timeout",
        "Connection to the LDAP server ldaps://dc01.corp.example.com:636 timed out after 30 "
        "seconds while binding as cn=idaas-sync,ou=service,dc=corp,dc=example,dc=com.",
    ),
)
_DESCRIPTIONS = (
    "Scheduled incremental synchronization from DingTalk (corp main directory, all departments)",
    "Manual full synchronization from Active Directory (OU=Employees,DC=corp,DC=example,DC=com)",
    "Outbound account provisioning to the HR application (SCIM 2.0, users and groups)",
    "Scheduled full synchronization from WeCom (enterprise contacts, including disabled members)",
    "Nightly synchronization from the Lark directory with organizational unit moves enabled",
)


def page_token(index: int) -> str:
    """The NextToken that asks for page *index* (0-based); page 0 is asked without a token."""
    return f"p{index:06d}"


def _ident(rng: random.Random, prefix: str, length: int) -> str:
    return prefix + "".join(rng.choice(_ALNUM) for _ in range(length))


def _action_block(rng: random.Random, scale: int) -> dict[str, int]:
    total = int(rng.paretovariate(1.2) * scale / 50) if rng.random() < 0.8 else 0
    total = min(total, scale * 3)
    failed = int(total * rng.random() * 0.05) if rng.random() < 0.3 else 0
    skipped = int((total - failed) * rng.random() * 0.1)
    return {
        "Total": total,
        "Success": total - failed - skipped,
        "Failed": failed,
        "Skipped": skipped,
    }


def _job(rng: random.Random, page: int, slot: int, now_ms: int) -> dict[str, Any]:
    status = rng.choices([s for s, _ in _STATUSES], weights=[w for _, w in _STATUSES])[0]
    target_type = "identity_provider" if rng.random() < 0.8 else "application"
    target_id = _ident(rng, "idp_" if target_type == "identity_provider" else "app_", 25)
    start = now_ms - (page * JOBS_PER_PAGE + slot) * 90_000 - rng.randrange(60_000)
    job: dict[str, Any] = {
        # Distinct by construction (page and slot are encoded), random-looking like real IDs.
        "SynchronizationJobId": f"sync_{page:05d}{slot:02d}" + _ident(rng, "", 26),
        "TargetType": target_type,
        "TargetId": target_id,
        "Direction": "ingress" if target_type == "identity_provider" else "egress",
        "StartTime": start,
        "EndTime": start + rng.randrange(2_000, 1_800_000),
        "TriggerType": "auto" if rng.random() < 0.85 else "manual",
        "Status": status,
        "Description": rng.choice(_DESCRIPTIONS),
    }
    error_code, error_message = (
        _ERRORS[0] if status in ("success", "running", "pending") else rng.choice(_ERRORS[1:])
    )
    result: dict[str, Any] = {"ErrorCode": error_code, "ErrorMessage": error_message}
    for block, exported, scale in _BLOCKS:
        stats = {action: _action_block(rng, scale) for action in _ACTIONS}
        if exported:
            stats["Exported"] = _action_block(rng, scale)
        result[block] = stats
    job["Result"] = result
    return job


def build_page(index: int, pages: int, *, seed: int = 20211201, now_ms: int | None = None) -> bytes:
    """The JSON body of page *index* of *pages*: 100 full jobs, NextToken unless last."""
    rng = random.Random(seed * 1_000_003 + index)
    now = now_ms if now_ms is not None else 1_767_225_600_000  # fixed: bytes are reproducible
    body: dict[str, Any] = {
        "RequestId": f"{rng.getrandbits(32):08X}-{rng.getrandbits(16):04X}-4{index:03X}-"
        f"{rng.getrandbits(16):04X}-{rng.getrandbits(48):012X}",
        "TotalCount": pages * JOBS_PER_PAGE,
        "SynchronizationJobs": [_job(rng, index, slot, now) for slot in range(JOBS_PER_PAGE)],
    }
    if index + 1 < pages:
        body["NextToken"] = page_token(index + 1)
    return json.dumps(body, separators=(",", ":")).encode()


def build_pages(pages: int, *, seed: int = 20211201) -> list[bytes]:
    """All *pages* bodies, chained by NextToken."""
    return [build_page(i, pages, seed=seed) for i in range(pages)]


def _response(body: bytes, request_id: str, *, close: bool = False) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/json;charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"x-acs-request-id: {request_id}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


def _request_id(body: bytes) -> str:
    """The body's RequestId, echoed in ``x-acs-request-id`` as the real service does."""
    match = re.search(rb'"RequestId":"([^"]+)"', body)
    return match.group(1).decode("ascii") if match else "bench"


_TOKEN = re.compile(rb"[?&]NextToken=p(\d{6})(?:[&\s#]|$)")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CONNECTION_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)
_NOT_FOUND_BODY = b'{"Code":"InvalidParameter.NextToken","Message":"unknown NextToken"}'
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(_NOT_FOUND_BODY)}\r\n\r\n".encode()
    + _NOT_FOUND_BODY
)


class _Protocol(asyncio.Protocol):
    """HTTP/1.1 with just enough parsing: head end, Content-Length, NextToken, Connection."""

    def __init__(self, server: PageServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        transport = self._transport
        assert transport is not None
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[: end + 2])
            match = _CONTENT_LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            if len(buffer) < end + 4 + length:
                return  # body still arriving
            body = bytes(buffer[end + 4 : end + 4 + length])
            del buffer[: end + 4 + length]
            close = _CONNECTION_CLOSE.search(head) is not None
            transport.write(self._server.answer(head, body, close=close))
            if close:
                transport.close()
                return


@dataclass
class PageServer:
    """The pre-encoded responses and the request counter; :meth:`answer` is the whole server."""

    pages: int
    seed: int = 20211201

    def __post_init__(self) -> None:
        bodies = build_pages(self.pages, seed=self.seed)
        self.body_bytes = [len(b) for b in bodies]
        ids = [_request_id(b) for b in bodies]
        self._keep_alive = [_response(b, i, close=False) for b, i in zip(bodies, ids, strict=True)]
        self._close = [_response(b, i, close=True) for b, i in zip(bodies, ids, strict=True)]
        self.requests = 0

    def answer(self, head: bytes, body: bytes, *, close: bool) -> bytes:
        """The response to one request: the page its NextToken names (the first without one)."""
        self.requests += 1
        target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
        if target.startswith(b"/__stats"):
            return self._stats(close)
        match = _TOKEN.search(target) or (_TOKEN.search(b"?" + body) if body else None)
        index = int(match.group(1)) if match else 0
        if index >= self.pages:
            return _NOT_FOUND
        return (self._close if close else self._keep_alive)[index]

    def _stats(self, close: bool) -> bytes:
        payload = json.dumps(
            {
                "requests": self.requests - 1,
                "cpu_seconds": time.process_time(),
                "pages": self.pages,
                "body_bytes": self.body_bytes,
            }
        ).encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n".encode()
            + (b"Connection: close\r\n" if close else b"")
            + b"\r\n"
            + payload
        )


async def _serve(server: PageServer, host: str, port: int, out: TextIO) -> None:
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: _Protocol(server), host, port, backlog=512, reuse_address=True
    )
    bound = listener.sockets[0].getsockname()[1]
    print(f"READY {bound} {server.pages} {sum(server.body_bytes)}", file=out, flush=True)
    async with listener:
        await listener.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the server process (``python -m bench.pageserver``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20211201)
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.cpu})
    server = PageServer(args.pages, args.seed)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(server, args.host, args.port, sys.stdout))
    return 0


# -- client side helpers: starting the process and measuring its ceiling --------------------


@dataclass
class ServerProcess:
    """A running page server process; use as a context manager to stop it reliably."""

    process: subprocess.Popen[str]
    port: int
    pages: int
    total_body_bytes: int
    cpu: int | None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server_process(
    pages: int, *, cpu: int | None = None, seed: int = 20211201
) -> ServerProcess:
    """Start ``python -m bench.pageserver`` and wait for its READY line."""
    argv = [sys.executable, "-m", "bench.pageserver", "--pages", str(pages), "--seed", str(seed)]
    if cpu is not None:
        argv += ["--cpu", str(cpu)]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        argv, stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__))
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if len(line) != 4 or line[0] != "READY":
        process.kill()
        raise RuntimeError(f"page server did not start (said {line!r})")
    return ServerProcess(process, int(line[1]), int(line[2]), int(line[3]), cpu)


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, bytes]:
    """Read one Content-Length response from *sock*; return (head, body). Leftovers stay."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = sock.recv(262_144)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    head = bytes(buffer[: end + 2])
    match = _CONTENT_LENGTH.search(head)
    length = int(match.group(1)) if match else 0
    need = end + 4 + length
    while len(buffer) < need:
        chunk = sock.recv(max(262_144, need - len(buffer)))
        if not chunk:
            raise ConnectionError("server closed the connection mid-body")
        buffer += chunk
    body = bytes(buffer[end + 4 : need])
    del buffer[:need]
    return head, body


def _request(target: str) -> bytes:
    return f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode()


def fetch_raw(port: int, targets: Sequence[str]) -> Iterator[bytes]:
    """GET-like raw fetches over one keep-alive connection, yielding bodies (no HTTP library)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        for target in targets:
            sock.sendall(_request(target))
            yield _read_response(sock, buffer)[1]


def server_stats(port: int) -> dict[str, Any]:
    """The server's own counters: requests served and its CPU seconds so far."""
    body = next(fetch_raw(port, ["/__stats"]))
    stats: dict[str, Any] = json.loads(body)
    return stats


def measure_ceiling(port: int, pages: int, *, rounds: int = 2) -> dict[str, Any]:
    """Pages/s the server delivers to a do-nothing raw-socket client, plus its CPU per page.

    The raw client only reads ``Content-Length`` bytes, so the wall figure is the ceiling any
    real client could reach against this server on this machine (server + loopback + a minimal
    reader); ``server_cpu_us_per_page`` is what the server process itself spends per page.
    """
    targets = ["/?InstanceId=x&MaxResults=100"] + [
        f"/?InstanceId=x&MaxResults=100&NextToken={page_token(i)}" for i in range(1, pages)
    ]
    for _ in fetch_raw(port, targets[: min(20, pages)]):  # warm-up
        pass
    before = server_stats(port)
    started = time.perf_counter()
    received = 0
    for _ in range(rounds):
        for body in fetch_raw(port, targets):
            received += len(body)
    elapsed = time.perf_counter() - started
    after = server_stats(port)
    served = rounds * pages
    cpu = after["cpu_seconds"] - before["cpu_seconds"]
    return {
        "pages": served,
        "wall_seconds": elapsed,
        "pages_per_second": served / elapsed,
        "jobs_per_second": served * JOBS_PER_PAGE / elapsed,
        "us_per_page": elapsed / served * 1e6,
        "mb_per_second": received / elapsed / 1e6,
        "server_cpu_us_per_page": cpu / served * 1e6,
        "server_cpu_pages_per_second": served / cpu if cpu > 0 else None,
    }


if __name__ == "__main__":
    raise SystemExit(main())
