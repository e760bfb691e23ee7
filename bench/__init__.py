"""Benchmarks of idaas-sync-exporter (not timed tests: figures, not pass/fail).

Why a package of its own, outside ``tests/``: throughput depends on the machine and its load, so
it is measured on demand and reported with the machine, versions and date
(:mod:`bench.environment`), never asserted in CI.

``python -m bench`` runs every benchmark it knows: the ones registered in
:data:`REGISTERED` plus every ``bench/*_bench.py`` module it finds, each in its own process
(CPU pinning, imported modules and the garbage collector's heap of one benchmark must not leak
into the next). A benchmark module provides one of:

* ``main(argv)`` that accepts ``--quick`` and writes ``bench/results/<name>.json`` itself;
* ``run(quick=...)`` returning a JSON-able dict (the runner writes it, adding the environment);
* a ``__main__`` block (run as ``python -m bench.<name>``; ``BENCH_QUICK=1`` says quick).

A result document may carry a ``summary`` list of ``{metric, value, unit, target, ok}`` rows;
``bench/results/REPORT.md`` is built from those (or from the document's scalar fields).
"""

from __future__ import annotations

REGISTERED: tuple[str, ...] = ("client_throughput",)
"""Benchmark modules run by ``python -m bench`` besides the discovered ``*_bench.py``."""

__all__ = ["REGISTERED"]
