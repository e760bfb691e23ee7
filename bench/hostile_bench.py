"""Serving under hostile clients: a real daemon, a real attack, a Prometheus and a kubelet.

Issue 9: for 30 s, against a daemon with 60 instances (a multi-MB text exposition), a cost-12
bcrypt user and a 1,024 descriptor limit: 1,100 slow-header connections (one byte every 5 s,
reopened when closed), 50 authorised clients that never read the text exposition (4 KiB
receive buffer), 16 password-guessing threads — the attacker at the end of this module, a
process of its own; meanwhile a Prometheus-like scraper (gzip, OpenMetrics ``Accept``, every
1 s, 10 s timeout) and a kubelet-like prober (``/-/healthy`` every 1 s, 3 s timeout, new
connections). A tick finding the previous call still running is skipped, as both skip it. The
manual clock moves every 5 s, so jobs keep arriving. Then 1,000 stalled TLS handshakes (a
partial ClientHello each) while a real TLS client scrapes. ``tests/e2e/test_hostile.py``
asserts the ``verdict`` of :func:`run_scenario`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import http.client
import json
import os
import random
import resource
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bcrypt
import httpx

from bench import harness
from bench.harness import (
    REPO_ROOT,
    DaemonProcess,
    SimulatorProcess,
    child_env,
    estate_scenario,
    metric_values,
    open_fds,
    percentile,
    proc_kb,
    row,
    running,
    total,
)

TITLE = "Serving under hostile clients (slow headers, non-readers, password guessers, TLS)"
LOOKBACK_S = 2 * 86400
SETTINGS = {"api_rate_limit": 0, "lookback_seconds": LOOKBACK_S}
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@dataclass(frozen=True)
class Scenario:
    """Sizes of one run (the issue's figures by default)."""

    instances: int = 60
    targets: int = 120
    seconds: float = 30.0
    slow: int = 1100
    non_readers: int = 50
    guessers: int = 16
    fd_limit: int = 1024
    bcrypt_cost: int = 12
    poll_interval: float = 10.0


@dataclass
class Outcomes:
    """Answers of one periodic client: latencies of the good ones, reasons of the others."""

    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    skipped: int = 0

    def summary(self) -> dict[str, Any]:
        attempts = len(self.latencies) + sum(self.failures.values())
        got = self.latencies or [float("nan")]
        return {
            "attempts": attempts, "ok": len(self.latencies),
            "ok_ratio": round(len(self.latencies) / attempts, 4) if attempts else 0.0,
            "p50_s": round(percentile(got, 0.5), 4), "p99_s": round(percentile(got, 0.99), 4),
            "failures": dict(self.failures), "skipped_ticks": self.skipped,
        }  # fmt: skip


async def _every(
    interval: float, stop: asyncio.Event, outcomes: Outcomes, once: Callable[[], Awaitable[Any]]
) -> None:
    """Call ``once()`` every *interval* s until *stop*; a tick finding it running is skipped."""
    current: asyncio.Task[None] | None = None

    async def timed() -> None:
        begun = time.monotonic()
        try:
            (await once()).raise_for_status()
        except httpx.HTTPStatusError as exc:
            outcomes.failures[f"HTTP {exc.response.status_code}"] += 1
        except (httpx.HTTPError, OSError) as exc:
            outcomes.failures[type(exc).__name__] += 1
        else:
            outcomes.latencies.append(time.monotonic() - begun)

    while not stop.is_set():
        if current is not None and not current.done():
            outcomes.skipped += 1
        else:
            current = asyncio.create_task(timed())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    if current is not None:
        await current


def sums(pairs: Any) -> dict[str, float]:
    """(instance ID, kind, value) triples summed per instance and kind, zeros dropped."""
    found: Counter[str] = Counter()
    for instance_id, kind, value in pairs:
        found[f"{instance_id}:{kind}"] += value
    return {key: float(value) for key, value in found.items() if value}


def counted(text: str) -> dict[str, float]:
    found = metric_values(text, ["idaas_sync_jobs_total", "idaas_sync_objects_total"])
    return sums(
        (labels.split('"', 2)[1], name.split("_")[2], value)
        for name, samples in found.items()
        for labels, value in samples
    )


def truth(ground: dict[str, Any]) -> dict[str, float]:
    return sums(
        (iid, kind, row["count"])
        for iid, data in ground["instances"].items()
        for kind in ("jobs", "objects")
        for row in data[kind]
    )


async def run_scenario(scenario: Scenario) -> dict[str, Any]:
    """The attack of the module doc; its figures."""
    user, password = "prometheus", secrets.token_urlsafe(18)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(scenario.bcrypt_cost)).decode()
    estate = estate_scenario(scenario.targets, instances=scenario.instances, history="48h")
    with harness.simulator(estate, manual_clock=True) as (simulator, work, _cpu):
        (work / "web.yml").write_text(f"basic_auth_users:\n  {user}: {hashed}\n")
        daemon = harness.daemon(  # not pinned: its bcrypt thread must not share the loop's CPU
            simulator, work / "daemon.log", None, **SETTINGS,
            poll_interval_seconds=scenario.poll_interval, state_file=work / "state.json",
            web_config_file=work / "web.yml", fd_limit=scenario.fd_limit, auth=(user, password),
        )  # fmt: skip
        with running(daemon):
            daemon.start()
            return await _attack(scenario, simulator, daemon, (user, password))


