"""A small, generic asyncio HTTP/1.1 server on h11: the simulator's API and the exporter's /metrics.

Why not ``http.server`` or an ASGI stack: both the simulator and the daemon need the same few things
— keep-alive, hard limits on what a client may send, a read timeout per connection, TLS with
access to the peer certificate, a graceful stop that lets in-flight requests finish — and the
simulator also needs to *misbehave on purpose* (reset a connection, cut a body short). h11 does the
parsing and framing correctly; this module adds the connection loop around it and nothing else. It
knows nothing about the simulator or about metrics.

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

Serving pre-rendered bytes costs tens of microseconds per request (see ``bench/``): the response
body is handed to the transport without copying and the ``Date`` header is cached per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import h11
import structlog

__all__ = [
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


@dataclass(slots=True)
class Response:
    """A complete response. ``Content-Length`` (and ``Date``) are added by the server.

    Responses are plain values: a handler may return the same pre-rendered instance to every
    request, which is how a metrics endpoint serves a snapshot without re-encoding it.
    """

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""

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
        self.response = response
        self.keep_bytes = max(0, min(keep_bytes, len(response.body) - 1))


Handler = Callable[[Request], Awaitable[Response | ConnectionAction]]
"""``async def handler(request) -> Response`` (or a :class:`ConnectionAction`)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What a client may cost the server. Exceeding one closes the connection after an error.

    - ``max_header_bytes``: request line plus headers (431 beyond it).
    - ``max_body_bytes``: declared or streamed body size (413 beyond it).
    - ``read_timeout``: seconds to wait for each chunk while a request is being received, and
      for the TLS handshake (408 if a request was started, silent close otherwise).
    - ``keep_alive_timeout``: seconds an idle keep-alive connection is kept open.
    - ``write_timeout``: seconds a response may take to drain to a slow reader.
    - ``max_connections``: concurrent connections; extra ones get 503 and are closed.
    - ``max_requests_per_connection``: ``None`` for unlimited.
    """

    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024
    read_timeout: float = 10.0
    keep_alive_timeout: float = 75.0
    write_timeout: float = 30.0
    max_connections: int = 1024
    max_requests_per_connection: int | None = None


class _Idle(Exception):
    """Raised internally when an idle connection should simply be closed."""


_REASONS: dict[int, bytes] = {
    200: b"OK",
    204: b"No Content",
    400: b"Bad Request",
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


_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "date", "connection"})
"""Headers the server sets itself; a handler's values for them are ignored."""


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


