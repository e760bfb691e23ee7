"""A small, generic asyncio HTTP/1.1 server on h11: the simulator's API and the exporter's /metrics.

Why not ``http.server`` or an ASGI stack: both the simulator and the daemon need the same few things
— keep-alive, hard limits on what a client may send and how long it may take, TLS with access to
the peer certificate, a graceful stop that lets in-flight requests finish — and the simulator
also needs to *misbehave on purpose* (reset a connection, cut a body short). h11 does the parsing
and framing correctly; this module adds the connection loop around it and nothing else. It knows
nothing about the simulator or about metrics.

A handler is an ``async`` callable taking a :class:`Request` and returning a :class:`Response`,
or returning/raising a transport action: :class:`ResetConnection` (abort with a TCP RST) or
:class:`TruncatedResponse` (announce the full ``Content-Length``, send only part of the body,
close).

>>> import asyncio, socket
>>> async def hello(request: Request) -> Response:
...     return Response.text(f"hello {request.query}\\n")
>>> async def demo() -> bytes:
...     async with HTTPServer(hello, host="127.0.0.1", port=0) as server:
...         reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
...         writer.write(b"GET /?x=1 HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n")
...         data = await reader.read()
...         writer.close()
...         return data.split(b"\\r\\n\\r\\n", 1)[1]
>>> asyncio.run(demo())
b'hello x=1\\n'

What a hostile or careless client can cost, and why it is bounded (every bound is in
:class:`Limits`):

* **Time before a request**: a new connection must send its first byte within
  ``first_byte_timeout`` and its whole head within ``header_timeout`` of being accepted (TLS
  handshake included); on a keep-alive connection the head must be complete ``header_timeout``
  after its first byte. A deadline for the whole head, not per read: a client sending one byte
  every few seconds (slowloris) cannot stretch it.
* **Connections**: at most ``max_connections`` (by default the smaller of what the process's
  descriptor limit leaves after ``reserved_fds`` for the rest of the process, and what a memory
  budget allows per plain or TLS connection). A new connection is never
  refused for being one too many: it *evicts* the connection that has waited longest for its
  request (head or body; then the longest-idle keep-alive connection). Only when every
  connection is busy serving is a newcomer held to the *priority paths* (health checks); any
  other request then gets an immediate 503 and a close, so such newcomers cannot crowd out the
  probes. The accept loop is this module's own: it admits one connection at a time against
  the cap, and when the process runs out of descriptors anyway (``EMFILE``), it pauses
  accepting with a back-off and logs one line, not one traceback per attempt.
* **TLS**: a handshake starts only once the client has sent its first byte (a silent
  connection costs a bare socket, nothing more), and at most ``max_handshakes`` run at once
  (each holds ~300 KB); beyond that, the one that has run longest — a client that started and
  stalled — is dropped for the newcomer, since a handshake that can finish takes milliseconds.
* **Slow readers**: a response must be sent within ``write_timeout``, or the connection is
  aborted (a plain close would keep the socket and its buffers until the client reads). The
  body is written in slices of at most 64 KiB with flow control, straight from the handler's
  buffers (:class:`Chunks`): however many clients read one multi-megabyte snapshot at once,
  each costs one slice of buffer, not a copy.
* **Framing** follows RFC 9112 §6.3: a request with both ``Content-Length`` and
  ``Transfer-Encoding`` is refused with 400 and the connection closed (no request smuggling).
  Error bodies are fixed texts; they never echo what the client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import json
import resource
import socket
import ssl
import struct
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Self, cast

import h11
import structlog

__all__ = [
    "Chunks",
    "ConnectionAction",
    "HTTPServer",
    "Handler",
    "Limits",
    "Request",
    "ResetConnection",
    "Response",
    "TruncatedResponse",
]

_log = structlog.get_logger(__name__)

Buffer = bytes | bytearray | memoryview
_SLICE = 64 * 1024
"""Largest piece of a body handed to the transport at once (and its write high-water mark)."""


@dataclass(slots=True)
class Request:
    """One HTTP request, fully read (head and body) before the handler sees it.

    ``headers`` has lowercase names; a repeated header's values are joined with ``,`` (RFC 9110
    §5.3), the form the V3 signature canonicalises. ``raw_headers`` keeps every line as received.
    ``path`` and ``query`` are the raw, still percent-encoded parts of the request target.
    """

    method: str
    target: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""
    peer: tuple[str, int] | None = None
    raw_headers: list[tuple[str, str]] = field(default_factory=list)
    http_version: str = "1.1"
    tls: bool = False
    peer_certificate: dict[str, Any] | None = None
    """The verified client certificate as ``ssl.SSLSocket.getpeercert()`` returns it (mTLS)."""
    peer_certificate_der: bytes | None = None

    @property
    def peer_host(self) -> str | None:
        """The peer's IP address, or ``None`` for a non-IP transport."""
        return self.peer[0] if self.peer else None