async def _attack(
    scenario: Scenario, sim: SimulatorProcess, daemon: DaemonProcess, auth: tuple[str, str]
) -> dict[str, Any]:
    user, password = auth
    since_ms = int(sim.control("GET", "clock")["now_ms"]) - LOOKBACK_S * 1000
    figures: dict[str, Any] = {"scenario": dataclasses.asdict(scenario)}
    headers = {"accept": PROMETHEUS_ACCEPT, "accept-encoding": "gzip"}
    async with (
        httpx.AsyncClient(base_url=daemon.url, auth=(user, password), timeout=10) as scraper,
        httpx.AsyncClient(
            base_url=daemon.url, timeout=3, limits=httpx.Limits(max_keepalive_connections=0)
        ) as prober,
    ):
        daemon.wait_until(lambda: daemon.get("/-/ready").status_code == 200, 120, "ready")

        def polls() -> dict[str, float]:
            name = "idaas_exporter_polls_total"
            values = daemon.sample([name])
            return {r: total(values, name, f'result="{r}"') for r in ("success", "error")}

        before = polls()
        fds_before = open_fds(daemon.pid) or 0
        log_offset = daemon.log_path.stat().st_size
        attacker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.hostile_bench", json.dumps(
                {"url": daemon.url, "user": user, "seconds": scenario.seconds,
                 "slow": scenario.slow, "non_readers": scenario.non_readers,
                 "guessers": scenario.guessers}),
            cwd=REPO_ROOT, env=child_env({"HOSTILE_PASSWORD": password}),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        stop = asyncio.Event()
        scrapes, probes = Outcomes(), Outcomes()
        samples: list[tuple[int, int]] = []

        async def watch() -> None:
            while not stop.is_set():
                samples.append((daemon.rss_kb() or 0, open_fds(daemon.pid) or 0))
                await asyncio.sleep(0.1)
                if len(samples) % 50 == 0:  # every 5 s, new jobs on the manual clock
                    await asyncio.to_thread(sim.advance, 5 * 60_000)

        helpers = [
            asyncio.create_task(
                _every(1.0, stop, scrapes, lambda: scraper.get("/metrics", headers=headers))
            ),
            asyncio.create_task(_every(1.0, stop, probes, lambda: prober.get("/-/healthy"))),
            asyncio.create_task(watch()),
        ]
        out, _ = await attacker.communicate()
        stop.set()
        await asyncio.gather(*helpers)
        during = await asyncio.to_thread(polls)
        figures |= {
            "attacker": json.loads(out.decode().strip().splitlines()[-1]),
            "scrapes": scrapes.summary(),
            "probes": probes.summary(),
            "peak_rss_mib": round((proc_kb(daemon.pid, "VmHWM") or 0) / 1024, 1),
            "fds": [fds_before, max(f for _, f in samples)],
            "polls_during_attack": {k: int(during[k] - before[k]) for k in before},
        }
        started = time.monotonic()  # after the attack: back to normal, nothing lost
        with contextlib.suppress(RuntimeError):  # reported below, not raised
            daemon.wait_until(lambda: (open_fds(daemon.pid) or 0) <= fds_before + 8, 90, "fds")
        figures["fds"].append(open_fds(daemon.pid) or 1 << 20)
        ground: dict[str, float] = {}
        seen: dict[str, float] = {}

        def equal() -> bool:
            nonlocal ground, seen
            ground = truth(sim.control("GET", f"ground-truth?since={since_ms}"))
            seen = counted(daemon.get("/metrics").text)
            return ground == seen

        with contextlib.suppress(Exception):
            await asyncio.to_thread(daemon.wait_until, equal, 90, "counters")
        figures["counters_equal_ground_truth"] = ground == seen
        figures["jobs_counted"] = int(sum(v for k, v in seen.items() if "jobs" in k))
        figures["recovery_seconds"] = round(time.monotonic() - started, 2)
    with daemon.log_path.open("rb") as log:
        log.seek(log_offset)
        attack_log = log.read()
    figures["exit_code"] = daemon.stop()
    events = [json.loads(line) for line in attack_log.splitlines() if line.startswith(b"{")]
    figures["log"] = {
        "lines": attack_log.count(b"\n"),
        "tracebacks": attack_log.count(b"Traceback"),
        "poll_failures": [e for e in events if e.get("event") == "poll failed"][:5],
    }
    figures["verdict"] = {check["metric"]: check["ok"] for check in checks(figures)}
    return figures