class _Conn:
    """State of one client connection, visible to the server for graceful shutdown."""

    __slots__ = ("busy", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.busy = False


class HTTPServer:
    """Serve *handler* over HTTP/1.1 (optionally TLS) on ``host:port``.

    ``port=0`` binds an ephemeral port, readable as :attr:`port` once started. Use as an async
    context manager, or call :meth:`start` and :meth:`stop`.

    Graceful stop: the listening socket closes first, idle keep-alive connections are closed at
    once, requests in flight get up to ``grace`` seconds to complete (their responses carry
    ``Connection: close``), and whatever is left after that is cancelled.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits | None = None,
        server_header: str | None = None,
        backlog: int = 512,
    ) -> None:
        self._handler = handler
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self.limits = limits or Limits()
        self._server_header = server_header.encode() if server_header else None
        self._backlog = backlog
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], _Conn] = {}
        self._closing = False
        self._date = _DateHeader()
        self.requests_served = 0

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self._ssl is not None else "http"

    @property
    def url(self) -> str:
        """``scheme://host:port`` of the listening socket (IPv6 hosts in brackets)."""
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def is_serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    async def start(self) -> None:
        """Bind and start accepting. With ``port=0`` and a host name resolving to several
        addresses, only the first address is bound (each would otherwise get its own port)."""
        if self._server is not None:
            raise RuntimeError("server already started")
        host: str | None = self.host or None
        if self.port == 0 and host is not None:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            if infos:
                host = str(infos[0][4][0])
        self._server = await asyncio.start_server(
            self._accept,
            host=host,
            port=self.port,
            ssl=self._ssl,
            ssl_handshake_timeout=self.limits.read_timeout if self._ssl else None,
            backlog=self._backlog,
            reuse_address=True,
            limit=max(65536, self.limits.max_header_bytes),
        )
        sockname = self._server.sockets[0].getsockname()
        self.host = str(sockname[0])
        self.port = int(sockname[1])

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, close idle connections, let in-flight requests finish, then cancel."""
        if self._server is None:
            return
        self._closing = True
        self._server.close()
        for task, conn in list(self._conns.items()):
            if not conn.busy:
                task.cancel()
        pending = list(self._conns)
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
        self._server = None

    async def serve_forever(self) -> None:
        """Start (if needed) and serve until cancelled; stops gracefully on cancellation."""
        if self._server is None:
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

    # -- connections -----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = _Conn(reader, writer)
        self._conns[task] = conn
        try:
            if self._closing:
                return
            if len(self._conns) > self.limits.max_connections:
                await self._send_simple(
                    h11.Connection(h11.SERVER), reader, writer, 503, "too many connections"
                )
                return
            await self._serve(conn)
        except asyncio.CancelledError:
            pass
        except (ConnectionError, ssl.SSLError, OSError, _Idle):
            pass
        except Exception:  # a bug here must not kill the server, only this connection
            _log.exception("http connection failed")
        finally:
            del self._conns[task]
            with contextlib.suppress(Exception):
                writer.close()

    async def _read(self, reader: asyncio.StreamReader, seconds: float) -> bytes:
        async with asyncio.timeout(seconds):
            return await reader.read(65536)

    async def _serve(self, conn: _Conn) -> None:
        reader, writer = conn.reader, conn.writer
        limits = self.limits
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        peer = _peer(writer)
        tls_info = _tls_info(writer) if self._ssl is not None else (None, None)
        served = 0
        while True:
            # ---- request head (idle until the first byte arrives) ----
            conn.busy = False
            try:
                event = await self._next_head(h, reader, conn)
            except _Idle:
                return
            except TimeoutError:
                if h.their_state is h11.SEND_BODY or h.trailing_data[0]:
                    await self._send_simple(h, reader, writer, 408, "request timeout")
                return
            except h11.RemoteProtocolError as exc:
                status = 431 if "incomplete event" in str(exc) else exc.error_status_hint
                await self._send_simple(h, reader, writer, status, str(exc))
                return
            if event is None:  # connection closed by the client
                return
            conn.busy = True
            # h11 bounds only an *incomplete* head; a complete one that arrived in one read is
            # measured here so the limit holds however the bytes were chunked.
            head_size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
            if head_size > limits.max_header_bytes:
                await self._send_simple(h, reader, writer, 431, "request header fields too large")
                return
            request = _make_request(event, peer, self._ssl is not None, tls_info)
            # ---- body ----
            try:
                declared = request.headers.get("content-length")
                if (
                    declared is not None
                    and declared.isdigit()
                    and int(declared) > limits.max_body_bytes
                ):
                    await self._send_simple(h, reader, writer, 413, "request body too large")
                    return
                if h.they_are_waiting_for_100_continue:
                    writer.write(
                        h.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
                    )
                request.body = await self._read_body(h, reader)
            except TimeoutError:
                await self._send_simple(h, reader, writer, 408, "request timeout")
                return
            except _BodyTooLarge:
                await self._send_simple(h, reader, writer, 413, "request body too large")
                return
            except h11.RemoteProtocolError as exc:
                await self._send_simple(h, reader, writer, exc.error_status_hint, str(exc))
                return
            # ---- handler ----
            served += 1
            last = self._closing or (
                limits.max_requests_per_connection is not None
                and served >= limits.max_requests_per_connection
            )
            try:
                result = await self._handler(request)
            except ConnectionAction as action:
                result = action
            except Exception:
                _log.exception("http handler failed", method=request.method, path=request.path)
                result = Response.text("internal server error\n", 500)
            self.requests_served += 1
            if isinstance(result, ResetConnection):
                _reset(writer)
                return
            if isinstance(result, TruncatedResponse):
                await self._send_truncated(h, writer, result)
                return
            if not isinstance(result, Response):
                _log.error("http handler returned a non-response", type=type(result).__name__)
                result = Response.text("internal server error\n", 500)
            await self._send(h, writer, result, last or self._closing, request.method == "HEAD")
            if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                return
            try:
                h.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _next_head(
        self, h: h11.Connection, reader: asyncio.StreamReader, conn: _Conn
    ) -> h11.Request | None:
        timeout = self.limits.keep_alive_timeout
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                if self._closing and not h.trailing_data[0]:
                    raise _Idle
                data = await self._read(reader, timeout)
                timeout = self.limits.read_timeout
                conn.busy = bool(data)
                h.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                return event
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            # Anything else (stray Data before a request) is a protocol error h11 reports.
            return None

    async def _read_body(self, h: h11.Connection, reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        size = 0
        limit = self.limits.max_body_bytes
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                h.receive_data(await self._read(reader, self.limits.read_timeout))
                continue
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise _BodyTooLarge
                chunks.append(bytes(event.data))
                continue
            if isinstance(event, h11.EndOfMessage):
                return b"".join(chunks) if len(chunks) != 1 else chunks[0]
            if isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("client closed the connection mid-request")
            raise h11.RemoteProtocolError("unexpected event while reading body", 400)

    def _head(self, response: Response, close: bool) -> h11.Response:
        headers: list[tuple[bytes, bytes]] = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers
            if name.lower() not in _FRAMING_HEADERS
        ]
        headers.append((b"content-length", str(len(response.body)).encode()))
        headers.append((b"date", self._date.get()))
        if self._server_header is not None:
            headers.append((b"server", self._server_header))
        if close:
            headers.append((b"connection", b"close"))
        return h11.Response(
            status_code=response.status,
            headers=headers,
            reason=_REASONS.get(response.status, b""),
        )

    async def _send(
        self,
        h: h11.Connection,
        writer: asyncio.StreamWriter,
        response: Response,
        close: bool,
        head_only: bool = False,
    ) -> None:
        events: list[h11.Event] = [self._head(response, close)]
        if response.body and not head_only:
            events.append(h11.Data(data=response.body))
        events.append(h11.EndOfMessage())
        parts: list[bytes] = []
        for event in events:
            for chunk in h.send_with_data_passthrough(event) or ():
                parts.append(chunk if isinstance(chunk, bytes) else bytes(chunk))
        writer.writelines(parts)
        async with asyncio.timeout(self.limits.write_timeout):
            await writer.drain()

    async def _send_truncated(
        self, h: h11.Connection, writer: asyncio.StreamWriter, action: TruncatedResponse
    ) -> None:
        head = h.send(self._head(action.response, close=True)) or b""
        writer.write(head + action.response.body[: action.keep_bytes])
        async with asyncio.timeout(self.limits.write_timeout):
            await writer.drain()
        # A FIN, not a RST: the client must see a short body, not a reset.
        if writer.can_write_eof():
            writer.write_eof()

    async def _send_simple(
        self,
        h: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        message: str,
    ) -> None:
        """Best-effort error response, then a lingering close.

        Closing a socket with unread input makes the kernel send a RST, which can destroy the
        error response before the client reads it; so the write side is shut first and the
        client's remaining bytes are read and discarded for a moment (at most 1 s, 1 MiB).
        """
        if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        with contextlib.suppress(Exception):
            response = Response.text(message + "\n", status)
            data = h.send(self._head(response, close=True)) or b""
            data += h.send(h11.Data(data=response.body)) or b""
            data += h.send(h11.EndOfMessage()) or b""
            writer.write(data)
            async with asyncio.timeout(self.limits.write_timeout):
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(1.0):
                discarded = 0
                while discarded < 1024 * 1024:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    discarded += len(chunk)


class _BodyTooLarge(Exception):
    pass


def _peer(writer: asyncio.StreamWriter) -> tuple[str, int] | None:
    info = writer.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def _tls_info(writer: asyncio.StreamWriter) -> tuple[dict[str, Any] | None, bytes | None]:
    ssl_object = writer.get_extra_info("ssl_object")
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


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort with RST: ``SO_LINGER`` on with a zero timeout makes close() send a reset."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
