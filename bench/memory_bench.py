"""RSS of the real daemon while it ingests 1,000,000 jobs over 100 targets; state write time.

Issue 4, "Benchmarks": RSS ≤ 80 MB after ingesting 1,000,000 jobs over 100 targets; state
write ≤ 50 ms. Issue 6: "RSS versus jobs ingested (up to 1,000,000)".

What runs, and how:

* **The simulator is a separate process**: ``idaas-sync-exporter simulate --scenario FILE
  --manual-clock --control``, pinned to its own CPU when the machine has two. The scenario file
  (written here, see :func:`estate_scenario`) is one IDaaS instance with 100 targets — AD,
  OpenLDAP, DingTalk/WeCom/Feishu in both directions, SCIM applications — with realistic
  statistics and a short history (2 h). Its targets sync every few minutes so that a million
  jobs fit in a couple of simulated weeks.
* **The daemon is the real one**: ``python -m exporter`` in its own process (pinned to the other
  CPU), configured through ``IDAAS_EXPORTER_*`` like any deployment, polling every 0.3 s, with a
  state file, the default lookback/overlap and the API rate limit off (at 5 requests/s the
  10,000+ pages would take more than half an hour; the limit does not change what is held in
  memory).
* **The driver** (this process) advances the simulator's clock through ``POST
  /_sim/clock/advance`` in steps of a few simulated hours, then waits (with a deadline) until
  the daemon's ``/metrics`` shows a poll that *started* after the step (last poll timestamp −
  its duration), so it saw everything, and reads the jobs counted
  (``sum(idaas_sync_jobs_total)``) and the daemon's ``VmRSS`` (median of readings every 10 ms
  over 0.3 s, so a reading is not a render's transient by chance) and ``VmHWM`` (the peak)
  from ``/proc``. It stops once a million jobs are counted, then checks the count against the
  simulator (every terminal job counted exactly once).
* **Steady state after the million**: a fresh daemon restores that state file and polls
  steps of 60 simulated seconds (what a default 60-s poll sees), to show the memory of a
  daemon carrying a million jobs in its counters at the normal cadence. (``Settings.what_if``
  repeats it with an allocator setting in the environment, for comparisons by hand.)
* **State write**: after SIGTERM the daemon writes its final state; that file is loaded here
  and written again with :meth:`StateStore.save` several times (temporary file, fsync, rename,
  directory fsync — what the daemon does after every poll), median reported, plus its size and
  the share of the time spent encoding.
* **Profile** (full mode): where the memory goes, with ``tracemalloc`` in this process — one
  page as the poller holds it, one rendering of the estate's exposition (transient peak and
  retained snapshot), and the RSS of the daemon's imports alone.

This module also holds the process toolkit the other daemon benchmarks share
(``freshness_bench``, ``backfill_bench``, ``budget_bench``, ``metrics_bench``): the estate
scenario, :class:`SimulatorProcess`, :class:`DaemonProcess`, CPU pinning, ``/proc`` readers and
a fast reader of a few metrics out of a large exposition.

Run it::

    python -m bench --only memory             # writes bench/results/memory_bench.json + PNG
    python -m bench.memory_bench [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import plots
from bench.environment import environment

__all__ = [
    "DEMO_KEY_ID",
    "DEMO_KEY_SECRET",
    "DaemonProcess",
    "SimulatorProcess",
    "cpu_plan",
    "cpu_seconds",
    "estate_scenario",
    "load_average",
    "main",
    "metric_values",
    "pin",
    "proc_status_kb",
    "row",
    "run",
]

NAME = "memory_bench"
TARGET_RSS_MB = 80.0
TARGET_STATE_WRITE_MS = 50.0
DEMO_KEY_ID = "LTAI5tSimulatorDemoKey"
DEMO_KEY_SECRET = "SimulatorDemoSecret-NotForProduction"  # the simulator's published demo key
REPO_ROOT = Path(__file__).resolve().parent.parent


# -- small helpers shared by the daemon benchmarks ------------------------------------------


def row(
    metric: str, value: Any, unit: str = "", target: str = "", ok: bool | None = None
) -> dict[str, Any]:
    """One line of a result's ``summary`` (the report's table)."""
    return {"metric": metric, "value": value, "unit": unit, "target": target, "ok": ok}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_plan() -> tuple[int | None, int | None]:
    """(exporter/client CPU, server/simulator CPU) when two distinct CPUs are available."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def pin(pid: int, cpu: int | None) -> bool:
    """Pin process *pid* (0: this one) to *cpu*; False when impossible."""
    if cpu is None:
        return False
    try:
        os.sched_setaffinity(pid, {cpu})
    except (AttributeError, OSError):
        return False
    return True


