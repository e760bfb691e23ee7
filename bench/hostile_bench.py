"""Serving under hostile clients: a real daemon, a real attack, a Prometheus and a kubelet.

Issue 9, §1: one scenario, all at once, for at least 30 s, against a daemon with ~60 instances
(a multi-MB text exposition), a web config with a cost-12 bcrypt user and a 1,024
file-descriptor limit:

* ≥ 1,100 slow-header connections, 50 clients that request the text exposition and never read,
  16 threads guessing passwords as fast as the server answers (:mod:`bench.hostile_clients`,
  a process of its own);
* meanwhile a Prometheus-like scraper (right credentials, ``Accept-Encoding: gzip``, the
  OpenMetrics ``Accept`` header Prometheus sends, every 1 s, 10 s timeout, keep-alive) and a
  kubelet-like prober (``/-/healthy`` every 1 s, 3 s timeout, a new connection each time).

What must hold: ≥ 99 % of scrapes answer 200 with p99 ≤ 1.5 s; ≥ 99 % of probes answer; peak RSS
(``VmHWM``) ≤ 256 MiB; polls go on with no failed poll; after the attack the descriptors come
back down and every instance's job and object counters equal the simulator's ground truth.

A tick that finds the previous scrape (or probe) still running is skipped and reported, as
Prometheus and the kubelet skip it; the slow one counts with its latency or its timeout. The
simulator runs on a manual clock that the driver advances every few seconds, so new jobs keep
arriving during the attack.

A second, smaller scenario measures stalled TLS handshakes: 1,000 clients that send the first
bytes of a ClientHello and stop, while a real TLS client scrapes every second.

Run it::

    python -m bench --only hostile          # bench/results/hostile_bench.json
    python -m bench.hostile_bench [--quick] [--seconds 60]

``tests/e2e/test_hostile.py`` runs the same scenario and asserts the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bcrypt
import httpx

from bench.environment import environment
from bench.memory_bench import (
    REPO_ROOT,
    DaemonProcess,
    SimulatorProcess,
    _child_env,
    estate_scenario,
    proc_status_kb,
    running,
    write_scenario,
)

__all__ = ["Scenario", "main", "run", "run_scenario"]

NAME = "hostile_bench"
LOOKBACK_S = 2 * 86400
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
TARGETS = {
    "scrape_ok_ratio": 0.99,
    "scrape_p99_s": 1.5,
    "probe_ok_ratio": 0.99,
    "peak_rss_mib": 256.0,
}


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
    scrape_interval: float = 1.0
    scrape_timeout: float = 10.0
    probe_interval: float = 1.0
    probe_timeout: float = 3.0
    clock_step_minutes: int = 5
    clock_step_every: float = 5.0
    recovery_timeout: float = 90.0

    @classmethod
    def quick(cls) -> Scenario:
        return cls(seconds=10.0, slow=300, non_readers=10, guessers=4, bcrypt_cost=10)


@dataclass
class Outcomes:
    """Answers of one periodic client: latencies of the good ones, reasons of the others."""

    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    """Ticks that found the previous call still running: skipped, as Prometheus and the
    kubelet do (neither starts a second scrape or probe of the same target); its latency or
    timeout is what counts."""

    def summary(self) -> dict[str, Any]:
        attempts = len(self.latencies) + sum(self.failures.values())
        ordered = sorted(self.latencies)

        def quantile(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

        return {
            "attempts": attempts,
            "ok": len(ordered),
            "ok_ratio": round(len(ordered) / attempts, 4) if attempts else None,
            "p50_s": quantile(0.5),
            "p99_s": quantile(0.99),
            "max_s": quantile(1.0),
            "failures": dict(self.failures),
            "skipped_ticks": self.skipped,
        }


async def _periodic(
    name: str,
    interval: float,
    stop: asyncio.Event,
    outcomes: Outcomes,
    once: Any,
) -> None:
    """Call ``once()`` every *interval* s; a tick that finds the last call running is skipped."""
    running_call: asyncio.Task[None] | None = None
    started = time.monotonic()
    tick = 0

    async def timed() -> None:
        begun = time.monotonic()
        try:
            await once()
        except httpx.HTTPStatusError as exc:
            outcomes.failures[f"HTTP {exc.response.status_code}"] += 1
        except (httpx.HTTPError, OSError) as exc:
            outcomes.failures[type(exc).__name__] += 1
        else:
            outcomes.latencies.append(time.monotonic() - begun)

    while not stop.is_set():
        if running_call is not None and not running_call.done():
            outcomes.skipped += 1
        else:
            running_call = asyncio.create_task(timed(), name=name)
        tick += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                stop.wait(), max(0.0, started + tick * interval - time.monotonic())
            )
    if running_call is not None:
        await running_call


_POLLS = re.compile(
    r'^idaas_exporter_polls_total\{[^}]*result="(success|error)"[^}]*\} (\S+)', re.M
)


def polls_by_result(text: str) -> dict[str, float]:
    """``sum by (result) (idaas_exporter_polls_total)`` from an exposition.

    >>> polls_by_result('idaas_exporter_polls_total{instance_id="a",result="success"} 3.0\\n'
    ...                 'idaas_exporter_polls_total{instance_id="b",result="success"} 2.0\\n')
    {'success': 5.0, 'error': 0.0}
    """
    found = {"success": 0.0, "error": 0.0}
    for result, value in _POLLS.findall(text):
        found[result] += float(value)
    return found


_COUNTED = re.compile(
    r'^(idaas_sync_jobs_total|idaas_sync_objects_total)\{instance_id="([^"]+)"[^}]*\} (\S+)$', re.M
)


def counted_per_instance(text: str) -> dict[str, dict[str, float]]:
    """Per instance, the sums of ``idaas_sync_jobs_total`` and ``idaas_sync_objects_total``."""
    found: dict[str, dict[str, float]] = {}
    for name, instance_id, value in _COUNTED.findall(text):
        row = found.setdefault(instance_id, {"jobs": 0.0, "objects": 0.0})
        row["jobs" if name == "idaas_sync_jobs_total" else "objects"] += float(value)
    return found


def truth_per_instance(truth: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The same sums from the simulator's ground truth."""
    return {
        instance_id: {
            "jobs": float(sum(row["count"] for row in data["jobs"])),
            "objects": float(sum(row["count"] for row in data["objects"])),
        }
        for instance_id, data in truth["instances"].items()
    }


