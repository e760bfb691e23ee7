"""Per-job statistics: shapes and invariants the metric contract relies on."""

from __future__ import annotations

import itertools

import pytest

from exporter.simulator.jobstats import (
    ACTION_KEYS,
    ENTITY_KEYS,
    ZERO_STATISTICS,
    generate_statistics,
    statistics_from_api,
)

POPULATIONS = [(2400, 180, 95, 7200), (10, 0, 3, 0), (0, 0, 0, 0)]
EXPORTED = [a for a, _ in ACTION_KEYS].index("exported")


def cases() -> list[tuple[int, tuple[int, int, int, int], str, str, str]]:
    return [
        (seed, population, direction, trigger, outcome)
        for seed, population, direction, trigger, outcome in itertools.product(
            range(20),
            POPULATIONS,
            ("ingress", "egress"),
            ("auto", "manual"),
            ("success", "partial_success", "failed"),
        )
    ]


@pytest.mark.parametrize("midway", [False, True])
def test_invariants(midway: bool) -> None:
    for seed, population, direction, trigger, outcome in cases():
        stats = generate_statistics(seed, population, direction, trigger, outcome, midway)
        assert len(stats) == len(ENTITY_KEYS)
        failed_total = 0
        unknown_total = 0
        for (entity, _key), block in zip(ENTITY_KEYS, stats, strict=True):
            assert block is not None
            has_exported = block[EXPORTED] is not None
            assert has_exported == (entity in ("user", "organizational_unit"))
            for counts in block:
                if counts is None:
                    continue
                total, success, failed, skipped = counts
                assert min(counts) >= 0
                assert success + failed + skipped <= total
                failed_total += failed
                unknown_total += total - (success + failed + skipped)
        if outcome == "success":
            assert failed_total == 0
            assert unknown_total == 0
        if outcome == "partial_success":
            assert failed_total > 0
        if outcome == "failed" and not midway:
            assert stats == ZERO_STATISTICS


def test_a_failure_midway_leaves_unprocessed_objects() -> None:
    unknown = 0
    for seed in range(20):
        stats = generate_statistics(seed, POPULATIONS[0], "ingress", "auto", "failed", True)
        for block in stats:
            for counts in block or ():
                if counts is not None:
                    unknown += counts[0] - sum(counts[1:])
    assert unknown > 0


def test_ingress_is_mostly_same_egress_pushes_changes() -> None:
    ingress = generate_statistics(1, POPULATIONS[0], "ingress", "auto", "success", False)
    egress = generate_statistics(1, POPULATIONS[0], "egress", "auto", "success", False)
    same = [a for a, _ in ACTION_KEYS].index("same")
    pushed = [a for a, _ in ACTION_KEYS].index("pushed")
    users_in, users_out = ingress[0], egress[0]
    assert users_in is not None
    assert users_out is not None
    assert users_in[same] is not None
    assert users_in[same][0] > 2000
    assert users_in[pushed] == (0, 0, 0, 0)
    assert users_out[pushed] is not None


def test_statistics_from_api_keeps_absent_blocks_absent() -> None:
    stats = statistics_from_api(
        {
            "UserStatistics": {"Created": {"Total": 3, "Success": 1, "Failed": 1, "Skipped": 1}},
            "GroupStatistics": {"Exported": {"Total": 9}},
        }
    )
    user, ou, group, member = stats
    assert user is not None
    assert user[0] == (3, 1, 1, 1)
    assert user[1] is None
    assert ou is None
    assert member is None
    assert group is not None
    assert group[EXPORTED] is None
