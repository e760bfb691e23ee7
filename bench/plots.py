r"""Shared plotting helpers of the benchmarks: PNG figures in ``bench/results/``.

Why a module of its own: every figure must carry the machine, the versions and the run date
(a plot without them is as much a rumour as a bare number), and every benchmark should draw
its figures the same way. matplotlib runs on the non-interactive ``Agg`` backend (no display
needed); when it is not installed (it comes with the ``bench`` extra) the helpers return
``None`` and the benchmark still writes its JSON.

>>> print(footer({"machine": {"cpu_model": "AMD EPYC", "logical_cpus": 2},
...              "python": {"version": "3.11.7"}, "packages": {"prometheus-client": "0.21.0"},
...              "git": {"commit": "0123456789abcdef", "dirty": True},
...              "run_date_utc": "2026-01-01T00:00:00Z"}).replace(" · ", "\n"))
AMD EPYC, 2 CPUs
Python 3.11.7
prometheus-client 0.21.0
0123456789ab+dirty
2026-01-01T00:00:00Z
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "available",
    "footer",
    "histogram",
    "lines",
    "panels",
    "results_dir",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]
"""label → (x values, y values)."""


def results_dir() -> Path:
    """Where results go: ``$BENCH_RESULTS_DIR`` (set by ``python -m bench``) or bench/results."""
    path = Path(os.environ.get("BENCH_RESULTS_DIR") or RESULTS_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def footer(env: Mapping[str, Any]) -> str:
    """One line naming the machine, Python, prometheus-client, the commit and the run date."""
    machine = env.get("machine", {})
    git = env.get("git", {})
    commit = (git.get("commit") or "unknown")[:12] + ("+dirty" if git.get("dirty") else "")
    return (
        f"{machine.get('cpu_model', '?')}, {machine.get('logical_cpus', '?')} CPUs · "
        f"Python {env.get('python', {}).get('version', '?')} · "
        f"prometheus-client {env.get('packages', {}).get('prometheus-client', '?')} · "
        f"{commit} · {env.get('run_date_utc', '?')}"
    )


def _figure(title: str, env: Mapping[str, Any] | None, note: str | None) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.4), dpi=110)
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    text = " · ".join(filter(None, [note, footer(env) if env else None]))
    if text:
        fig.text(0.01, 0.01, text, fontsize=7, color="#555555", ha="left", va="bottom", wrap=True)
    return fig, ax


def _save(fig: Any, name: str) -> Path:
    import matplotlib.pyplot as plt

    path = results_dir() / name
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def lines(
    name: str,
    series: Series,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    env: Mapping[str, Any] | None = None,
    note: str | None = None,
    logx: bool = False,
    logy: bool = False,
    hlines: Sequence[tuple[float, str]] = (),
    vlines: Sequence[tuple[float, str]] = (),
    steps: bool = False,
    markers: bool = True,
    styles: Mapping[str, str] | None = None,
) -> Path | None:
    """A line chart of *series* (one line per label) saved as ``results/<name>``.

    *hlines*/*vlines* are (position, label) reference lines such as a target; *steps* draws
    step lines (counts per bin); *styles* maps a label to a matplotlib format string.
    """
    if not available():
        return None
    fig, ax = _figure(title, env, note)
    for label, (xs, ys) in series.items():
        style = (styles or {}).get(label)
        if steps:
            ax.step(list(xs), list(ys), where="post", label=label)
        elif style:
            ax.plot(list(xs), list(ys), style, label=label)
        else:
            ax.plot(list(xs), list(ys), marker="o" if markers else None, ms=4, label=label)
    for y, label in hlines:
        ax.axhline(y, color="#c0392b", linestyle="--", linewidth=1, label=label)
    for x, label in vlines:
        ax.axvline(x, color="#7f8c8d", linestyle=":", linewidth=1, label=label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return _save(fig, name)


def histogram(
    name: str,
    values: Sequence[float],
    *,
    title: str,
    xlabel: str,
    bins: int = 40,
    env: Mapping[str, Any] | None = None,
    note: str | None = None,
    vlines: Sequence[tuple[float, str]] = (),
    cumulative_axis: bool = True,
) -> Path | None:
    """A histogram of *values* with an optional cumulative-share line on a second axis."""
    if not available():
        return None
    fig, ax = _figure(title, env, note)
    ax.hist(list(values), bins=bins, color="#2e86c1", alpha=0.8, label=f"jobs (n={len(values)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("jobs")
    colours = ("#c0392b", "#8e44ad", "#27ae60", "#d35400", "#7f8c8d")
    for index, (x, label) in enumerate(vlines):
        ax.axvline(x, color=colours[index % len(colours)], linestyle="--", linewidth=1, label=label)
    if cumulative_axis and values:
        ordered = sorted(values)
        share = [(i + 1) / len(ordered) for i in range(len(ordered))]
        twin = ax.twinx()
        twin.plot(ordered, share, color="#555555", linewidth=1, label="cumulative share")
        twin.set_ylim(0, 1.02)
        twin.set_ylabel("cumulative share")
        handles, labels = ax.get_legend_handles_labels()
        more, more_labels = twin.get_legend_handles_labels()
        ax.legend(handles + more, labels + more_labels, fontsize=8, loc="center right")
    else:
        ax.legend(fontsize=8)
    return _save(fig, name)


def panels(
    name: str,
    charts: Sequence[tuple[str, Series]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    env: Mapping[str, Any] | None = None,
    note: str | None = None,
    steps: bool = True,
    columns: int = 2,
    styles: Mapping[str, str] | None = None,
) -> Path | None:
    """Small multiples: one chart per (subtitle, series) in a grid, sharing the labels."""
    if not available():
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = (len(charts) + columns - 1) // columns
    fig, axes = plt.subplots(
        rows, columns, figsize=(5.2 * columns, 3.3 * rows + 0.8), dpi=110, squeeze=False
    )
    fig.suptitle(title, fontsize=11)
    for index, ax in enumerate(axes.flat):
        if index >= len(charts):
            ax.axis("off")
            continue
        subtitle, series = charts[index]
        for label, (xs, ys) in series.items():
            style = (styles or {}).get(label)
            if steps:
                ax.step(
                    list(xs),
                    list(ys),
                    where="post",
                    label=label,
                    linestyle="--" if style == "--" else "-",
                )
            else:
                ax.plot(list(xs), list(ys), style or "-", label=label)
        ax.set_title(subtitle, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    text = " · ".join(filter(None, [note, footer(env) if env else None]))
    if text:
        fig.text(0.01, 0.005, text, fontsize=7, color="#555555", ha="left", va="bottom")
    return _save(fig, name)