def proc_status_kb(pid: int, field_name: str = "VmRSS") -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``…), None if unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process *pid* (``/proc/<pid>/stat``)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of *values* (not empty)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def metric_values(text: str, names: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
    """Samples of the metrics *names* in a text exposition: name → [(label text, value)].

    A plain line scan, not a parser: the daemons under test serve 15,000 series, which the
    prometheus-client parser needs a second or more to read, while the driver needs only a few.

    >>> metric_values('a_total{x="1"} 2\\nb 3\\na_total{x="2"} 4.5\\n', ["a_total"])
    {'a_total': [('x="1"', 2.0), ('x="2"', 4.5)]}
    """
    wanted = set(names)
    found: dict[str, list[tuple[str, float]]] = {name: [] for name in names}
    prefixes = tuple(wanted)
    for line in text.split("\n"):
        if not line.startswith(prefixes):
            continue
        brace = line.find("{")
        space = line.rfind(" ")
        name = line[:brace] if 0 <= brace < space else line[: line.find(" ")]
        if name not in wanted:
            continue
        labels = line[brace + 1 : line.rfind("}")] if brace >= 0 else ""
        found[name].append((labels, float(line[space + 1 :])))
    return found


def total(samples: Mapping[str, list[tuple[str, float]]], name: str, contains: str = "") -> float:
    """Sum of the samples of *name* whose label text contains *contains*."""
    return sum(value for labels, value in samples.get(name, []) if contains in labels)


# -- the estate -------------------------------------------------------------------------------

_KINDS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("identity_provider", "ad", "Corporate AD", ("ingress",)),
    ("identity_provider", "ldap", "OpenLDAP", ("ingress",)),
    ("identity_provider", "dingtalk", "DingTalk", ("ingress", "egress")),
    ("identity_provider", "wecom", "WeCom", ("ingress", "egress")),
    ("identity_provider", "feishu", "Feishu", ("ingress", "egress")),
    ("application", "application", "Salesforce", ("egress",)),
    ("application", "application", "GitLab", ("egress",)),
    ("application", "application", "Jira", ("egress",)),
    ("application", "application", "ServiceNow", ("egress",)),
    ("application", "application", "HR Portal", ("egress",)),
)
"""One block of ten targets: five identity providers (three synchronised both ways, as DingTalk,
WeCom and Feishu often are) and five SCIM applications; an estate repeats the block."""


def estate_scenario(
    targets: int,
    *,
    instances: int = 1,
    interval: str = "1h",
    duration: str = "3m",
    history: str = "72h",
    name: str = "bench-estate",
    manual_rate: float = 0.05,
) -> dict[str, Any]:
    """A scenario (JSON form) of *targets* targets spread over *instances* instances.

    Populations, partial-success and failure rates vary per target, so the statistics blocks,
    statuses and error codes look like a real company's, not one pattern copied.
    """
    per_instance = [
        targets // instances + (1 if i < targets % instances else 0) for i in range(instances)
    ]
    specs = []
    number = 0
    for index, count in enumerate(per_instance):
        rows = []
        for _ in range(count):
            target_type, kind, title, directions = _KINDS[number % len(_KINDS)]
            scale = 1 + (number * 7919) % 13  # 1..13, deterministic variety
            rows.append(
                {
                    "type": target_type,
                    "kind": kind,
                    "name": f"{title} {number + 1:03d}",
                    "directions": list(directions),
                    "interval": interval,
                    "duration": duration,
                    "manual_rate": manual_rate,
                    "partial_rate": 0.04 + 0.02 * (number % 5),
                    "failure_rate": 0.02,
                    "population": {
                        "users": 150 * scale,
                        "organizational_units": 12 * scale,
                        "groups": 0 if kind == "dingtalk" else 6 * scale,
                        "group_members": 0 if kind == "dingtalk" else 400 * scale,
                    },
                }
            )
            number += 1
        specs.append({"description": f"Benchmark estate instance {index + 1}", "targets": rows})
    return {
        "name": name,
        "description": f"{targets} targets over {instances} instance(s)",
        "history": history,
        "instances": specs,
    }


# -- processes ----------------------------------------------------------------------------------


class BenchProcessError(RuntimeError):
    """A benchmark process did not start or answer in time; the message says which and why."""