@dataclass(frozen=True, slots=True)
class Chunks:
    """A response body the server writes piece by piece, without joining or copying it.

    ``Chunks.of(prefix, snapshot_bytes, suffix)`` serves immutable buffers as they are, whatever
    the number of concurrent readers; ``Chunks(length, generate)`` produces the body on the fly
    (``generate`` is called once per response and must yield exactly *length* bytes in all).

    >>> body = Chunks.of(b"ab", memoryview(b"cde"))
    >>> body.length, b"".join(body.pieces())
    (5, b'abcde')
    """

    length: int
    pieces: Callable[[], Iterator[Buffer]]

    @classmethod
    def of(cls, *parts: Buffer) -> Chunks:
        return cls(sum(memoryview(part).nbytes for part in parts), lambda: iter(parts))


@dataclass(slots=True)
class Response:
    """A complete response. ``Content-Length`` (and ``Date``) are added by the server.

    Responses are plain values: a handler may return the same pre-rendered instance to every
    request, which is how a metrics endpoint serves a snapshot without re-encoding it.
    """

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes | Chunks = b""

    @property
    def length(self) -> int:
        return self.body.length if isinstance(self.body, Chunks) else len(self.body)

    @classmethod
    def text(
        cls,
        text: str,
        status: int = 200,
        *,
        content_type: str = "text/plain; charset=utf-8",
        headers: Iterable[tuple[str, str]] = (),
    ) -> Response:
        """A UTF-8 text response."""
        return cls(status, [("content-type", content_type), *headers], text.encode())

    @classmethod
    def json(
        cls,
        payload: Any,
        status: int = 200,
        *,
        headers: Iterable[tuple[str, str]] = (),
        content_type: str = "application/json; charset=utf-8",
    ) -> Response:
        """A compact JSON response (``ensure_ascii``: safe for any client decoder)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, [("content-type", content_type), *headers], body)


class ConnectionAction(Exception):
    """Base of transport-level actions a handler may return or raise instead of a response."""


class ResetConnection(ConnectionAction):
    """Abort the connection with a TCP RST (``SO_LINGER`` 0, then close); nothing is sent.

    The client sees ``ECONNRESET`` while waiting for the response — the failure mode of a
    load balancer killing a connection, which retries must survive.
    """


class TruncatedResponse(ConnectionAction):
    """Send *response*'s head with its full ``Content-Length``, then ``keep_bytes`` of the body,
    then close the connection (FIN). The client sees an incomplete body."""

    def __init__(self, response: Response, keep_bytes: int) -> None:
        super().__init__(f"truncate to {keep_bytes} bytes")
        if not isinstance(response.body, bytes):
            raise TypeError("TruncatedResponse needs a bytes body")
        self.response = response
        self.keep_bytes = max(0, min(keep_bytes, len(response.body) - 1))


Handler = Callable[[Request], Awaitable[Response | ConnectionAction]]
"""``async def handler(request) -> Response`` (or a :class:`ConnectionAction`)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What a client may cost the server. Exceeding a limit closes the connection.

    - ``max_header_bytes``: request line plus headers (431 beyond it).
    - ``max_body_bytes``: declared or streamed body size (413 beyond it).
    - ``first_byte_timeout``: seconds from accepting a connection to its first byte.
    - ``header_timeout``: seconds for a whole request head — from accepting the connection (TLS
      handshake included) for its first request, from the head's first byte for the next ones
      (408 if part of a head arrived, a silent close otherwise).
    - ``body_timeout``: seconds for the whole request body (408 beyond it).
    - ``keep_alive_timeout``: seconds an idle keep-alive connection is kept open.
    - ``write_timeout``: seconds to send a whole response; a reader slower than that is cut off.
    - ``handshake_timeout``: seconds for one TLS handshake, once it has started.
    - ``max_handshakes``: TLS handshakes in progress at once; a new one replaces the oldest.
    - ``max_connections``: open connections; ``None`` derives it from two budgets, whichever is
      smaller: the descriptor limit (``RLIMIT_NOFILE`` minus ``reserved_fds``, what the rest of
      the process needs: API connections, files) and memory (``memory_budget_bytes`` divided
      by what one connection may hold: ``plain_connection_bytes``, or
      ``tls_connection_bytes`` with TLS, whose every connection keeps a 256 KiB buffer).
    - ``priority_headroom``: connections beyond the cap admitted when no connection can be
      evicted; they are served only for the server's priority paths (health checks).
    - ``send_buffer_bytes``: ``SO_SNDBUF`` of every connection (``None``: the kernel's
      auto-tuning); bounds the kernel memory a reader that never reads can hold.
    """

    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024
    first_byte_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 75.0
    write_timeout: float = 30.0
    handshake_timeout: float = 5.0
    max_handshakes: int = 32
    max_connections: int | None = None
    reserved_fds: int = 128
    memory_budget_bytes: int = 128 * 1024 * 1024
    plain_connection_bytes: int = 64 * 1024
    tls_connection_bytes: int = 384 * 1024
    priority_headroom: int = 16
    send_buffer_bytes: int | None = None

    def connection_cap(self, tls: bool = False) -> int:
        """``max_connections``, or the smaller of what the descriptor limit leaves after the
        reserve and what the memory budget allows.

        >>> Limits(max_connections=7).connection_cap()
        7
        >>> Limits(memory_budget_bytes=64 * 384 * 1024).connection_cap(tls=True)
        64
        """
        if self.max_connections is not None:
            return self.max_connections
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            soft = 1 << 20
        by_fds = soft - self.reserved_fds - self.priority_headroom
        each = self.tls_connection_bytes if tls else self.plain_connection_bytes
        return max(16, min(by_fds, self.memory_budget_bytes // each))


_REASONS: dict[int, bytes] = {
    200: b"OK",
    204: b"No Content",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    413: b"Content Too Large",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}

_ERROR_TEXT: dict[int, str] = {
    400: "bad request",
    408: "request timeout",
    413: "request body too large",
    414: "request target too long",
    431: "request header fields too large",
    501: "not implemented",
    503: "service unavailable: too many connections",
}
"""The only bodies of the server's own error responses: fixed texts, never the client's bytes."""

_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "date", "connection"})
"""Headers the server sets itself; a handler's values for them are ignored."""

