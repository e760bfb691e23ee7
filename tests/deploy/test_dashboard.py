"""The Grafana dashboard and its provisioning: stable uid, datasource and selection variables,
units everywhere, `$__rate_interval` in every range, and every query valid PromQL (promtool)
using only metrics the exporter really exposes.

Issue 11 §2, one test each: exporter-self panels scoped to the exporter's own scrape targets;
windows that hold two samples at any scrape interval from 15 s to 120 s (and a datasource whose
scrape interval agrees with the shipped scrape configurations); "No data" in a neutral colour;
targets shown by name; the health table, exemplars, state-write errors and the instance and
cluster variables. tests/e2e/test_dashboard_queries.py runs every query against a real
Prometheus; the model of Grafana's interval variables below is shared with it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from .promsupport import ALWAYS_ALLOWED, check_expressions, exposed_names, selector_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "idaas-sync-exporter.json"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
COMPOSE_PROMETHEUS = ROOT / "deploy" / "compose" / "prometheus.yml"
HELM = ROOT / "deploy" / "helm" / "idaas-sync-exporter"
KUBERNETES_SERVICEMONITOR = ROOT / "deploy" / "kubernetes" / "common" / "servicemonitor.yaml"
README = ROOT / "README.md"
RUNBOOKS = "https://github.com/idaas-sync-exporter/idaas-sync-exporter/blob/main/README.md#"
VARIABLES = ("datasource", "cluster", "job", "instance", "instance_id", "target")
RECORDED = frozenset({"idaas_sync:success_max_age_seconds"})
"""The one recording rule the dashboard reads (its name and meaning are stable)."""

# The template variables as Grafana sends them with everything selected (All): job and instance
# become the regex of the exporter's own values, the others their allValue.
ALL_VALUES = {
    "cluster": ".*",
    "job": "idaas-sync-exporter",
    "instance": "(10\\\\.0\\\\.0\\\\.7:10151|10\\\\.0\\\\.0\\\\.8:10151)",
    "instance_id": ".*",
    "target": ".*",
}
GRAFANA_DEFAULT_SCRAPE_INTERVAL = 15.0
"""What Grafana assumes when the datasource's scrape interval (timeInterval) is not set."""


# -- the dashboard ---------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def data_panels() -> list[dict[str, Any]]:
    return [p for p in panels() if p["type"] != "row"]


def panel(title: str) -> dict[str, Any]:
    (found,) = [p for p in data_panels() if p["title"] == title]
    return found


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


@dataclass(frozen=True)
class Query:
    """One PromQL query of the dashboard, with what Grafana needs to run it."""

    name: str
    expr: str
    instant: bool
    panel_interval: str | None = None  # the panel's "Min interval"
    query_interval: str | None = None  # the query's own "Min step" (an annotation's step)
    legend: str = ""
    panel: dict[str, Any] | None = None
    target: dict[str, Any] | None = None


def dashboard_queries() -> list[Query]:
    """Every PromQL query of the dashboard: panel targets and annotation queries."""
    found: list[Query] = []
    for item in data_panels():
        for target in item["targets"]:
            found.append(
                Query(
                    name=f"panel {item['id']} {item['title']!r} {target['refId']}",
                    expr=target["expr"],
                    instant=bool(target.get("instant")) and not target.get("range"),
                    panel_interval=item.get("interval") or None,
                    query_interval=target.get("interval") or None,
                    legend=target.get("legendFormat", ""),
                    panel=item,
                    target=target,
                )
            )
    for annotation in dashboard()["annotations"]["list"]:
        if "expr" in annotation:
            found.append(
                Query(
                    name=f"annotation {annotation['name']!r}",
                    expr=annotation["expr"],
                    instant=False,
                    query_interval=annotation.get("step") or None,
                    legend=annotation.get("textFormat", ""),
                )
            )
    return found


def queries() -> dict[str, str]:
    return {query.name: query.expr for query in dashboard_queries()}


# -- Grafana's interval variables ------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * _UNITS[u] for n, u in parts)


# Grafana's rangeutil.roundInterval (milliseconds), up to 1 h: enough for the ranges used here.
_ROUNDED = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
    (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000), (1050000, 600000),
    (2100000, 1200000), (2700000, 1800000), (5400000, 3600000),
)  # fmt: skip


def round_interval(milliseconds: float) -> float:
    for below, rounded in _ROUNDED:
        if milliseconds < below:
            return rounded
    return 3600000


@dataclass(frozen=True)
class Intervals:
    """Grafana's interval variables for one query, in seconds."""

    step: float  # $__interval, and the step of the range query
    rate_interval: float  # $__rate_interval
    range: float  # $__range


