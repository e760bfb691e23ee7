"""Hostile HTTP clients, as one process (the measuring clients must not share its GIL).

* **slow headers**: *N* connections, each sending one byte of a never-ending request head
  every 5 s (slowloris); one the server closes is opened again at once;
* **non-readers**: *M* connections that send a complete, authorised ``GET /metrics`` (plain
  text) with a 4 KiB receive buffer and never read; one the server cuts off is replaced;
* **password guessers**: *K* threads sending wrong passwords (for the real user and unknown
  ones) as fast as the server answers.

``python -m bench.hostile_clients --url URL --seconds 30`` (the right password, for the
non-readers, in ``HOSTILE_PASSWORD``) prints one JSON document of counters at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import json
import os
import random
import resource
import socket
import struct
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

_ESTABLISHED = 1


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def _slow_header(host: str, port: int, tally: Counter[str], stop: asyncio.Event) -> None:
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 4000
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            tally["slow_connect_failed"] += 1
            await asyncio.sleep(0.05)
            continue
        tally["slow_connected"] += 1
        tally["slow_open"] += 1
        tally["slow_open_max"] = max(tally["slow_open_max"], tally["slow_open"])
        wait, sent = random.uniform(0, 5), 0
        try:
            while not stop.is_set():
                try:
                    if not await asyncio.wait_for(reader.read(65536), wait):
                        tally["slow_closed_by_server"] += 1
                        break
                except TimeoutError:
                    writer.write(head[sent % len(head) :][:1])
                    sent, wait = sent + 1, 5.0
        except OSError:
            tally["slow_reset_by_server"] += 1
        finally:
            tally["slow_open"] -= 1
            writer.transport.abort()


async def _non_reader(
    host: str, port: int, request: bytes, tally: Counter[str], stop: asyncio.Event
) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (host, port))
            await loop.sock_sendall(sock, request)
            tally["non_reader_requests"] += 1
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
                if info[0] != _ESTABLISHED:
                    tally["non_reader_cut_by_server"] += 1
                    break
        except OSError:
            tally["non_reader_connect_failed"] += 1
            await asyncio.sleep(0.05)
        finally:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()


def _guesser(
    host: str, port: int, user: str, n: int, tally: Counter[str], latencies: list[float],
    stop: threading.Event, lock: threading.Lock,
) -> None:  # fmt: skip
    connection: http.client.HTTPConnection | None = None
    attempt = 0
    while not stop.is_set():
        attempt += 1
        name = user if attempt % 2 else f"admin{n}"
        started = time.monotonic()
        try:
            connection = connection or http.client.HTTPConnection(host, port, timeout=30)
            connection.request("GET", "/metrics", headers={"Authorization": _basic(name, "x")})
            response = connection.getresponse()
            response.read()
            outcome = f"guess_{response.status}"
        except (OSError, http.client.HTTPException):
            outcome, connection = "guess_error", None
        with lock:
            tally[outcome] += 1
            latencies.append(time.monotonic() - started)


async def attack(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    password = os.environ.get("HOSTILE_PASSWORD", "")
    request = (
        f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain\r\n"
        f"Authorization: {_basic(args.user, password)}\r\n\r\n"
    ).encode()
    tally: Counter[str] = Counter()
    latencies: list[float] = []
    stop, threads_stop, lock = asyncio.Event(), threading.Event(), threading.Lock()
    threads = [
        threading.Thread(
            target=_guesser,
            args=(host, port, args.user, n, tally, latencies, threads_stop, lock),
            daemon=True,
        )
        for n in range(args.guessers)
    ]
    for thread in threads:
        thread.start()
    tasks = [asyncio.create_task(_slow_header(host, port, tally, stop)) for _ in range(args.slow)]
    tasks += [
        asyncio.create_task(_non_reader(host, port, request, tally, stop))
        for _ in range(args.non_readers)
    ]
    await asyncio.sleep(args.seconds)
    stop.set()
    threads_stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for thread in threads:
        thread.join(35)
    latencies.sort()
    slow_open_max = tally.pop("slow_open_max", 0)
    tally.pop("slow_open", None)
    return {
        "counters": dict(sorted(tally.items())),
        "slow_open_max": slow_open_max,
        "guess_latency_p50_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile_clients", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--user", default="prometheus")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--slow", type=int, default=1100)
    parser.add_argument("--non-readers", type=int, default=50)
    parser.add_argument("--guessers", type=int, default=16)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(asyncio.run(attack(args))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
