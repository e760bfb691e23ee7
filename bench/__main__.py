"""``python -m bench``: run every benchmark, write ``bench/results/*.json`` and ``REPORT.md``.

Usage::

    python -m bench                          # every registered and discovered benchmark
    python -m bench --only client_throughput # one (repeatable; a ``_bench`` suffix is optional)
    python -m bench --quick                  # smoke-sized runs, a few seconds each
    python -m bench --list                   # what would run
    python -m bench --report                 # only rebuild REPORT.md from existing results

Each benchmark runs in its own interpreter (see :mod:`bench`), so one benchmark's CPU pinning,
imports and heap cannot distort the next one's figures. The exit status is non-zero when a
benchmark *failed to run*; a missed performance target is reported, not turned into a failure.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import REGISTERED
from bench.environment import environment, one_line

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_ROOT = BENCH_DIR.parent


def discover() -> list[str]:
    """Registered modules first, then every ``bench/*_bench.py`` in name order."""
    names = list(REGISTERED)
    for path in sorted(BENCH_DIR.glob("*_bench.py")):
        if path.stem not in names:
            names.append(path.stem)
    return names


def select(names: list[str], only: list[str] | None) -> list[str]:
    """Filter by ``--only`` (exact module name, or the name without its ``_bench`` suffix)."""
    if not only:
        return names
    wanted = {w.strip() for item in only for w in item.split(",") if w.strip()}
    chosen = [n for n in names if n in wanted or n.removesuffix("_bench") in wanted]
    unknown = wanted - set(chosen) - {n.removesuffix("_bench") for n in chosen}
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {names}")
    return chosen


def _child(name: str, quick: bool) -> int:
    """Run one benchmark module in this (fresh) interpreter, whatever entry point it has."""
    module = importlib.import_module(f"bench.{name}")
    main = getattr(module, "main", None)
    run = getattr(module, "run", None)
    if callable(main):
        source = inspect.getsource(module)
        argv = ["--quick"] if quick and "--quick" in source else []
        if inspect.signature(main).parameters:
            code = main(argv)
        else:
            sys.argv = [f"bench.{name}", *argv]
            code = main()
        return int(code or 0)
    if callable(run):
        kwargs = {"quick": quick} if "quick" in inspect.signature(run).parameters else {}
        document = run(**kwargs)
        if isinstance(document, dict):
            document.setdefault("benchmark", name)
            document.setdefault("environment", environment())
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            target = RESULTS_DIR / f"{name}.json"
            target.write_text(json.dumps(document, indent=2, default=str) + "\n", "utf-8")
        return 0
    import runpy

    runpy.run_module(f"bench.{name}", run_name="__main__")
    return 0


def run_one(name: str, quick: bool) -> tuple[int, float]:
    """Run benchmark *name* in a child interpreter; return (exit status, seconds)."""
    env = dict(os.environ)
    env["BENCH_RESULTS_DIR"] = str(RESULTS_DIR)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if quick:
        env["BENCH_QUICK"] = "1"
    argv = [sys.executable, "-m", "bench", "--_child", name] + (["--quick"] if quick else [])
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, check=False)  # noqa: S603
    return done.returncode, time.perf_counter() - started


# -- REPORT.md ----------------------------------------------------------------------------


def _scalar_rows(document: dict[str, Any], limit: int = 40) -> list[dict[str, Any]]:
    """Fallback rows for a result without ``summary``: its scalar leaves, environment aside."""
    rows: list[dict[str, Any]] = []

    def walk(prefix: str, value: Any) -> None:
        if len(rows) >= limit:
            return
        if isinstance(value, dict):
            for key, inner in value.items():
                if key not in ("environment", "settings"):
                    walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, int | float | str | bool) and not isinstance(value, bool):
            rows.append({"metric": prefix, "value": value, "unit": "", "target": "", "ok": None})

    walk("", document)
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def build_report(results_dir: Path = RESULTS_DIR, ran_now: set[str] | None = None) -> str:
    """Markdown summarising every ``results/*.json``, each with its machine, versions and date."""
    lines = [
        "# Benchmark report",
        "",
        "Generated by `python -m bench` from `bench/results/*.json`. Figures depend on the "
        "machine and its load: each section states the machine, versions, commit and run date "
        "of its own figures. Do not compare figures across machines.",
        "",
        f"Report written {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} on: "
        f"{one_line(environment())}",
        "",
    ]
    for path in sorted(results_dir.glob("*.json")):
        try:
            document = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            lines += [f"## {path.stem}", "", f"Unreadable result file: {exc}", ""]
            continue
        if not isinstance(document, dict):
            continue
        title = document.get("title") or document.get("benchmark") or path.stem
        lines += [f"## {path.stem}: {title}", ""]
        env = document.get("environment")
        if isinstance(env, dict) and "machine" in env:
            lines.append(f"- Measured on: {one_line(env)}")
        elif ran_now is not None and path.stem not in ran_now:
            lines.append("- Measured on: (no environment recorded in this result)")
        if ran_now is not None:
            fresh = path.stem in ran_now or path.stem.removesuffix("_bench") in ran_now
            lines.append(f"- {'Run now' if fresh else 'Not run this time; older result'}")
        pinning = document.get("pinning")
        if isinstance(pinning, dict):
            lines.append(
                f"- CPU pinning: client CPU {pinning.get('client_cpu')}, "
                f"server CPU {pinning.get('server_cpu')}"
                if pinning.get("pinned")
                else "- CPU pinning: not possible; client and server shared CPUs"
            )
        steady = document.get("cpu_steadiness")
        if isinstance(steady, dict):
            lines.append(
                "- CPU steadiness (fixed loop, coefficient of variation): "
                f"{steady['before']['cv_percent']} % before, {steady['after']['cv_percent']} % "
                "after (large values mean a noisy machine; read medians, not single runs)"
            )
        clients = document.get("clients")
        if isinstance(clients, dict):
            contended = [
                f"{c.get('label', key)} {c['cpu_share_median']:.0%}"
                for key, c in clients.items()
                if isinstance(c, dict) and (c.get("cpu_share_median") or 1.0) < 0.85
            ]
            if contended:
                lines.append(
                    "- **Warning**: other processes competed for the benchmark's CPU (share of "
                    "wall time on CPU: " + ", ".join(contended) + "); wall-clock figures are "
                    "pessimistic, compare the CPU-based ones"
                )
        phases = document.get("phase_conditions")
        if isinstance(phases, dict) and phases:
            lines.append(
                "- Machine speed per phase (fixed reference loop, ms, lower is faster): "
                + ", ".join(
                    f"{name}: {c.get('reference_loop_ms_median')}"
                    for name, c in phases.items()
                    if isinstance(c, dict)
                )
            )
        settings = document.get("settings")
        if isinstance(settings, dict):
            lines.append(
                "- Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "env")
            )
        lines.append("")
        rows = document.get("summary")
        if not isinstance(rows, list) or not rows:
            rows = _scalar_rows(document)
        lines += ["| metric | value | unit | target | verdict |", "|---|---:|---|---|---|"]
        for row in rows:
            ok = row.get("ok")
            verdict = "" if ok is None else ("met" if ok else "**missed**")
            lines.append(
                f"| {_cell(row.get('metric', ''))} | {_cell(row.get('value', ''))} | "
                f"{_cell(row.get('unit', ''))} | {_cell(row.get('target', ''))} | {verdict} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", metavar="NAME", help="run only NAME")
    parser.add_argument("--quick", action="store_true", help="smoke-sized runs")
    parser.add_argument("--list", action="store_true", help="list benchmarks and exit")
    parser.add_argument("--report", action="store_true", help="only rebuild REPORT.md")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        return _child(args._child, args.quick)
    names = select(discover(), args.only)
    if args.list:
        print("\n".join(names))
        return 0
    failed: list[str] = []
    ran: set[str] = set()
    if not args.report:
        for name in names:
            print(f"== bench {name}{' (quick)' if args.quick else ''}", flush=True)
            code, seconds = run_one(name, args.quick)
            print(f"== bench {name}: exit {code} after {seconds:.1f} s", flush=True)
            if code == 0:
                ran.add(name)
            else:
                failed.append(name)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    report = RESULTS_DIR / "REPORT.md"
    report.write_text(build_report(RESULTS_DIR, ran if not args.report else None), "utf-8")
    print(f"report: {report.relative_to(REPO_ROOT)}")
    if failed:
        print(f"FAILED to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
