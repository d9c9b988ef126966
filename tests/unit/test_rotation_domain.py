"""The rotation state machine: legal moves, crash recovery per step, naming and due dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tokenwarden.domain.rotation import (
    FINAL_STEPS,
    TRANSITIONS,
    Reason,
    Recovery,
    RotationSettings,
    Step,
    check_transition,
    display_base,
    is_due,
    recovery_for,
    revoke_after,
    successor_display_name,
)

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_the_predecessor_is_never_revoked_before_the_successor_is_promoted() -> None:
    """Walk every path from PLANNED: REVOKED is reachable only through PROMOTED, and PROMOTED
    only through STORED (the read-back happens between them)."""

    def paths(step: Step, seen: tuple[Step, ...]) -> list[tuple[Step, ...]]:
        if not TRANSITIONS[step]:
            return [(*seen, step)]
        return [p for nxt in TRANSITIONS[step] for p in paths(nxt, (*seen, step))]

    every = paths(Step.PLANNED, ())
    assert every
    for path in every:
        if Step.REVOKED in path:
            assert path.index(Step.STORED) < path.index(Step.PROMOTED) < path.index(Step.REVOKED)
        assert path[-1] in FINAL_STEPS


def test_a_rollback_never_touches_the_predecessor() -> None:
    assert Step.REVOKED not in TRANSITIONS[Step.ROLLING_BACK] | TRANSITIONS[Step.ROLLED_BACK]
    with pytest.raises(ValueError, match="cannot go from"):
        check_transition(Step.ROLLING_BACK, Step.REVOKED)
    with pytest.raises(ValueError, match="cannot go from"):
        check_transition(Step.CREATED, Step.PROMOTED)  # no promotion without the store write
    check_transition(Step.STORED, Step.PROMOTED)


@pytest.mark.parametrize(
    ("step", "recovery"),
    [
        (Step.PLANNED, Recovery.FIND_AND_REVOKE_ORPHAN),
        (Step.CREATED, Recovery.REVOKE_SUCCESSOR),
        (Step.STORED, Recovery.VERIFY_STORED),
        (Step.PROMOTED, Recovery.REVOKE_PREDECESSOR),
        (Step.REVOKED, Recovery.NOTIFY),
        (Step.ROLLING_BACK, Recovery.FINISH_ROLLBACK),
        (Step.DONE, Recovery.NOTHING),
        (Step.ROLLED_BACK, Recovery.NOTHING),
        (Step.FAILED, Recovery.NOTHING),
    ],
)
def test_every_unfinished_step_has_a_recovery(step: Step, recovery: Recovery) -> None:
    assert recovery_for(step) is recovery
    assert (recovery is Recovery.NOTHING) == (step in FINAL_STEPS)


def test_display_names_carry_a_version_suffix() -> None:
    assert display_base("ci-reader-v12") == "ci-reader"
    assert display_base("ci-reader") == "ci-reader"
    assert display_base("release-v2-tool") == "release-v2-tool"
    assert successor_display_name("ci-reader", 13) == "ci-reader-v13"
    long = successor_display_name("x" * 300, 7)
    assert len(long) == 256 and long.endswith("-v7")


def test_settings_are_validated() -> None:
    RotationSettings()
    for bad in ({"threshold_days": 30, "valid_days": 30}, {"valid_days": 0}, {"overlap_minutes": -1}):
        with pytest.raises(ValueError, match="must be"):
            RotationSettings(**bad)  # type: ignore[arg-type]


def test_due_inside_the_threshold_and_when_expired() -> None:
    rules = RotationSettings(threshold_days=7)
    assert not is_due(NOW + timedelta(days=8), rules, NOW)
    assert is_due(NOW + timedelta(days=7), rules, NOW)
    assert is_due(NOW - timedelta(days=1), rules, NOW)
    assert is_due(None, rules, NOW)


def test_overlap_is_skipped_for_a_compromised_predecessor() -> None:
    rules = RotationSettings(overlap_minutes=30)
    assert revoke_after(NOW, rules, Reason.EXPIRING) == NOW + timedelta(minutes=30)
    assert revoke_after(NOW, rules, Reason.COMPROMISED) == NOW