@dataclass
class ManagedProcess:
    """A child process with JSON logs in a file, pinned to a CPU, stopped with SIGTERM."""

    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cpu: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    pinned: bool = False
    fd_limit: int | None = None
    """``RLIMIT_NOFILE`` (soft and hard) of the child, as ``ulimit -n`` would set it."""
    _log_offset: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=self.env,
            cwd=REPO_ROOT,
            preexec_fn=self._limit_fds if self.fd_limit else None,
        )
        log.close()
        self.pinned = pin(self.popen.pid, self.cpu)

    def _limit_fds(self) -> None:
        assert self.fd_limit is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.fd_limit, self.fd_limit))

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def read_events(self) -> list[dict[str, Any]]:
        """New JSON log lines since the last call (also kept in :attr:`events`)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                data = log.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._log_offset += end
        new = []
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict):
                    new.append(item)
        self.events.extend(new)
        return new

    def wait_event(self, event: str, timeout: float) -> dict[str, Any]:
        """The first log event named *event*, waiting up to *timeout* seconds."""
        deadline = time.monotonic() + timeout
        for item in self.events:
            if item.get("event") == event:
                return item
        while time.monotonic() < deadline:
            for item in self.read_events():
                if item.get("event") == event:
                    return item
            if self.popen is not None and self.popen.poll() is not None:
                raise BenchProcessError(
                    f"{self.argv[3:5]} exited with {self.popen.returncode} before logging "
                    f"{event!r}; log: {self.tail()}"
                )
            time.sleep(0.05)
        raise BenchProcessError(f"no {event!r} within {timeout:g} s; log: {self.tail()}")

    def tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def rss_kb(self) -> int | None:
        return proc_status_kb(self.pid, "VmRSS")

    def hwm_kb(self) -> int | None:
        return proc_status_kb(self.pid, "VmHWM")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait; SIGKILL after *timeout*. Returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without exporter/Alibaba settings or proxies, plus *extra*."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IDAAS_EXPORTER_", "ALIBABA_CLOUD_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class SimulatorProcess(ManagedProcess):
    """``idaas-sync-exporter simulate`` in its own process, with the control interface."""

    url: str
    instances: list[str]

    def __init__(
        self,
        scenario: Path | str,
        log_path: Path,
        *,
        cpu: int | None = None,
        manual_clock: bool = False,
        speed: float = 1.0,
        faults: str = "",
        seed: int = 1,
    ) -> None:
        argv = [
            sys.executable,
            "-m",
            "exporter",
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--scenario",
            str(scenario),
            "--seed",
            str(seed),
            "--speed",
            repr(speed),
            "--control",
            "--log.format",
            "json",
        ]
        if manual_clock:
            argv.append("--manual-clock")
        if faults:
            argv += ["--faults", faults]
        super().__init__(argv=argv, log_path=log_path, env=_child_env({}), cpu=cpu)
        self._client: Any = None

    def start(self, timeout: float = 120.0) -> None:  # type: ignore[override]
        super().start()
        listening = self.wait_event("simulator listening", timeout)
        self.url = str(listening["url"])
        self.instances = list(listening["instances"])
        import httpx

        self._client = httpx.Client(base_url=self.url, trust_env=False, timeout=120.0)

    def control(self, method: str, path: str, payload: Any = None) -> Any:
        """Call ``/_sim/<path>`` and return its JSON answer."""
        response = self._client.request(method, "/_sim/" + path.lstrip("/"), json=payload)
        if response.status_code >= 400:
            raise BenchProcessError(f"simulator control {method} {path}: {response.text}")
        return response.json()

    def advance(self, ms: int) -> int:
        return int(self.control("POST", "clock/advance", {"ms": int(ms)})["now_ms"])

    def world(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "world")
        return result

    def terminal_jobs(self) -> int:
        """Jobs terminal now in every instance (started ones minus those in progress)."""
        world = self.world()
        return sum(i["jobs"] - i["in_progress"] for i in world["instances"])

    def stop(self, timeout: float = 30.0) -> int | None:
        if self._client is not None:
            self._client.close()
        return super().stop(timeout)


class DaemonProcess(ManagedProcess):
    """The exporter (``python -m exporter``) in its own process, configured by environment."""

    url: str

    def __init__(
        self,
        log_path: Path,
        *,
        instance_ids: Sequence[str],
        endpoint: str,
        cpu: int | None = None,
        settings: Mapping[str, Any] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        env = {
            "IDAAS_EXPORTER_INSTANCE_IDS": ",".join(instance_ids),
            "IDAAS_EXPORTER_ENDPOINT": endpoint,
            "IDAAS_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.1:0",
            "IDAAS_EXPORTER_LOG_FORMAT": "json",
            "IDAAS_EXPORTER_STATE_FILE": "",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": DEMO_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEMO_KEY_SECRET,
            "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true",
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        }
        for key, value in (settings or {}).items():
            env[f"IDAAS_EXPORTER_{key.upper()}"] = str(value)
        env.update(extra_env or {})
        super().__init__(
            argv=[sys.executable, "-m", "exporter"],
            log_path=log_path,
            env=_child_env(env),
            cpu=cpu,
        )
        self._client: Any = None
        self.started_at = 0.0

    def start(self, timeout: float = 60.0) -> None:  # type: ignore[override]
        self.started_at = time.monotonic()
        super().start()
        started = self.wait_event("idaas-sync-exporter started", timeout)
        self.url = str(started["listen"])
        import httpx

        self._client = httpx.Client(
            base_url=self.url,
            trust_env=False,
            timeout=60.0,
            headers={"accept-encoding": "identity"},
        )

    def get(self, path: str) -> Any:
        return self._client.get(path)

    def metrics_text(self) -> str:
        response = self._client.get("/metrics")
        response.raise_for_status()
        return str(response.text)

    def sample(self, names: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        return metric_values(self.metrics_text(), names)

    def polls(self) -> tuple[int, int]:
        """(polls, failed polls) since start, from ``idaas_exporter_polls_total``."""
        found = self.sample(["idaas_exporter_polls_total"])
        return (
            int(total(found, "idaas_exporter_polls_total")),
            int(total(found, "idaas_exporter_polls_total", 'result="error"')),
        )

    def wait_polls(self, after: int, count: int, timeout: float) -> int:
        """Wait until ``idaas_exporter_polls_total`` ≥ *after* + *count*; returns the value."""
        deadline = time.monotonic() + timeout
        while True:
            polls, _errors = self.polls()
            if polls >= after + count:
                return polls
            if self.popen is not None and self.popen.poll() is not None:
                raise BenchProcessError(f"the daemon exited: {self.tail()}")
            if time.monotonic() > deadline:
                raise BenchProcessError(
                    f"the daemon did not poll {count} times within {timeout:g} s: {self.tail()}"
                )
            time.sleep(0.02)

    def wait_poll_started_after(self, moment: float, timeout: float) -> int:
        """Wait until ``/metrics`` shows, for every instance, a poll that *started* after
        *moment* (``time.time()``): its start is ``idaas_exporter_last_poll_timestamp_seconds``
        (when it finished) minus ``idaas_exporter_last_poll_duration_seconds``. Returns
        ``idaas_exporter_polls_total``.

        Why not "two more polls": ``/metrics`` shows a poll only once the snapshot rendered
        after it is swapped in, so the counter can lag the daemon by a poll, and two more polls
        on it may include one that started before the moment.
        """
        names = [
            "idaas_exporter_last_poll_timestamp_seconds",
            "idaas_exporter_last_poll_duration_seconds",
            "idaas_exporter_polls_total",
        ]
        deadline = time.monotonic() + timeout
        while True:
            found = self.sample(names)
            ends = dict(found["idaas_exporter_last_poll_timestamp_seconds"])
            durations = dict(found["idaas_exporter_last_poll_duration_seconds"])
            starts = [end - durations.get(labels, 0.0) for labels, end in ends.items()]
            if starts and min(starts) > moment:
                return int(total(found, "idaas_exporter_polls_total"))
            if self.popen is not None and self.popen.poll() is not None:
                raise BenchProcessError(f"the daemon exited: {self.tail()}")
            if time.monotonic() > deadline:
                raise BenchProcessError(
                    f"no poll started after the step within {timeout:g} s: {self.tail()}"
                )
            time.sleep(0.02)

    def wait_all_polled(self, timeout: float) -> float:
        """Wait until ``/metrics`` shows a successful poll of every instance; returns the
        wall-clock moment (``time.time()``) it first did.

        Not the same as ``/-/ready``: readiness follows the poll's commit at once, while the
        poll's numbers reach ``/metrics`` only when the snapshot rendered after it is swapped
        in, a little later.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.sample(["idaas_exporter_polls_total"])["idaas_exporter_polls_total"]
            ok = [value for labels, value in found if 'result="success"' in labels]
            if ok and all(value >= 1 for value in ok):
                return time.time()
            if self.popen is not None and self.popen.poll() is not None:
                raise BenchProcessError(f"the daemon exited: {self.tail()}")
            if time.monotonic() > deadline:
                raise BenchProcessError(f"not every instance polled within {timeout:g} s")
            time.sleep(0.02)

    def wait_ready(self, timeout: float) -> float:
        """Wait for ``/-/ready`` (every instance polled once); seconds since :meth:`start`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._client.get("/-/ready").status_code == 200:
                return time.monotonic() - self.started_at
            if self.popen is not None and self.popen.poll() is not None:
                raise BenchProcessError(f"the daemon exited: {self.tail()}")
            time.sleep(0.02)
        raise BenchProcessError(f"the daemon was not ready within {timeout:g} s: {self.tail()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self._client is not None:
            self._client.close()
        return super().stop(timeout)

    def poll_errors(self) -> list[dict[str, Any]]:
        """The ``poll failed`` log events so far: code, message, duration."""
        self.read_events()
        return [
            {k: e.get(k) for k in ("timestamp", "instance_id", "code", "error")}
            for e in self.events
            if e.get("event") == "poll failed"
        ]


@contextlib.contextmanager
def running(*processes: ManagedProcess) -> Iterator[None]:
    """Stop every process on the way out, whatever happened."""
    try:
        yield
    finally:
        for process in reversed(processes):
            with contextlib.suppress(Exception):
                process.stop()


def write_scenario(path: Path, scenario: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(scenario, indent=1), "utf-8")
    return path


# -- the benchmark --------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Sizes of one run; ``quick`` is a smoke run of a few seconds."""

    targets: int = 100
    interval: str = "3m"
    duration: str = "40s"
    history: str = "2h"
    goal_jobs: int = 1_000_000
    step_hours: float = 3.0
    checkpoints: tuple[int, ...] = (100_000, 250_000, 500_000, 1_000_000)
    poll_interval: float = 0.3
    steady_steps: int = 60
    steady_step_seconds: float = 60.0
    state_writes: int = 9
    step_timeout: float = 180.0
    profile: bool = True
    what_if: bool = False
    """Also run the steady state with :data:`WHAT_IF_ENV`. Off: since the daemon tunes glibc
    itself at start-up (``exporter/allocator.py``), the environment setting only replaces
    that tuning; kept for comparing allocator settings by hand."""

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            goal_jobs=30_000,
            checkpoints=(5_000, 10_000, 20_000, 30_000),
            steady_steps=8,
            state_writes=5,
            profile=False,
            what_if=False,
        )


