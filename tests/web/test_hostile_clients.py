"""The HTTP server against clients that do not play by the rules, one kind at a time.

Each test is a client the server used to lose to (issue 9): a head sent one byte at a time, more
connections than the cap, a busy server asked for its health, both framing headers, a client that
never reads a multi-megabyte body, a process out of file descriptors, stalled TLS handshakes. The
scenario with all of them at once against the real daemon is ``tests/e2e/test_hostile.py``.

Deadlines here are the server's own (``Limits``); the tests wait for the *outcome* with a
generous bound, so a slow machine makes them slower, never red.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from exporter.web.server import Chunks, HTTPServer, Limits, Request, Response

from .conftest import Pki

_TCP_ESTABLISHED = 1
REPO_ROOT = Path(__file__).resolve().parents[2]


async def hello(request: Request) -> Response:
    return Response.text(f"hello {request.path}\n")


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 10
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


async def read_all(reader: asyncio.StreamReader, timeout: float = 10) -> bytes:
    """Everything until the server closes (a reset counts as a close)."""
    chunks = []
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def tcp_state(sock: socket.socket) -> int:
    return int(struct.unpack("B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[:1])[0])


# -- deadlines ----------------------------------------------------------------------------------


async def test_a_head_trickled_one_byte_at_a_time_meets_a_deadline_for_the_whole_head() -> None:
    """A per-read timeout never fires for a client sending a byte every 0.1 s (slowloris);
    the deadline is for the whole head, measured from its start."""
    limits = Limits(header_timeout=0.5, first_byte_timeout=0.5)
    async with HTTPServer(hello, limits=limits) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()

        async def trickle() -> None:
            with contextlib.suppress(OSError):  # runs until the server gives up
                for byte in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 10_000:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.1)

        trickling = asyncio.create_task(trickle())
        answer = await read_all(reader)
        elapsed = time.monotonic() - started
        trickling.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert elapsed < 5, f"a trickled head lived {elapsed:.1f} s with a 0.5 s head deadline"
    assert server.stats["head_timeout"] == 1


async def test_a_connection_that_sends_nothing_is_closed_silently_after_the_first_byte_deadline():
    async with HTTPServer(hello, limits=Limits(first_byte_timeout=0.3)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await read_all(reader) == b""  # no 408 for a request that never started
        writer.close()


async def test_keep_alive_allows_idle_time_then_a_fresh_head_deadline() -> None:
    """Idle between requests is the keep-alive timeout; the next head then gets its own
    deadline from its first byte, not from the end of the previous response."""
    limits = Limits(header_timeout=0.4, first_byte_timeout=0.4, keep_alive_timeout=5)
    async with HTTPServer(hello, limits=limits) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert b"hello /1" in await reader.readuntil(b"hello /1\n")
        await asyncio.sleep(0.6)  # idle longer than the head deadline: still fine
        writer.write(b"GET /2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert b"hello /2" in await read_all(reader)
        writer.close()


# -- connection cap: evict, never refuse --------------------------------------------------------


async def test_beyond_the_cap_the_oldest_unfinished_head_is_evicted_and_the_newcomer_served():
    async with HTTPServer(hello, limits=Limits(max_connections=3)) as server:
        slow = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
        for _reader, writer in slow:
            writer.write(b"GET / HTTP/1.1\r\n")  # a head that is never finished
        await wait_for(lambda: server.connection_count == 3, "three connections")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /new HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert b"hello /new" in await read_all(reader)
        writer.close()
        assert await read_all(slow[0][0]) == b""  # the oldest waiter made room
        assert server.stats["evicted_waiting"] == 1
        assert server.connection_count == 2  # the two younger waiters are still there
        for _reader, slow_writer in slow:
            slow_writer.close()


async def test_idle_keep_alive_connections_go_after_unfinished_heads() -> None:
    async with HTTPServer(hello, limits=Limits(max_connections=2)) as server:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        idle_writer.write(b"GET /idle HTTP/1.1\r\nHost: t\r\n\r\n")
        await idle_reader.readuntil(b"hello /idle\n")  # a scraper between two scrapes
        waiting_reader, waiting_writer = await asyncio.open_connection("127.0.0.1", server.port)
        waiting_writer.write(b"GET / HTT")
        await wait_for(lambda: server.connection_count == 2, "two connections")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /new HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert b"hello /new" in await read_all(reader)
        assert await read_all(waiting_reader) == b""
        # the scraper's keep-alive connection survived and still works
        idle_writer.write(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n")
        assert b"hello /again" in await idle_reader.readuntil(b"hello /again\n")
        for w in (writer, waiting_writer, idle_writer):
            w.close()


class _Blocking:
    """A handler whose ``/slow`` requests wait for :attr:`release`; :attr:`entered` counts them."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, request: Request) -> Response:
        if request.path == "/slow":
            self.entered += 1
            await self.release.wait()
        return Response.text(f"hello {request.path}\n")


