"""RSS of the real daemon while it ingests a million jobs over 100 targets; state-write time.

The simulator (``simulate --manual-clock --control``: one instance, the 100 targets of the
estate scenario syncing every 3 minutes) and the daemon (``python -m exporter``, polling every
0.3 s, with a state file, the API rate limit off: at 5 requests/s the 10,000+ pages would take
half an hour and the limit changes nothing the daemon holds) are real processes on their own
CPUs. This process advances the simulated clock in steps of 3 h, waits until every instance
shows a poll that *started* after the step (so it saw everything), and reads the jobs counted,
``VmRSS`` (the median of readings every 10 ms over one poll interval, so a render's transient
does not land in a reading by chance) and ``VmHWM`` (the peak). At a million jobs the daemon
stops (writing its final state) and its count must equal the simulator's terminal jobs. A fresh
daemon then restores that state and polls steps of 60 simulated s (the default cadence): the
steady state of a daemon carrying a million jobs. The reconciliation sweep is on with its
default window (24 h: the daemon retains the ~66,000 job IDs of the last simulated day) and an
interval of 30 wall-clock seconds (``SWEEP_S``), so sweeps over that day run during the
catch-up and in the steady state instead of once an hour. State write: the final state is loaded and
saved with :meth:`StateStore.save` (temporary file, fsync, rename, directory fsync: what the
daemon does after every poll) several times. Where the memory goes: the RSS of an interpreter
that only imported what ``python -m exporter`` imports, and the ``tracemalloc`` peak of one
render (``daemon._render``) of the final state.
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench import harness
from exporter.core.contract import ApiRequestStats, ExporterView, PollStatus
from exporter.core.statecodec import encode_state
from exporter.service.daemon import _render
from exporter.service.state_store import StateStore

TITLE = "RSS of the real daemon vs jobs ingested (1M jobs, 100 targets); state write"
TARGET_RSS_MB, TARGET_WRITE_MS, TARGETS, POLL_S, SWEEP_S = 80.0, 50.0, 100, 0.3, 30.0
WATCHED = [
    "idaas_sync_jobs_total",
    "idaas_exporter_polls_total",
    "idaas_exporter_api_requests_by_purpose_total",
]
IMPORTS = (
    "import exporter.cli, exporter.eiam.credentials.chain; exporter.cli.build_parser(); "
    "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
)
"""What ``python -m exporter`` imports before it runs, then the interpreter's RSS in kB."""


def _mb(kb: float | None) -> float:
    return round((kb or 0) / 1024, 1)


def _rss_kb(pid: int, seconds: float = POLL_S) -> int:
    """The median of ``VmRSS`` readings every 10 ms over *seconds*."""
    readings: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or not readings:
        readings.append(harness.proc_kb(pid) or 0)
        time.sleep(0.01)
    return int(statistics.median(readings))


def _step(sim: harness.SimulatorProcess, daemon: harness.DaemonProcess, ms: int) -> dict[str, Any]:
    """Advance the simulated clock by *ms*, wait for a poll that started after, sample."""
    sim.advance(ms)
    daemon.wait_poll_started_after(time.time(), timeout=180)
    found = daemon.sample(WATCHED)
    return {
        "jobs": int(harness.total(found, WATCHED[0])),
        "failed_polls": int(harness.total(found, WATCHED[1], 'result="error"')),
        "sweep_requests": int(harness.total(found, WATCHED[2], 'purpose="sweep"')),
        "rss_kb": _rss_kb(daemon.pid),
        "hwm_kb": harness.proc_kb(daemon.pid, "VmHWM"),
    }


