"""Fuzzing every input the exporter parses: no unhandled exception, each bad input its error.

Inputs and their documented errors:

=====================  =======================================  ================================
input                  parser                                   documented failure
=====================  =======================================  ================================
API responses          ``exporter.eiam.client.parse_response``  ``EiamError`` subclasses
``--config.file``      ``exporter.config.load_settings``        ``ConfigError`` (one line)
``--web.config.file``  ``exporter.web.config.load_web_config``   ``WebConfigError``
state file             ``exporter.core.statecodec.decode_state``          ``StateFileError``
=====================  =======================================  ================================

Mutations start from *real* payloads (a page rendered by the simulator, a state file written
by the exporter) so that most cases get deep into the parsers, not just past the first byte.
``HYPOTHESIS_PROFILE=fuzz`` runs the long form.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import ConfigError, load_settings
from exporter.core.instance import InstanceState
from exporter.core.ledger import InstanceLedger
from exporter.core.statecodec import StateFileError, decode_state, encode_state
from exporter.core.tracker import TrackerState
from exporter.eiam.client import parse_response
from exporter.eiam.errors import EiamError
from exporter.eiam.models import (
    GetSynchronizationJobResponse,
    ListApplicationsResponse,
    ListIdentityProvidersResponse,
    ListSynchronizationJobsResponse,
)
from exporter.simulator import ManualClock, World, load_scenario
from exporter.simulator.render import job_fragment, list_jobs_body
from exporter.web.config import WebConfigError, parse_web_config

CASES: dict[str, int] = {}


def count(name: str) -> None:
    CASES[name] = CASES.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def report_cases() -> Any:
    yield
    print("\nfuzz cases run:", dict(sorted(CASES.items())), "total", sum(CASES.values()))


def real_page() -> dict[str, Any]:
    world = World(load_scenario("small"), seed=2, now_ms=ManualClock(1_735_689_600_000))
    instance = world.instances[0]
    now = world.now()
    fragments = [job_fragment(job, now) for job in instance.jobs[-30:]]
    return json.loads(list_jobs_body("REQ-1", len(fragments), "TOKEN", fragments))


PAGE = real_page()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def mutate(document: Any, data: st.DataObject, depth: int = 0) -> Any:
    """Replace, delete or retype a random part of a JSON document."""
    if isinstance(document, dict) and document and depth < 6:
        key = data.draw(st.sampled_from(sorted(document)))
        choice = data.draw(st.integers(0, 3))
        copy = dict(document)
        if choice == 0:
            del copy[key]
        elif choice == 1:
            copy[key] = data.draw(json_values)
        else:
            copy[key] = mutate(copy[key], data, depth + 1)
        return copy
    if isinstance(document, list) and document and depth < 6:
        index = data.draw(st.integers(0, len(document) - 1))
        copy = list(document)
        copy[index] = mutate(copy[index], data, depth + 1)
        return copy
    return data.draw(json_values)


MODELS = [
    ListSynchronizationJobsResponse,
    GetSynchronizationJobResponse,
    ListIdentityProvidersResponse,
    ListApplicationsResponse,
]


def check_response(body: bytes, status: int, content_type: str) -> None:
    response = httpx.Response(status, content=body, headers={"content-type": content_type})
    for model in MODELS:
        try:
            parse_response("ListSynchronizationJobs", response, model)
        except EiamError as error:
            assert str(error)  # every error says something
            assert "\n" not in error.code


@given(data=st.data())
def test_mutated_pages_parse_or_fail_typed(data: st.DataObject) -> None:
    count("api: mutated JSON structure")
    body = json.dumps(mutate(PAGE, data)).encode()
    check_response(body, 200, "application/json")


@given(
    cut=st.integers(0, 4000),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
    status=st.sampled_from([200, 200, 200, 400, 403, 404, 429, 500, 502, 503]),
    content_type=st.sampled_from(["application/json", "text/html", "text/plain", ""]),
)
def test_corrupted_bytes_parse_or_fail_typed(
    cut: int, flips: list[tuple[int, int]], status: int, content_type: str
) -> None:
    count("api: truncated and corrupted bytes")
    body = bytearray(json.dumps(PAGE).encode()[: max(cut, 0) or None])
    for position, value in flips:
        if body:
            body[position % len(body)] = value
    check_response(bytes(body), status, content_type)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_fail_typed(body: bytes) -> None:
    count("api: arbitrary bytes")
    check_response(body, 200, "application/json")


SETTING_KEYS = [
    "instance_ids", "instances", "region", "endpoint", "poll_interval_seconds",
    "lookback_seconds", "overlap_seconds", "state_file", "api_rate_limit", "web_listen_address",
    "web_telemetry_path", "log_level", "shard_index", "shard_count", "unknown_key",
]  # fmt: skip


@settings(max_examples=150)
@given(
    document=st.dictionaries(st.sampled_from(SETTING_KEYS), json_values, max_size=6) | json_values,
)
def test_config_file_loads_or_fails_with_one_line(tmp_path_factory: Any, document: Any) -> None:
    count("config file")
    import yaml

    path = Path(tmp_path_factory.mktemp("cfg")) / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        load_settings({}, path)
    except ConfigError as error:
        assert str(error).startswith("invalid configuration")
        assert "\n" not in str(error)


@settings(max_examples=150)
@given(st.binary(max_size=200))
def test_config_file_bytes(tmp_path_factory: Any, raw: bytes) -> None:
    count("config file bytes")
    path = Path(tmp_path_factory.mktemp("cfg")) / "config.yaml"
    path.write_bytes(raw)
    try:
        load_settings({}, path)
    except ConfigError as error:
        assert "\n" not in str(error)


WEB_KEYS = ["tls_server_config", "basic_auth_users", "http_server_config", "other"]
TLS_KEYS = ["cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "x"]


@given(
    st.dictionaries(
        st.sampled_from(WEB_KEYS),
        st.dictionaries(st.sampled_from([*TLS_KEYS, "u", "headers"]), json_values, max_size=4)
        | json_values,
        max_size=3,
    )
    | json_values
)
def test_web_config_loads_or_fails_typed(document: Any) -> None:
    count("web config")
    try:
        parse_web_config(document, Path("/nonexistent"))
    except WebConfigError as error:
        assert str(error)


def real_state() -> dict[str, Any]:
    from exporter.eiam.models import SynchronizationJob

    jobs = [
        SynchronizationJob.model_validate(job)
        for job in PAGE["SynchronizationJobs"]
        if job.get("EndTime") is not None
    ]
    state = InstanceState(
        tracker=TrackerState(window_start_ms=1, watermark_ms=2, counted={"a": 1}),
        ledger=InstanceLedger().with_jobs(jobs),
        target_names={("identity_provider", "idp_1"): "AD"},
    )
    return json.loads(encode_state({"idaas_x": state}))


STATE = real_state()


@given(data=st.data())
def test_mutated_state_files_load_or_fail_typed(data: st.DataObject) -> None:
    count("state file: mutated structure")
    document = mutate(STATE, data)
    try:
        decode_state(json.dumps(document).encode())
    except StateFileError as error:
        assert "To start fresh" in str(error) or "newer exporter" in str(error)


@given(cut=st.integers(0, 20000), flip=st.tuples(st.integers(0, 20000), st.integers(0, 255)))
def test_corrupted_state_bytes_load_or_fail_typed(cut: int, flip: tuple[int, int]) -> None:
    count("state file: corrupted bytes")
    raw = bytearray(json.dumps(STATE).encode()[:cut])
    if raw:
        raw[flip[0] % len(raw)] = flip[1]
    with contextlib.suppress(StateFileError):
        decode_state(bytes(raw))