WHAT_IF_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
"""glibc: a fixed mmap threshold (128 KiB, the default's starting value) turns off the dynamic
threshold, so the multi-megabyte exposition buffers are mmapped and returned to the system when
freed instead of fragmenting the heap. A deployment setting, no code change."""


def _progress(message: str) -> None:
    print(f"[memory] {message}", file=sys.stderr, flush=True)


def measure_state_write(state_file: Path, repeats: int) -> dict[str, Any]:
    """Load the daemon's final state and time :meth:`StateStore.save` of it *repeats* times."""
    from exporter.core.statecodec import encode_state
    from exporter.service.state_store import StateStore

    loaded = StateStore(state_file).load() or {}
    with tempfile.TemporaryDirectory(prefix="state-write-", dir=state_file.parent) as tmp:
        store = StateStore(Path(tmp) / "state.json")
        times, encode_times = [], []
        size = 0
        for _ in range(repeats):
            started = time.perf_counter()
            size = store.save(loaded)
            times.append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            encode_state(loaded)
            encode_times.append((time.perf_counter() - started) * 1e3)
    return {
        "repeats": repeats,
        "save_ms": [round(t, 3) for t in times],
        "save_ms_median": round(statistics.median(times), 3),
        "save_ms_max": round(max(times), 3),
        "encode_ms_median": round(statistics.median(encode_times), 3),
        "bytes": size,
        "file_bytes": state_file.stat().st_size,
        "counted_ids": sum(len(s.tracker.counted) for s in loaded.values()),
        "in_progress": sum(len(s.tracker.in_progress) for s in loaded.values()),
        "targets": sum(len(s.ledger.targets) for s in loaded.values()),
        "jobs_in_counters": sum(
            sum(stats.jobs.values()) for s in loaded.values() for stats in s.ledger.targets.values()
        ),
    }