async def test_when_every_connection_is_busy_health_is_still_answered() -> None:
    handler = _Blocking()

    server = HTTPServer(handler, limits=Limits(max_connections=2), priority_paths=["/-/healthy"])
    async with server, httpx.AsyncClient(base_url=server.url, trust_env=False) as client:
        busy = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
        await wait_for(lambda: handler.entered == 2, "two requests in the handler")
        async with httpx.AsyncClient(base_url=server.url, trust_env=False) as other:
            health = await other.get("/-/healthy")
            refused = await other.get("/metrics")
        handler.release.set()
        assert [r.status_code for r in await asyncio.gather(*busy)] == [200, 200]
    assert health.status_code == 200 and health.text == "hello /-/healthy\n"
    assert refused.status_code == 503
    assert "too many connections" in refused.text


# -- framing and error bodies -------------------------------------------------------------------


async def test_content_length_with_transfer_encoding_is_refused_and_the_smuggled_request_dropped():
    seen: list[str] = []

    async def record(request: Request) -> Response:
        seen.append(request.path)
        return Response.text("ok\n")

    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
    attack = (
        b"POST /front HTTP/1.1\r\nHost: t\r\nContent-Length: "
        + str(len(b"0\r\n\r\n") + len(smuggled)).encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        + smuggled
    )
    async with HTTPServer(record) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(attack)
        answer = await read_all(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1") == 1  # and the connection was closed after it
    assert seen == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /<script>MARKER HTTP/1.1\r\nHost: t\r\nBad Header MARKER\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: MARKER\r\n\r\n",
        b"MARKER\x00\x01 / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"MARKER" * 4000 + b"\r\n\r\n",
    ],
)
async def test_error_bodies_never_echo_the_request(request_bytes: bytes) -> None:
    async with HTTPServer(hello) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request_bytes)
        answer = await read_all(reader)
        writer.close()
    assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 "))
    assert b"MARKER" not in answer


# -- slow readers -------------------------------------------------------------------------------


