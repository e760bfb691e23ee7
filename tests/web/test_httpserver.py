"""exporter.web.server: keep-alive, limits, timeouts, transport faults, TLS, graceful shutdown."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest

from exporter.web.server import (
    HTTPServer,
    Limits,
    Request,
    ResetConnection,
    Response,
    TruncatedResponse,
)

from .conftest import Pki


async def echo(request: Request) -> Response:
    return Response.json(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "body": request.body.decode("latin-1"),
            "peer_port": request.peer[1] if request.peer else None,
            "headers": request.headers,
        }
    )


@pytest.fixture
async def server() -> AsyncIterator[HTTPServer]:
    async with HTTPServer(echo) as srv:
        yield srv


async def exchange(port: int, data: bytes, *, read_until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read(-1) if read_until_close else await reader.read(65536)
    finally:
        writer.close()


async def test_ephemeral_port_is_exposed(server: HTTPServer) -> None:
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.is_serving


async def test_keep_alive_reuses_one_connection(server: HTTPServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as client:
        first = (await client.get("/a?x=1")).json()
        second = (await client.post("/b", content=b"payload")).json()
    assert first["peer_port"] == second["peer_port"]
    assert first["query"] == "x=1"
    assert second == {**second, "method": "POST", "path": "/b", "body": "payload"}


async def test_pipelined_requests_are_answered_in_order(server: HTTPServer) -> None:
    request = b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n"
    data = request % 1 + request % 2 + (b"GET /3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    raw = await exchange(server.port, data)
    assert raw.count(b"HTTP/1.1 200 OK") == 3
    assert raw.index(b'"path":"/1"') < raw.index(b'"path":"/2"') < raw.index(b'"path":"/3"')


async def test_chunked_request_body_is_assembled(server: HTTPServer) -> None:
    data = (
        b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    raw = await exchange(server.port, data)
    assert b'"body":"abcde"' in raw


async def test_head_gets_headers_without_body(server: HTTPServer) -> None:
    raw = await exchange(server.port, b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-length: " in head.lower()
    assert body == b""


async def test_repeated_headers_are_joined_with_commas(server: HTTPServer) -> None:
    data = b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nX-A: 2\r\nConnection: close\r\n\r\n"
    assert b'"x-a":"1,2"' in await exchange(server.port, data)


async def test_oversized_headers_get_431() -> None:
    async with HTTPServer(echo, limits=Limits(max_header_bytes=1024)) as srv:
        data = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n"
        raw = await exchange(srv.port, data)
    assert raw.startswith(b"HTTP/1.1 431 ")


async def test_oversized_declared_body_gets_413() -> None:
    async with HTTPServer(echo, limits=Limits(max_body_bytes=10)) as srv:
        data = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n" + b"x" * 11
        raw = await exchange(srv.port, data)
    assert raw.startswith(b"HTTP/1.1 413 ")


async def test_oversized_streamed_body_gets_413() -> None:
    async with HTTPServer(echo, limits=Limits(max_body_bytes=10)) as srv:
        data = (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"
        )
        raw = await exchange(srv.port, data)
    assert raw.startswith(b"HTTP/1.1 413 ")


async def test_malformed_request_gets_400(server: HTTPServer) -> None:
    raw = await exchange(server.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")


async def test_stalled_request_gets_408_and_idle_connection_is_closed() -> None:
    limits = Limits(header_timeout=0.2, keep_alive_timeout=0.3)
    async with HTTPServer(echo, limits=limits) as srv:
        # A request head that never completes: 408, then close.
        raw = await exchange(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n")
        assert raw.startswith(b"HTTP/1.1 408 ")
        # An idle keep-alive connection: closed silently after keep_alive_timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        async with asyncio.timeout(5):
            data = await reader.read()  # returns at EOF: the server closed the idle connection
        assert data.startswith(b"HTTP/1.1 200 ")
        assert data.endswith(b"}")
        writer.close()


async def test_handler_exception_becomes_500() -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    async with HTTPServer(broken) as srv:
        raw = await exchange(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 500 ")


@pytest.mark.parametrize("style", ["return", "raise"])
async def test_reset_connection_sends_rst(style: str) -> None:
    async def reset(request: Request) -> Response | ResetConnection:
        if style == "raise":
            raise ResetConnection
        return ResetConnection()

    async with HTTPServer(reset) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(5):
                await reader.read(100)
        writer.close()


async def test_truncated_response_announces_full_length_and_sends_less() -> None:
    body = b"0123456789" * 100

    async def truncate(request: Request) -> TruncatedResponse:
        return TruncatedResponse(Response(200, [("content-type", "text/plain")], body), 300)

    async with HTTPServer(truncate) as srv:
        raw = await exchange(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        head, _, received = raw.partition(b"\r\n\r\n")
        assert b"content-length: 1000" in head.lower()
        assert received == body[:300]
        async with httpx.AsyncClient(base_url=srv.url, trust_env=False) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/")


async def test_graceful_stop_finishes_in_flight_and_closes_idle() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: Request) -> Response:
        if request.path == "/slow":
            entered.set()
            await release.wait()
        return Response.text("done")

    srv = HTTPServer(slow)
    await srv.start()
    port = srv.port
    # An idle keep-alive connection that already served a request.
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    idle_writer.write(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
    await idle_reader.readuntil(b"done")
    # A request in flight.
    client = httpx.AsyncClient(base_url=srv.url, trust_env=False)
    in_flight = asyncio.create_task(client.get("/slow"))
    async with asyncio.timeout(5):
        await entered.wait()
    stopping = asyncio.create_task(srv.stop(grace=5))
    async with asyncio.timeout(5):
        assert await idle_reader.read() == b""  # the idle connection is closed at once
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)  # no longer accepting
    assert not in_flight.done()
    release.set()
    async with asyncio.timeout(5):
        response = await in_flight
        await stopping
    assert response.text == "done"
    assert response.headers["connection"] == "close"
    idle_writer.close()
    await client.aclose()


async def test_a_new_connection_beyond_the_cap_evicts_an_idle_one() -> None:
    async with HTTPServer(echo, limits=Limits(max_connections=1)) as srv:
        first_reader, first_writer = await asyncio.open_connection("127.0.0.1", srv.port)
        first_writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        await first_reader.readuntil(b"}}")  # the first connection is established and idle
        raw = await exchange(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(5):
            assert await first_reader.read() == b""  # closed politely (FIN) to make room
        first_writer.close()
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert srv.stats["evicted_idle"] == 1


async def test_response_headers_from_handler_cannot_break_framing() -> None:
    async def liar(request: Request) -> Response:
        return Response(200, [("Content-Length", "999"), ("x-ok", "1")], b"abc")

    async with (
        HTTPServer(liar) as srv,
        httpx.AsyncClient(base_url=srv.url, trust_env=False) as client,
    ):
        response = await client.get("/")
    assert response.content == b"abc"
    assert response.headers["x-ok"] == "1"


async def test_tls_exposes_the_verified_client_certificate(pki: Pki) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(pki.server_cert, pki.server_key)
    server_context.load_verify_locations(pki.ca)
    server_context.verify_mode = ssl.CERT_REQUIRED

    async def who(request: Request) -> Response:
        cert = request.peer_certificate or {}
        subject = dict(item[0] for item in cert.get("subject", ()))
        return Response.json(
            {
                "tls": request.tls,
                "cn": subject.get("commonName"),
                "der": bool(request.peer_certificate_der),
            }
        )

    client_context = ssl.create_default_context(cafile=str(pki.ca))
    client_context.load_cert_chain(pki.client_cert, pki.client_key)
    async with HTTPServer(who, ssl_context=server_context) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(base_url=srv.url, verify=client_context, trust_env=False) as c:
            answer = (await c.get("/")).json()
    assert answer == {"tls": True, "cn": "prometheus", "der": True}


async def test_a_raw_rst_client_does_not_disturb_the_server(server: HTTPServer) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.sendall(b"GET / HTTP/1.1\r\nHo")
    sock.close()  # RST mid-request
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as client:
        assert (await client.get("/still")).status_code == 200