def _state_write(path: Path, repeats: int) -> dict[str, Any]:
    """Time :meth:`StateStore.save` of the saved state *path*, and its encoding alone."""
    loaded = StateStore(path).load() or {}
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        store, saves, encodes = StateStore(Path(scratch) / "state.json"), [], []
        for _ in range(repeats):
            started = time.perf_counter()
            store.save(loaded)
            saves.append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            encode_state(loaded)
            encodes.append((time.perf_counter() - started) * 1e3)
    return {
        "save_ms": [round(t, 2) for t in saves],
        "encode_ms_median": round(statistics.median(encodes), 2),
        "file_kib": round(path.stat().st_size / 1024),
        "series_sets": sum(len(state.ledger.targets) for state in loaded.values()),
        "counted_ids": sum(len(state.tracker.counted) for state in loaded.values()),
        "retained_ids": sum(len(state.tracker.retained) for state in loaded.values()),
    }


def _where(path: Path) -> dict[str, Any]:
    """The RSS of the daemon's imports alone; one render of the state at *path*, traced."""
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=True,
        cwd=harness.REPO_ROOT, env=harness.child_env(),
    )  # fmt: skip
    instances = StateStore(path).load() or {}
    polls = dict.fromkeys(instances, PollStatus(up=True))
    view = ExporterView(instances, polls, ApiRequestStats(), {"success": 1}, POLL_S)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    snapshot = _render(view)
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "imports_rss_kb": int(done.stdout.strip()),
        "render_series": snapshot.series,
        "render_peak_mib": round((peak - base) / 2**20, 1),
        "snapshot_retained_mib": round((retained - base) / 2**20, 1),
    }


def run(quick: bool) -> dict[str, Any]:
    goal, steady_steps, writes = (30_000, 8, 5) if quick else (1_000_000, 60, 9)
    f: dict[str, Any] = {"load_average": [harness.load_average()]}
    estate = harness.estate_scenario(TARGETS, interval="3m", duration="40s", history="2h")
    with harness.simulator(estate, manual_clock=True) as (sim, work, cpu):
        state = work / "state.json"
        settings = {"poll_interval_seconds": POLL_S, "api_rate_limit": 0, "state_file": state}
        settings["reconcile_interval_seconds"] = SWEEP_S
        daemon = harness.daemon(sim, work / "daemon.log", cpu, **settings)
        with harness.running(daemon):  # catch-up: steps of 3 simulated hours
            daemon.start()
            daemon.wait_all_polled(120)
            f["ready_rss_kb"], started = _rss_kb(daemon.pid), time.monotonic()
            cpu_s, samples = harness.cpu_seconds(daemon.pid), [_step(sim, daemon, 0)]
            while samples[-1]["jobs"] < goal:
                samples.append(_step(sim, daemon, 3 * 3_600_000))
            f["ingest_s"] = round(time.monotonic() - started, 1)
            f["daemon_cpu_s"] = round(harness.cpu_seconds(daemon.pid) - cpu_s, 1)
            f["final_rss_kb"], f["final_hwm_kb"] = (
                _rss_kb(daemon.pid, 1.0),
                harness.proc_kb(daemon.pid, "VmHWM"),
            )
            f["truth"], f["exit_code"] = sim.terminal_jobs(), daemon.stop()
        f["state_write"], f["where"] = _state_write(state, writes), _where(state)
        restarted = harness.daemon(sim, work / "daemon-restarted.log", cpu, **settings)
        with harness.running(restarted):  # steady state: 60 simulated seconds per poll
            restarted.start()
            restarted.wait_all_polled(120)
            steady = [_step(sim, restarted, 60_000) for _ in range(steady_steps)]
            f["steady_truth"] = sim.terminal_jobs()
            failure = restarted.find_event("poll failed") or daemon.find_event("poll failed")
            f["last_failure"] = (failure or {}).get("error")
        f["cpus"] = {"daemon": cpu, "simulator": sim.cpu}
    f["load_average"].append(harness.load_average())
    f |= {"samples": samples, "steady": steady}
    return {"rows": _rows(f, goal), "figures": f, "plots": [_plot(f)]}


