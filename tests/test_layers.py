"""The layers hold: nothing imports upwards, and the README's picture of the imports is current."""

from __future__ import annotations

from pathlib import Path

import layers

README = Path(__file__).resolve().parent.parent / "README.md"


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert layers.upward() == []


def test_every_module_belongs_to_a_layer() -> None:
    orphans = [
        layers.module_name(path)
        for path in layers.PACKAGE.rglob("*.py")
        if layers.layer_of(layers.module_name(path)) is None
        and layers.module_name(path) != "exporter"
    ]
    assert orphans == []


def test_the_readme_shows_the_current_picture() -> None:
    text = README.read_text("utf-8")
    start, end = text.index(layers.BEGIN), text.index(layers.END) + len(layers.END)
    assert text[start:end] == layers.picture(), "run python tests/layers.py, paste into README"