def grafana_intervals(
    scrape: float,
    range_s: float,
    *,
    panel_interval: str | None = None,
    query_interval: str | None = None,
    max_data_points: int = 1000,
) -> Intervals:
    """The intervals Grafana (11) sends for a query over *range_s* seconds, *scrape* being the
    datasource's scrape interval (jsonData.timeInterval).

    Front end: $__interval is range / max data points, rounded, at least the panel's min
    interval, else the datasource's scrape interval. Back end (promlib, models/query.go):
    $__rate_interval = max($__interval + scrape, 4 × scrape); a query's own min step (an
    annotation's step) takes the place of the scrape interval there and floors the step.
    """
    auto = round_interval(range_s * 1000 / max_data_points) / 1000
    interval = max(auto, seconds(panel_interval) if panel_interval else scrape)
    if query_interval:
        minimum = seconds(query_interval)
        return Intervals(max(auto, minimum), max(interval + minimum, 4 * minimum), range_s)
    return Intervals(interval, max(interval + scrape, 4 * scrape), range_s)


def go_duration(value: float) -> str:
    """*value* seconds as Go's time.Duration prints it (Grafana's $__rate_interval)."""
    whole = int(value)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def grafana_interval(value: float) -> str:
    """*value* seconds as Grafana's gtime.FormatInterval prints it ($__interval)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if value >= size:
            return f"{int(value // size)}{unit}"
    return f"{max(1, int(value * 1000))}ms"


def substitute(expr: str, intervals: Intervals, values: Mapping[str, str]) -> str:
    """*expr* as Grafana sends it: interval variables and template variables replaced."""
    builtin = {
        "__interval": grafana_interval(intervals.step),
        "__interval_ms": str(int(intervals.step * 1000)),
        "__rate_interval": go_duration(intervals.rate_interval),
        "__rate_interval_ms": str(int(intervals.rate_interval * 1000)),
        "__range": f"{round(intervals.range)}s",
        "__range_s": str(round(intervals.range)),
        "__range_ms": str(int(intervals.range * 1000)),
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in builtin:
            return builtin[name]
        assert name in values, f"unknown variable ${name} in {expr}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", value, expr)


def static_substitute(expr: str) -> str:
    return substitute(expr, grafana_intervals(60, 3600), ALL_VALUES)


def intervals_substituted(expr: str) -> str:
    """*expr* with the interval variables replaced and the template variables kept."""
    return substitute(expr, grafana_intervals(60, 3600), {v: f"${v}" for v in VARIABLES})


# -- PromQL ----------------------------------------------------------------------------------


def selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """(metric name, {label: (operator, value)}) of every vector selector in *expr*."""
    found: list[tuple[str, dict[str, tuple[str, str]]]] = []

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {
                m.name: (str(m.op).rsplit(".", 1)[-1], m.value) for m in node.matchers.matchers
            }
            found.append((node.name or matchers.get("__name__", ("", ""))[1], matchers))
            return
        for attribute in ("expr", "lhs", "rhs", "param", "vector_selector"):
            child = getattr(node, attribute, None)
            if child is not None:
                walk(child)
        for child in getattr(node, "args", None) or ():
            walk(child)

    walk(promql_parser.parse(intervals_substituted(expr)))
    return found


def legend_labels(legend: str) -> set[str]:
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))


# -- field colours ---------------------------------------------------------------------------

NEUTRAL = frozenset({"transparent", "text"})


def display_colour(defaults: Mapping[str, Any], value: float | None) -> str:
    """The colour Grafana gives *value* (None: no data) under *defaults*: a matching value
    mapping first, else the absolute thresholds (no data takes the base step, as -Infinity)."""
    for mapping in defaults.get("mappings", []):
        options = mapping.get("options", {})
        result: dict[str, Any] | None = None
        if mapping["type"] == "special" and value is None:
            if options.get("match") in ("null", "null+nan", "empty"):
                result = options.get("result")
        elif mapping["type"] == "value" and value is not None:
            result = options.get(format(value, "g"))
        if result and result.get("color"):
            return str(result["color"])
    steps = defaults["thresholds"]["steps"]
    assert defaults["thresholds"]["mode"] == "absolute"
    number = -math.inf if value is None else value
    colour = steps[0]["color"]
    for step in steps[1:]:
        if number >= step["value"]:
            colour = step["color"]
    return str(colour)


# -- identity, variables, datasource ---------------------------------------------------------


def test_identity_and_shape() -> None:
    board = dashboard()
    assert board["uid"] == "idaas-sync-exporter"  # stable: links and provisioning rely on it
    assert board["title"]
    assert board["schemaVersion"] >= 36
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert len(data_panels()) >= 20


def test_variables() -> None:
    found = variables()
    assert tuple(found) == VARIABLES
    datasource = found["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    for name in VARIABLES[1:]:
        variable = found[name]
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == "${datasource}"
        assert variable["multi"] and variable["includeAll"], name
        query = variable["query"]["query"]
        assert query == variable["definition"]
        match = re.fullmatch(r"label_values\((.*), (\w+)\)|query_result\((.*)\)", query)
        assert match, query
        if match.group(2):
            assert match.group(2) == name
        selected = static_substitute(match.group(1) or match.group(3))
        assert selector_names(selected) <= exposed_names()


def test_every_panel_uses_the_datasource_variable() -> None:
    for item in data_panels():
        assert item["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, item["title"]
        for target in item["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", item["title"]


def test_every_panel_has_a_unit_and_a_description() -> None:
    for item in data_panels():
        assert item["fieldConfig"]["defaults"].get("unit"), f"{item['title']}: no unit"
        assert item.get("description"), f"{item['title']}: no description"


def test_every_range_is_the_rate_interval() -> None:
    for name, expr in queries().items():
        ranges = re.findall(r"\[([^\]]*)\]", expr)
        assert all(r == "$__rate_interval" for r in ranges), f"{name}: {expr}"
        for function in re.findall(r"\b(rate|irate|increase|changes|resets)\(", expr):
            assert ranges, f"{name}: {function}() without a range"


def test_every_query_selects_by_the_variables() -> None:
    """Queries of the sync metrics honour the cluster, job, replica, instance and target
    selection."""
    for name, expr in queries().items():
        for metric, matchers in selectors(expr):
            if not metric.startswith("idaas_sync"):
                continue
            for label in ("cluster", "job", "instance", "instance_id"):
                assert matchers.get(label) == ("Re", f"${label}"), f"{name}: {metric} {label}"
            assert matchers.get("target_id") == ("Re", "$target"), f"{name}: {metric} target"


def test_queries_are_valid_promql(tmp_path: Path) -> None:
    check_expressions({name: static_substitute(expr) for name, expr in queries().items()}, tmp_path)


@pytest.mark.parametrize("name", sorted(queries()))
def test_queries_use_only_metrics_the_exporter_exposes(name: str) -> None:
    used = selector_names(static_substitute(queries()[name]))
    assert used, f"{name}: selects nothing"
    unknown = used - exposed_names() - ALWAYS_ALLOWED - RECORDED
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
        "time() - max by (instance_id, target_type, target_id, direction) "
        "(idaas_sync_last_success_timestamp_seconds",
        "idaas_sync_jobs_in_progress",
        "idaas_exporter_polls_total",
        "idaas_exporter_api_requests_total",
        "Throttling",
        "time() - idaas_exporter_last_poll_timestamp_seconds",
    ):
        assert needle in text, needle


def test_provisioning() -> None:
    provisioning = GRAFANA / "provisioning"
    datasources = yaml.safe_load(DATASOURCE.read_text())
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


# -- issue 11 §2.1: the exporter's own panels show the exporter only -------------------------


def test_exporter_self_panels_show_only_the_exporter() -> None:
    """`up`, `process_*` and the restart annotation select by job *and* replica, and both
    variables list only scrape targets that expose idaas_exporter_build_info, with Grafana's
    own All (the regex of those values) instead of `.*`, which matched every job in Prometheus
    (Prometheus's own memory and CPU showed on "Exporter process")."""
    found = variables()
    for name in ("job", "instance"):
        variable = found[name]
        assert variable["query"]["query"].startswith("label_values(idaas_exporter_build_info")
        assert variable["includeAll"], name
        assert not variable.get("allValue"), f"${name}: All must be the exporter's own values"
    for name, expr in queries().items():
        for metric, matchers in selectors(expr):
            if metric in ("ALERTS", "ALERTS_FOR_STATE"):  # Prometheus's, labels of each alert
                continue
            for label in ("cluster", "job", "instance"):
                assert matchers.get(label) == ("Re", f"${label}"), f"{name}: {metric} {label}"


# -- issue 11 §2.2: windows of two samples at any scrape interval ----------------------------


def test_the_datasource_scrape_interval_is_the_shipped_one() -> None:
    """$__rate_interval is computed from the datasource's scrape interval: it must be what the
    shipped scrape configurations use (compose, Helm chart, Kubernetes manifests)."""
    (source,) = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    assumed = source["jsonData"]["timeInterval"]
    compose = yaml.safe_load(COMPOSE_PROMETHEUS.read_text())
    intervals = {
        "compose": compose["global"]["scrape_interval"],
        **{
            f"compose job {job['job_name']}": job["scrape_interval"]
            for job in compose["scrape_configs"]
            if "scrape_interval" in job
        },
        "helm": yaml.safe_load((HELM / "values.yaml").read_text())["serviceMonitor"]["interval"],
        "kubernetes": yaml.safe_load(KUBERNETES_SERVICEMONITOR.read_text())["spec"]["endpoints"][0][
            "interval"
        ],
    }
    assert all(seconds(v) == seconds(assumed) for v in intervals.values()), (assumed, intervals)
    template = (HELM / "templates" / "servicemonitor.yaml").read_text()
    assert "interval: {{ .Values.serviceMonitor.interval }}" in template


SCRAPE_INTERVALS = (15, 30, 60, 90, 120)
RANGES = (300, 3600, 6 * 3600, 86400)


def _windows(query: Query, scrape: float, range_s: float) -> tuple[Intervals, list[float]]:
    intervals = grafana_intervals(
        scrape,
        range_s,
        panel_interval=query.panel_interval,
        query_interval=query.query_interval,
    )
    expr = substitute(query.expr, intervals, ALL_VALUES)
    return intervals, [seconds(r) for r in re.findall(r"\[([^\]:]+)\]", expr)]


def test_every_window_holds_two_scrapes_at_any_scrape_interval() -> None:
    """rate(), increase() and changes() need two samples in their window, and a window shorter
    than step + scrape interval loses what happens between two steps. With the datasource's
    scrape interval set to the real one, anywhere from 15 s to 120 s, every window spans four
    scrapes and step + one scrape; left at Grafana's default 15 s while Prometheus scrapes every
    60 s (the chart's ServiceMonitor), every window still spans two scrapes (the panels' min
    intervals): no blank panel either way."""
    problems = []
    for query in dashboard_queries():
        for range_s in RANGES:
            for scrape in SCRAPE_INTERVALS:
                intervals, windows = _windows(query, scrape, range_s)
                for window in windows:
                    if window < max(4 * scrape, intervals.step + scrape):
                        problems.append(f"{query.name}: {window:g} s at {scrape} s over {range_s}")
            _, windows = _windows(query, GRAFANA_DEFAULT_SCRAPE_INTERVAL, range_s)
            for window in windows:
                if window < 2 * 60:
                    problems.append(f"{query.name}: {window:g} s at 60 s, datasource at 15 s")
    assert not problems, "\n".join(sorted(set(problems)))


# -- issue 11 §2.3: no data is "No data", in a neutral colour --------------------------------

NO_DATA_STATS = ("Targets whose latest job failed", "Targets whose latest job partially succeeded")


def test_stats_without_data_say_so_in_a_neutral_colour() -> None:
    """With the exporter down there is no series: the two status stats must say "No data" in
    a neutral colour, not a green 0 (no `or vector(0)`), yet show a green 0 when the exporter
    is up and no target failed. No stat colours missing data green or red."""
    for title in NO_DATA_STATS:
        item = panel(title)
        defaults = item["fieldConfig"]["defaults"]
        (target,) = item["targets"]
        assert "vector(" not in target["expr"], f"{title}: {target['expr']}"
        assert defaults.get("noValue") == "No data", title
        assert display_colour(defaults, None) in NEUTRAL, title
        assert display_colour(defaults, 0) == "green", title
        assert display_colour(defaults, 1) in ("red", "orange"), title
    for item in data_panels():
        if item["type"] == "stat":
            defaults = item["fieldConfig"]["defaults"]
            assert display_colour(defaults, None) in NEUTRAL, item["title"]
            assert defaults.get("noValue") == "No data", item["title"]


# -- issue 11 §2.4: targets by name ----------------------------------------------------------


def test_targets_are_shown_by_name() -> None:
    """Per-target legends say {{target_name}}, from idaas_sync_target_info joined on (instance_id,
    target_type, target_id), with the target ID as the name of a target the info does not know
    (names not listed, or not permitted); the target variable shows names, selects IDs."""
    join = "* on (instance_id, target_type, target_id) group_left (target_name)"
    for query in dashboard_queries():
        if "target" not in query.legend:
            continue
        assert "{{target_name}}" in query.legend and "target_id" not in query.legend, query.name
        assert join in query.expr, query.name
        assert "idaas_sync_target_info{" in query.expr, query.name
        assert "label_join(" in query.expr and '"target_name", "", "target_id"' in query.expr
    for query in dashboard_queries():
        grouped = re.findall(r"\bby \(([^)]*)\)", query.expr)
        if any("target_id" in g for g in grouped) and query.legend not in ("", "__auto"):
            assert "{{target_name}}" in query.legend, query.name
    target = variables()["target"]
    assert target["query"]["query"].startswith("query_result(")
    assert "idaas_sync_target_info{" in target["query"]["query"]
    regex = target["regex"]
    assert 'target_id="(?<value>' in regex and 'target_name="(?<text>' in regex, regex


# -- issue 11 §2.5: health table, exemplars, state writes, instance and cluster ---------------


def _readme_anchors() -> set[str]:
    return {
        re.sub(r"[^a-z0-9 -]", "", m.lower()).replace(" ", "-")
        for m in re.findall(r"^#+ (.+)$", README.read_text(), flags=re.MULTILINE)
    }


def _links(item: Mapping[str, Any]) -> list[str]:
    config = item["fieldConfig"]
    found = [link["url"] for link in config["defaults"].get("links", [])]
    for override in config.get("overrides", []):
        for prop in override["properties"]:
            if prop["id"] == "links":
                found += [link["url"] for link in prop["value"]]
    return found


def test_target_health_table() -> None:
    """One row per target: name, latest status, time since the last success against the
    IdaasSyncNoRecentSuccess threshold (idaas_sync:success_max_age_seconds), jobs in progress,
    its schedule class, its learned cadence and the time since its last scheduled start in
    cadences (IdaasSyncOverdue), and links to the runbooks of the alerts those columns stand
    for."""
    table = panel("Target health")
    assert table["type"] == "table"
    exprs = [t["expr"] for t in table["targets"]]
    for target in table["targets"]:
        assert target["instant"] and not target["range"] and target["format"] == "table"
        assert "group_left (target_name)" in target["expr"]
    for metric in (
        "idaas_sync_last_job_status{",
        "idaas_sync_last_success_timestamp_seconds{",
        "idaas_sync:success_max_age_seconds{",
        "idaas_sync_jobs_in_progress{",
        "idaas_sync_target_schedule{",
        "idaas_sync_target_interval_seconds{",
        "idaas_sync_last_scheduled_job_start_timestamp_seconds{",
    ):
        assert any(metric in expr for expr in exprs), metric
    columns = table["transformations"][1]["options"]["renameByName"].values()
    assert {"Schedule", "Cadence", "Since last scheduled start"} <= set(columns)
    assert table["transformations"][0]["id"] == "merge"
    links = _links(table)
    alerts = (
        "IdaasSyncJobFailed",
        "IdaasSyncNoRecentSuccess",
        "IdaasSyncJobStuck",
        "IdaasSyncOverdue",
    )
    for alert in alerts:
        assert RUNBOOKS + alert.lower() in links, alert
    anchors = _readme_anchors()
    for item in data_panels():
        for url in _links(item):
            assert url.startswith(RUNBOOKS), url
            assert url.removeprefix(RUNBOOKS) in anchors, f"README has no section {url}"


def test_job_rate_panel_requests_exemplars() -> None:
    """The exporter attaches the newest job's ID (sync_job_id) to idaas_sync_jobs_total."""
    (target,) = panel("Jobs by status")["targets"]
    assert target["exemplar"] is True
    assert "idaas_sync_jobs_total{" in target["expr"]


def test_state_write_errors_panel() -> None:
    item = panel("State-file write errors")
    (target,) = item["targets"]
    assert "idaas_exporter_state_writes_total{" in target["expr"]
    assert 'result="error"' in target["expr"]
    assert RUNBOOKS + "idaasexporterstatewritesfailing" in _links(item)


def test_instance_and_cluster_variables() -> None:
    """$instance: the exporter's replicas. $cluster: optional — a label many setups add by
    relabelling; All (`.*`) also matches series without it, so the dashboard works unchanged
    where no cluster label exists."""
    found = variables()
    instance = found["instance"]
    assert instance["query"]["query"] == (
        'label_values(idaas_exporter_build_info{cluster=~"$cluster",job=~"$job"}, instance)'
    )
    cluster = found["cluster"]
    assert cluster["query"]["query"] == "label_values(idaas_exporter_build_info, cluster)"
    assert cluster["includeAll"] and cluster["allValue"] == ".*"
    assert re.fullmatch(cluster["allValue"], "")  # a missing label is the empty string
    assert found["job"]["query"]["query"] == (
        'label_values(idaas_exporter_build_info{cluster=~"$cluster"}, job)'
    )
