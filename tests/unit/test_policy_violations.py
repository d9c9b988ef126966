"""Policy violations of existing tokens (issue 12): the pure domain judgement and the service
over the in-memory store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.conftest import FakeClock, actor_of
from tokenwarden.bootstrap import Container
from tokenwarden.domain.errors import Forbidden
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.policy_violations import describe_days, violations
from tokenwarden.domain.principals import Role, User
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.services.common import OPERATOR, Actor
from tokenwarden.services.directory import InitResult

T = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def record(days: float, scopes: tuple[str, ...] = ("vso.code",), **changes: object) -> TokenRecord:
    base = TokenRecord(
        authorization_id="00000000-0000-0000-0000-000000000001",
        kind=TokenKind.PAT,
        user_id="u",
        org_id="o",
        display_name="ci",
        scopes=scopes,
        target_orgs=("o",),
        secret_hash=b"h" * 16,
        pepper_id="p",
        valid_from=T,
        valid_to=T + timedelta(days=days),
        created_at=T,
    )
    return base.with_changes(**changes)


def test_lifetime_beyond_the_maximum_names_both_and_the_fix() -> None:
    found = violations(OrgPolicy("o", max_lifetime_days=90), record(365))
    assert len(found) == 1
    v = found[0]
    assert v.code == "lifetime"
    assert v.message == "lifetime 365 days exceeds the organization's maximum of 90 days"
    assert v.fix == "validTo shortened to 2027-03-01T09:30:00Z"


def test_a_token_within_the_policy_breaks_nothing() -> None:
    assert violations(OrgPolicy("o", max_lifetime_days=90), record(30)) == []
    assert violations(OrgPolicy("o", max_lifetime_days=90), record(90)) == []  # exactly the maximum


def test_full_scope_only_when_restricted() -> None:
    token = record(30, scopes=("app_token",))
    assert violations(OrgPolicy("o"), token) == []
    [v] = violations(OrgPolicy("o", restrict_full_scope=True), token)
    assert (v.code, v.fix) == ("fullScope", "revoked (full-scope tokens are not allowed)")
    both = violations(OrgPolicy("o", max_lifetime_days=7, restrict_full_scope=True), token)
    assert [x.code for x in both] == ["lifetime", "fullScope"]


def test_only_live_pats_count() -> None:
    policy = OrgPolicy("o", max_lifetime_days=7, restrict_full_scope=True)
    assert violations(policy, record(365, kind=TokenKind.SERVICE)) == []
    assert violations(policy, record(365, revoked_at=T + timedelta(days=1))) == []
    assert violations(policy, record(365), now=T + timedelta(days=366)) == []  # expired
    assert violations(policy, record(365), now=T - timedelta(days=1)) == []  # not yet valid
    assert len(violations(policy, record(365), now=T + timedelta(days=1))) == 1


def test_a_span_just_over_the_maximum_never_reads_as_equal_to_it() -> None:
    assert describe_days(timedelta(days=365)) == "365 days"
    assert describe_days(timedelta(days=1)) == "1 day"
    assert describe_days(timedelta(days=90, hours=1, minutes=30)) == "90 days 1:30:00"
    tiny = timedelta(days=90, microseconds=300)
    assert describe_days(tiny) == "90 days"  # rounded, fine on its own
    assert describe_days(tiny, beyond=timedelta(days=90)) == "90 days 0:00:00.000300"


# ---------------------------------------------------------------------- the service


def pat(container: Container, upn: str, days: int, scope: str = "vso.code", name: str = "t") -> str:
    now = container.clock.now()
    issued = container.pats.create(
        OPERATOR, org="acme", user=upn, display_name=name, scope=scope, valid_to=now + timedelta(days=days)
    )
    return issued.record.authorization_id


def test_service_lists_the_tokens_a_tightened_policy_catches(
    container: Container, admin: Actor, bob: User, clock: FakeClock
) -> None:
    long_id = pat(container, "bob@acme.test", 365, name="long")
    pat(container, "bob@acme.test", 30, name="short")
    assert container.policy_check.violations(admin, "acme") == []  # the default maximum is 365
    container.policies.update(OPERATOR, "acme", max_lifetime_days=90)
    found = container.policy_check.violations(admin, "acme")
    assert [f.token.authorization_id for f in found] == [long_id]
    assert found[0].owner == "bob@acme.test"
    assert [v.code for v in found[0].violations] == ["lifetime"]


def test_a_watermark_killed_token_is_no_violation(
    container: Container, admin: Actor, bob: User, clock: FakeClock
) -> None:
    pat(container, "bob@acme.test", 365)
    container.policies.update(OPERATOR, "acme", max_lifetime_days=90)
    assert len(container.policy_check.violations(admin, "acme")) == 1
    clock.advance(seconds=1)
    container.revocation.revoke_user(
        admin, "acme", "bob@acme.test"
    )  # a member watermark, revoked_at stays NULL
    assert container.policy_check.violations(admin, "acme") == []


def test_members_and_other_organizations_admins_are_refused(
    container: Container, init: InitResult, bob: User
) -> None:
    other = container.directory.add_org("beta", "boss@beta.test")
    with pytest.raises(Forbidden):
        container.policy_check.violations(actor_of(other.admin), "acme")
    with pytest.raises(Forbidden):
        container.policy_check.violations(actor_of(bob), "acme")
    container.directory.set_role(OPERATOR, "acme", "bob@acme.test", Role.ADMIN)
    assert container.policy_check.violations(actor_of(bob), "acme") == []
