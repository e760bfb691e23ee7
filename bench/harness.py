"""What the benchmarks and the end-to-end tests share: processes, the estate, /proc, figures.

Processes (:class:`SimulatorProcess`, :class:`DaemonProcess`: real children with JSON logs in a
file, pinned to a CPU, under a descriptor limit), the estate (:func:`estate_scenario`: targets
whose populations and rates vary as a real company's do), readings (``/proc``, pinning,
percentiles, the exposition read fast or fully) and provenance (:func:`environment`: a figure
without its machine, versions, commit and date is a rumour). Standard library, httpx and the
exporter only: ``tests/`` imports this module without the ``bench`` extra.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from exporter.eiam.client import EiamClient
from exporter.eiam.credentials.base import Credential, StaticCredentialsProvider
from exporter.simulator.auth import DEMO_ACCESS_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
Series = tuple[str, tuple[tuple[str, str], ...]]
"""(sample name, sorted label pairs)."""


def row(
    metric: str, value: Any, unit: str = "", target: str = "", ok: bool | None = None
) -> dict[str, Any]:
    """One line of the report's table for a result."""
    return {"metric": metric, "value": value, "unit": unit, "target": target, "ok": ok}


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (*fraction* in 0..1) of *values* (not empty).

    >>> percentile([5, 1, 4, 2, 3], 0.5), percentile(range(100), 0.99)
    (3, 98)
    """
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def metric_values(text: str, names: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
    """Samples of the metrics *names* in a text exposition: name → [(label text, value)].

    A plain line scan: the daemons under test serve 15,000 series, which a full parser needs a
    second or more to read. Exemplars (OpenMetrics) are cut off.

    >>> metric_values('a_total{x="1"} 2\\nb 3\\na_total{x="2"} 4.5 # {id="j"} 1\\n', ["a_total"])
    {'a_total': [('x="1"', 2.0), ('x="2"', 4.5)]}
    """
    wanted = set(names)
    found: dict[str, list[tuple[str, float]]] = {name: [] for name in names}
    for line in text.split("\n"):
        if not line.startswith(tuple(wanted)):
            continue
        line = line.split(" # ", 1)[0]
        brace, space = line.find("{"), line.rfind(" ")
        name = line[:brace] if 0 <= brace < space else line[: line.find(" ")]
        if name in wanted:
            labels = line[brace + 1 : line.rfind("}")] if brace >= 0 else ""
            found[name].append((labels, float(line[space + 1 :])))
    return found


def total(samples: Mapping[str, list[tuple[str, float]]], name: str, contains: str = "") -> float:
    """Sum of the samples of *name* whose label text contains *contains*."""
    return sum(value for labels, value in samples.get(name, []) if contains in labels)


def parse_exposition(text: str) -> dict[Series, float]:
    """Every sample, read by prometheus-client's own parser (what correctness tests compare)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def cpu_plan() -> tuple[int | None, int | None]:
    """(client/exporter CPU, server/simulator CPU) when two distinct CPUs are available."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def pin(pid: int, cpu: int | None) -> bool:
    """Pin process *pid* (0: this one) to *cpu*; False when impossible."""
    with contextlib.suppress(AttributeError, OSError):
        if cpu is not None:
            os.sched_setaffinity(pid, {cpu})
            return True
    return False


def proc_kb(pid: int, field: str = "VmRSS") -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``…), None if unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process *pid*."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


PACKAGES = (
    "idaas-sync-exporter", "httpx", "h11", "pydantic", "prometheus-client", "structlog",
    "alibabacloud-eiam20211201", "alibabacloud-tea-openapi",
)  # fmt: skip


def environment() -> dict[str, Any]:
    """Machine, OS, Python, package versions, commit (and whether the tree was dirty), date."""

    def git(*args: str) -> str | None:
        done = subprocess.run(  # noqa: S603 - fixed argv
            ["git", "-C", str(REPO_ROOT), *args],  # noqa: S607 - git from PATH
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return done.stdout.strip() if done.returncode == 0 else None

    cpuinfo = Path("/proc/cpuinfo").read_text("utf-8") if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or platform.machine(),
    )
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "run_date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpu_model": model,
            "logical_cpus": os.cpu_count(),
            "virtualized": " hypervisor" in cpuinfo,
            "memory_gib": round(pages / 2**30, 1),
        },
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": versions,
        "git": {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))},
    }


def one_line(env: Mapping[str, Any]) -> str:
    """``AMD EPYC (2 logical CPUs, VM), 23.5 GiB RAM; Linux …; CPython 3.11.7; …``."""
    machine, packages, commit = env["machine"], env["packages"], env["git"]
    sha = (commit.get("commit") or "unknown")[:12] + ("+dirty" if commit.get("dirty") else "")
    return (
        f"{machine['cpu_model']} ({machine['logical_cpus']} logical CPUs"
        f"{', VM' if machine.get('virtualized') else ''}), {machine['memory_gib']} GiB RAM; "
        f"{env['os']}; {env['python']}; httpx {packages.get('httpx')}, pydantic "
        f"{packages.get('pydantic')}, prometheus-client {packages.get('prometheus-client')}; "
        f"commit {sha}; run {env['run_date_utc']}"
    )


_KINDS = (  # one block of ten targets; an estate repeats the block
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


def estate_scenario(
    targets: int,
    *,
    instances: int = 1,
    interval: str = "1h",
    duration: str = "3m",
    history: str = "72h",
    manual_rate: float = 0.05,
) -> dict[str, Any]:
    """A scenario (JSON form) of *targets* targets spread over *instances* instances."""
    specs = []
    number = 0
    for index in range(instances):
        rows = []
        for _ in range(targets // instances + (1 if index < targets % instances else 0)):
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
        "name": "bench-estate",
        "description": f"{targets} targets over {instances} instance(s)",
        "history": history,
        "instances": specs,
    }


def write_scenario(path: Path, scenario: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(scenario, indent=1), "utf-8")
    return path


def child_env(extra: Mapping[str, str] = {}) -> dict[str, str]:
    """This environment without exporter/Alibaba settings or proxies, plus *extra*."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IDAAS_EXPORTER_", "ALIBABA_CLOUD_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


