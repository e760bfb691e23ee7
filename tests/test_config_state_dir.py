"""A state file whose directory is missing: created, and said loudly (a typo restarts counting).

Why WARNING: a mistyped ``--state.file`` directory used to be created silently with one info
line, so the exporter started counting from zero and re-read ``lookback_seconds`` of history
with nothing in the logs to say why the counters dropped.
"""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from exporter.service.state_store import StateStore


def test_creating_the_state_directory_is_a_warning_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "typo" / "nested" / "state.json"
    with capture_logs() as logs:
        StateStore(path).check_writable()
    assert path.parent.is_dir()
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1, logs
    warning = warnings[0]
    assert warning["path"] == str(path)
    assert "from scratch" in warning["event"]
    assert "lookback" in warning["event"]


def test_an_existing_state_directory_is_not_a_warning(tmp_path: Path) -> None:
    with capture_logs() as logs:
        StateStore(tmp_path / "state.json").check_writable()
    assert [entry for entry in logs if entry["log_level"] == "warning"] == []
