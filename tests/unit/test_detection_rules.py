"""The detection rules, one attack each, on the pure domain (domain/detection.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tokenwarden.domain.detection import Action, Activity, DetectionPolicy, Level, Rule, evaluate
from tokenwarden.domain.errors import InvalidInput

# a Wednesday, 14:03 UTC
NOW = datetime(2026, 12, 2, 14, 3, tzinfo=UTC)
HOME = "198.51.100.0/24"


def activity(**changes: object) -> Activity:
    base = Activity(
        token_id="t1",
        created_at=NOW - timedelta(days=30),
        owner_active=True,
        first_used=NOW - timedelta(days=20),
        prior_use=NOW - timedelta(hours=1),
        batch_minutes=(NOW,),
        batch_networks={HOME: 3},
        network_first_seen={HOME: NOW - timedelta(days=20)},
        busiest_minute=(NOW, 3),
        baseline_per_minute=2.0,
        forbidden_recent=0,
        statuses={"2xx": 3},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def rules(policy: DetectionPolicy, a: Activity) -> list[Rule]:
    return [f.rule for f in evaluate(policy, a)]


def test_ordinary_use_raises_nothing() -> None:
    assert rules(DetectionPolicy(working_hours=(8, 18)), activity()) == []


def test_unknown_network_after_the_learning_period_but_not_during_it_or_when_allowed() -> None:
    stranger = activity(
        batch_networks={"203.0.113.0/24": 1},
        network_first_seen={HOME: NOW - timedelta(days=20), "203.0.113.0/24": NOW},
    )
    findings = evaluate(DetectionPolicy(), stranger)
    assert [f.rule for f in findings] == [Rule.UNKNOWN_NETWORK]
    assert findings[0].level is Level.HIGH and findings[0].evidence["networks"] == ["203.0.113.0/24"]
    young = replace(stranger, first_used=NOW - timedelta(days=2))  # still learning its networks
    assert rules(DetectionPolicy(), young) == []
    assert rules(DetectionPolicy(allowed_networks=("203.0.112.0/23",)), stranger) == []
    # learning off: only the organization's allow-list is known
    assert rules(DetectionPolicy(learning_days=0, allowed_networks=(HOME,)), activity()) == []
    assert rules(DetectionPolicy(learning_days=0, allowed_networks=("10.0.0.0/8",)), activity()) == [
        Rule.UNKNOWN_NETWORK
    ]


def test_outside_working_hours_in_the_organizations_time_zone() -> None:
    assert rules(DetectionPolicy(working_hours=(6, 22)), activity()) == []
    # 14:03 UTC is 23:03 in Tokyo
    found = evaluate(DetectionPolicy(working_hours=(6, 22), timezone="Asia/Tokyo"), activity())
    assert [f.rule for f in found] == [Rule.OUTSIDE_HOURS] and found[0].level is Level.MEDIUM
    # a weekend day
    assert rules(DetectionPolicy(working_hours=(0, 24), working_days=(5, 6)), activity()) == [
        Rule.OUTSIDE_HOURS
    ]
    # a night shift window wraps midnight
    assert rules(DetectionPolicy(working_hours=(22, 6)), activity()) == [Rule.OUTSIDE_HOURS]


def test_dormant_token_active_again() -> None:
    woke = activity(prior_use=NOW - timedelta(days=61))
    assert rules(DetectionPolicy(), woke) == [Rule.DORMANT]
    assert rules(DetectionPolicy(dormant_days=90), woke) == []
    never = activity(prior_use=None, created_at=NOW - timedelta(days=100))
    assert rules(DetectionPolicy(), never) == [Rule.DORMANT]


def test_high_frequency_by_a_ceiling_or_the_tokens_own_baseline() -> None:
    assert rules(DetectionPolicy(), activity(busiest_minute=(NOW, 1001))) == [Rule.HIGH_FREQUENCY]
    assert rules(DetectionPolicy(max_per_minute=5000), activity(busiest_minute=(NOW, 1001))) == [
        Rule.HIGH_FREQUENCY
    ]  # 500 times its baseline of 2
    assert rules(DetectionPolicy(max_per_minute=5000), activity(busiest_minute=(NOW, 19))) == []
    assert (
        rules(
            DetectionPolicy(max_per_minute=5000),
            activity(busiest_minute=(NOW, 1001), baseline_per_minute=None),
        )
        == []
    )


def test_forbidden_bursts() -> None:
    probing = activity(forbidden_recent=25, statuses={"403": 25})
    assert rules(DetectionPolicy(), probing) == [Rule.FORBIDDEN_BURST]
    assert rules(DetectionPolicy(forbidden_burst=30), probing) == []
    # old 403s and no new ones: nothing new to say
    assert rules(DetectionPolicy(), activity(forbidden_recent=25)) == []


def test_owner_inactive_and_disabled_rules() -> None:
    gone = activity(owner_active=False, statuses={"401": 1})
    assert rules(DetectionPolicy(), gone) == [Rule.OWNER_INACTIVE]
    assert rules(DetectionPolicy(disabled_rules=(Rule.OWNER_INACTIVE,)), gone) == []
    assert rules(DetectionPolicy(enabled=False), gone) == []


def test_policy_json_round_trip_and_precise_errors() -> None:
    policy = DetectionPolicy.from_json(
        {
            "workingHours": [7, 19],
            "timezone": "Europe/Berlin",
            "allowedNetworks": ["10.1.2.3/16"],
            "levels": {"outsideWorkingHours": "low"},
            "responses": {"high": ["notify", "revoke", "rotate", "raiseRisk"]},
        }
    )
    assert policy.working_hours == (7, 19) and policy.allowed_networks == ("10.1.0.0/16",)
    assert policy.level_of(Rule.OUTSIDE_HOURS) is Level.LOW
    assert policy.responses[Level.HIGH] == (Action.NOTIFY, Action.REVOKE, Action.ROTATE, Action.RAISE_RISK)
    assert DetectionPolicy.from_json(policy.to_json()) == policy
    for bad, words in [
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"workingHours": [9]}, "workingHours"),
        ({"allowedNetworks": ["banana"]}, "not a CIDR"),
        ({"responses": {"high": ["explode"]}}, "valid values"),
        ({"dormantDays": 0}, "between"),
        ({"maxPerMinute": "many"}, "integer"),
        ({"frobnicate": 1}, "unknown detection setting"),
        ([], "JSON object"),
    ]:
        with pytest.raises(InvalidInput, match=words):
            DetectionPolicy.from_json(bad)