def checks(f: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's conditions as report rows (metric, value, unit, target, met)."""
    scrapes, probes, polls, fds = f["scrapes"], f["probes"], f["polls_during_attack"], f["fds"]
    return [
        row("scrapes answered 200", scrapes["ok_ratio"], "ratio", ">= 0.99",
            scrapes["ok_ratio"] >= 0.99),
        row("scrape p99", scrapes["p99_s"], "s", "<= 1.5", scrapes["p99_s"] <= 1.5),
        row("health probes answered", probes["ok_ratio"], "ratio", ">= 0.99",
            probes["ok_ratio"] >= 0.99),
        row("peak RSS (VmHWM)", f["peak_rss_mib"], "MiB", "<= 256", f["peak_rss_mib"] <= 256),
        row("polls during the attack (success / error)", f"{polls['success']} / {polls['error']}",
            "", "error 0", polls["success"] > 0 and polls["error"] == 0),
        row("descriptors before / max / after", " / ".join(map(str, fds)), "", "back to before",
            fds[2] <= fds[0] + 8),
        row("counters equal ground truth afterwards", f["jobs_counted"], "jobs", "equal",
            f["counters_equal_ground_truth"]),
        row("daemon tracebacks during the attack", f["log"]["tracebacks"], "", "0",
            f["log"]["tracebacks"] == 0),
        row("exit code after the attack", f["exit_code"], "", "0", f["exit_code"] == 0),
    ]  # fmt: skip


def _certificate(work: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the TLS scenario needs the openssl command (Debian package openssl)")
    cert, key = work / "tls.crt", work / "tls.key"
    subprocess.run(  # noqa: S603 - fixed arguments
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def run_tls(stalled: int) -> dict[str, Any]:
    """*stalled* clients that send the first bytes of a ClientHello and stop, while a real TLS
    client scrapes every second for 12 s: peak RSS and the real client's answers."""
    with harness.simulator(estate_scenario(10, instances=2)) as (simulator, work, cpu):
        cert, key = await asyncio.to_thread(_certificate, work)
        (work / "tls.yml").write_text(f"tls_server_config: {{cert_file: {cert}, key_file: {key}}}")
        daemon = harness.daemon(simulator, work / "d.log", cpu, web_config_file=work / "tls.yml")
        with running(daemon):
            daemon.start()
            return await _stall(daemon, cert, stalled)


async def _stall(daemon: DaemonProcess, cert: Path, stalled: int) -> dict[str, Any]:
    port = int(daemon.url.rsplit(":", 1)[1])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(stalled)]
    evicted = 0  # beyond the TLS connection cap newcomers evict the oldest waiting ones
    for sock in socks:
        try:
            sock.sendall(bytes.fromhex("16030102000100"))
        except OSError:
            evicted += 1
    outcomes, stop = Outcomes(), asyncio.Event()
    context = ssl.create_default_context(cafile=str(cert))
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        task = asyncio.create_task(
            _every(1.0, stop, outcomes, lambda: client.get(daemon.url + "/metrics"))
        )
        await asyncio.sleep(12)
        stop.set()
        await task
    for sock in socks:
        sock.close()
    return {
        "stalled_handshakes": stalled,
        "evicted_before_their_first_bytes": evicted,
        "peak_rss_mib": round((proc_kb(daemon.pid, "VmHWM") or 0) / 1024, 1),
        "real_client": outcomes.summary(),
    }


def run(quick: bool) -> dict[str, Any]:
    small = Scenario(seconds=10.0, slow=300, non_readers=10, guessers=4, bcrypt_cost=10)
    figures = asyncio.run(run_scenario(small if quick else Scenario()))
    figures["tls"] = tls = asyncio.run(run_tls(200 if quick else 1000))
    return {
        "figures": figures,
        "rows": [
            *checks(figures),
            row(f"peak RSS with {tls['stalled_handshakes']:,} stalled TLS handshakes",
                tls["peak_rss_mib"], "MiB"),
            row("real TLS client answered meanwhile", tls["real_client"]["ok_ratio"], "ratio"),
        ],
    }  # fmt: skip


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
                if info[0] != 1:  # TCP_ESTABLISHED: the server has given up on it
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
    host: str, port: int, user: str, n: int, tally: Counter[str], stop: threading.Event
) -> None:
    connection: http.client.HTTPConnection | None = None
    attempt = 0
    while not stop.is_set():
        attempt += 1
        name = user if attempt % 2 else f"admin{n}"
        try:
            connection = connection or http.client.HTTPConnection(host, port, timeout=30)
            connection.request("GET", "/metrics", headers={"Authorization": _basic(name, "x")})
            response = connection.getresponse()
            response.read()
            outcome = f"guess_{response.status}"
        except (OSError, http.client.HTTPException):
            outcome, connection = "guess_error", None
        tally.update((outcome,))  # one C-level call: safe enough across threads for a tally


async def attack(args: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(args["url"])
    host, port = url.hostname or "127.0.0.1", url.port or 80
    password = os.environ.get("HOSTILE_PASSWORD", "")
    request = (
        f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain\r\n"
        f"Authorization: {_basic(args['user'], password)}\r\n\r\n"
    ).encode()
    tally: Counter[str] = Counter()
    stop, threads_stop = asyncio.Event(), threading.Event()
    threads = [
        threading.Thread(
            target=_guesser, args=(host, port, args["user"], n, tally, threads_stop), daemon=True
        )
        for n in range(args["guessers"])
    ]
    for thread in threads:
        thread.start()
    tasks = [
        asyncio.create_task(_slow_header(host, port, tally, stop)) for _ in range(args["slow"])
    ]
    tasks += [
        asyncio.create_task(_non_reader(host, port, request, tally, stop))
        for _ in range(args["non_readers"])
    ]
    await asyncio.sleep(args["seconds"])
    stop.set()
    threads_stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for thread in threads:
        thread.join(35)
    slow_open_max = tally.pop("slow_open_max", 0)
    tally.pop("slow_open", None)
    return {"counters": dict(sorted(tally.items())), "slow_open_max": slow_open_max}


def main() -> int:
    """The attacker process: ``python -m bench.hostile_bench '{"url": …, "user": …, "seconds":
    …, "slow": …, "non_readers": …, "guessers": …}'`` (the right password, for the
    non-readers, in ``HOSTILE_PASSWORD``); prints one JSON document of counters."""
    args = json.loads(sys.argv[1])
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(asyncio.run(attack(args))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
