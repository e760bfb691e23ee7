"""Scenarios: durations, built-ins, the JSON file format and its error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.simulator import ManualClock, ScenarioError, World, load_scenario
from exporter.simulator.scenarios import BUILTIN_SCENARIOS, parse_duration

from .helpers import T0


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("90s", 90_000),
        ("5m", 300_000),
        ("1h30m", 5_400_000),
        ("2d", 172_800_000),
        ("-2h", -7_200_000),
        ("+10m", 600_000),
        ("1.5s", 1500),
        (250, 250),
        ("250", 250),
    ],
)
def test_parse_duration(text: str | int, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "5 minutes", "1x", "h1", "1h-5m", True, None])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked elsewhere
        parse_duration(text)


@pytest.mark.parametrize("name", sorted(BUILTIN_SCENARIOS))
def test_builtins_are_valid(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.instances


def test_scenario_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "acme.json"
    path.write_text(
        json.dumps(
            {
                "name": "acme",
                "history": "6h",
                "instances": [
                    {
                        "id": "idaas_acme0000000000000000000001",
                        "description": "Acme",
                        "targets": [
                            {
                                "type": "identity_provider",
                                "kind": "ldap",
                                "id": "idp_acmeldap",
                                "name": "Acme LDAP",
                                "interval": "30m",
                                "duration": "1m",
                                "failures": [
                                    {"from": "-1h", "error_code": "X.Y", "error_message": "z"}
                                ],
                            },
                            {"type": "application", "name": "Acme Wiki", "interval": "1h"},
                        ],
                    }
                ],
            }
        )
    )
    world = World(load_scenario(path), seed=5, now_ms=ManualClock(T0))
    instance = world.instances[0]
    assert instance.instance_id == "idaas_acme0000000000000000000001"
    ldap = instance.target("idp_acmeldap")
    assert ldap is not None
    assert list(ldap.streams) == ["ingress"]
    assert list(instance.targets[1].streams) == ["egress"]
    recent = [j for j in ldap.streams["ingress"].jobs if j.start_ms >= T0 - 3_600_000]
    assert recent
    assert all(j.error == ("X.Y", "z") for j in recent)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "cannot read scenario file"),
        ('{"instances": []}', "instances"),
        ('{"instances": [{"targets": [{"type": "idp", "name": "x"}]}]}', "type"),
        (
            '{"instances": [{"targets": [{"type": "application", "name": "x", "colour": 1}]}]}',
            "colour",
        ),
        (
            '{"instances": [{"targets": [{"type": "application", "name": "x", '
            '"interval": "soon"}]}]}',
            "interval",
        ),
        ('{"instances": [{"id": "a"}, {"id": "a"}]}', "duplicate id"),
    ],
)
def test_invalid_files_name_the_problem(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ScenarioError, match=needle):
        load_scenario(path)


def test_unknown_scenario_lists_the_builtins() -> None:
    with pytest.raises(ScenarioError, match="demo"):
        load_scenario("no-such-scenario")
