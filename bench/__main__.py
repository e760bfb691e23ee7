"""``python -m bench``: run the benchmarks, write ``bench/results/*.json``, plots and REPORT.md.

Usage::

    python -m bench                  # every bench/*_bench.py, each in its own interpreter
    python -m bench --only memory    # one (repeatable; the _bench suffix is optional)
    python -m bench --quick          # smoke-sized runs, a few seconds each
    python -m bench --report         # rebuild REPORT.md and the plots from existing results

The exit status is non-zero when a benchmark *failed to run*; a missed target is reported in
the table, not turned into a failure (figures depend on the machine: see :mod:`bench`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO_ROOT, environment, one_line

RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR", REPO_ROOT / "bench" / "results"))


def select(only: list[str] | None) -> list[str]:
    """Every ``bench/*_bench.py``, or those *only* names (the ``_bench`` suffix optional)."""
    names = sorted(path.stem for path in (REPO_ROOT / "bench").glob("*_bench.py"))
    wanted = {w.strip().removesuffix("_bench") for item in only or [] for w in item.split(",")}
    if unknown := wanted - {n.removesuffix("_bench") for n in names}:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {names}")
    return [n for n in names if not wanted or n.removesuffix("_bench") in wanted]


def run_child(name: str, quick: bool) -> int:
    """In a fresh interpreter: one benchmark's ``run(quick)``, written with its provenance."""
    module = importlib.import_module(f"bench.{name}")
    document: dict[str, Any] = module.run(quick=quick)
    document = {"benchmark": name, "title": module.TITLE, "quick": quick, **document}
    document["environment"] = environment()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(document, indent=1, default=str) + "\n")
    return 0


_SCALE = {True: "log", False: "linear"}


def plot(document: dict[str, Any]) -> list[str]:
    """PNG files for the document's ``plots`` (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for spec in document.get("plots", []):
        figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
        for label, points in spec["series"].items():
            xs, ys = zip(*points, strict=True) if points else ((), ())
            axes.plot(xs, ys, marker="o", markersize=3, label=label)
        axes.set(title=spec["title"], xlabel=spec["x"], ylabel=spec["y"])
        axes.set(xscale=_SCALE[bool(spec.get("logx"))], yscale=_SCALE[bool(spec.get("logy"))])
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        written.append(f"{document['benchmark']}_{spec['name']}.png")
        figure.savefig(RESULTS / written[-1])
        plt.close(figure)
    return written


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value).replace("|", "\\|")


def report(ran: set[str] | None = None) -> str:
    lines = [
        "# Benchmark report",
        "",
        "Written by `python -m bench` from `bench/results/*.json`. Each section states the "
        "machine, versions, commit and date of its own figures; do not compare across machines.",
        "",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        document = json.loads(path.read_text("utf-8"))
        if "environment" not in document or "rows" not in document:
            continue
        lines += [f"## {path.stem}: {document['title']}", ""]
        lines += [f"- Measured on: {one_line(document['environment'])}"]
        if document.get("quick"):
            lines.append("- **Quick (smoke-sized) run**: not the figures the README quotes")
        if ran is not None:
            lines.append("- " + ("Run now" if path.stem in ran else "Not run this time"))
        lines += [f"- Plot: [{name}]({name})" for name in plot(document)]
        lines += ["", "| metric | value | unit | target | verdict |", "|---|---:|---|---|---|"]
        for row in document["rows"]:
            verdict = {None: "", True: "met", False: "**missed**"}[row.get("ok")]
            cells = [_cell(row.get(k, "")) for k in ("metric", "value", "unit", "target")]
            lines.append("| " + " | ".join([*cells, verdict]) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", metavar="NAME")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        return run_child(args._child, args.quick)
    names = select(args.only)
    ran: set[str] = set()
    failed = []
    for name in [] if args.report else names:
        print(f"== bench {name}{' (quick)' if args.quick else ''}", flush=True)
        started = time.monotonic()
        command = [sys.executable, "-m", "bench", "--_child", name, *(["--quick"] * args.quick)]
        code = subprocess.run(command, cwd=REPO_ROOT, check=False).returncode  # noqa: S603
        print(f"== bench {name}: exit {code} after {time.monotonic() - started:.1f} s", flush=True)
        (ran.add if code == 0 else failed.append)(name)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "REPORT.md").write_text(report(None if args.report else ran), "utf-8")
    if failed:
        print(f"FAILED to run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
