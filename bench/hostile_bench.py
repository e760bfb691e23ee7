"""Serving under hostile clients: a real daemon, a real attack, a Prometheus and a kubelet.

Issue 9: for at least 30 s, against a daemon with 60 instances (a multi-MB text exposition), a
cost-12 bcrypt user and a 1,024 descriptor limit, 1,100 slow-header connections, 50 clients
that never read the text exposition and 16 password guessers at once
(:mod:`bench.hostile_clients`, a process of its own); meanwhile a Prometheus-like scraper (gzip,
its OpenMetrics ``Accept``, every 1 s, 10 s timeout, keep-alive) and a kubelet-like prober
(``/-/healthy`` every 1 s, 3 s timeout, a new connection each time). What must hold: ≥ 99 % of
scrapes answer 200 with p99 ≤ 1.5 s, ≥ 99 % of probes answer, peak RSS ≤ 256 MiB, no failed poll,
descriptors back to their level afterwards, every counter equal to the ground truth.

A tick that finds the previous scrape or probe still running is skipped, as Prometheus and the
kubelet skip it; the slow one counts with its latency or its timeout. The simulator's manual
clock moves every few seconds, so jobs keep arriving during the attack. A second scenario holds
1,000 stalled TLS handshakes (a partial ClientHello each) while a real TLS client scrapes.

``tests/e2e/test_hostile.py`` runs :func:`run_scenario` and asserts the targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import httpx

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
    write_scenario,
)

TITLE = "Serving under hostile clients (slow headers, non-readers, password guessers, TLS)"
LOOKBACK_S = 2 * 86400
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

    @classmethod
    def quick(cls) -> Scenario:
        return cls(seconds=10.0, slow=300, non_readers=10, guessers=4, bcrypt_cost=10)


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
            "attempts": attempts,
            "ok": len(self.latencies),
            "ok_ratio": round(len(self.latencies) / attempts, 4) if attempts else 0.0,
            "p50_s": round(percentile(got, 0.5), 4),
            "p99_s": round(percentile(got, 0.99), 4),
            "failures": dict(self.failures),
            "skipped_ticks": self.skipped,
        }


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


def counted(text: str) -> dict[str, float]:
    """Jobs and objects counted per instance, as ``instance:jobs`` → sum."""
    found = metric_values(text, ["idaas_sync_jobs_total", "idaas_sync_objects_total"])
    sums: Counter[str] = Counter()
    for name, samples in found.items():
        for labels, value in samples:
            sums[f"{labels.split(',', 1)[0]}:{name}"] += value
    return dict(sums)


def truth(ground: dict[str, Any]) -> dict[str, float]:
    sums: Counter[str] = Counter()
    for instance_id, data in ground["instances"].items():
        for kind in ("jobs", "objects"):
            name = f"idaas_sync_{kind}_total"
            sums[f'instance_id="{instance_id}":{name}'] += sum(r["count"] for r in data[kind])
    return {k: float(v) for k, v in sums.items() if v}


def _estate(
    work: Path,
    name: str,
    targets: int,
    instances: int,
    *,
    fd_limit: int | None = None,
    auth: tuple[str, str] | None = None,
    **settings: Any,
) -> tuple[SimulatorProcess, DaemonProcess]:
    estate = estate_scenario(targets, instances=instances, interval="1h", history="48h")
    simulator = SimulatorProcess(
        write_scenario(work / f"{name}.json", estate), work / f"{name}-sim.log", manual_clock=True
    )
    simulator.start()
    daemon = DaemonProcess(
        work / f"{name}-daemon.log",
        instance_ids=simulator.instances,
        endpoint=simulator.url,
        settings={"api_rate_limit": 0, "lookback_seconds": LOOKBACK_S, **settings},
        fd_limit=fd_limit,
        auth=auth,
    )
    return simulator, daemon


async def run_scenario(scenario: Scenario, work: Path) -> dict[str, Any]:
    """The attack of the module doc in *work* (a scratch directory); its figures."""
    user, password = "prometheus", secrets.token_urlsafe(18)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(scenario.bcrypt_cost)).decode()
    (work / "web.yml").write_text(f"basic_auth_users:\n  {user}: {hashed}\n")
    simulator, daemon = _estate(
        work, "attack", scenario.targets, scenario.instances,
        poll_interval_seconds=scenario.poll_interval, state_file=work / "state.json",
        web_config_file=work / "web.yml", fd_limit=scenario.fd_limit, auth=(user, password),
    )  # fmt: skip
    since_ms = int(simulator.control("GET", "clock")["now_ms"]) - LOOKBACK_S * 1000
    figures: dict[str, Any] = {"scenario": dataclasses.asdict(scenario)}
    headers = {"accept": PROMETHEUS_ACCEPT, "accept-encoding": "gzip"}
    with running(simulator, daemon):
        daemon.start()
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
            figures["exposition_bytes"] = len(daemon.get("/metrics").content)
            figures["rss_before_mib"] = round((daemon.rss_kb() or 0) / 1024, 1)
            fds_before = open_fds(daemon.pid) or 0
            log_offset = daemon.log_path.stat().st_size
            attacker = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.hostile_clients", "--url", daemon.url,
                "--user", user, "--seconds", str(scenario.seconds), "--slow", str(scenario.slow),
                "--non-readers", str(scenario.non_readers), "--guessers", str(scenario.guessers),
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
                        await asyncio.to_thread(simulator.advance, 5 * 60_000)

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
                "fds_before": fds_before,
                "fds_during_max": max(f for _, f in samples),
                "polls_during_attack": {k: int(during[k] - before[k]) for k in before},
            }
            # after the attack: back to normal, nothing lost
            started = time.monotonic()
            daemon.wait_until(lambda: (open_fds(daemon.pid) or 0) <= fds_before + 8, 90, "fds")
            figures["fds_after"] = open_fds(daemon.pid)
            ground: dict[str, float] = {}
            seen: dict[str, float] = {}

            def equal() -> bool:
                nonlocal ground, seen
                ground = truth(simulator.control("GET", f"ground-truth?since={since_ms}"))
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
    figures["daemon_log_during_attack"] = {
        "lines": attack_log.count(b"\n"),
        "tracebacks": attack_log.count(b"Traceback"),
        "poll_failures": [e for e in events if e.get("event") == "poll failed"][:5],
    }
    figures["verdict"] = verdict(figures)
    return figures


def verdict(figures: dict[str, Any]) -> dict[str, bool]:
    """Each of the issue's conditions, met or not."""
    polls = figures["polls_during_attack"]
    return {
        "scrapes_ok_ratio": figures["scrapes"]["ok_ratio"] >= 0.99,
        "scrapes_p99": figures["scrapes"]["p99_s"] <= 1.5,
        "probes_ok_ratio": figures["probes"]["ok_ratio"] >= 0.99,
        "peak_rss": figures["peak_rss_mib"] <= 256,
        "polls_went_on": polls["success"] > 0 and polls["error"] == 0,
        "fds_recovered": (figures["fds_after"] or 1 << 20) <= figures["fds_before"] + 8,
        "nothing_lost": bool(figures["counters_equal_ground_truth"]),
        "clean_exit": figures["exit_code"] == 0,
    }


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


