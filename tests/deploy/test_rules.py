"""The Prometheus rules of deploy/prometheus/: promtool check and unit tests, the conventions
every alert follows, its runbook section, and mutation checks showing that the unit tests really
exercise the rules' restart and frozen-data guards."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .promsupport import (
    ALWAYS_ALLOWED,
    check_expressions,
    exposed_names,
    run_promtool,
    selector_names,
)

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted(PROMETHEUS.glob("*.rules.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
README = ROOT / "README.md"


def runbooks_text() -> str:
    """The README section ``## Alert runbooks``: the one place the runbooks live."""
    readme = README.read_text()
    start = readme.index("\n## Alert runbooks\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


RUNBOOK_BASE = "https://github.com/idaas-sync-exporter/idaas-sync-exporter/blob/main/README.md#"
SEVERITIES = {"critical", "warning", "info"}
OVERRIDE = "idaas_sync:expected_interval_seconds:override"
"""Recorded by the user's own rules (see the runbooks' Tuning section), read by the shipped ones."""


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


ALERTS = [rule for rule in _rules() if "alert" in rule]
RECORDS = [rule for rule in _rules() if "record" in rule]
ALERT_NAMES = [rule["alert"] for rule in ALERTS]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_headings(markdown: str) -> list[str]:
    """The ``###`` headings of the ``## Alert runbooks`` section."""
    section = markdown.split("\n## Alert runbooks\n", 1)
    if len(section) == 1 and markdown.startswith("## Alert runbooks\n"):
        section = ["", markdown.split("\n", 1)[1]]
    assert len(section) == 2, "no '## Alert runbooks' section"
    body = re.split(r"\n## ", section[1], maxsplit=1)[0]
    return [line[4:].strip() for line in body.splitlines() if line.startswith("### ")]


def test_the_rule_and_test_files_exist() -> None:
    assert [p.name for p in RULE_FILES] == ["idaas-sync-exporter.rules.yml"]
    assert len(TEST_FILES) >= 4
    assert len(ALERTS) >= 8


def test_promtool_check_rules() -> None:
    checked = run_promtool("check", "rules", *RULE_FILES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_promtool_test_rules() -> None:
    tested = run_promtool("test", "rules", *TEST_FILES)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(TEST_FILES), tested.stdout


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_NAMES)
def test_alert_conventions(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"Idaas(Sync|Exporter)([A-Z][a-z0-9]*)+", name), name
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name}: no {key}"
    assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower()
    assert "for" in rule, f"{name}: every alert waits a little (`for:`)"


def test_alert_names_are_unique() -> None:
    assert len(set(ALERT_NAMES)) == len(ALERT_NAMES)


def test_every_alert_has_its_runbook_section() -> None:
    headings = runbook_headings(runbooks_text())
    anchors = {github_anchor(h): h for h in headings}
    for name in ALERT_NAMES:
        assert name.lower() in anchors, f"no '### {name}' in README.md's runbooks"
        assert anchors[name.lower()] == name
    # and no runbook for an alert that does not exist (besides the tuning notes)
    assert set(headings) - set(ALERT_NAMES) == {"Tuning", "The alerts at a glance"}


