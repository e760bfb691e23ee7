"""Machine, version and date facts that must travel with every benchmark figure.

Why: a throughput number without the machine it ran on, the library versions and the date is not
a result, it is a rumour. Every benchmark embeds :func:`environment` in its JSON and the report
prints it next to the figures, so a later regression (or improvement) can be told apart from a
different CPU, a new pydantic or a dirty work tree.

Only the standard library is required; ``psutil`` (the ``bench`` extra) is used when present for
physical core counts and memory, with ``/proc`` as the fallback.

>>> facts = environment()
>>> sorted(facts) == sorted(
...     ["run_date_utc", "machine", "os", "python", "packages", "git", "process"])
True
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGES",
    "REPO_ROOT",
    "cpu_model",
    "environment",
    "git_facts",
    "one_line",
    "package_versions",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

PACKAGES: tuple[str, ...] = (
    "idaas-sync-exporter",
    "httpx",
    "httpcore",
    "h11",
    "pydantic",
    "pydantic-core",
    "prometheus-client",
    "structlog",
    "alibabacloud-eiam20211201",
    "alibabacloud-tea-openapi",
    "darabonba-core",
    "requests",
    "urllib3",
    "aiohttp",
    "psutil",
)
"""Distributions whose version can move a figure: ours, the HTTP/parse stack, the SDK stack."""


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _physical_cores() -> int | None:
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
        return int(count) if count else None
    except ImportError:
        return None


def _cpu_mhz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("cpu mhz"):
                return round(float(line.split(":", 1)[1]), 1)
    except (OSError, ValueError):
        pass
    return None


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, ``None`` when it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_facts(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit, branch and whether the work tree had uncommitted changes when the figures ran."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                ["git", "-C", str(root), *args],  # noqa: S607 - git from PATH is intended
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


def environment() -> dict[str, Any]:
    """Everything a reader needs to judge a figure: machine, OS, Python, packages, git, date."""
    flags = _cpu_flags()
    try:
        affinity: list[int] | None = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = None
    memory = _memory_bytes()
    return {
        "run_date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpu_model": cpu_model(),
            "cpu_mhz": _cpu_mhz(),
            "logical_cpus": os.cpu_count(),
            "physical_cores": _physical_cores(),
            "virtualized": "hypervisor" in flags if flags else None,
            "memory_bytes": memory,
            "memory_gib": round(memory / 2**30, 1) if memory else None,
            "architecture": platform.machine(),
        },
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "platform": platform.platform(),
        },
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "compiler": platform.python_compiler(),
            "executable": sys.executable,
        },
        "packages": package_versions(),
        "git": git_facts(),
        "process": {"pid": os.getpid(), "cpu_affinity": affinity},
    }


def one_line(env: dict[str, Any]) -> str:
    """A compact human summary: ``AMD EPYC, 2 CPUs, 23.4 GiB, Linux 6.1, Python 3.11.7 ...``."""
    machine, py, pkgs, git = env["machine"], env["python"], env["packages"], env["git"]
    commit = (git.get("commit") or "unknown")[:12] + ("+dirty" if git.get("dirty") else "")
    return (
        f"{machine['cpu_model']} ({machine['logical_cpus']} logical CPUs"
        f"{', VM' if machine.get('virtualized') else ''}), {machine['memory_gib']} GiB RAM; "
        f"{env['os']['system']} {env['os']['release']}; "
        f"{py['implementation']} {py['version']}; httpx {pkgs.get('httpx')}, "
        f"pydantic {pkgs.get('pydantic')}, prometheus-client {pkgs.get('prometheus-client')}, "
        f"SDK alibabacloud-eiam20211201 {pkgs.get('alibabacloud-eiam20211201')}; "
        f"commit {commit}; run {env['run_date_utc']}"
    )


if __name__ == "__main__":
    import json

    print(json.dumps(environment(), indent=2))
