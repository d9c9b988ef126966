"""Policy enforcement on existing tokens: told now, changed when the grace ends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.conftest import FakeClock, actor_of
from tokenwarden.bootstrap import Container
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import Forbidden, InvalidInput, InvalidToken
from tokenwarden.domain.principals import User
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.ports.lifecycle import OutboxMessage
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.common import OPERATOR, Actor
from tokenwarden.services.directory import InitResult
from tokenwarden.services.job_runner import JobContext
from tokenwarden.services.pats import IssuedPat
from tokenwarden.services.policy_enforcement import PolicyEnforcementJob


@pytest.fixture
def job(container: Container, clock: FakeClock, init: InitResult) -> PolicyEnforcementJob:
    container.pats.revoke(OPERATOR, init.token.record.authorization_id)  # only the test's tokens count
    return PolicyEnforcementJob(container.uow, clock, container.catalog)


def issue(container: Container, user: User, scope: str, days: int, name: str = "t") -> IssuedPat:
    return container.pats.create(
        actor_of(user),
        org="acme",
        user=user.id,
        display_name=name,
        scope=scope,
        lifetime=timedelta(days=days),
    )


def get(container: Container, auth_id: str) -> TokenRecord:
    with container.uow() as uow:
        found = uow.tokens.get(auth_id)
    assert found is not None
    return found


def outbox(container: Container, template: str) -> list[OutboxMessage]:
    with container.uow() as uow:
        return [m for m in uow.outbox.find(limit=1000) if m.template == template]


def audited(container: Container, event: AuditEventType) -> list[dict[str, object]]:
    entries = container.audit.query(OPERATOR, "acme", AuditQuery(event_types=(event.value,)))
    return [{"target": e.target_id, "actor": e.actor_upn, **e.details} for e in entries]


@pytest.fixture
def tokens(container: Container, bob: User, carol: User, job: PolicyEnforcementJob) -> tuple[IssuedPat, ...]:
    long = issue(container, bob, "vso.code", 300, "long")
    full = issue(container, carol, "app_token", 30, "full")
    fine = issue(container, bob, "vso.code", 60, "fine")
    container.token_care.set_contact(OPERATOR, carol.upn, "carol@example.org", None)
    container.policies.update(OPERATOR, "acme", max_lifetime_days=90, restrict_full_scope=True)
    return long, full, fine


def test_enforce_with_grace_tells_owners_then_shortens_and_revokes_when_the_grace_ends(
    container: Container,
    clock: FakeClock,
    admin: Actor,
    job: PolicyEnforcementJob,
    tokens: tuple[IssuedPat, ...],
) -> None:
    long, full, fine = tokens
    start = clock.now()
    e = container.enforcement.enforce(admin, "acme", 14)
    assert e.status == "pending" and e.counts == {"tokens": 2}
    assert e.grace_until == start + timedelta(days=14)
    told = outbox(container, "policy-violation")
    by_dest = {m.destination: m.payload["tokens"][0] for m in told}
    assert set(by_dest) == {"bob@acme.test", "carol@example.org"}  # owner email, or the UPN
    assert by_dest["bob@acme.test"]["id"] == long.record.authorization_id
    assert by_dest["bob@acme.test"]["action"] == (
        f"validTo will be shortened to {iso_z(long.record.valid_from + timedelta(days=90))}"
    )
    assert by_dest["bob@acme.test"]["graceUntil"] == iso_z(e.grace_until)
    assert by_dest["bob@acme.test"]["violations"]
    assert by_dest["carol@example.org"]["action"] == "will be revoked"
    [enforce_audit] = audited(container, AuditEventType.POLICY_ENFORCE)
    assert enforce_audit["graceDays"] == 14 and enforce_audit["tokens"] == 2

    clock.advance(days=13)
    assert job.run(JobContext("r1", None, "manual"))["enforcements"] == 0  # still inside the grace
    assert get(container, long.record.authorization_id).valid_to == long.record.valid_to

    clock.advance(days=1)
    counts = job.run(JobContext("r2", None, "manual"))
    assert counts == {"enforcements": 1, "shortened": 1, "revoked": 1, "unchanged": 0}
    assert get(container, long.record.authorization_id).valid_to == long.record.valid_from + timedelta(
        days=90
    )
    assert get(container, fine.record.authorization_id) == fine.record
    dead = get(container, full.record.authorization_id)
    assert dead.revoked_by == "system" and dead.revoke_reason == "policy"
    with pytest.raises(InvalidToken):
        container.validator.validate(full.secret)
    container.validator.validate(long.secret)  # shortened, still valid for now
    [update] = audited(container, AuditEventType.PAT_UPDATE)
    assert update["reason"] == "policy" and update["actor"] == "tokenwarden-system"
    [revoke] = audited(container, AuditEventType.PAT_SYSTEM_REVOKE)
    assert revoke["target"] == full.record.authorization_id and revoke["reason"] == "policy"
    assert {m.destination for m in outbox(container, "policy-enforced")} == {
        "bob@acme.test",
        "carol@example.org",
    }
    [applied] = container.enforcement.enforcements(admin, "acme")
    assert applied.status == "applied" and applied.counts["shortened"] == 1
    assert job.run(JobContext("r3", None, "manual"))["enforcements"] == 0  # applied once


def test_a_policy_relaxed_before_the_deadline_changes_nothing(
    container: Container,
    clock: FakeClock,
    admin: Actor,
    job: PolicyEnforcementJob,
    tokens: tuple[IssuedPat, ...],
) -> None:
    long, full, _ = tokens
    container.enforcement.enforce(admin, "acme", 7)
    container.policies.update(admin, "acme", max_lifetime_days=365, restrict_full_scope=False)
    clock.advance(days=8)
    counts = job.run(JobContext("r1", None, "manual"))
    assert counts == {"enforcements": 1, "shortened": 0, "revoked": 0, "unchanged": 2}
    assert get(container, long.record.authorization_id) == long.record
    assert get(container, full.record.authorization_id).revoked_at is None
    assert outbox(container, "policy-enforced") == []


def test_grace_zero_applies_at_once_through_the_same_code(
    container: Container, clock: FakeClock, admin: Actor, tokens: tuple[IssuedPat, ...]
) -> None:
    long, full, _ = tokens
    e = container.enforcement.enforce(admin, "acme", 0)
    assert e.status == "applied" and e.counts["revoked"] == 1 and e.counts["shortened"] == 1
    assert get(container, full.record.authorization_id).revoked_at is not None
    assert get(container, long.record.authorization_id).valid_to == long.record.valid_from + timedelta(
        days=90
    )


def test_only_admins_of_the_org_and_a_sane_grace(
    container: Container, admin: Actor, bob: User, tokens: tuple[IssuedPat, ...]
) -> None:
    with pytest.raises(Forbidden):
        container.enforcement.enforce(actor_of(bob), "acme", 7)
    other = container.directory.add_org("globex", "admin@globex.test")
    with pytest.raises(Forbidden):
        container.enforcement.enforce(actor_of(other.admin), "acme", 7)
    for bad in (-1, 91, 1000):
        with pytest.raises(InvalidInput) as err:
            container.enforcement.enforce(admin, "acme", bad)
        assert err.value.code == "invalidGrace"
    assert container.enforcement.enforcements(admin, "acme") == []
