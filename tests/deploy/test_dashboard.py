"""The Grafana dashboard and its provisioning: stable uid, datasource and selection variables,
units everywhere, `$__rate_interval` in every range, and every query valid PromQL (promtool)
using only metrics the exporter really exposes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .promsupport import ALWAYS_ALLOWED, check_expressions, exposed_names, selector_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "idaas-sync-exporter.json"
VARIABLES = ("datasource", "job", "instance_id", "target")

# What Grafana puts in place of its variables before sending a query.
SUBSTITUTES = {
    "__rate_interval": "1m0s",
    "__interval": "30s",
    "__range": "1h",
    "job": "idaas-sync-exporter",
    "instance_id": "idaas_x|idaas_y",
    "target": ".*",
}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def data_panels() -> list[dict[str, Any]]:
    return [p for p in panels() if p["type"] != "row"]


def queries() -> dict[str, str]:
    """Every PromQL query of the dashboard: panel targets and annotation queries."""
    found: dict[str, str] = {}
    for panel in data_panels():
        for target in panel["targets"]:
            found[f"panel {panel['id']} {panel['title']!r} {target['refId']}"] = target["expr"]
    for annotation in dashboard()["annotations"]["list"]:
        if "expr" in annotation:
            found[f"annotation {annotation['name']!r}"] = annotation["expr"]
    return found


def substitute(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in SUBSTITUTES, f"unknown variable ${name} in {expr}"
        return SUBSTITUTES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def test_identity_and_shape() -> None:
    board = dashboard()
    assert board["uid"] == "idaas-sync-exporter"  # stable: links and provisioning rely on it
    assert board["title"]
    assert board["schemaVersion"] >= 36
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert len(data_panels()) >= 20


def test_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert tuple(variables) == VARIABLES
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    for name in ("job", "instance_id", "target"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == "${datasource}"
        assert variable["multi"] and variable["includeAll"]
        query = variable["query"]["query"]
        assert query == variable["definition"]
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", query)
        assert match, query
        assert match.group(2) == {"target": "target_id"}.get(name, name)
        assert selector_names(substitute(match.group(1))) <= exposed_names()


def test_every_panel_uses_the_datasource_variable() -> None:
    for panel in data_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_panel_has_a_unit_and_a_description() -> None:
    for panel in data_panels():
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"
        assert panel.get("description"), f"{panel['title']}: no description"


def test_every_range_is_the_rate_interval() -> None:
    for name, expr in queries().items():
        ranges = re.findall(r"\[([^\]]*)\]", expr)
        assert all(r == "$__rate_interval" for r in ranges), f"{name}: {expr}"
        for function in re.findall(r"\b(rate|irate|increase|changes|resets)\(", expr):
            assert ranges, f"{name}: {function}() without a range"


def test_every_query_selects_by_the_variables() -> None:
    """Queries of the sync metrics honour the job, instance and target selection."""
    for name, expr in queries().items():
        for selector in re.findall(r"(idaas_sync_\w+)\{([^}]*)\}", expr):
            labels = selector[1]
            for variable in ("$job", "$instance_id", "$target"):
                assert variable in labels, f"{name}: {selector[0]} ignores {variable}"


def test_queries_are_valid_promql(tmp_path: Path) -> None:
    check_expressions({name: substitute(expr) for name, expr in queries().items()}, tmp_path)


@pytest.mark.parametrize("name", sorted(queries()))
def test_queries_use_only_metrics_the_exporter_exposes(name: str) -> None:
    used = selector_names(substitute(queries()[name]))
    assert used, f"{name}: selects nothing"
    unknown = used - exposed_names() - ALWAYS_ALLOWED
    assert not unknown, f"{name}: the exporter exposes no {sorted(unknown)}"


def test_the_panels_show_what_operators_need() -> None:
    """Jobs by status, success rate, objects, failures and error codes, time since last
    success, jobs in progress, exporter health (polls, API requests, throttling, poll age)."""
    text = json.dumps([(p["title"], [t["expr"] for t in p["targets"]]) for p in data_panels()])
    for needle in (
        "sum by (status) (increase(idaas_sync_jobs_total",
        'status=\\"success\\"',
        "sum by (entity, action)",
        "sum by (result) (increase(idaas_sync_objects_total",
        "idaas_sync_job_errors_total",
        "time() - idaas_sync_last_success_timestamp_seconds",
        "idaas_sync_jobs_in_progress",
        "idaas_exporter_polls_total",
        "idaas_exporter_api_requests_total",
        "Throttling",
        "time() - idaas_exporter_last_poll_timestamp_seconds",
    ):
        assert needle in text, needle


def test_provisioning() -> None:
    provisioning = GRAFANA / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"].startswith("http://")
    providers = yaml.safe_load(
        (provisioning / "dashboards" / "idaas-sync-exporter.yml").read_text()
    )
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