def _open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _web_config(path: Path, user: str, password: str, cost: int) -> None:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
    path.write_text(f"basic_auth_users:\n  {user}: {hashed}\n", "utf-8")


async def run_scenario(scenario: Scenario, work: Path) -> dict[str, Any]:
    """Run the scenario in *work* (a scratch directory); the figures (see the module doc)."""
    user, password = "prometheus", secrets.token_urlsafe(18)
    web_config = work / "web.yml"
    _web_config(web_config, user, password, scenario.bcrypt_cost)
    estate = estate_scenario(
        scenario.targets, instances=scenario.instances, interval="1h", history="48h"
    )
    simulator = SimulatorProcess(
        write_scenario(work / "estate.json", estate), work / "simulator.log", manual_clock=True
    )
    simulator.start()
    since_ms = int(simulator.control("GET", "clock")["now_ms"]) - LOOKBACK_S * 1000
    daemon = DaemonProcess(
        work / "daemon.log",
        instance_ids=simulator.instances,
        endpoint=simulator.url,
        settings={
            "poll_interval_seconds": scenario.poll_interval,
            "lookback_seconds": LOOKBACK_S,
            "api_rate_limit": 0,
            "state_file": work / "state" / "state.json",
            "web_config_file": web_config,
        },
    )
    daemon.fd_limit = scenario.fd_limit
    figures: dict[str, Any] = {"scenario": dataclasses.asdict(scenario)}
    with running(simulator, daemon):
        daemon.start()
        auth = httpx.BasicAuth(user, password)
        headers = {"accept": PROMETHEUS_ACCEPT, "accept-encoding": "gzip"}
        async with (
            httpx.AsyncClient(
                base_url=daemon.url, auth=auth, headers=headers, timeout=scenario.scrape_timeout
            ) as scraper,
            httpx.AsyncClient(
                base_url=daemon.url,
                timeout=scenario.probe_timeout,
                limits=httpx.Limits(max_keepalive_connections=0),
            ) as prober,
        ):
            last_text = ""

            async def scrape() -> None:
                nonlocal last_text
                response = await scraper.get("/metrics")
                response.raise_for_status()
                last_text = response.text

            async def probe() -> None:
                (await prober.get("/-/healthy")).raise_for_status()

            ready_deadline = time.monotonic() + 120
            while (await prober.get("/-/ready")).status_code != 200:
                if time.monotonic() > ready_deadline:
                    raise RuntimeError(f"the daemon was not ready in 120 s: {daemon.tail()}")
                await asyncio.sleep(0.1)
            await scrape()
            before = polls_by_result(last_text)
            figures["exposition_bytes"] = len(last_text.encode())
            figures["rss_before_mib"] = round((daemon.rss_kb() or 0) / 1024, 1)
            fds_before = _open_fds(daemon.pid) or 0
            figures["fds_before"] = fds_before
            log_offset = daemon.log_path.stat().st_size

            stop = asyncio.Event()
            scrapes, probes = Outcomes(), Outcomes()
            rss: list[int] = []
            fds: list[int] = []

            async def sample() -> None:
                while not stop.is_set():
                    rss.append(daemon.rss_kb() or 0)
                    fds.append(_open_fds(daemon.pid) or 0)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.1)

            async def advance_clock() -> None:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), scenario.clock_step_every)
                    if not stop.is_set():
                        await asyncio.to_thread(
                            simulator.advance, scenario.clock_step_minutes * 60_000
                        )

            attacker = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.hostile_clients",
                "--url", daemon.url, "--user", user,
                "--seconds", str(scenario.seconds), "--slow", str(scenario.slow),
                "--non-readers", str(scenario.non_readers),
                "--guessers", str(scenario.guessers),
                cwd=REPO_ROOT, env=_child_env({"HOSTILE_PASSWORD": password}),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            attack_started = time.monotonic()
            helpers = [
                asyncio.create_task(
                    _periodic("scrape", scenario.scrape_interval, stop, scrapes, scrape)
                ),
                asyncio.create_task(
                    _periodic("probe", scenario.probe_interval, stop, probes, probe)
                ),
                asyncio.create_task(sample()),
                asyncio.create_task(advance_clock()),
            ]
            out, err = await attacker.communicate()
            stop.set()
            await asyncio.gather(*helpers)
            attack_seconds = time.monotonic() - attack_started
            during = polls_by_result(last_text)
            figures["attack_seconds"] = round(attack_seconds, 1)
            try:
                figures["attacker"] = json.loads(out.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                figures["attacker"] = {"error": err.decode()[-2000:]}
            figures["scrapes"] = scrapes.summary()
            figures["probes"] = probes.summary()
            figures["rss_during_max_mib"] = round(max(rss, default=0) / 1024, 1)
            figures["peak_rss_mib"] = round((proc_status_kb(daemon.pid, "VmHWM") or 0) / 1024, 1)
            figures["fds_during_max"] = max(fds, default=0)
            figures["polls_during_attack"] = {
                k: int(during[k] - before[k]) for k in ("success", "error")
            }

            # -- after the attack: back to normal, nothing lost --------------------------------
            recovered = time.monotonic()
            deadline = recovered + scenario.recovery_timeout
            while (_open_fds(daemon.pid) or 0) > fds_before + 8:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            figures["fds_after"] = _open_fds(daemon.pid)
            figures["fds_recovery_seconds"] = round(time.monotonic() - recovered, 2)
            after = Outcomes()
            for _ in range(5):
                started = time.monotonic()
                try:
                    await scrape()
                    after.latencies.append(time.monotonic() - started)
                except httpx.HTTPError as exc:
                    after.failures[type(exc).__name__] += 1
            figures["scrapes_after"] = after.summary()
            truth: dict[str, dict[str, float]] = {}
            counted: dict[str, dict[str, float]] = {}
            async with httpx.AsyncClient(base_url=daemon.url, auth=auth, timeout=30) as plain:
                while True:
                    ground = await asyncio.to_thread(
                        simulator.control, "GET", f"ground-truth?since={since_ms}"
                    )
                    truth = truth_per_instance(ground)
                    counted = counted_per_instance((await plain.get("/metrics")).text)
                    if counted == truth or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
            figures["counters_equal_ground_truth"] = counted == truth
            figures["jobs_counted"] = int(sum(row["jobs"] for row in counted.values()))
            figures["jobs_in_ground_truth"] = int(sum(row["jobs"] for row in truth.values()))
            figures["recovery_seconds"] = round(time.monotonic() - recovered, 2)
        with daemon.log_path.open("rb") as log:
            log.seek(log_offset)
            attack_log = log.read()
        events = [json.loads(line) for line in attack_log.splitlines() if line.startswith(b"{")]
        figures["daemon_log_during_attack"] = {
            "bytes": len(attack_log),
            "lines": attack_log.count(b"\n"),
            "tracebacks": attack_log.count(b"Traceback"),
            "events": dict(
                Counter(str(e.get("event")) for e in events if e.get("event") != "poll")
            ),
            "poll_failures": [
                {k: e.get(k) for k in ("instance_id", "code", "error")}
                for e in events
                if e.get("event") == "poll failed"
            ][:10],
        }
        figures["exit_code"] = daemon.stop()
    figures["verdict"] = verdict(figures)
    return figures


# -- stalled TLS handshakes -----------------------------------------------------------------


def _estate(
    work: Path, name: str, estate: dict[str, Any], **settings: Any
) -> tuple[SimulatorProcess, DaemonProcess]:
    """A started simulator of *estate* (manual clock) and a daemon polling it, not started."""
    simulator = SimulatorProcess(
        write_scenario(work / f"estate-{name}.json", estate),
        work / f"simulator-{name}.log",
        manual_clock=True,
    )
    simulator.start()
    daemon = DaemonProcess(
        work / f"daemon-{name}.log",
        instance_ids=simulator.instances,
        endpoint=simulator.url,
        settings={"poll_interval_seconds": 10, "api_rate_limit": 0, **settings},
    )
    return simulator, daemon


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (the bench extra needs no cryptography package:
    ``openssl`` makes it)."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the TLS scenario needs the openssl command (Debian package openssl)")
    subprocess.run(  # noqa: S603 - fixed arguments
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def run_tls_scenario(
    work: Path, *, stalled: int = 1000, seconds: float = 12.0
) -> dict[str, Any]:
    """*stalled* clients that open a TLS connection, send the first bytes of a ClientHello and
    stop; meanwhile a real TLS client scrapes every second. Peak RSS and the real client's
    answers are the figures."""
    cert, key = _self_signed(work)
    web_config = work / "web-tls.yml"
    web_config.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n", "utf-8")
    simulator, daemon = _estate(
        work, "tls", estate_scenario(10, instances=2), web_config_file=web_config
    )
    daemon.fd_limit = 4096
    figures: dict[str, Any] = {"stalled_handshakes": stalled, "seconds": seconds}
    with running(simulator, daemon):
        daemon.start()
        port = int(daemon.url.rsplit(":", 1)[1])
        figures["rss_before_mib"] = round((daemon.rss_kb() or 0) / 1024, 1)
        context = ssl.create_default_context(cafile=str(cert))
        # a ClientHello's record header and the start of its handshake header, then nothing
        partial = bytes.fromhex("160301020001") + b"\x00"
        socks = []
        for _ in range(stalled):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(partial)
            socks.append(sock)
        outcomes = Outcomes()
        rss: list[int] = []
        stop = asyncio.Event()

        async def scrape() -> None:
            async with httpx.AsyncClient(verify=context, timeout=10) as client:
                (await client.get(daemon.url + "/metrics")).raise_for_status()

        async def sample() -> None:
            while not stop.is_set():
                rss.append(daemon.rss_kb() or 0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)

        tasks = [
            asyncio.create_task(_periodic("tls scrape", 1.0, stop, outcomes, scrape)),
            asyncio.create_task(sample()),
        ]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        for sock in socks:
            sock.close()
        figures["rss_during_max_mib"] = round(max(rss, default=0) / 1024, 1)
        figures["peak_rss_mib"] = round((proc_status_kb(daemon.pid, "VmHWM") or 0) / 1024, 1)
        figures["real_client"] = outcomes.summary()
        figures["exit_code"] = daemon.stop()
    return figures


# -- many ordinary scrapes at once ----------------------------------------------------------


async def run_concurrent_scrapes(
    work: Path, *, clients: int = 200, rounds: int = 3
) -> dict[str, Any]:
    """*clients* plain-text scrapes of the 60-instance exposition at once, each read as fast as
    a 64 KiB receive window allows and discarded, *rounds* times: the daemon's peak RSS is the
    figure (it used to make one copy of the exposition per scrape in flight)."""
    scenario = Scenario()
    estate = estate_scenario(
        scenario.targets, instances=scenario.instances, interval="1h", history="48h"
    )
    simulator, daemon = _estate(work, "scrapes", estate)
    figures: dict[str, Any] = {"clients": clients, "rounds": rounds}
    with running(simulator, daemon):
        daemon.start()
        daemon.wait_all_polled(120)
        port = int(daemon.url.rsplit(":", 1)[1])
        figures["rss_before_mib"] = round((daemon.rss_kb() or 0) / 1024, 1)
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

        async def one() -> int:
            # a receive window of 64 KiB, as over a real network, where the window and not
            # the loopback's megabytes of buffer bounds what is in flight
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(request)
            size = 0
            while chunk := await reader.read(1 << 16):
                size += len(chunk)
            writer.close()
            return size

        sizes: list[int] = []
        started = time.monotonic()
        for _ in range(rounds):
            sizes += await asyncio.gather(*(one() for _ in range(clients)))
        figures["seconds"] = round(time.monotonic() - started, 2)
        figures["bytes_per_response_min"] = min(sizes)
        figures["peak_rss_mib"] = round((proc_status_kb(daemon.pid, "VmHWM") or 0) / 1024, 1)
        figures["exit_code"] = daemon.stop()
    return figures


def verdict(figures: dict[str, Any]) -> dict[str, bool]:
    """Each of the issue's conditions, met or not."""
    scrapes, probes = figures["scrapes"], figures["probes"]
    return {
        "scrapes_ok_ratio": (scrapes["ok_ratio"] or 0) >= TARGETS["scrape_ok_ratio"],
        "scrapes_p99": (scrapes["p99_s"] or 1e9) <= TARGETS["scrape_p99_s"],
        "probes_ok_ratio": (probes["ok_ratio"] or 0) >= TARGETS["probe_ok_ratio"],
        "peak_rss": figures["peak_rss_mib"] <= TARGETS["peak_rss_mib"],
        "polls_went_on": figures["polls_during_attack"]["success"] > 0
        and figures["polls_during_attack"]["error"] == 0,
        "fds_recovered": (figures["fds_after"] or 1e9) <= figures["fds_before"] + 8,
        "nothing_lost": bool(figures["counters_equal_ground_truth"]),
        "clean_exit": figures["exit_code"] == 0,
    }


def summary(figures: dict[str, Any]) -> list[dict[str, Any]]:
    ok = figures["verdict"]
    scrapes, probes = figures["scrapes"], figures["probes"]
    return [
        {"metric": "scrapes answered 200", "value": scrapes["ok_ratio"], "unit": "ratio",
         "target": ">= 0.99", "ok": ok["scrapes_ok_ratio"]},
        {"metric": "scrape p99", "value": scrapes["p99_s"], "unit": "s", "target": "<= 1.5",
         "ok": ok["scrapes_p99"]},
        {"metric": "health probes answered", "value": probes["ok_ratio"], "unit": "ratio",
         "target": ">= 0.99", "ok": ok["probes_ok_ratio"]},
        {"metric": "peak RSS (VmHWM)", "value": figures["peak_rss_mib"], "unit": "MiB",
         "target": "<= 256", "ok": ok["peak_rss"]},
        {"metric": "polls during the attack (success / error)",
         "value": f"{figures['polls_during_attack']['success']} / "
         f"{figures['polls_during_attack']['error']}", "unit": "", "target": "error 0",
         "ok": ok["polls_went_on"]},
        {"metric": "descriptors before / max / after", "value":
         f"{figures['fds_before']} / {figures['fds_during_max']} / {figures['fds_after']}",
         "unit": "", "target": "back to before", "ok": ok["fds_recovered"]},
        {"metric": "counters equal ground truth after the attack",
         "value": f"{figures['jobs_counted']} / {figures['jobs_in_ground_truth']} jobs",
         "unit": "", "target": "equal", "ok": ok["nothing_lost"]},
        {"metric": "peak RSS with 1,000 stalled TLS handshakes", "value":
         figures["tls"]["peak_rss_mib"], "unit": "MiB", "target": "", "ok": None},
        {"metric": "real TLS client answered during them", "value":
         figures["tls"]["real_client"]["ok_ratio"], "unit": "ratio", "target": "", "ok": None},
        {"metric": "peak RSS with 200 concurrent plain-text scrapes", "value":
         figures["concurrent_scrapes"]["peak_rss_mib"], "unit": "MiB", "target": "",
         "ok": None},
        {"metric": "daemon log during the attack",
         "value": f"{figures['daemon_log_during_attack']['lines']} lines, "
         f"{figures['daemon_log_during_attack']['tracebacks']} tracebacks",
         "unit": "", "target": "", "ok": None},
    ]  # fmt: skip


def run(*, quick: bool = False, scenario: Scenario | None = None) -> dict[str, Any]:
    scenario = scenario or (Scenario.quick() if quick else Scenario())
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp:
        figures = asyncio.run(run_scenario(scenario, Path(tmp)))
        figures["tls"] = asyncio.run(run_tls_scenario(Path(tmp), stalled=200 if quick else 1000))
        figures["concurrent_scrapes"] = asyncio.run(
            run_concurrent_scrapes(Path(tmp), clients=20 if quick else 200)
        )
    return {
        "benchmark": NAME,
        "title": "Serving under hostile clients (slow headers, non-readers, password guessers)",
        "environment": environment(),
        "figures": figures,
        "summary": summary(figures),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--output", type=Path, help="write the JSON document here")
    args = parser.parse_args(argv)
    scenario = Scenario.quick() if args.quick else Scenario()
    if args.seconds:
        scenario = dataclasses.replace(scenario, seconds=args.seconds)
    document = run(quick=args.quick, scenario=scenario)
    text = json.dumps(document, indent=2, default=str)
    if args.output:
        args.output.write_text(text + "\n", "utf-8")
    else:
        results = Path(os.environ.get("BENCH_RESULTS_DIR", REPO_ROOT / "bench" / "results"))
        results.mkdir(parents=True, exist_ok=True)
        (results / f"{NAME}.json").write_text(text + "\n", "utf-8")
    print(json.dumps(document["figures"], indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