_WATCHED = ("idaas_sync_jobs_total", "idaas_exporter_polls_total", "idaas_exporter_tracked_jobs")


def _rss_over(daemon: DaemonProcess, seconds: float) -> dict[str, int]:
    """VmRSS sampled every 10 ms for *seconds*: median, min and max (kB).

    Why not one reading: the daemon here polls every 0.3 s and renders its 15,000-series
    exposition after every poll, so a single reading lands inside a render's transient
    allocations (~+10 MB) by chance. The median over one poll interval is the level; the
    transient peaks are in VmHWM.
    """
    readings = []
    deadline = time.monotonic() + seconds
    while True:
        value = daemon.rss_kb()
        if value is not None:
            readings.append(value)
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    readings.sort()
    return {"median": readings[len(readings) // 2], "min": readings[0], "max": readings[-1]}


def _step(
    simulator: SimulatorProcess, daemon: DaemonProcess, step_ms: int, polls: int, timeout: float
) -> tuple[int, dict[str, Any]]:
    """Advance the simulated clock, wait for a poll that started after it, sample."""
    simulator.advance(step_ms)
    moment = time.time()
    started = time.monotonic()
    polls = daemon.wait_poll_started_after(moment, timeout)
    found = daemon.sample(_WATCHED)
    rss = _rss_over(daemon, 0.3)
    return polls, {
        "jobs": int(total(found, "idaas_sync_jobs_total")),
        "rss_kb": rss["median"],
        "rss_min_kb": rss["min"],
        "rss_max_kb": rss["max"],
        "hwm_kb": daemon.hwm_kb(),
        "tracked_counted": int(total(found, "idaas_exporter_tracked_jobs", 'kind="counted"')),
        "failed_polls": int(total(found, "idaas_exporter_polls_total", 'result="error"')),
        "step_seconds": round(time.monotonic() - started, 3),
    }


def _daemon(
    work: Path,
    simulator: SimulatorProcess,
    settings: Settings,
    cpu: int | None,
    log: str,
    extra_env: Mapping[str, str] | None = None,
) -> DaemonProcess:
    return DaemonProcess(
        work / log,
        instance_ids=simulator.instances,
        endpoint=simulator.url,
        cpu=cpu,
        settings={
            "poll_interval_seconds": settings.poll_interval,
            "api_rate_limit": 0,
            "state_file": work / "state" / "state.json",
        },
        extra_env=extra_env,
    )


def _steady(
    work: Path,
    simulator: SimulatorProcess,
    settings: Settings,
    cpu: int | None,
    log: str,
    extra_env: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], int, int | None]:
    """A fresh daemon restores the state file and polls at a realistic cadence.

    Returns the samples, the simulator's terminal jobs at the end and the exit code.
    """
    daemon = _daemon(work, simulator, settings, cpu, log, extra_env)
    samples = []
    with running(daemon):
        daemon.start()
        daemon.wait_ready(120)
        polls, _ = daemon.polls()
        step_ms = int(settings.steady_step_seconds * 1000)
        for _ in range(settings.steady_steps):
            polls, sample = _step(simulator, daemon, step_ms, polls, settings.step_timeout)
            samples.append(sample)
        truth = simulator.terminal_jobs()
        code = daemon.stop()
    samples[-1]["poll_errors"] = daemon.poll_errors()
    return samples, truth, code


def run(*, quick: bool = False, settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or (Settings.quick() if quick else Settings())
    env = environment()
    load_start = load_average()
    exporter_cpu, simulator_cpu = cpu_plan()
    samples: list[dict[str, Any]] = []
    steady: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp:
        work = Path(tmp)
        scenario = write_scenario(work / "estate.json", _scenario(settings))
        simulator = SimulatorProcess(
            scenario, work / "simulator.log", cpu=simulator_cpu, manual_clock=True
        )
        simulator.start()
        daemon = _daemon(work, simulator, settings, exporter_cpu, "daemon.log")
        with running(simulator, daemon):
            # phase 1: catch-up steps of a few simulated hours until a million jobs are counted
            daemon.start()
            daemon.wait_ready(120)
            rss_ready = _rss_over(daemon, 0.3)["median"]
            started = time.monotonic()
            cpu_before = daemon.cpu_seconds()
            polls, _ = daemon.polls()
            jobs = 0
            step_ms = int(settings.step_hours * 3_600_000)
            while jobs < settings.goal_jobs:
                polls, sample = _step(simulator, daemon, step_ms, polls, settings.step_timeout)
                jobs = sample["jobs"]
                sample["elapsed_seconds"] = round(time.monotonic() - started, 2)
                samples.append(sample)
                if len(samples) % 20 == 0 or jobs >= settings.goal_jobs:
                    _progress(
                        f"step {len(samples)}: {jobs:,} jobs, RSS {sample['rss_kb'] / 1024:.1f} "
                        f"MB, peak {sample['hwm_kb'] / 1024:.1f} MB, "
                        f"{sample['elapsed_seconds']} s"
                    )
            ingest_seconds = time.monotonic() - started
            daemon_cpu = daemon.cpu_seconds() - cpu_before
            truth = simulator.terminal_jobs()
            final = daemon.sample(
                [
                    "idaas_sync_jobs_total",
                    "idaas_exporter_state_writes_total",
                    "idaas_exporter_api_requests_total",
                    "idaas_exporter_polls_total",
                ]
            )
            rss_final, hwm_final = _rss_over(daemon, 1.0)["median"], daemon.hwm_kb()
            exit_code = daemon.stop()
            poll_errors = daemon.poll_errors()
            state = measure_state_write(work / "state" / "state.json", settings.state_writes)

            # phase 2: a fresh daemon restores that state and polls at a realistic cadence
            steady, steady_truth, restarted_exit = _steady(
                work, simulator, settings, exporter_cpu, "daemon-steady.log"
            )
            _progress(
                f"steady state: {steady[-1]['jobs']:,} jobs, RSS "
                f"{steady[-1]['rss_kb'] / 1024:.1f} MB, peak {steady[-1]['hwm_kb'] / 1024:.1f} MB"
            )
            # phase 3 (what-if, not the verdict): the same with a fixed glibc mmap threshold
            what_if: list[dict[str, Any]] = []
            if settings.what_if:
                what_if, _truth, _code = _steady(
                    work, simulator, settings, exporter_cpu, "daemon-what-if.log", WHAT_IF_ENV
                )
                _progress(f"what-if {WHAT_IF_ENV}: RSS {what_if[-1]['rss_kb'] / 1024:.1f} MB")
            simulator_hwm = simulator.hwm_kb()
    load_end = load_average()
    profile = profile_memory(settings) if settings.profile else None

    counted = int(total(final, "idaas_sync_jobs_total"))
    checkpoints = []
    for goal in settings.checkpoints:
        hit = next((s for s in samples if s["jobs"] >= goal), None)
        if hit is not None:
            checkpoints.append({"jobs_goal": goal, **hit})
    document: dict[str, Any] = {
        "benchmark": NAME,
        "title": "RSS of the real daemon vs jobs ingested (1M jobs, 100 targets); state write",
        "environment": env,
        "settings": {
            **{k: v for k, v in settings.__dict__.items() if k != "checkpoints"},
            "quick": quick,
            "load_average_start": load_start,
            "load_average_end": load_end,
        },
        "pinning": {
            "pinned": daemon.pinned and simulator.pinned,
            "client_cpu": exporter_cpu,
            "server_cpu": simulator_cpu,
            "note": "client = the daemon under test, server = the simulator process",
        },
        "checkpoints": checkpoints,
        "samples": samples,
        "steady_samples": steady,
        "final": {
            "jobs_counted": counted,
            "simulator_terminal_jobs": truth,
            "exactly_once": counted == truth,
            "rss_ready_kb": rss_ready,
            "rss_kb": rss_final,
            "hwm_kb": hwm_final,
            "steps": len(samples),
            "jobs_per_step": round(counted / max(1, len(samples))),
            "ingest_seconds": round(ingest_seconds, 1),
            "daemon_cpu_seconds": round(daemon_cpu, 1),
            "jobs_per_daemon_cpu_second": round(counted / daemon_cpu) if daemon_cpu else None,
            "api_requests": int(total(final, "idaas_exporter_api_requests_total")),
            "state_writes": int(total(final, "idaas_exporter_state_writes_total")),
            "failed_polls": int(total(final, "idaas_exporter_polls_total", 'result="error"')),
            "poll_errors": poll_errors,
            "daemon_exit_code": exit_code,
            "simulator_peak_rss_kb": simulator_hwm,
        },
        "steady": {
            "jobs_counted": steady[-1]["jobs"] if steady else None,
            "simulator_terminal_jobs": steady_truth,
            "exactly_once": bool(steady) and steady[-1]["jobs"] == steady_truth,
            "rss_kb": steady[-1]["rss_kb"] if steady else None,
            "hwm_kb": steady[-1]["hwm_kb"] if steady else None,
            "failed_polls": steady[-1]["failed_polls"] if steady else None,
            "poll_errors": steady[-1].get("poll_errors", []) if steady else [],
            "daemon_exit_code": restarted_exit,
        },
        "what_if": {
            "env": WHAT_IF_ENV,
            "samples": what_if,
            "rss_kb": what_if[-1]["rss_kb"] if what_if else None,
            "hwm_kb": what_if[-1]["hwm_kb"] if what_if else None,
        },
        "state_write": state,
        "profile": profile,
    }
    document["summary"] = _summary(document, settings)
    document["plots"] = _plot(document, settings)
    return document


def _scenario(settings: Settings) -> dict[str, Any]:
    return estate_scenario(
        settings.targets,
        interval=settings.interval,
        duration=settings.duration,
        history=settings.history,
        name="bench-memory",
    )


def profile_memory(settings: Settings) -> dict[str, Any]:
    """Where the daemon's memory goes, measured in this process with ``tracemalloc``.

    * one page of ``ListSynchronizationJobs`` as the poller holds it while folding it (the
      poller keeps one page at a time, whatever the listing's length);
    * one rendering of the exposition of the same estate, as the daemon does it once per poll
      (``daemon._render``: families, text, OpenMetrics, gzip): its transient peak and the
      retained :class:`~exporter.web.app.Snapshot` (the previous one stays alive until the swap);
    * the RSS of a fresh interpreter that imported what the daemon imports.
    """
    import gc
    import tracemalloc

    from exporter.core.contract import ApiRequestStats, PollStatus
    from exporter.core.instance import InstanceState
    from exporter.core.ledger import InstanceLedger
    from exporter.core.tracker import TrackerState
    from exporter.eiam.models import ListSynchronizationJobsResponse, SynchronizationJob
    from exporter.service.daemon import _render
    from exporter.simulator import ManualClock, World
    from exporter.simulator.render import job_fragment, list_jobs_body
    from exporter.simulator.scenarios import Scenario

    clock = ManualClock(1_735_689_600_000)
    world = World(Scenario.model_validate(_scenario(settings)), seed=1, now_ms=clock)
    clock.advance(int(settings.step_hours * 3_600_000))
    now = world.advance()
    instance = world.instances[0]
    fragments = [job_fragment(job, now) for job in instance.jobs]
    pages = [
        list_jobs_body("r", len(fragments), None, fragments[i : i + 100])
        for i in range(0, len(fragments), 100)
    ]
    del fragments
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    page_models = ListSynchronizationJobsResponse.model_validate_json(pages[0])  # a full one
    page_bytes = tracemalloc.get_traced_memory()[0] - base
    page_jobs = len(page_models.synchronization_jobs)
    del page_models
    tracemalloc.stop()
    terminal: list[SynchronizationJob] = []
    for page in pages:
        jobs = ListSynchronizationJobsResponse.model_validate_json(page).synchronization_jobs
        terminal.extend(job for job in jobs if job.end_time is not None)
    state = InstanceState(
        tracker=TrackerState.initial(), ledger=InstanceLedger().with_jobs(terminal)
    )
    del terminal, pages
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    snapshot = _render(
        {instance.instance_id: state},
        {instance.instance_id: PollStatus()},
        ApiRequestStats(),
        {"success": 1},
        60.0,
    )
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    imports = subprocess.run(
        [
            sys.executable,
            "-c",
            "import exporter.cli, exporter.service.daemon, exporter.eiam.credentials.chain\n"
            "exporter.cli.build_parser()\n"
            "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        env=_child_env({}),
    )
    return {
        "page_jobs": page_jobs,
        "page_traced_bytes": page_bytes,
        "bytes_per_job_held": round(page_bytes / max(1, page_jobs)),
        "render_series": snapshot.series,
        "render_peak_bytes": peak - base,
        "snapshot_retained_bytes": retained - base,
        "snapshot_text_bytes": len(snapshot.text),
        "snapshot_openmetrics_bytes": snapshot.openmetrics_length,
        "imports_rss_kb": int(imports.stdout.strip() or 0),
    }


def _mb(kb: int | None) -> float:
    return round((kb or 0) / 1024, 1)


def _summary(doc: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    final, steady, state = doc["final"], doc["steady"], doc["state_write"]
    goal = settings.goal_jobs
    per_step = final["jobs_per_step"]
    rows = [
        row(
            f"daemon RSS after {p['jobs_goal']:,} jobs (sampled at {p['jobs']:,})",
            _mb(p["rss_kb"]),
            "MB",
        )
        for p in doc["checkpoints"]
    ]
    rss_mb = _mb(final["rss_kb"])
    rows += [
        row(
            f"daemon RSS after {final['jobs_counted']:,} jobs over {settings.targets} targets "
            f"(catch-up steps of {settings.step_hours:g} simulated h, ~{per_step:,} jobs/poll)",
            rss_mb,
            "MB",
            f"≤ {TARGET_RSS_MB:g} MB after {goal:,}",
            rss_mb <= TARGET_RSS_MB and final["jobs_counted"] >= goal,
        ),
        row("  peak RSS (VmHWM) during the catch-up", _mb(final["hwm_kb"]), "MB"),
        row(
            "  RSS once ready (first poll done, before the steps)", _mb(final["rss_ready_kb"]), "MB"
        ),
        row(
            f"daemon RSS restarted from that state, then {len(doc['steady_samples'])} polls "
            f"of {settings.steady_step_seconds:g} simulated s each (steady state)",
            _mb(steady["rss_kb"]),
            "MB",
            f"≤ {TARGET_RSS_MB:g} MB",
            _mb(steady["rss_kb"]) <= TARGET_RSS_MB,
        ),
        row("  peak RSS (VmHWM) in steady state", _mb(steady["hwm_kb"]), "MB"),
    ]
    what_if = doc["what_if"]
    if what_if["samples"]:
        env = ", ".join(f"{k}={v}" for k, v in what_if["env"].items())
        rows.append(
            row(
                f"  what-if, same steady state with {env} (deployment setting)",
                f"{_mb(what_if['rss_kb'])} (peak {_mb(what_if['hwm_kb'])})",
                "MB",
            )
        )
    rows += [
        row(
            "jobs counted = simulator's terminal jobs (exactly once), catch-up / steady",
            f"{final['jobs_counted']:,} = {final['simulator_terminal_jobs']:,} / "
            f"{steady['jobs_counted']:,} = {steady['simulator_terminal_jobs']:,}",
            "",
            "equal",
            final["exactly_once"] and steady["exactly_once"],
        ),
        row(
            "failed polls (catch-up + steady)"
            + "".join(
                f"; {e['code']}: {str(e['error'])[:90]}"
                for e in [*final["poll_errors"], *steady["poll_errors"]][:2]
            ),
            final["failed_polls"] + (steady["failed_polls"] or 0),
            "",
            "0",
            final["failed_polls"] + (steady["failed_polls"] or 0) == 0,
        ),
        row(
            "ingest rate (jobs per CPU-second of the daemon)",
            final["jobs_per_daemon_cpu_second"],
            "jobs/s",
        ),
        row(
            f"ingest wall time ({final['steps']} steps, each until a poll started after it)",
            final["ingest_seconds"],
            "s",
        ),
        row(
            f"state write (StateStore.save of the final state, median of {state['repeats']})",
            state["save_ms_median"],
            "ms",
            f"≤ {TARGET_STATE_WRITE_MS:g} ms",
            state["save_ms_median"] <= TARGET_STATE_WRITE_MS,
        ),
        row("  slowest state write", state["save_ms_max"], "ms"),
        row("  of which JSON encoding (median)", state["encode_ms_median"], "ms"),
        row("state file size", round(state["file_bytes"] / 1024, 1), "KiB"),
        row(
            "state content: counted IDs in window / in progress / targets",
            f"{state['counted_ids']:,} / {state['in_progress']} / {state['targets']}",
        ),
    ]
    profile = doc.get("profile")
    if profile:
        rows += [
            row(
                f"profile: one page held while folded ({profile['page_jobs']} jobs)",
                round(profile["page_traced_bytes"] / 2**20, 2),
                "MiB",
            ),
            row(
                f"profile: exposition render, transient peak ({profile['render_series']:,} series)",
                round(profile["render_peak_bytes"] / 2**20, 1),
                "MiB",
            ),
            row(
                "profile: retained snapshot (text + OpenMetrics + gzip), ×2 during the swap",
                round(profile["snapshot_retained_bytes"] / 2**20, 1),
                "MiB",
            ),
            row(
                "profile: RSS of a fresh interpreter after the daemon's imports",
                _mb(profile["imports_rss_kb"]),
                "MB",
            ),
        ]
    rows.append(
        row(
            "load average (1 min) at start / end",
            f"{doc['settings']['load_average_start'][0]} / "
            f"{doc['settings']['load_average_end'][0]}",
        )
    )
    return rows


def _plot(doc: dict[str, Any], settings: Settings) -> list[str]:
    samples = doc["samples"]
    if not samples:
        return []
    xs = [s["jobs"] / 1000 for s in samples]
    series = {
        "RSS (VmRSS, median over 0.3 s), catch-up steps": (
            xs,
            [s["rss_kb"] / 1024 for s in samples],
        ),
        "peak RSS so far (VmHWM)": (xs, [s["hwm_kb"] / 1024 for s in samples]),
    }
    steady = doc["steady_samples"]
    if steady:
        series["RSS after restart, steady 60-s polls"] = (
            [s["jobs"] / 1000 for s in steady],
            [s["rss_kb"] / 1024 for s in steady],
        )
    what_if = doc["what_if"]["samples"]
    if what_if:
        series["same, what-if MALLOC_MMAP_THRESHOLD_=131072"] = (
            [s["jobs"] / 1000 for s in what_if],
            [s["rss_kb"] / 1024 for s in what_if],
        )
    path = plots.lines(
        "memory_rss_vs_jobs.png",
        series,
        title=f"Daemon memory while ingesting {settings.goal_jobs:,} jobs over "
        f"{settings.targets} targets",
        xlabel="jobs ingested (thousands)",
        ylabel="MB",
        env=doc["environment"],
        note=f"catch-up steps of {settings.step_hours:g} simulated h "
        f"(~{doc['final']['jobs_per_step']:,} jobs per poll)",
        hlines=[(TARGET_RSS_MB, f"target {TARGET_RSS_MB:g} MB")],
        markers=False,
    )
    return [path.name] if path else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke-sized run")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    document = run(quick=quick)
    path = plots.results_dir() / f"{NAME}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", "utf-8")
    for item in document["summary"]:
        verdict = "" if item["ok"] is None else (" [met]" if item["ok"] else " [MISSED]")
        print(f"{item['metric']}: {item['value']} {item['unit']}{verdict}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
