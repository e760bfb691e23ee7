"""Evaluation cost of the shipped Prometheus rules: the previous version against the current one.

A real Prometheus (the ``prometheus`` binary on PATH, 2.42+) evaluates each rules file against
the same estate and ``/api/v1/rules`` is read for each rule's and each group's
``evaluationTime``: the median over many evaluations, old file against new.

The estate: ``TARGETS`` targets over ``INSTANCES`` IDaaS instances behind one exporter, shaped as
the exporter exposes them (:mod:`exporter.core.contract`): about 46 ``idaas_sync_objects_total``
series a target (entity 4 x action 7, result ``success`` on all, ``failed`` and ``skipped`` on
some), 2,300 in all, the per-target gauges and counters the rules read (last job status and end
time, last success, jobs, jobs in progress, job durations, target info), the per-instance poll
gauges and ``process_start_time_seconds``. Counters grow at every job of a target (every 60 to
900 s); a few targets fail (last job failed, never succeeded, stuck, partial success with a
failure ratio above 1 %) so that alerts fire, and their annotations' templates run, with both
files.

Samples per window, the fairness question. The cost of ``increase(x[1h])`` grows with the
samples in the window, and a Prometheus started for a benchmark has none: scraping at 1 s for
3 minutes would give each ``[1h]`` window 180 samples (all it holds) where production scraping
at 60 s holds 60, and the recorded series the new rules take ``increase()`` of would hold as
many samples as the run lasted in seconds. So by default the TSDB is **backfilled** first
(``promtool tsdb create-blocks-from openmetrics``): ``HISTORY`` of samples every ``STEP`` (60 s)
up to now, of every raw series (with the ``job``/``instance`` labels a scrape adds, and ``up``)
and of the recorded series that later rules read over a range (``idaas_sync:objects:sum``,
``idaas_sync:objects_failed:sum``, ``idaas_sync:instance_polled``,
``idaas_sync:exporter_start_time_seconds``: their values computed here as the rules would, per
evaluation at 60 s). Then Prometheus runs on a copy of that TSDB with ``evaluation_interval``
1 s (many evaluations to take a median of) and scrapes a tiny HTTP server on 127.0.0.1 whose
counters continue the backfilled ones (``scrape_interval`` 60 s, production's density). Every
``[1h]`` window then holds about 60 raw samples, as in production at 60 s, plus (recorded
series only) one sample a second of the run itself: a bias against the new rules, not for them.
Windows longer than ``HISTORY`` (``[1d]``, ``[7d]``) hold only ``HISTORY``: those rules (the
same in both files, on one or two series per target) cost less here than after a week.

Run: ``python -m bench --only rules`` (writes ``bench/results/rules_bench.json`` and REPORT.md).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench import harness

TITLE = "Prometheus rule evaluation cost: the rules of 979d387 against the current ones"
OLD_REV = "979d387"
RULES = "deploy/prometheus/idaas-sync-exporter.rules.yml"
JOB = "idaas-sync-exporter"
TARGETS, INSTANCES, SEED = 50, 2, 7
HISTORY, WEEK, STEP = 2 * 3600, 7 * 86400, 60
"""Backfilled history of every series, of those read over [7d] or [1d] (not with --quick), and
the sample interval (production's 60 s scrape and evaluation)."""
LONG = (
    "idaas_sync_last_job_end_timestamp_seconds",
    "idaas_sync_job_duration_seconds_sum",
    "idaas_sync_job_duration_seconds_count",
    "idaas_sync:instance_polled",
)
"""What the rules read over [7d] or [1d]: backfilled over WEEK."""
BLOCK = "--max-block-duration=192h"
"""promtool's blocks: one or two, larger than any Prometheus would compact (so it does not)."""
SCRAPE = 60
EVALUATIONS, QUICK_EVALUATIONS, WARMUP, ROUNDS = 15, 6, 3, 2
"""Evaluations measured per run (after WARMUP dropped ones); runs per file, alternating."""
DEADLINE = 60.0
"""Seconds any one wait may last (start-up, readiness, a round of evaluations)."""
ENTITIES = ("user", "organizational_unit", "group", "group_member")
ACTIONS = ("created", "updated", "binded", "deleted", "same", "pushed", "exported")
STATUSES = ("success", "failed", "partial_success")
PROFILES = {
    0: "failing",
    1: "never_succeeded",
    2: "stuck",
    3: "high_failure_ratio",
    4: "high_failure_ratio",
}
"""Target index → a problem profile; every other target is healthy."""


@dataclass(frozen=True, slots=True)
class Target:
    labels: str
    """``instance_id=…,target_type=…,target_id=…,direction=…`` as exposed."""
    instance_id: str
    profile: str
    interval: int
    phase: int
    objects: tuple[tuple[str, float], ...]
    """(``entity=…,action=…,result=…``, objects per job)."""


def _num(value: float) -> str:
    """A sample value in full precision (timestamps need 10 digits; ``:g`` keeps 6)."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


class Estate:
    """The exporter's exposition as a function of time: counters step at every job of a target."""

    def __init__(self, start: int, targets: int = TARGETS, instances: int = INSTANCES) -> None:
        rng = random.Random(SEED)
        self.start = start
        """process_start_time_seconds; the jobs counted start then."""
        self.instances = [f"idaas_{i:024x}" for i in range(1, instances + 1)]
        self.targets = []
        for index in range(targets):
            instance_id = self.instances[index % instances]
            kind, direction = (
                ("identity_provider", "ingress") if index % 3 else ("application", "egress")
            )
            prefix = "idp" if kind == "identity_provider" else "app"
            target_id = f"{prefix}_{index:028x}"
            profile = PROFILES.get(index, "healthy")
            objects = []
            for entity in ENTITIES:
                for action in ACTIONS:
                    base = f'entity="{entity}",action="{action}",result='
                    objects.append((base + '"success"', rng.uniform(5, 200)))
                    if rng.random() < 0.40:
                        ratio = 0.3 if profile == "high_failure_ratio" else 0.0005
                        objects.append((base + '"failed"', rng.uniform(5, 200) * ratio))
                    if rng.random() < 0.25:
                        objects.append((base + '"skipped"', rng.uniform(0, 20)))
            self.targets.append(
                Target(
                    labels=f'instance_id="{instance_id}",target_type="{kind}",'
                    f'target_id="{target_id}",direction="{direction}"',
                    instance_id=instance_id,
                    profile=profile,
                    interval=rng.choice((60, 120, 300, 600, 900)),
                    phase=rng.randrange(0, 60),
                    objects=tuple(objects),
                )
            )

    def jobs(self, target: Target, t: int) -> int:
        """Terminal jobs of *target* by time *t* (one every ``interval`` from start + phase)."""
        return max(0, (t - self.start - target.phase) // target.interval)

    def samples(self, t: int, long_only: bool = False) -> Iterator[tuple[str, str, float]]:
        """(sample name, label text without braces, value) of the exposition at time *t*.

        *long_only*: only the families in LONG.
        """
        if long_only:
            for target in self.targets:
                k = self.jobs(target, t)
                if k:
                    end = self.start + target.phase + k * target.interval
                    yield "idaas_sync_last_job_end_timestamp_seconds", target.labels, end
                yield "idaas_sync_job_duration_seconds_sum", target.labels, k * 37.5
                yield "idaas_sync_job_duration_seconds_count", target.labels, k
            return
        poll = t - t % 60
        for instance_id in self.instances:
            labels = f'instance_id="{instance_id}"'
            yield "idaas_exporter_up", labels, 1
            yield "idaas_exporter_last_poll_timestamp_seconds", labels, poll
            yield "idaas_exporter_last_poll_success_timestamp_seconds", labels, poll
        for target in self.targets:
            k = self.jobs(target, t)
            for objects, per_job in target.objects:
                yield "idaas_sync_objects_total", f"{target.labels},{objects}", int(k * per_job)
        for target in self.targets:
            k, labels = self.jobs(target, t), target.labels
            last_end = self.start + target.phase + k * target.interval
            ok = {"failing": k // 2, "never_succeeded": 0, "high_failure_ratio": k // 2}
            succeeded = ok.get(target.profile, k)
            status = {
                "failing": "failed",
                "never_succeeded": "failed",
                "high_failure_ratio": "partial_success",
            }.get(target.profile, "success")
            counts = {"success": succeeded, status: k - succeeded} if k > succeeded else {}
            for name, count in (counts or {"success": k}).items():
                yield (
                    "idaas_sync_jobs_total",
                    f'{labels},trigger_type="auto",status="{name}"',
                    count,
                )
            if k:
                for name in STATUSES:
                    yield "idaas_sync_last_job_status", f'{labels},status="{name}"', name == status
                yield "idaas_sync_last_job_end_timestamp_seconds", labels, last_end
            if succeeded:
                last_ok = self.start + target.phase + succeeded * target.interval
                yield "idaas_sync_last_success_timestamp_seconds", labels, last_ok
            stuck = target.profile == "stuck"
            yield "idaas_sync_jobs_in_progress", labels, int(stuck)
            if stuck:
                yield "idaas_sync_oldest_in_progress_start_timestamp_seconds", labels, self.start
            yield "idaas_sync_job_duration_seconds_sum", labels, k * 37.5
            yield "idaas_sync_job_duration_seconds_count", labels, k
            name = f'target_name="target {target.labels.split(chr(34))[5][-4:]}"'
            yield "idaas_sync_target_info", f"{labels},{name}", 1
        writes = (t - self.start) // 60
        yield "idaas_exporter_state_writes_total", 'result="success"', writes
        yield "idaas_exporter_state_writes_total", 'result="error"', 0
        for action in ("ListSynchronizationJobs", "GetSynchronizationJob", "ListApplications"):
            yield "idaas_exporter_api_requests_total", f'action="{action}",code="200"', writes * 3
        yield "process_start_time_seconds", "", self.start

    def recorded(self, t: int, long_only: bool = False) -> Iterator[tuple[str, str, float]]:
        """The recorded series later rules read over a range, as the current rules compute them."""
        for instance_id in self.instances:
            yield "idaas_sync:instance_polled", f'instance_id="{instance_id}"', 1
            if not long_only:
                labels = f'instance_id="{instance_id}"'
                yield "idaas_sync:exporter_start_time_seconds", labels, self.start
        for target in [] if long_only else self.targets:
            k = self.jobs(target, t)
            every = sum(int(k * per_job) for _, per_job in target.objects)
            failed = sum(int(k * n) for o, n in target.objects if o.endswith('"failed"'))
            labels = f'job="{JOB}",{target.labels}'
            yield "idaas_sync:objects:sum", labels, every
            yield "idaas_sync:objects_failed:sum", labels, failed

    def exposition(self, t: int) -> bytes:
        """The text exposition at time *t*, as a scrape reads it."""
        lines = []
        for name, labels, value in self.samples(t):
            lines.append(f"{name}{{{labels}}} {_num(value)}" if labels else f"{name} {_num(value)}")
        return ("\n".join(lines) + "\n").encode()

    def openmetrics(self, path: Path, end: int, history: int, long: int, instance: str) -> int:
        """Backfill input: samples every STEP over *history* (LONG: *long*) up to *end*.

        Returns the number of series.
        """
        series: dict[str, dict[str, list[str]]] = {}
        scraped = f'job="{JOB}",instance="{instance}"'
        for t in range(end - max(history, long), end + 1, STEP):
            long_only = t < end - history
            for name, labels, value in self.samples(t, long_only):
                key = f"{scraped},{labels}" if labels else scraped
                series.setdefault(name, {}).setdefault(key, []).append(f"{_num(value)} {t}")
            for name, labels, value in self.recorded(t, long_only):
                series.setdefault(name, {}).setdefault(labels, []).append(f"{_num(value)} {t}")
            if not long_only:
                series.setdefault("up", {}).setdefault(scraped, []).append(f"1 {t}")
        with path.open("w", encoding="utf-8") as out:  # one family's samples together, in order
            for name, by_labels in series.items():
                for labels, points in by_labels.items():
                    out.writelines(f"{name}{{{labels}}} {point}\n" for point in points)
            out.write("# EOF\n")
        return sum(len(by_labels) for by_labels in series.values())


def serve(estate: Estate) -> ThreadingHTTPServer:
    """``/metrics`` on 127.0.0.1 (a free port), rendering the estate at each scrape's time."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = estate.exposition(int(time.time()))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_FRACTION = re.compile(r"(\.\d{6})\d*")


def _when(stamp: str) -> float:
    """RFC 3339 with nanoseconds (Go's) → epoch seconds."""
    return datetime.fromisoformat(_FRACTION.sub(r"\1", stamp.replace("Z", "+00:00"))).timestamp()


def prometheus_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    return (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else "?"


def measure(
    binary: str, rules: Path, tsdb: Path, work: Path, target: str, *, evaluations: int
) -> dict[str, Any]:
    """One Prometheus on *tsdb* with *rules*: per rule and group evaluation times (seconds)."""
    port = free_port()
    config = work / f"prometheus-{rules.stem}.yml"
    config.write_text(
        f"global:\n  scrape_interval: {SCRAPE}s\n  scrape_timeout: 10s\n"
        f"  evaluation_interval: 1s\nrule_files:\n  - {json.dumps(str(rules))}\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
        f"      - targets: [{json.dumps(target)}]\n",
        "utf-8",
    )
    log = work / f"prometheus-{rules.stem}.log"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tsdb}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=30d",
        "--log.level=info",
    ]
    base = f"http://127.0.0.1:{port}"
    launched = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + DEADLINE
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"prometheus exited {process.returncode}: {log.read_text()}")
                try:
                    if client.get("/-/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"prometheus not ready in {DEADLINE:.0f} s")
                time.sleep(0.2)
            ready = time.monotonic()
            time.sleep(1.0)
            rounds = collect(client, evaluations)
            windows = window_samples(client)
            firing = alerts(client)
        return {
            "ready_seconds": round(ready - launched, 2),
            "rounds": rounds,
            "window_samples": windows,
            "alerts": firing,
            "compactions_logged": log.read_text("utf-8", "replace").count("compact blocks"),
            "log_warnings": [
                line
                for line in log.read_text("utf-8", "replace").splitlines()
                if "level=warn" in line or "level=error" in line
            ][-5:],
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def collect(client: httpx.Client, evaluations: int) -> dict[str, list[dict[str, Any]]]:
    """Per group, *evaluations* complete evaluations (WARMUP dropped): its time and its rules'.

    A read taken while a group evaluates mixes two rounds (its rules' ``lastEvaluation`` are
    newer than the group's): such readings are skipped.
    """
    seen: dict[str, set[str]] = {}
    rounds: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + DEADLINE + evaluations * 1.5
    while time.monotonic() < deadline:
        groups = client.get("/api/v1/rules").json()["data"]["groups"]
        for group in groups:
            stamp = group["lastEvaluation"]
            if stamp.startswith("0001") or stamp in seen.setdefault(group["name"], set()):
                continue
            begun, took = _when(stamp), group["evaluationTime"]
            if any(not begun <= _when(r["lastEvaluation"]) <= begun + took for r in group["rules"]):
                continue  # a reading in the middle of the next evaluation
            seen[group["name"]].add(stamp)
            if len(seen[group["name"]]) <= WARMUP:
                continue
            rules = [(r.get("name"), r["evaluationTime"], r.get("health")) for r in group["rules"]]
            rounds.setdefault(group["name"], []).append({"group": took, "rules": rules})
        if groups and all(len(rounds.get(g["name"], [])) >= evaluations for g in groups):
            return rounds
        time.sleep(0.35)
    raise TimeoutError(f"fewer than {evaluations} complete evaluations per group in time")


def _query(client: httpx.Client, expr: str) -> float | None:
    result = client.get("/api/v1/query", params={"query": expr}).json()["data"]["result"]
    return round(float(result[0]["value"][1]), 1) if result else None


def window_samples(client: httpx.Client) -> dict[str, Any]:
    """What the windows held: series and mean samples per ``[1h]`` of what the rules read."""
    return {
        "objects_series": _query(client, "count(idaas_sync_objects_total)"),
        "objects_samples_per_1h": _query(
            client, "avg(count_over_time(idaas_sync_objects_total[1h]))"
        ),
        "recorded_objects_sum_samples_per_1h": _query(
            client, "avg(count_over_time(idaas_sync:objects:sum[1h]))"
        ),
        "last_job_end_samples_per_7d": _query(
            client, "avg(count_over_time(idaas_sync_last_job_end_timestamp_seconds[7d]))"
        ),
    }


def alerts(client: httpx.Client) -> dict[str, int]:
    """Alert name → active (pending or firing) alerts at the end: both files see the problems."""
    groups = client.get("/api/v1/rules", params={"type": "alert"}).json()["data"]["groups"]
    return {r["name"]: len(r.get("alerts", [])) for g in groups for r in g["rules"]}


def summarise(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per group: median/min/max of its evaluation time and the median of each rule's (ms)."""
    out = {}
    for name, evaluations in rounds.items():
        totals = [e["group"] * 1000 for e in evaluations]
        per_rule: dict[str, list[float]] = {}
        health: dict[str, str] = {}
        for evaluation in evaluations:
            for index, (rule, took, state) in enumerate(evaluation["rules"]):
                key = f"{index:02d} {rule}"
                per_rule.setdefault(key, []).append(took * 1000)
                health[key] = state
        out[name] = {
            "evaluations": len(evaluations),
            "group_ms": {
                "median": statistics.median(totals),
                "min": min(totals),
                "max": max(totals),
            },
            "rules_ms": {k: round(statistics.median(v), 3) for k, v in per_rule.items()},
            "unhealthy": {k: v for k, v in health.items() if v not in ("ok", None)},
        }
    return out


def old_rules(work: Path) -> Path:
    text = subprocess.run(  # noqa: S603 - fixed argv
        ["git", "-C", str(harness.REPO_ROOT), "show", f"{OLD_REV}:{RULES}"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = work / "old" / Path(RULES).name
    path.parent.mkdir()
    path.write_text(text, "utf-8")
    return path


def run(quick: bool = False) -> dict[str, Any]:
    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not binary or not promtool:
        raise SystemExit("the rules benchmark needs the prometheus and promtool binaries on PATH")
    evaluations = QUICK_EVALUATIONS if quick else EVALUATIONS
    long = 0 if quick else WEEK
    started, load = time.monotonic(), {"before": harness.load_average()}
    with tempfile.TemporaryDirectory(prefix="rules-bench-") as tmp:
        work = Path(tmp)
        now = int(time.time())
        estate = Estate(start=now - max(HISTORY, long) - 86400)
        server = serve(estate)
        target = f"127.0.0.1:{server.server_address[1]}"
        files = {"old": old_rules(work), "new": harness.REPO_ROOT / RULES}
        source, blocks = work / "backfill.om", work / "blocks"
        t0 = time.monotonic()
        backfill: dict[str, Any] = {
            "series": estate.openmetrics(source, now, HISTORY, long, target)
        }
        backfill["generate_seconds"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        made = subprocess.run(  # noqa: S603 - fixed argv
            [
                promtool,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                BLOCK,
                str(source),
                str(blocks),
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=DEADLINE * 2,
        )
        if made.returncode:
            raise RuntimeError(f"promtool failed: {made.stderr.strip()}")
        backfill["promtool_seconds"] = round(time.monotonic() - t0, 1)
        backfill["blocks"] = made.stdout.strip().splitlines()
        backfill.update(
            end=now,
            history_seconds=HISTORY,
            long_history_seconds=long,
            long_families=LONG if long else [],
            step_seconds=STEP,
        )
        runs: dict[str, Any] = {label: {"runs": []} for label in files}
        order = [label for _ in range(ROUNDS) for label in files]
        try:
            for index, label in enumerate(order):
                tsdb = work / f"tsdb-{index}-{label}"
                shutil.copytree(blocks, tsdb)
                print(f"rules: {label} rules, run {index + 1}/{len(order)}", flush=True)
                one = measure(binary, files[label], tsdb, work, target, evaluations=evaluations)
                one["seconds_after_backfill_end"] = round(time.time() - now)
                runs[label]["runs"].append(one)
                shutil.rmtree(tsdb)
        finally:
            server.shutdown()
    for pooled in runs.values():
        rounds: dict[str, list[dict[str, Any]]] = {}
        for one in pooled["runs"]:
            for group, evaluated in one.pop("rounds").items():
                rounds.setdefault(group, []).extend(evaluated)
        pooled["summary"] = summarise(rounds)
    load["after"] = harness.load_average()
    seconds = time.monotonic() - started
    return document(runs, backfill, prometheus_version(binary), seconds, load)


RATIO = "IdaasSyncHighObjectFailureRatio"
RECORDED = (
    "idaas_sync:objects:sum",
    "idaas_sync:objects_failed:sum",
    "idaas_sync:objects:increase1h",
    "idaas_sync:objects_failed:increase1h",
)


def _rule(summary: dict[str, Any], name: str) -> float | None:
    found = [v for g in summary.values() for k, v in g["rules_ms"].items() if k[3:] == name]
    return found[0] if found else None


def document(
    runs: dict[str, Any],
    backfill: dict[str, Any],
    version: str,
    seconds: float,
    load: dict[str, Any],
) -> dict[str, Any]:
    """The report's rows (medians, ms) and every figure."""
    rows = []

    def ms(value: float) -> float:
        return round(value, 2)

    for label, pooled in runs.items():
        summary = pooled["summary"]
        for group, figures in summary.items():
            name = f"{label}: group {group} ({figures['evaluations']} evaluations)"
            rows.append(harness.row(name, ms(figures["group_ms"]["median"]), "ms"))
        every = sum(figures["group_ms"]["median"] for figures in summary.values())
        rows.append(harness.row(f"{label}: every group", ms(every), "ms"))
        rows.append(harness.row(f"{label}: alert {RATIO}", _rule(summary, RATIO), "ms"))
        for name in RECORDED:
            if (cost := _rule(summary, name)) is not None:
                rows.append(harness.row(f"{label}: record {name}", cost, "ms"))
    old = _rule(runs["old"]["summary"], RATIO) or 0.0
    new = sum(_rule(runs["new"]["summary"], name) or 0.0 for name in (RATIO, *RECORDED))
    rows.append(harness.row(f"new: {RATIO} with its 4 recording rules", ms(new), "ms"))
    if old and new:
        rows.append(harness.row(f"old {RATIO} / new with its recording rules", ms(old / new), "x"))
    mode = f"backfilled every {STEP} s: {HISTORY // 3600} h of all series"
    if backfill.get("long_history_seconds"):
        mode += f", {backfill['long_history_seconds'] // 86400} d of {', '.join(LONG)}"
    mode += f"; then scrape every {SCRAPE} s, evaluation every 1 s"
    return {
        "rows": rows,
        "figures": {
            "mode": mode,
            "prometheus": version,
            "old_rules": f"{OLD_REV}:{RULES}",
            "new_rules": RULES,
            "targets": TARGETS,
            "instances": INSTANCES,
            "backfill": backfill,
            "runs": runs,
            "run_seconds": round(seconds, 1),
            "load_average": load,
        },
    }
