"""Benchmarks of idaas-sync-exporter: figures, not pass/fail.

Why outside ``tests/``: throughput depends on the machine and its load, so it is measured on
demand and reported with the machine, versions and date, never asserted in CI. (What must
*hold* — the serving scenario of ``hostile_bench`` — is also an end-to-end test.)

One convention: a module ``bench/<name>_bench.py`` has a ``TITLE`` and ``run(quick) -> dict``
returning ``rows`` (the report's table: :func:`bench.harness.row`), any raw ``figures`` and
optional ``plots`` (``{"name", "title", "x", "y", "series": {label: [[x, y], …]}}``).
``python -m bench`` runs each in its own interpreter (one benchmark's CPU pinning, imports and
heap cannot distort the next) and writes ``bench/results/<name>.json``, the plots and
``REPORT.md``. The shared machinery — processes, the estate, ``/proc``, provenance — is
:mod:`bench.harness`, which the end-to-end tests use too.
"""
