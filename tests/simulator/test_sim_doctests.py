"""The examples in the simulator's docstrings are true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "exporter.web.server",
    "exporter.simulator.apierrors",
    "exporter.simulator.auth",
    "exporter.simulator.clock",
    "exporter.simulator.control",
    "exporter.simulator.faults",
    "exporter.simulator.jobstats",
    "exporter.simulator.render",
    "exporter.simulator.runner",
    "exporter.simulator.scenarios",
    "exporter.simulator.server",
    "exporter.simulator.world",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