class Process:
    """A child process with JSON logs in a file, stopped with SIGTERM (SIGKILL after a wait)."""

    def __init__(
        self,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cpu: int | None = None,
        fd_limit: int | None = None,
    ) -> None:
        self.argv, self.log_path, self.env, self.cpu, self.fd_limit = (
            argv, log_path, env, cpu, fd_limit,
        )  # fmt: skip
        self.popen: subprocess.Popen[bytes] | None = None
        self.events: list[dict[str, Any]] = []
        self._offset = 0
        self._client: httpx.Client | None = None  # to the child's HTTP side, once started

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        limit = self.fd_limit

        def limit_fds() -> None:
            assert limit is not None
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                env=self.env, cwd=REPO_ROOT, preexec_fn=limit_fds if limit else None,
            )  # fmt: skip
        pin(self.popen.pid, self.cpu)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def read_events(self) -> list[dict[str, Any]]:
        """JSON log lines written since the last call (also kept in :attr:`events`)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._offset)
                data = log.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._offset += end
        new = []
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict):
                    new.append(item)
        self.events.extend(new)
        return new

    def find_event(self, event: str) -> dict[str, Any] | None:
        self.read_events()
        return next((e for e in reversed(self.events) if e.get("event") == event), None)

    def wait_event(self, event: str, timeout: float) -> dict[str, Any]:
        """The latest log event named *event*, waiting up to *timeout* seconds."""
        deadline = time.monotonic() + timeout
        while (found := self.find_event(event)) is None:
            if not self.alive():
                raise RuntimeError(f"{self.argv[2:4]} exited before {event!r}: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {event!r} within {timeout:g} s: {self.tail()}")
            time.sleep(0.02)
        return found

    def tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        return "(no log)"

    def rss_kb(self) -> int | None:
        return proc_kb(self.pid)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait; SIGKILL after *timeout*. Returns the exit code."""
        if self._client is not None:
            self._client.close()
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


class SimulatorProcess(Process):
    """``idaas-sync-exporter simulate`` with its control interface, on an ephemeral port."""

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
    ) -> None:
        argv = [sys.executable, "-m", "exporter", "simulate", "--listen", "127.0.0.1:0"]
        argv += ["--scenario", str(scenario), "--seed", "1", "--speed", repr(speed)]
        argv += ["--control", "--log.format", "json"]
        argv += ["--manual-clock"] if manual_clock else []
        argv += ["--faults", faults] if faults else []
        super().__init__(argv, log_path, env=child_env(), cpu=cpu)

    def start(self, timeout: float = 120.0) -> None:
        super().start()
        listening = self.wait_event("simulator listening", timeout)
        self.url = str(listening["url"])
        self.instances = list(listening["instances"])
        self._client = httpx.Client(base_url=self.url, trust_env=False, timeout=120.0)

    def control(self, method: str, path: str, payload: Any = None) -> Any:
        """Call ``/_sim/<path>`` and return its JSON answer."""
        assert self._client is not None
        response = self._client.request(method, "/_sim/" + path.lstrip("/"), json=payload)
        if response.status_code >= 400:
            raise RuntimeError(f"simulator control {method} {path}: {response.text}")
        return response.json()

    def advance(self, ms: int) -> int:
        return int(self.control("POST", "clock/advance", {"ms": int(ms)})["now_ms"])

    def terminal_jobs(self) -> int:
        """Jobs terminal now in every instance (started ones minus those in progress)."""
        world = self.control("GET", "world")
        return sum(i["jobs"] - i["in_progress"] for i in world["instances"])