def alert_table() -> dict[str, list[str]]:
    """The rows of README.md's "The alerts at a glance", by alert name."""
    section = runbooks_text().split("\n### The alerts at a glance\n", 1)[1].split("\n### ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        match = re.match(r"\| \[(\w+)\]\(#\w+\) \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_the_alert_table_lists_every_alert_as_the_rules_define_it() -> None:
    rows = alert_table()
    assert list(rows) == ALERT_NAMES
    for rule in ALERTS:
        severity, for_, *_ = rows[rule["alert"]]
        assert severity == rule["labels"]["severity"], rule["alert"]
        assert for_.split()[0] == rule["for"], rule["alert"]
        if "keep_firing_for" in rule:
            assert f"`keep_firing_for` {rule['keep_firing_for']}" in for_, rule["alert"]


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_NAMES)
def test_every_runbook_states_its_severity(rule: dict[str, Any]) -> None:
    body = runbooks_text().split(f"\n### {rule['alert']}\n", 1)[1].split("\n### ", 1)[0]
    assert f"Severity `{rule['labels']['severity']}`" in " ".join(body.split()), rule["alert"]


def test_the_runbooks_links_resolve() -> None:
    """Links inside the runbooks point at their own headings or at README headings."""
    markdown = runbooks_text()
    headings = re.findall(r"^#+ (.+)$", README.read_text(), re.M)
    anchors = {github_anchor(h) for h in headings}
    links = re.findall(r"\]\(#([^)]+)\)", markdown)
    assert links
    assert set(links) <= anchors, set(links) - anchors


def test_the_readme_carries_every_runbook() -> None:
    anchors = {github_anchor(h) for h in runbook_headings(runbooks_text())}
    missing = [name for name in ALERT_NAMES if name.lower() not in anchors]
    assert not missing, f"README.md lacks runbook sections for {missing}"


def _unit_tests() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_is_unit_tested_firing_and_silent(name: str) -> None:
    cases = [case for case in _unit_tests() if case["alertname"] == name]
    assert any(case.get("exp_alerts") for case in cases), f"{name} is never tested firing"
    assert any(not case.get("exp_alerts") for case in cases), f"{name} is never tested silent"


def test_recording_rules_follow_the_naming_convention() -> None:
    for rule in RECORDS:
        assert re.fullmatch(r"idaas_sync:[a-z0-9_]+(:[a-z0-9_]+)?", rule["record"]), rule["record"]


def test_rules_use_only_metrics_the_exporter_exposes() -> None:
    allowed = exposed_names() | ALWAYS_ALLOWED | {r["record"] for r in RECORDS} | {OVERRIDE}
    for rule in _rules():
        used = selector_names(rule["expr"])
        assert used <= allowed, f"{rule.get('alert') or rule.get('record')}: {used - allowed}"


def test_runbook_promql_is_valid(tmp_path: Path) -> None:
    """Every expression in the runbooks' promql blocks parses (promtool)."""
    expressions: dict[str, str] = {}
    for block in re.findall(r"```promql\n(.*?)```", runbooks_text(), flags=re.S):
        current: list[str] = []
        for line in [*block.splitlines(), ""]:
            if line and (line[0].isspace() or not current) and not line.startswith("#"):
                current.append(line)
                continue
            if current:
                expressions[f"runbook expression {len(expressions)}"] = "\n".join(current)
            current = [line] if line and not line.startswith("#") else []
    assert len(expressions) >= 15
    check_expressions(expressions, tmp_path)
    allowed = exposed_names() | ALWAYS_ALLOWED | {r["record"] for r in RECORDS}
    for expr in expressions.values():
        assert selector_names(expr) <= allowed, expr


# -- mutations: the unit tests must notice when a guard goes -------------------------------


def _mutated(tmp_path: Path, old: str, new: str, test_file: str) -> str:
    source = RULE_FILES[0].read_text()
    assert source.count(old) == 1, f"the rules no longer contain {old!r}"
    (tmp_path / RULE_FILES[0].name).write_text(source.replace(old, new))
    (tmp_path / "tests").mkdir()
    shutil.copy(PROMETHEUS / "tests" / test_file, tmp_path / "tests" / test_file)
    for helper in (PROMETHEUS / "tests").glob("*.yml"):  # rule files the tests load beside
        if not helper.name.endswith(".test.yml"):
            shutil.copy(helper, tmp_path / "tests" / helper.name)
    result = run_promtool("test", "rules", tmp_path / "tests" / test_file)
    assert result.returncode != 0, "the unit tests did not notice the mutation"
    return result.stdout + result.stderr


def test_without_the_restart_guard_a_stateless_restart_raises_a_false_alarm(
    tmp_path: Path,
) -> None:
    guard = (
        "          unless on (instance_id)"
        " (changes(idaas_sync:exporter_start_time_seconds[1h]) > 0)\n"
    )
    output = _mutated(tmp_path, guard, "", "restart.test.yml")
    assert "counters reset" in output
    assert "IdaasSyncHighObjectFailureRatio" in output


def test_without_the_hold_a_dead_exporter_resolves_its_alerts(tmp_path: Path) -> None:
    hold = (
        "            max without (alertname, alertstate, severity)"
        ' (ALERTS{alertname="IdaasSyncJobFailed", alertstate="firing"})\n'
    )
    output = _mutated(tmp_path, hold, "            vector(0) < 0\n", "blind.test.yml")
    assert "IdaasSyncJobFailed" in output


def test_judging_frozen_data_would_raise_an_alert(tmp_path: Path) -> None:
    """Without the freshness gate a failure still pending when the polls start failing fires
    on data nobody refreshes (blind.test.yml, app_c)."""
    gate = (
        "            max without (instance, pod)"
        ' (idaas_sync_last_job_status{status="failed"} == 1)\n'
        "            and on (instance_id) idaas_sync:instance_fresh\n"
    )
    mutated = (
        "            max without (instance, pod)"
        ' (idaas_sync_last_job_status{status="failed"} == 1)\n'
        "            unless on (instance_id) (idaas_sync:instance_fresh < 0)\n"
    )
    output = _mutated(tmp_path, gate, mutated, "blind.test.yml")
    assert "app_c" in output


def test_without_the_in_progress_guard_a_long_job_is_overdue(tmp_path: Path) -> None:
    """A job in progress is the scheduler at work (a job running too long is JobStuck's):
    overdue.test.yml's app_running must stay silent only because of the guard."""
    guard = (
        "              unless on (job, instance, instance_id, target_type, target_id, direction)\n"
        "                (idaas_sync_jobs_in_progress > 0)\n"
    )
    output = _mutated(tmp_path, guard, "", "overdue.test.yml")
    assert "app_running" in output


def test_without_the_learned_cadence_manual_and_daily_targets_are_overdue(tmp_path: Path) -> None:
    """Judged against the expected interval (with its 1-day fallback) instead of the cadence, a
    manual-only target would be overdue (overdue.test.yml, idp_partner)."""
    cadence = "        expr: clamp_min(3 * idaas_sync:cadence_seconds, 1800)\n"
    fallback = "        expr: clamp_min(3 * idaas_sync:expected_interval_seconds, 1800)\n"
    output = _mutated(tmp_path, cadence, fallback, "overdue.test.yml")
    assert "idp_partner" in output


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_NAMES)
def test_no_alert_text_embeds_its_value(rule: dict[str, Any]) -> None:
    """A resolved notification carries the annotations of the last evaluation: a number in
    them is stale by then. Absolute times (of a last success, say) stay true."""
    for key in ("summary", "description"):
        assert "$value" not in rule["annotations"][key], f"{rule['alert']}: $value in {key}"