_BACKLOG = 512
"""Connections the kernel queues before the accept loop takes them."""
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _DateHeader:
    """The ``Date`` header value, formatted at most once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = email.utils.formatdate(now, usegmt=True).encode()
        return self._value


class _Wire(asyncio.Protocol):
    """One connection's transport, as two awaitables: :meth:`read` and :meth:`drain`.

    Why not asyncio streams: the TLS upgrade of an accepted socket (``loop.start_tls``) needs
    the protocol object, and streams hide it behind private methods; and the server wants its
    own flow control (reading pauses when ``limit`` bytes are waiting, writing stops at a
    64 KiB buffer).
    """

    def __init__(self, limit: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.tls = False
        self._limit = limit
        self._inbox: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._lost = False
        self._reading_paused = False
        self._data_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._writing_paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_SLICE)

    def data_received(self, data: bytes) -> None:
        self._inbox.append(data)
        self._buffered += len(data)
        if self._buffered > self._limit and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return not self.tls  # keep a half-closed plain connection open to send the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        self._wake_reader()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- for the connection loop -----------------------------------------------------------

    def _wake_reader(self) -> None:
        waiter, self._data_waiter = self._data_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        """The next bytes received, or ``b""`` at end of stream."""
        while not self._inbox:
            if self._eof:
                return b""
            self._data_waiter = asyncio.get_running_loop().create_future()
            await self._data_waiter
        data = self._inbox.popleft()
        self._buffered -= len(data)
        if self._reading_paused and self._buffered <= self._limit // 2 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def write(self, data: Buffer) -> None:
        if self.transport is not None and not self._lost:
            self.transport.write(data)

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("connection lost")
        if self._writing_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter

    async def flush(self) -> None:
        """Wait until the transport's buffer is empty (everything handed to the kernel)."""
        transport = self.transport
        if transport is None or not transport.get_write_buffer_size():
            return await self.drain()
        transport.set_write_buffer_limits(high=0, low=0)  # pauses writing until it is empty
        try:
            await self.drain()
        finally:
            if not self._lost:
                transport.set_write_buffer_limits(high=_SLICE)

    @property
    def unsent(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport else 0

    def abort(self, reset: bool = True) -> None:
        """Drop the connection now (RST with *reset*), whatever is still buffered."""
        transport = self.transport
        if transport is None:
            return
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def close(self) -> None:
        """Close after the buffered bytes are sent, or abort if the peer is not reading them."""
        if self.transport is None:
            return
        if self.unsent:
            self.abort()
        else:
            self.transport.close()


class _Phase:
    WAITING = "waiting"  # accepted or between requests with part of a head: evicted first
    IDLE = "idle"  # keep-alive, no byte of the next request yet: evicted next
    BUSY = "busy"  # a request is being read, handled or answered: never evicted


class _Conn:
    """Bookkeeping of one connection, for admission, eviction and graceful stop."""

    __slots__ = (
        "accepted",
        "handed_over",
        "phase",
        "priority_only",
        "sock",
        "task",
        "watching",
        "wire",
    )

    def __init__(self, wire: _Wire, sock: socket.socket, accepted: float) -> None:
        self.wire = wire
        self.sock = sock
        self.accepted = accepted
        self.phase = _Phase.WAITING
        self.priority_only = False
        self.watching = False  # the loop watches the bare socket for its first byte
        self.handed_over = False  # asyncio owns the socket (a transport is being made)
        self.task: asyncio.Task[None] | None = None


class _Timeout(Exception):
    """A deadline of :class:`Limits` passed; ``status`` is the answer (None: close silently)."""

    def __init__(self, status: int | None) -> None:
        super().__init__(status)
        self.status = status


class _Refuse(Exception):
    """Answer with ``status`` (a fixed text) and close."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Idle(Exception):
    """Raised internally when an idle connection should simply be closed."""


class HTTPServer:
    """Serve *handler* over HTTP/1.1 (optionally TLS) on ``host:port``.

    ``port=0`` binds an ephemeral port, readable as :attr:`port` once started. Use as an async
    context manager, or call :meth:`start` and :meth:`stop`. :attr:`ssl_context` may be
    replaced while serving (certificate rotation): new connections use the new context.

    Graceful stop: the listening socket closes first, idle and waiting connections are closed
    at once, requests in flight get up to ``grace`` seconds to complete (their responses carry
    ``Connection: close``), and whatever is left after that is cancelled.

    :attr:`stats` counts what happened to connections (``accepted``, ``evicted``,
    ``head_timeout``, ``write_timeout``, ``refused``, ``accept_paused``…), for the operator.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits | None = None,
        priority_paths: Iterable[str] = (),
    ) -> None:
        self._handler = handler
        self.host = host
        self.port = port
        self._ssl_context = ssl_context
        self.limits = limits or Limits()
        self._priority = frozenset(priority_paths)
        self._sockets: list[socket.socket] = []
        self._conns: dict[_Conn, None] = {}
        self._waiting: dict[_Conn, float] = {}  # insertion order: the oldest first
        self._idle: dict[_Conn, float] = {}
        self._cap = 0
        self._handshaking: dict[_Conn, None] = {}  # insertion order: the oldest first
        self._closing = False
        self._date = _DateHeader()
        self._paused_at: float | None = None
        self._pause_delay = 0.0
        self._pause_logged: float | None = None
        self.requests_served = 0
        self.handshakes_in_progress = 0
        self.max_handshakes_seen = 0
        self.stats: Counter[str] = Counter()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl_context

    @ssl_context.setter
    def ssl_context(self, context: ssl.SSLContext | None) -> None:
        """A new context (certificate rotation, TLS switched on or off) serves new connections;
        the cap follows, since a TLS connection holds more memory."""
        self._ssl_context = context
        if self._sockets:
            self._cap = self._connection_cap()

    def _connection_cap(self) -> int:
        return self.limits.connection_cap(tls=self._ssl_context is not None)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        """``scheme://host:port`` of the listening socket (IPv6 hosts in brackets)."""
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def is_serving(self) -> bool:
        return bool(self._sockets) and not self._closing

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    @property
    def connection_cap(self) -> int:
        """The cap in force (see :meth:`Limits.connection_cap`), known once started."""
        return self._cap

    async def start(self) -> None:
        """Bind and start accepting. With ``port=0`` and a host name resolving to several
        addresses, only the first address is bound (each would otherwise get its own port)."""
        if self._sockets:
            raise RuntimeError("server already started")
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        seen: set[tuple[Any, ...]] = set()
        try:
            for family, kind, proto, _name, address in infos:
                if address in seen:
                    continue
                seen.add(address)
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(_BACKLOG)
                sock.setblocking(False)
                if self.port == 0:
                    break
        except OSError:
            for sock in self._sockets:
                sock.close()
            self._sockets = []
            raise
        name = self._sockets[0].getsockname()
        self.host = str(name[0])
        self.port = int(name[1])
        self._closing = False
        self._cap = self._connection_cap()
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._accept_ready, sock)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, close idle connections, let in-flight requests finish, then cancel."""
        if not self._sockets:
            return
        self._closing = True
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            with contextlib.suppress(Exception):
                loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []
        for conn in list(self._conns):
            if conn.phase != _Phase.BUSY and conn.task is not None:
                conn.task.cancel()
        pending = [c.task for c in self._conns if c.task is not None]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)

    async def serve_forever(self) -> None:
        """Start (if needed) and serve until cancelled; stops gracefully on cancellation."""
        if not self._sockets:
            await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- accepting and admission -----------------------------------------------------------

    def _accept_ready(self, listener: socket.socket) -> None:
        for _ in range(64):  # then let the other callbacks of this loop iteration run
            try:
                sock, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    self._pause_accepting(exc)
                    return
                continue  # ECONNABORTED and friends: that client is gone, the next may not be
            if self._paused_at is not None:
                self._resume_logged()
            self._admit(sock)

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors: stop watching the listening sockets for a while (0.1 s doubling
        to 2 s while it lasts), log one line per minute at most, never a traceback."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        self.stats["accept_paused"] += 1
        if self._paused_at is None:
            self._paused_at = now
        self._pause_delay = min(2.0, max(0.1, self._pause_delay * 2))
        if self._pause_logged is None or now - self._pause_logged >= 60:
            self._pause_logged = now
            _log.error(
                "accepting connections paused: the process is out of file descriptors; raise "
                "the descriptor limit (ulimit -n, LimitNOFILE=) or lower the load",
                error=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                connections=len(self._conns),
                connection_cap=self._cap,
                retry_in_seconds=self._pause_delay,
            )
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())

        def resume() -> None:
            if not self._closing:
                for sock in self._sockets:
                    loop.add_reader(sock.fileno(), self._accept_ready, sock)

        loop.call_later(self._pause_delay, resume)

    def _resume_logged(self) -> None:
        assert self._paused_at is not None
        paused_for = time.monotonic() - self._paused_at
        self._paused_at = None
        self._pause_delay = 0.0
        if paused_for >= 1.0:
            _log.warning("accepting connections again", paused_seconds=round(paused_for, 1))

    def _admit(self, sock: socket.socket) -> None:
        """Make room for *sock* under the cap, then serve it in a task of its own."""
        self.stats["accepted"] += 1
        if self._closing:
            sock.close()
            return
        full = len(self._conns) >= self._cap
        if (
            full
            and not self._evict_one()
            and len(self._conns) >= self._cap + self.limits.priority_headroom
        ):
            self.stats["refused"] += 1
            _close_with_reset(sock)
            return
        # nothing (or not enough) could be evicted: health checks only
        priority_only = len(self._conns) >= self._cap
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.limits.send_buffer_bytes is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.limits.send_buffer_bytes)
        conn = _Conn(_Wire(max(65536, self.limits.max_header_bytes)), sock, time.monotonic())
        conn.priority_only = priority_only
        self._conns[conn] = None
        self._waiting[conn] = conn.accepted
        conn.task = asyncio.get_running_loop().create_task(self._connection(conn))
        # Runs even for a task cancelled before it started (evicted in the same accept batch,
        # or at stop): the bookkeeping and the bare socket are never left to the GC.
        conn.task.add_done_callback(lambda _task: self._finished(conn))

    def _evict_one(self) -> bool:
        """Close the connection that waited longest for a request head, else the one idle the
        longest; False when every connection is busy."""
        for pool, reason in ((self._waiting, "evicted_waiting"), (self._idle, "evicted_idle")):
            if pool:
                victim = next(iter(pool))
                self.stats[reason] += 1
                self._drop(victim, reset=pool is self._waiting)
                return True
        return False

    def _drop(self, conn: _Conn, *, reset: bool) -> None:
        """Close *conn* now, freeing its descriptor before the next accept where possible."""
        self._forget(conn)
        self._handshaking.pop(conn, None)
        if conn.wire.transport is not None:
            conn.wire.abort(reset=reset)
        elif not conn.handed_over:  # a bare socket (waiting for its first byte, or not started)
            self._unwatch(conn)
            _close_with_reset(conn.sock)
        # (a socket inside a TLS handshake belongs to asyncio: the cancellation closes it)
        if conn.task is not None:
            conn.task.cancel()

    def _finished(self, conn: _Conn) -> None:
        self._forget(conn)
        self._handshaking.pop(conn, None)
        self._unwatch(conn)
        if not conn.handed_over and conn.sock.fileno() >= 0:
            _close_with_reset(conn.sock)

    def _unwatch(self, conn: _Conn) -> None:
        if conn.watching:
            conn.watching = False
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(conn.sock.fileno())

    def _forget(self, conn: _Conn) -> None:
        self._conns.pop(conn, None)
        self._waiting.pop(conn, None)
        self._idle.pop(conn, None)

    def _enter(self, conn: _Conn, phase: str) -> None:
        if conn not in self._conns or conn.phase == phase:
            return
        self._waiting.pop(conn, None)
        self._idle.pop(conn, None)
        conn.phase = phase
        if phase == _Phase.WAITING:
            self._waiting[conn] = time.monotonic()
        elif phase == _Phase.IDLE:
            self._idle[conn] = time.monotonic()

    # -- one connection --------------------------------------------------------------------

    async def _connection(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        wire = conn.wire
        try:
            # Nothing but the bare socket until the client sends something: a silent
            # connection costs no transport, no buffers and no TLS state.
            await self._first_byte(conn)
            context = self.ssl_context
            if context is None:
                conn.handed_over = True
                await loop.connect_accepted_socket(lambda: wire, conn.sock)
            else:
                await self._handshake(conn, context)
            await self._serve(conn)
        except asyncio.CancelledError:
            pass
        except _Timeout as timeout:
            self.stats["head_timeout" if timeout.status != 408 else "request_timeout"] += 1
        except (ConnectionError, ssl.SSLError, OSError, _Idle, h11.ProtocolError):
            pass
        except Exception:  # a bug here must not kill the server, only this connection
            _log.exception("http connection failed")
        finally:
            if wire.transport is not None:
                wire.close()
            # the rest (bookkeeping, a bare socket) is done by _finished, the task's callback

    async def _first_byte(self, conn: _Conn) -> None:
        """Wait until the bare socket is readable, at most ``first_byte_timeout`` after the
        connection was accepted."""
        loop = asyncio.get_running_loop()
        readable = loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(conn.sock.fileno(), ready)
        conn.watching = True
        limits = self.limits
        deadline = conn.accepted + min(limits.first_byte_timeout, limits.header_timeout)
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                await readable
        except TimeoutError:
            raise _Timeout(None) from None
        finally:
            self._unwatch(conn)

    async def _handshake(self, conn: _Conn, context: ssl.SSLContext) -> None:
        """TLS on the accepted socket, at most ``max_handshakes`` at a time, within the head
        deadline of the connection. When every slot is taken, the handshake that has run
        longest (a client that started and stalled) gives its slot to the newcomer: a
        handshake that can be completed takes milliseconds, so stalled ones cannot starve it.
        """
        limits = self.limits
        loop = asyncio.get_running_loop()
        if len(self._handshaking) >= limits.max_handshakes:
            self.stats["evicted_handshake"] += 1
            self._drop(next(iter(self._handshaking)), reset=True)
        self._handshaking[conn] = None
        self.handshakes_in_progress = len(self._handshaking)
        self.max_handshakes_seen = max(self.max_handshakes_seen, self.handshakes_in_progress)
        conn.wire.tls = True
        conn.handed_over = True
        try:
            async with asyncio.timeout_at(_loop_time(conn.accepted + limits.header_timeout)):
                await loop.connect_accepted_socket(
                    lambda: conn.wire,
                    conn.sock,
                    ssl=context,
                    ssl_handshake_timeout=limits.handshake_timeout,
                    ssl_shutdown_timeout=1.0,
                )
        except TimeoutError:
            raise _Timeout(None) from None
        finally:
            self._handshaking.pop(conn, None)
            self.handshakes_in_progress = len(self._handshaking)

    async def _serve(self, conn: _Conn) -> None:
        wire = conn.wire
        limits = self.limits
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        peer = _peer(wire.transport)
        tls_info = _tls_info(wire.transport) if wire.tls else (None, None)
        served = 0
        while True:
            # ---- request head ----
            try:
                event = await self._next_head(h, conn, first=served == 0)
            except _Idle:
                return
            except _Timeout as timeout:
                if timeout.status is not None:
                    self.stats["head_timeout"] += 1
                    await self._send_error(h, wire, timeout.status)
                    return
                raise
            except h11.RemoteProtocolError as exc:
                self.stats["bad_request"] += 1
                await self._send_error(h, wire, exc.error_status_hint)  # 400, or 431 for size
                return
            if event is None:  # connection closed by the client
                return
            # Still "waiting" (evictable) while the body arrives: a client that announces a
            # body and trickles it must not pin a slot that only serving should hold.
            try:
                request = self._check_head(event, peer, tls_info, wire)
                if conn.priority_only and request.path not in self._priority:
                    self.stats["refused"] += 1
                    await self._send_error(h, wire, 503, linger=False)
                    return
                request.body = await self._read_body(h, wire, request)
            except _Refuse as refuse:
                self.stats["bad_request"] += 1
                await self._send_error(h, wire, refuse.status)
                return
            except _Timeout:
                self.stats["request_timeout"] += 1
                await self._send_error(h, wire, 408)
                return
            except h11.RemoteProtocolError as exc:
                self.stats["bad_request"] += 1
                await self._send_error(h, wire, exc.error_status_hint)
                return
            # ---- handler ----
            self._enter(conn, _Phase.BUSY)
            served += 1
            last = self._closing or conn.priority_only
            try:
                result = await self._handler(request)
            except ConnectionAction as action:
                result = action
            except Exception:
                _log.exception("http handler failed", method=request.method, path=request.path)
                result = Response.text("internal server error\n", 500)
            self.requests_served += 1
            if isinstance(result, ResetConnection):
                wire.abort()
                return
            if isinstance(result, TruncatedResponse):
                await self._send_truncated(h, wire, result)
                return
            if not isinstance(result, Response):
                _log.error("http handler returned a non-response", type=type(result).__name__)
                result = Response.text("internal server error\n", 500)
            try:
                async with asyncio.timeout(limits.write_timeout):
                    await self._send(h, wire, result, last or self._closing, request.method)
            except TimeoutError:
                self.stats["write_timeout"] += 1
                wire.abort()
                return
            if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                return
            try:
                h.start_next_cycle()
            except h11.LocalProtocolError:
                return
            self._enter(conn, _Phase.IDLE)

    async def _next_head(
        self, h: h11.Connection, conn: _Conn, *, first: bool
    ) -> h11.Request | None:
        """The next request head, within its deadlines (see :class:`Limits`)."""
        limits = self.limits
        wire = conn.wire
        if first:
            # the first byte already came (``_first_byte``; for TLS, the ClientHello): what
            # is left is the head deadline, counted from the accept
            started = conn.accepted
            head_deadline = deadline = started + limits.header_timeout
        else:
            started = None
            deadline = time.monotonic() + limits.keep_alive_timeout
            head_deadline = 0.0
        received = bool(h.trailing_data[0])
        if received and not first:
            self._enter(conn, _Phase.WAITING)
            head_deadline = time.monotonic() + limits.header_timeout
        if received:
            deadline = head_deadline
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                if self._closing and not received:
                    raise _Idle
                try:
                    async with asyncio.timeout_at(_loop_time(deadline)):
                        data = await wire.read()
                except TimeoutError:
                    if not received:
                        if started is None:
                            raise _Idle from None  # keep-alive expired: a silent close
                        raise _Timeout(None) from None
                    raise _Timeout(408) from None
                if data and not received:
                    received = True
                    if not first:
                        self._enter(conn, _Phase.WAITING)
                        head_deadline = time.monotonic() + limits.header_timeout
                    deadline = head_deadline
                h.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                return event
            # ConnectionClosed, PAUSED, or stray data before a request: nothing to serve
            return None

    def _check_head(
        self,
        event: h11.Request,
        peer: tuple[str, int] | None,
        tls_info: tuple[dict[str, Any] | None, bytes | None],
        wire: _Wire,
    ) -> Request:
        """Framing and size rules h11 does not enforce itself (RFC 9112 §6.3)."""
        limits = self.limits
        # h11 bounds only an *incomplete* head; a complete one that arrived in one read is
        # measured here so the limit holds however the bytes were chunked.
        head_size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
        if head_size > limits.max_header_bytes:
            raise _Refuse(431)
        names = [name for name, _value in event.headers]
        if b"transfer-encoding" in names and b"content-length" in names:
            raise _Refuse(400)  # a smuggling attempt or a broken proxy: never guess
        request = _make_request(event, peer, wire.tls, tls_info)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise _Refuse(413)
        return request

    async def _read_body(self, h: h11.Connection, wire: _Wire, request: Request) -> bytes:
        if h.they_are_waiting_for_100_continue:
            wire.write(h.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        chunks: list[bytes] = []
        size = 0
        limit = self.limits.max_body_bytes
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while True:
                    event = h.next_event()
                    if event is h11.NEED_DATA:
                        h.receive_data(await wire.read())
                        continue
                    if isinstance(event, h11.Data):
                        size += len(event.data)
                        if size > limit:
                            raise _Refuse(413)
                        chunks.append(bytes(event.data))
                        continue
                    if isinstance(event, h11.EndOfMessage):
                        return b"".join(chunks) if len(chunks) != 1 else chunks[0]
                    if isinstance(event, h11.ConnectionClosed):
                        raise ConnectionResetError("client closed the connection mid-request")
                    raise h11.RemoteProtocolError("unexpected event while reading body", 400)
        except TimeoutError:
            raise _Timeout(408) from None

    def _head(self, response: Response, close: bool) -> h11.Response:
        headers: list[tuple[bytes, bytes]] = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers
            if name.lower() not in _FRAMING_HEADERS
        ]
        if response.status not in (204, 304) and response.status >= 200:
            headers.append((b"content-length", str(response.length).encode()))
        headers.append((b"date", self._date.get()))
        if close:
            headers.append((b"connection", b"close"))
        return h11.Response(
            status_code=response.status,
            headers=headers,
            reason=_REASONS.get(response.status, b""),
        )

    async def _send(
        self, h: h11.Connection, wire: _Wire, response: Response, close: bool, method: str
    ) -> None:
        """Head, then the body in slices of at most 64 KiB, each written when the transport's
        buffer has drained: memory per connection stays one slice, whatever the body size."""
        wire.write(h.send(self._head(response, close)) or b"")
        body = response.body
        if method != "HEAD" and response.length:
            pieces: Iterable[Buffer] = body.pieces() if isinstance(body, Chunks) else (body,)
            for piece in pieces:
                view = memoryview(piece).cast("B")  # bytes, whatever the buffer's item type
                for start in range(0, len(view), _SLICE):
                    # h11 only counts the slice against Content-Length and hands it back
                    piece_slice = cast(bytes, view[start : start + _SLICE])
                    for data in h.send_with_data_passthrough(h11.Data(data=piece_slice)) or ():
                        wire.write(data)
                    await wire.drain()
        # HEAD: h11 knows that no body follows the true Content-Length
        wire.write(h.send(h11.EndOfMessage()) or b"")
        # Everything handed to the kernel before the connection counts as idle (evictable) or
        # is closed: what is left in the transport's buffer would otherwise be cut off.
        await wire.flush()

    async def _send_truncated(
        self, h: h11.Connection, wire: _Wire, action: TruncatedResponse
    ) -> None:
        head = h.send(self._head(action.response, close=True)) or b""
        assert isinstance(action.response.body, bytes)
        wire.write(head + action.response.body[: action.keep_bytes])
        async with asyncio.timeout(self.limits.write_timeout):
            await wire.drain()
        # A FIN, not a RST: the client must see a short body, not a reset.
        if wire.transport is not None and wire.transport.can_write_eof():
            wire.transport.write_eof()

    async def _send_error(
        self, h: h11.Connection, wire: _Wire, status: int, *, linger: bool = True
    ) -> None:
        """Best-effort error response with a fixed text, then a lingering close.

        Closing a socket with unread input makes the kernel send a RST, which can destroy the
        error response before the client reads it; so the write side is shut first and the
        client's remaining bytes are read and discarded for a moment (at most 1 s, 1 MiB).
        Without *linger* (a refusal while the server is full) the connection is closed at once.
        """
        if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        text = _ERROR_TEXT.get(status, "bad request")
        with contextlib.suppress(Exception):
            response = Response.text(text + "\n", status)
            assert isinstance(response.body, bytes)
            data = h.send(self._head(response, close=True)) or b""
            data += h.send(h11.Data(data=response.body)) or b""
            data += h.send(h11.EndOfMessage()) or b""
            wire.write(data)
            async with asyncio.timeout(min(5.0, self.limits.write_timeout)):
                await wire.flush()
            if wire.transport is not None and wire.transport.can_write_eof():
                wire.transport.write_eof()
            if not linger:
                return
            async with asyncio.timeout(1.0):
                discarded = 0
                while discarded < 1024 * 1024:
                    chunk = await wire.read()
                    if not chunk:
                        break
                    discarded += len(chunk)


def _loop_time(monotonic_moment: float) -> float:
    """A ``time.monotonic()`` moment on the running loop's clock (for ``timeout_at``)."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_moment - time.monotonic())


def _close_with_reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _peer(transport: asyncio.BaseTransport | None) -> tuple[str, int] | None:
    info = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(info, tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def _tls_info(
    transport: asyncio.BaseTransport | None,
) -> tuple[dict[str, Any] | None, bytes | None]:
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None, None
    try:
        cert = ssl_object.getpeercert()
        der = ssl_object.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):
        return None, None
    return (cert or None), der


def _make_request(
    event: h11.Request,
    peer: tuple[str, int] | None,
    tls: bool,
    tls_info: tuple[dict[str, Any] | None, bytes | None],
) -> Request:
    target = event.target.decode("latin-1")
    path, _, query = target.partition("?")
    raw = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
    headers: dict[str, str] = {}
    for name, value in raw:
        if name in headers:
            headers[name] = f"{headers[name]},{value}"
        else:
            headers[name] = value
    return Request(
        method=event.method.decode("ascii"),
        target=target,
        path=path,
        query=query,
        headers=headers,
        peer=peer,
        raw_headers=raw,
        http_version=event.http_version.decode("ascii"),
        tls=tls,
        peer_certificate=tls_info[0],
        peer_certificate_der=tls_info[1],
    )