class DaemonProcess(Process):
    """The exporter (``python -m exporter``), configured through ``IDAAS_EXPORTER_*``."""

    url: str

    def __init__(
        self,
        log_path: Path,
        *,
        instance_ids: Sequence[str],
        endpoint: str,
        cpu: int | None = None,
        settings: Mapping[str, Any] | None = None,
        fd_limit: int | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.auth = auth
        env = {
            "IDAAS_EXPORTER_INSTANCE_IDS": ",".join(instance_ids),
            "IDAAS_EXPORTER_ENDPOINT": endpoint,
            "IDAAS_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.1:0",
            "IDAAS_EXPORTER_LOG_FORMAT": "json",
            "IDAAS_EXPORTER_STATE_FILE": "",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": DEMO_ACCESS_KEY.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEMO_ACCESS_KEY.access_key_secret,
            "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true",
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        }
        env |= {f"IDAAS_EXPORTER_{k.upper()}": str(v) for k, v in (settings or {}).items()}
        argv = [sys.executable, "-m", "exporter"]
        super().__init__(argv, log_path, env=child_env(env), cpu=cpu, fd_limit=fd_limit)

    def start(self, timeout: float = 60.0) -> None:
        super().start()
        self.url = str(self.wait_event("idaas-sync-exporter started", timeout)["listen"])
        self._client = httpx.Client(
            base_url=self.url,
            trust_env=False,
            timeout=60.0,
            headers={"accept-encoding": "identity"},
            auth=self.auth,
        )

    def get(self, path: str) -> httpx.Response:
        assert self._client is not None
        return self._client.get(path)

    def sample(self, names: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        response = self.get("/metrics")
        response.raise_for_status()
        return metric_values(response.text, names)

    def wait_until(self, condition: Any, timeout: float, what: str) -> Any:
        """Poll ``condition()`` until it returns something true; its value."""
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            if not self.alive():
                raise RuntimeError(f"the daemon exited: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not within {timeout:g} s: {self.tail()}")
            time.sleep(0.02)
        return value

    def wait_all_polled(self, timeout: float) -> float:
        """Until ``/metrics`` shows a successful poll of every instance; the moment (epoch)."""

        def polled() -> float | None:
            found = self.sample(["idaas_exporter_polls_total"])["idaas_exporter_polls_total"]
            ok = [value for labels, value in found if 'result="success"' in labels]
            return time.time() if ok and all(value >= 1 for value in ok) else None

        return float(self.wait_until(polled, timeout, "a successful poll of every instance"))

    def wait_poll_started_after(self, moment: float, timeout: float) -> int:
        """Until every instance shows a poll that *started* after *moment*; the polls total."""
        names = [
            "idaas_exporter_last_poll_timestamp_seconds",
            "idaas_exporter_last_poll_duration_seconds",
            "idaas_exporter_polls_total",
        ]

        def started_after() -> int | None:
            found = self.sample(names)
            ends = dict(found[names[0]])
            durations = dict(found[names[1]])
            starts = [end - durations.get(labels, 0.0) for labels, end in ends.items()]
            if starts and min(starts) > moment:
                return int(total(found, names[2])) or 1
            return None

        return int(self.wait_until(started_after, timeout, "a poll after the step"))


@contextlib.contextmanager
def running(*processes: Process) -> Iterator[None]:
    """Stop every process on the way out, whatever happened."""
    try:
        yield
    finally:
        for process in reversed(processes):
            with contextlib.suppress(Exception):
                process.stop()


@contextlib.contextmanager
def simulator(
    scenario: Mapping[str, Any], **options: Any
) -> Iterator[tuple[SimulatorProcess, Path, int | None]]:
    """A started simulator of *scenario* on its own CPU (when there are two), in a scratch
    directory: yields it, the directory and the CPU left for the daemon."""
    daemon_cpu, simulator_cpu = cpu_plan()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        path = write_scenario(work / "scenario.json", scenario)
        process = SimulatorProcess(path, work / "simulator.log", cpu=simulator_cpu, **options)
        with running(process):
            process.start()
            yield process, work, daemon_cpu


def daemon(sim: SimulatorProcess, log: Path, cpu: int | None, **settings: Any) -> DaemonProcess:
    """The real daemon (not started) polling every instance of *sim*; ``fd_limit`` and
    ``auth`` go to the process, everything else is a setting."""
    options = {key: settings.pop(key) for key in ("fd_limit", "auth") if key in settings}
    return DaemonProcess(
        log, instance_ids=sim.instances, endpoint=sim.url, cpu=cpu, settings=settings, **options
    )


def demo_client(url: str, **options: Any) -> EiamClient:
    """The project's client with the simulator's demo key (unlimited unless *options* say)."""
    key = DEMO_ACCESS_KEY
    credential = Credential(key.access_key_id, SecretStr(key.access_key_secret), source="bench")
    return EiamClient(url, StaticCredentialsProvider(credential), **options)
