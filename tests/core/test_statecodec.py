"""The state file: lossless round trip, atomic writes, and refusals with a way out."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.core.instance import InstanceState
from exporter.core.ledger import InstanceLedger
from exporter.core.retained import RetainedIds
from exporter.core.statecodec import SCHEMA_VERSION, StateFileError, decode_state, encode_state
from exporter.core.tracker import InProgressJob, TrackerState
from exporter.eiam.models import SynchronizationJob
from exporter.service.state_store import StateStore

block = st.fixed_dictionaries(
    {},
    optional={k: st.integers(0, 10**6) for k in ("Total", "Success", "Failed", "Skipped")},
)
entity = st.fixed_dictionaries(
    {}, optional=dict.fromkeys(("Created", "Updated", "Same", "Exported"), block)
)
jobs = st.builds(
    lambda n, status, trigger, target, start, duration, stats, code: (
        SynchronizationJob.model_validate(
            {
                "SynchronizationJobId": f"sync_{n}",
                "TargetType": "identity_provider",
                "TargetId": target,
                "Direction": "ingress",
                "TriggerType": trigger,
                "Status": status,
                "StartTime": start,
                "EndTime": None if duration is None else start + duration,
                "Result": {"UserStatistics": stats, "ErrorCode": code},
            }
        )
    ),
    st.integers(0, 10**9),
    st.sampled_from(["success", "failed", "partial_success", "odd ü status"]),
    st.sampled_from(["auto", "manual", None]),
    st.sampled_from(["idp_a", "idp_b", 'app "quoted"']),
    st.integers(0, 2**42),
    st.one_of(st.none(), st.integers(0, 10**8)),
    entity,
    st.sampled_from(["", "MissingParameter.Username", "free text error!"]),
)


FIXTURES = Path(__file__).parent / "fixtures"


def make_state(terminal: list[SynchronizationJob]) -> InstanceState:
    running = SynchronizationJob(synchronization_job_id="run_1", start_time=5, status="running")
    swept = SynchronizationJob(synchronization_job_id="late_1", start_time=0, status="pending")
    older = [(j.synchronization_job_id + "_old", (j.start_time or 0) % 1000) for j in terminal]
    tracker = TrackerState(
        window_start_ms=1,
        watermark_ms=99,
        counted={j.synchronization_job_id: j.start_time or 0 for j in terminal},
        in_progress={
            "run_1": InProgressJob(running, 10, 20),
            "late_1": InProgressJob(swept, 30, 40, late=True),
        },
        retained=RetainedIds(from_ms=-5).with_counted(older),
        next_sweep_ms=3_600_000,
        last_sweep_ms=1_000,
        late_jobs=len(terminal),
    )
    return InstanceState(
        tracker=tracker,
        ledger=InstanceLedger().with_jobs(terminal),
        target_names={("identity_provider", "idp_a"): "Corporate AD ✓"},
        names_refreshed_ms=123,
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(jobs, max_size=30))
def test_round_trip_is_lossless(terminal: list[SynchronizationJob]) -> None:
    state = {"idaas_a": make_state(terminal), "idaas_b": InstanceState.initial()}
    assert decode_state(encode_state(state)) == state


def test_a_schema_1_file_loads_with_nothing_retained_below_its_window() -> None:
    """A state file written before the reconciliation sweep existed: every counter and ID
    continues; the sweep vouches only from its window on, and has not run."""
    path = FIXTURES / "state-v1-in-progress.json"
    assert json.loads(path.read_bytes())["schema_version"] == 1
    loaded = decode_state(path.read_bytes())["idaas_a"]
    tracker = loaded.tracker
    assert tracker.window_start_ms == 1735688700000
    assert dict(tracker.counted) == {"sync_done": 1735689000000}
    assert tracker.in_progress["sync_run"].late is False
    assert tracker.retained == RetainedIds(from_ms=1735688700000)
    assert (tracker.next_sweep_ms, tracker.last_sweep_ms, tracker.late_jobs) == (None, None, 0)
    stats = loaded.ledger.targets[("identity_provider", "idp_a", "ingress")]
    assert dict(stats.jobs) == {("auto", "success"): 1}
    # written back, it is schema 2 and loads the same
    again = encode_state({"idaas_a": loaded})
    assert json.loads(again)["schema_version"] == SCHEMA_VERSION == 2
    assert decode_state(again) == {"idaas_a": loaded}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"late_jobs": -1}, "negative"),
        ({"late_jobs": "3"}, "late_jobs must be an integer"),
        ({"retained": {"from_ms": 0, "minutes": "!!", "sizes": "", "prints": ""}}, "not base64"),
        (
            {"retained": {"from_ms": 0, "minutes": "AAAAAAAAAAA=", "sizes": "", "prints": ""}},
            "pair up",
        ),
        ({"retained": {"from_ms": 0, "minutes": "AAAAAAAAAAA="}}, "missing field 'sizes'"),
    ],
)
def test_bad_sweep_keys_are_corrupt(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    document = json.loads(encode_state({"idaas_a": make_state([])}))
    document["instances"]["idaas_a"]["tracker"].update(change)
    path = tmp_path / "state.json"
    path.write_text(json.dumps(document))
    with pytest.raises(StateFileError, match=message):
        StateStore(path).load()


def test_store_writes_atomically_and_reads_back(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "sub" / "state.json")
    assert store.load() is None
    store.check_writable()
    state = {"idaas_a": make_state([])}
    size = store.save(state)
    assert size == store.path.stat().st_size
    assert store.load() == state
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["state.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "is corrupt (not JSON"),
        (b"\xff\xfe", "is corrupt (not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"instances": {}}', "no valid schema_version"),
        (json.dumps({"schema_version": 99, "exporter_version": "9.0"}).encode(), "newer exporter"),
        (
            json.dumps(
                {"schema_version": SCHEMA_VERSION, "duration_buckets": [1], "instances": {}}
            ).encode(),
            "other duration histogram buckets",
        ),
    ],
)
def test_bad_files_stop_start_up_with_a_way_out(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateFileError) as info:
        StateStore(path).load()
    text = str(info.value)
    assert message in text
    assert f"mv {path} {path}.bad" in text


def test_truncated_document_is_corrupt(tmp_path: Path) -> None:
    data = encode_state({"idaas_a": make_state([])})
    path = tmp_path / "state.json"
    for cut in (len(data) // 3, len(data) - 2):
        path.write_bytes(data[:cut])
        with pytest.raises(StateFileError, match="corrupt"):
            StateStore(path).load()


def test_structurally_wrong_document(tmp_path: Path) -> None:
    document = json.loads(encode_state({"idaas_a": make_state([])}))
    del document["instances"]["idaas_a"]["tracker"]
    path = tmp_path / "state.json"
    path.write_text(json.dumps(document))
    with pytest.raises(StateFileError, match="missing field 'tracker'"):
        StateStore(path).load()


def test_directory_in_place_of_the_file(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match="is a directory"):
        StateStore(tmp_path).load()


def test_unwritable_location_is_reported_at_start_up(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateFileError, match="not writable"):
        StateStore(blocker / "state.json").check_writable()


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # permission bits do not stop root (CI runs as root), so the OS error is injected
    path = tmp_path / "state.json"
    path.write_text("{}")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(StateFileError, match=r"cannot read state file .*: Permission denied"):
        StateStore(path).load()


def test_a_version_1_file_loads_and_learns_the_cadence_afresh() -> None:
    """state-v1.json was written by the exporter before the cadence window existed (schema 1):
    it loads with every count intact and an empty window, which the next jobs fill again."""
    assert SCHEMA_VERSION == 2
    data = (FIXTURES / "state-v1.json").read_bytes()
    assert json.loads(data)["schema_version"] == 1
    state = decode_state(data)["idaas_v1fixture"]
    stats = state.ledger.targets[("identity_provider", "idp_ad", "ingress")]
    assert dict(stats.jobs) == {("auto", "success"): 9, ("auto", "failed"): 3}
    assert stats.last_success_end_ms == 1_735_689_600_000 + 11 * 600_000 + 60_000
    assert stats.recent == ()
    assert len(state.tracker.counted) == 12
    assert state.target_names == {("identity_provider", "idp_ad"): "Corporate AD"}
    # written back, it is a version 2 file holding the window from then on
    later = SynchronizationJob.model_validate(
        {"SynchronizationJobId": "sync_12", "TargetType": "identity_provider",
         "TargetId": "idp_ad", "Direction": "ingress", "TriggerType": "auto",
         "Status": "success", "StartTime": 1_735_696_800_000, "EndTime": 1_735_696_860_000}
    )  # fmt: skip
    state = replace(state, ledger=state.ledger.with_jobs([later]))
    document = json.loads(encode_state({"idaas_v1fixture": state}))
    assert document["schema_version"] == 2
    again = decode_state(json.dumps(document).encode())["idaas_v1fixture"]
    assert again.ledger.targets[("identity_provider", "idp_ad", "ingress")].recent == (
        (1_735_696_800_000, "auto"),
    )


def test_a_version_2_file_keeps_the_cadence_window() -> None:
    jobs = [
        SynchronizationJob(
            synchronization_job_id=f"sync_{n}", target_type="identity_provider",
            target_id="idp_a", direction="ingress", trigger_type="manual" if n == 3 else "auto",
            status="success", start_time=n * 600_000, end_time=n * 600_000 + 1000,
        )
        for n in range(30)
    ]  # fmt: skip
    state = {"idaas_a": make_state(jobs)}
    stats = decode_state(encode_state(state))["idaas_a"].ledger.targets[
        ("identity_provider", "idp_a", "ingress")
    ]
    assert len(stats.recent) == 20
    assert stats.recent[-1] == (29 * 600_000, "auto")


def test_a_corrupt_cadence_window_is_reported() -> None:
    document = json.loads(encode_state({"idaas_a": make_state([])}))
    target = {
        "target_type": "identity_provider", "target_id": "idp_a", "direction": "ingress",
        "jobs": [], "objects": [], "errors": [],
        "duration": {"buckets": [0] * 13, "sum": 0.0, "count": 0},
        "recent_jobs": [["not a time", "auto"]],
    }  # fmt: skip
    document["instances"]["idaas_a"]["targets"] = [target]
    with pytest.raises(StateFileError, match=r"corrupt.*recent_jobs"):
        decode_state(json.dumps(document).encode())