def _rows(f: dict[str, Any], goal: int) -> list[dict[str, Any]]:
    row, last, steady, state = harness.row, f["samples"][-1], f["steady"][-1], f["state_write"]
    saves, where = state["save_ms"], f["where"]
    rss, steady_rss = _mb(f["final_rss_kb"]), _mb(steady["rss_kb"])
    counted, failed = last["jobs"], last["failed_polls"] + steady["failed_polls"]
    per_step = round(counted / max(1, len(f["samples"]) - 1))
    return [
        row(f"daemon RSS after {counted:,} jobs over {TARGETS} targets (catch-up steps of 3 "
            f"simulated h, ~{per_step:,} jobs each)", rss, "MB", f"≤ {TARGET_RSS_MB:g} MB after "
            f"{goal:,}", rss <= TARGET_RSS_MB and counted >= goal),
        row("  peak RSS (VmHWM) during the catch-up / RSS once ready (first poll done)",
            f"{_mb(f['final_hwm_kb'])} / {_mb(f['ready_rss_kb'])}", "MB"),
        row(f"daemon RSS restarted from that state, then {len(f['steady'])} polls of 60 simulated "
            "s (steady state)", steady_rss, "MB", f"≤ {TARGET_RSS_MB:g} MB",
            steady_rss <= TARGET_RSS_MB),
        row("  peak RSS (VmHWM) in steady state", _mb(steady["hwm_kb"]), "MB"),
        row("jobs counted = simulator's terminal jobs (exactly once), catch-up / steady",
            f"{counted:,} = {f['truth']:,} / {steady['jobs']:,} = {f['steady_truth']:,}", "",
            "equal", counted == f["truth"] and steady["jobs"] == f["steady_truth"]),
        row("failed polls (catch-up + steady)" + (f"; last: {f['last_failure']}"
            if f["last_failure"] else ""), failed, "", "0", failed == 0),
        row(f"ingest: daemon CPU-seconds / wall seconds ({len(f['samples']) - 1} steps)",
            f"{f['daemon_cpu_s']} / {f['ingest_s']}", "s"),
        row(f"reconciliation sweeps' ListSynchronizationJobs requests (a sweep every {SWEEP_S:g} "
            "wall s over 24 simulated h), catch-up / steady",
            f"{last.get('sweep_requests', 0):,} / {steady.get('sweep_requests', 0):,}"),
        row(f"state write (StateStore.save of the final state; median / max of {len(saves)})",
            f"{statistics.median(saves):.1f} / {max(saves):.1f}", "ms",
            f"≤ {TARGET_WRITE_MS:g} ms", statistics.median(saves) <= TARGET_WRITE_MS),
        row(f"  state file: size, series sets (target × direction), counted IDs in window, "
            f"retained for the sweep; encoding alone {state['encode_ms_median']} ms",
            f"{state['file_kib']:,} KiB, {state['series_sets']}, {state['counted_ids']:,}, "
            f"{state.get('retained_ids', 0):,}"),
        row("where: RSS of a fresh interpreter after the daemon's imports",
            _mb(where["imports_rss_kb"]), "MB"),
        row(f"where: one render of the final state ({where['render_series']:,} series), "
            "transient peak / retained snapshot (traced)",
            f"{where['render_peak_mib']} / {where['snapshot_retained_mib']}", "MiB"),
    ]  # fmt: skip


def _plot(f: dict[str, Any]) -> dict[str, Any]:
    def points(samples: list[dict[str, Any]], key: str) -> list[list[float]]:
        return [[s["jobs"] / 1000, _mb(s[key])] for s in samples]

    series = {
        "RSS (median over a poll interval), catch-up": points(f["samples"], "rss_kb"),
        "peak RSS so far (VmHWM)": points(f["samples"], "hwm_kb"),
        "RSS after the restart, 60-s polls": points(f["steady"], "rss_kb"),
    }
    return {"name": "rss_vs_jobs", "title": f"Daemon memory while ingesting jobs over {TARGETS} "
            "targets", "x": "jobs ingested (thousands)", "y": "MB", "series": series}  # fmt: skip
