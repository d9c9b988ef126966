"""Organization and global PAT policies (pure domain checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tokenwarden.domain.errors import InvalidInput, PolicyViolation
from tokenwarden.domain.policies import (
    HARD_MAX_LIFETIME_DAYS,
    GlobalPolicy,
    OrgPolicy,
    check_may_create,
    check_token_shape,
)
from tokenwarden.domain.principals import IdentitySource, RiskLevel, User, UserStatus

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
OPEN = GlobalPolicy()


def user(source: IdentitySource = IdentitySource.LOCAL, user_id: str = "u-1") -> User:
    return User(
        id=user_id,
        upn=f"{user_id}@acme.test",
        display_name=user_id,
        status=UserStatus.ACTIVE,
        risk_level=RiskLevel.NONE,
        identity_source=source,
        created_at=NOW,
    )


def violation_code(fn: object, *args: object) -> str:
    with pytest.raises(PolicyViolation) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.code


# --------------------------------------------------------------------------- OrgPolicy
def test_default_policy_is_permissive_with_the_hard_cap() -> None:
    policy = OrgPolicy(org_id="o")
    assert policy.max_lifetime_days == HARD_MAX_LIFETIME_DAYS == 365
    check_may_create(policy, OPEN, user())
    check_token_shape(policy, ("app_token",), NOW, NOW + timedelta(days=365))


@pytest.mark.parametrize("days", [0, -1, 366, 10_000])
def test_max_lifetime_days_outside_1_to_365_is_rejected(days: int) -> None:
    with pytest.raises(InvalidInput) as info:
        OrgPolicy(org_id="o", max_lifetime_days=days)
    assert info.value.code == "invalidPolicy"


@pytest.mark.parametrize("days", [1, 30, 365])
def test_max_lifetime_days_inside_the_range_is_accepted(days: int) -> None:
    assert OrgPolicy(org_id="o", max_lifetime_days=days).max_lifetime_days == days


def test_with_changes_validates_too() -> None:
    policy = OrgPolicy(org_id="o")
    assert policy.with_changes(max_lifetime_days=10).max_lifetime_days == 10
    with pytest.raises(InvalidInput):
        policy.with_changes(max_lifetime_days=400)


# --------------------------------------------------------------------------- lifetime and scope
def test_lifetime_up_to_the_limit_passes_and_beyond_it_is_a_violation() -> None:
    policy = OrgPolicy(org_id="o", max_lifetime_days=30)
    check_token_shape(policy, ("vso.code",), NOW, NOW + timedelta(days=30))
    code = violation_code(check_token_shape, policy, ("vso.code",), NOW, NOW + timedelta(days=30, seconds=1))
    assert code == "patLifespanPolicyViolation"


def test_hard_cap_applies_by_default() -> None:
    code = violation_code(
        check_token_shape, OrgPolicy(org_id="o"), ("vso.code",), NOW, NOW + timedelta(days=366)
    )
    assert code == "patLifespanPolicyViolation"


def test_full_scope_is_a_violation_only_when_restricted() -> None:
    check_token_shape(OrgPolicy(org_id="o"), ("vso.code", "app_token"), NOW, NOW + timedelta(days=1))
    restricted = OrgPolicy(org_id="o", restrict_full_scope=True)
    check_token_shape(restricted, ("vso.code", "vso.code_full"), NOW, NOW + timedelta(days=1))
    code = violation_code(
        check_token_shape, restricted, ("vso.code", "app_token"), NOW, NOW + timedelta(days=1)
    )
    assert code == "fullScopePatPolicyViolation"


# --------------------------------------------------------------------------- who may create
def test_global_switch_blocks_everyone() -> None:
    code = violation_code(
        check_may_create, OrgPolicy(org_id="o"), GlobalPolicy(pat_creation_disabled=True), user()
    )
    assert code == "globalPATCreationBlocked"


def test_org_switch_blocks_creation() -> None:
    code = violation_code(check_may_create, OrgPolicy(org_id="o", disable_pat_creation=True), OPEN, user())
    assert code == "disablePatCreationPolicyViolation"


def test_allowlist_admits_only_listed_users() -> None:
    policy = OrgPolicy(org_id="o", restrict_creation=True, creation_allowlist=("u-ok",))
    check_may_create(policy, OPEN, user(user_id="u-ok"))
    code = violation_code(check_may_create, policy, OPEN, user(user_id="u-other"))
    assert code == "disablePatCreationPolicyViolation"


def test_allowlist_is_ignored_unless_creation_is_restricted() -> None:
    check_may_create(OrgPolicy(org_id="o", creation_allowlist=("someone-else",)), OPEN, user())


def test_external_identity_requirement() -> None:
    policy = OrgPolicy(org_id="o", require_external_identity=True)
    check_may_create(policy, OPEN, user(IdentitySource.EXTERNAL))
    assert violation_code(check_may_create, policy, OPEN, user(IdentitySource.LOCAL)) == "invalidUserType"


def test_global_block_wins_over_org_rules() -> None:
    policy = OrgPolicy(org_id="o", disable_pat_creation=True, require_external_identity=True)
    code = violation_code(check_may_create, policy, GlobalPolicy(pat_creation_disabled=True), user())
    assert code == "globalPATCreationBlocked"


def test_policy_violation_is_forbidden() -> None:
    from tokenwarden.domain.errors import Forbidden

    assert issubclass(PolicyViolation, Forbidden)