def _non_reader(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    return sock


async def test_readers_that_never_read_cost_no_copy_of_the_body_and_are_cut_off() -> None:
    """Twenty clients that never read a 24 MiB body (more than the kernel buffers): Python
    memory stays a slice per connection, not a copy each, and after the write deadline every
    connection is aborted (a plain close would keep the socket until the client reads)."""
    body = os.urandom(24 * 1024 * 1024)  # one immutable buffer, shared by every response
    written: list[int] = []

    async def big(request: Request) -> Response:
        return Response(200, [("content-type", "application/octet-stream")], Chunks.of(body))

    limits = Limits(write_timeout=2.0)
    async with HTTPServer(big, limits=limits) as server:
        gc.collect()
        tracemalloc.start()
        try:
            socks = [_non_reader(server.port) for _ in range(20)]
            await wait_for(
                lambda: server.requests_served == 20, "twenty responses under way", timeout=20
            )
            await asyncio.sleep(0.2)  # let every transport fill up to its pause point
            current, _peak = tracemalloc.get_traced_memory()
            written.append(current)
            await wait_for(
                lambda: all(tcp_state(s) != _TCP_ESTABLISHED for s in socks),
                "the server to cut every non-reader off",
                timeout=30,
            )
            await wait_for(lambda: server.connection_count == 0, "no connection left")
        finally:
            tracemalloc.stop()
            for sock in socks:
                sock.close()
    assert server.stats["write_timeout"] == 20
    assert written[0] < 8 * 1024 * 1024, f"{written[0] / 2**20:.1f} MiB held for 20 readers"


async def test_a_fast_reader_gets_every_byte_of_a_chunked_body() -> None:
    parts = (b"a" * 100_000, memoryview(b"b" * 200_001), b"c")

    async def handler(request: Request) -> Response:
        return Response(200, [], Chunks.of(*parts))

    async with HTTPServer(handler) as server, httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(server.url + "/")
        head = await client.head(server.url + "/")
    assert response.content == b"".join(bytes(p) for p in parts)
    assert head.headers["content-length"] == "300002" and head.content == b""


# -- out of descriptors -------------------------------------------------------------------------

_EMFILE_SERVER = textwrap.dedent(
    """
    import asyncio, json, os, resource, sys
    import structlog
    from exporter.web.server import HTTPServer, Limits, Response
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
                        processors=[structlog.processors.JSONRenderer()])

    async def hello(request):
        return Response.text("hello\\n")

    async def main():
        server = HTTPServer(hello, limits=Limits(max_connections=10_000, first_byte_timeout=30,
                                                   header_timeout=30))
        await server.start()
        opened = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (opened + 20, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))
        print(json.dumps({"port": server.port}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


async def test_out_of_descriptors_pauses_accepting_with_one_log_line_and_recovers(
    tmp_path: Path,
) -> None:
    """No connection cap can save a process whose descriptor limit is below it: accept then
    fails with EMFILE. asyncio logs a traceback per attempt; this server backs off, says so
    once, and serves again as soon as descriptors are free."""
    script = tmp_path / "server.py"
    script.write_text(_EMFILE_SERVER)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        port = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))["port"]
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
        await asyncio.sleep(2.0)  # a couple of seconds out of descriptors, retried in between
        for sock in held:
            sock.close()
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:

            async def served() -> bool:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(served, "the server to answer again", timeout=20)
    finally:
        process.terminate()
        _out, err = await process.communicate()
    log = err.decode()
    assert log.count("accepting connections paused") == 1, log[-2000:]
    assert "Traceback" not in log


# -- TLS ----------------------------------------------------------------------------------------


def _server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    return context


async def test_stalled_handshakes_are_bounded_and_a_real_client_gets_through(pki: Pki) -> None:
    """200 clients that send the first bytes of a ClientHello and stop: at most
    ``max_handshakes`` hold TLS state at a time (the longest-running one gives way to a
    newcomer), and a real client is served meanwhile."""
    limits = Limits(max_handshakes=4, handshake_timeout=5.0, header_timeout=10.0)
    server = HTTPServer(hello, ssl_context=_server_context(pki), limits=limits)
    client_context = ssl.create_default_context(cafile=str(pki.ca))
    partial_hello = bytes.fromhex("16030102000100")
    async with server:
        stalled = []
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(partial_hello)
            stalled.append(sock)
        await wait_for(
            lambda: server.stats["evicted_handshake"] >= 150, "stalled handshakes to give way"
        )
        assert server.handshakes_in_progress <= 4
        async with httpx.AsyncClient(base_url=server.url, verify=client_context) as client:
            response = await client.get("/tls")
        assert response.text == "hello /tls\n"
        assert server.max_handshakes_seen <= 4
        for sock in stalled:
            sock.close()


async def test_a_new_ssl_context_serves_new_connections(pki: Pki, tmp_path: Path) -> None:
    """Certificate rotation: replacing ``ssl_context`` while serving changes what the next
    connection is offered, without a restart."""
    server = HTTPServer(hello, ssl_context=_server_context(pki))
    client_context = ssl.create_default_context(cafile=str(pki.ca))
    async with server:
        async with httpx.AsyncClient(base_url=server.url, verify=client_context) as client:
            assert (await client.get("/one")).status_code == 200
        server.ssl_context = None  # e.g. TLS switched off by a reloaded web config
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/two")).text == "hello /two\n"


# -- found in review: each reproduced here before it was fixed ----------------------------------


async def test_connections_evicted_before_their_task_ran_are_closed_at_once() -> None:
    """Six connections queued before the server's accept callback runs, a cap of two: the
    four evicted in the same batch are closed, not left for the garbage collector."""
    async with HTTPServer(hello, limits=Limits(max_connections=2)) as server:
        socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(6)]
        gc.disable()
        try:
            await wait_for(
                lambda: sum(tcp_state(s) != _TCP_ESTABLISHED for s in socks) >= 4,
                "four evicted connections to be closed",
            )
        finally:
            gc.enable()
            for sock in socks:
                sock.close()
        assert server.stats["evicted_waiting"] == 4


async def test_a_connection_close_response_is_sent_whole_to_a_slow_reader() -> None:
    """The last 64 KiB of a response used to be still in the transport's buffer when the
    connection was closed, and was cut off by a reset."""
    body = os.urandom(16 * 1024 * 1024)

    async def big(request: Request) -> Response:
        return Response(200, [], Chunks.of(body))

    # a small kernel send buffer stands in for a slow network: the transport's own buffer is
    # then still full when the last byte has been handed to it
    async with HTTPServer(big, limits=Limits(send_buffer_bytes=8192)) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        received = bytearray()
        async with asyncio.timeout(60):
            while chunk := await loop.sock_recv(sock, 16384):
                received += chunk
                if len(received) % (1024 * 1024) < 16384:
                    await asyncio.sleep(0.01)  # a slow reader: the server's buffers fill up
        sock.close()
    assert received.endswith(body)
    assert len(received.partition(b"\r\n\r\n")[2]) == len(body)


async def test_a_trickled_request_body_cannot_pin_a_connection_slot() -> None:
    """A head that announces a body, then one byte of it, then nothing: such connections are
    still waiting for their request, so a newcomer evicts them (it used to get 503)."""
    async with HTTPServer(hello, limits=Limits(max_connections=2)) as server:
        pinned = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\nx")
            pinned.append((reader, writer))
        await wait_for(lambda: server.connection_count == 2, "two connections")
        await asyncio.sleep(0.1)  # let both heads be parsed: the bodies are being read now
        async with httpx.AsyncClient(base_url=server.url, trust_env=False) as client:
            response = await client.get("/metrics")
        assert response.status_code == 200
        for _reader, writer in pinned:
            writer.close()


async def test_refused_newcomers_do_not_crowd_out_health_probes() -> None:
    """When every connection is busy, newcomers asking for anything but health get a quick
    503 and stay evictable: a burst of them cannot fill the headroom the probes need."""
    handler = _Blocking()

    limits = Limits(max_connections=2, priority_headroom=2)
    server = HTTPServer(handler, limits=limits, priority_paths=["/-/healthy"])
    async with server, httpx.AsyncClient(base_url=server.url, trust_env=False) as client:
        busy = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
        await wait_for(lambda: handler.entered == 2, "two busy requests")
        junk = []
        for n in range(1, 5):  # junk that never reads its 503 and never closes, one by one
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            junk.append((reader, writer))
            await wait_for(lambda n=n: server.stats["refused"] >= n, "the junk's refusal")
        async with httpx.AsyncClient(base_url=server.url, trust_env=False) as probe:
            health = await probe.get("/-/healthy")
        handler.release.set()
        await asyncio.gather(*busy)
        for _reader, writer in junk:
            writer.close()
    assert health.status_code == 200


async def test_content_length_counts_bytes_of_any_buffer() -> None:
    import array

    words = array.array("I", range(1000))

    async def handler(request: Request) -> Response:
        return Response(200, [], Chunks.of(memoryview(words), b"!"))

    async with HTTPServer(handler) as server, httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(server.url + "/")
        again = await client.get(server.url + "/")  # the keep-alive stream is still in sync
    assert response.content == words.tobytes() + b"!"
    assert int(response.headers["content-length"]) == 4001
    assert again.status_code == 200