async def run_tls(work: Path, stalled: int) -> dict[str, Any]:
    """*stalled* clients that send the first bytes of a ClientHello and stop, while a real TLS
    client scrapes every second for 12 s: peak RSS and the real client's answers."""
    cert, key = await asyncio.to_thread(_certificate, work)
    (work / "tls.yml").write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    simulator, daemon = _estate(work, "tls", 10, 2, web_config_file=work / "tls.yml")
    with running(simulator, daemon):
        daemon.start()
        port = int(daemon.url.rsplit(":", 1)[1])
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(stalled)]
        for sock in socks:
            sock.sendall(bytes.fromhex("16030102000100"))
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
            "peak_rss_mib": round((proc_kb(daemon.pid, "VmHWM") or 0) / 1024, 1),
            "real_client": outcomes.summary(),
        }


def run(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp:
        figures = asyncio.run(run_scenario(Scenario.quick() if quick else Scenario(), Path(tmp)))
        figures["tls"] = asyncio.run(run_tls(Path(tmp), 200 if quick else 1000))
    ok, scrapes, probes, polls = (
        figures["verdict"], figures["scrapes"], figures["probes"], figures["polls_during_attack"]
    )  # fmt: skip
    tls = figures["tls"]
    return {
        "figures": figures,
        "rows": [
            row("scrapes answered 200", scrapes["ok_ratio"], "ratio", ">= 0.99",
                ok["scrapes_ok_ratio"]),
            row("scrape p99", scrapes["p99_s"], "s", "<= 1.5", ok["scrapes_p99"]),
            row("health probes answered", probes["ok_ratio"], "ratio", ">= 0.99",
                ok["probes_ok_ratio"]),
            row("peak RSS (VmHWM)", figures["peak_rss_mib"], "MiB", "<= 256", ok["peak_rss"]),
            row("polls during the attack (success / error)",
                f"{polls['success']} / {polls['error']}", "", "error 0", ok["polls_went_on"]),
            row("descriptors before / max / after",
                f"{figures['fds_before']} / {figures['fds_during_max']} / {figures['fds_after']}",
                "", "back to before", ok["fds_recovered"]),
            row("counters equal ground truth afterwards", figures["jobs_counted"], "jobs",
                "equal", ok["nothing_lost"]),
            row("daemon tracebacks during the attack",
                figures["daemon_log_during_attack"]["tracebacks"], "", "0"),
            row(f"peak RSS with {tls['stalled_handshakes']:,} stalled TLS handshakes",
                tls["peak_rss_mib"], "MiB"),
            row("real TLS client answered meanwhile", tls["real_client"]["ok_ratio"], "ratio"),
        ],
    }  # fmt: skip
