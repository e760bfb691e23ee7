"""The compose demo: valid against the Compose Specification schema (offline: the schema
vendored by check-jsonschema), and wired together — every mounted file exists, Prometheus loads
the shipped rules and scrapes the exporter under the job name the rules select, Grafana finds its
datasource and dashboard. The Prometheus and Alertmanager configurations pass promtool and amtool.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .promsupport import run_promtool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text(encoding="utf-8"))
    return schema


def validate(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def binds(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of the service's bind mounts."""
    found = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            found.append(((COMPOSE_DIR / source).resolve(), target))
    return found


def test_the_compose_file_follows_the_compose_specification() -> None:
    assert validate(compose()) == []


def test_the_schema_check_does_reject_a_broken_file() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["exporter"]["ports"] = 10151  # must be a list
    broken["services"]["grafana"]["restart_policy"] = "always"  # no such key
    errors = validate(broken)
    assert any("ports" in e for e in errors), errors
    assert any("restart_policy" in e for e in errors), errors


def test_services() -> None:
    services = compose()["services"]
    assert set(services) == {"exporter", "prometheus", "alertmanager", "grafana"}
    exporter = services["exporter"]
    assert (COMPOSE_DIR / exporter["build"]).resolve() == ROOT
    command = [*exporter["entrypoint"], *exporter["command"]]
    assert command == ["idaas-sync-exporter", "--demo", "--web.listen-address", ":10151"]
    for name in ("prometheus", "alertmanager", "grafana"):
        image = services[name]["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), f"{name}: pin a version ({image})"


def test_every_bind_mount_exists() -> None:
    for name, service in compose()["services"].items():
        for source, _target in binds(service):
            assert source.exists(), f"{name}: {source} does not exist"
            assert ROOT in source.parents, f"{name}: {source} is outside the repository"


def prometheus_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    return data


def test_prometheus_loads_the_shipped_rules_and_scrapes_the_exporter() -> None:
    services = compose()["services"]
    config = prometheus_config()
    mounts = {target: source for source, target in binds(services["prometheus"])}
    rule_mounts = {
        target: source for target, source in mounts.items() if source.name.endswith(".rules.yml")
    }
    shipped = sorted((ROOT / "deploy" / "prometheus").glob("*.rules.yml"))
    assert sorted(rule_mounts.values()) == shipped
    (pattern,) = config["rule_files"]
    for target in rule_mounts:
        assert Path(target).match(pattern), f"{target} is not loaded by {pattern}"
    assert mounts["/etc/prometheus/prometheus.yml"] == COMPOSE_DIR / "prometheus.yml"

    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    exporter = jobs["idaas-sync-exporter"]
    # the job name the exporter down/absent alerts select
    assert re.fullmatch(".*idaas-sync-exporter.*", exporter["job_name"])
    (static,) = exporter["static_configs"]
    assert static["targets"] == ["exporter:10151"]
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_prometheus_stores_the_exemplars_the_dashboard_shows() -> None:
    """The job panels link each point to its sync_job_id exemplar; Prometheus drops exemplars
    unless the feature is on (and it then negotiates OpenMetrics, which carries them)."""
    command = compose()["services"]["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in command
    dashboard = (
        ROOT / "deploy" / "grafana" / "dashboards" / "idaas-sync-exporter.json"
    ).read_text()
    assert '"exemplar": true' in dashboard


def test_promtool_accepts_the_prometheus_config_with_its_rules(tmp_path: Path) -> None:
    config = prometheus_config()
    config["rule_files"] = [
        str(p) for p in sorted((ROOT / "deploy" / "prometheus").glob("*.rules.yml"))
    ]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    checked = run_promtool("check", "config", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(config['rule_files'])} rule files found" in checked.stdout
    assert re.search(r"SUCCESS: \d+ rules found", checked.stdout), checked.stdout


def test_amtool_accepts_the_alertmanager_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is needed (Debian package prometheus-alertmanager)")
    checked = subprocess.run(
        [amtool, "check-config", str(COMPOSE_DIR / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    mounts = {t: s for s, t in binds(compose()["services"]["alertmanager"])}
    assert mounts["/etc/alertmanager/alertmanager.yml"] == COMPOSE_DIR / "alertmanager.yml"


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = {target: source for source, target in binds(grafana)}
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert mounts["/etc/grafana/provisioning/datasources"] == provisioning / "datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"] == provisioning / "dashboards"
    dashboards = mounts["/var/lib/grafana/dashboards"]
    assert dashboards == ROOT / "deploy" / "grafana" / "dashboards"

    providers = yaml.safe_load(
        (provisioning / "dashboards" / "idaas-sync-exporter.yml").read_text()
    )
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith("/var/lib/grafana/dashboards/")
    assert (dashboards / Path(home).name).is_file()

    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    port = compose()["services"]["prometheus"]["ports"][0].split(":")[-1]
    assert port == "9090"
    # $__rate_interval is computed from the scrape interval Grafana is told about
    assert source["jsonData"]["timeInterval"] == prometheus_config()["global"]["scrape_interval"]
