"""Audit entries for the PAT lifecycle: Azure DevOps event names, never a secret."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tokenwarden.bootstrap import Container
from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.errors import Forbidden, InvalidInput
from tokenwarden.domain.principals import User
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.common import OPERATOR, Actor
from tokenwarden.services.directory import InitResult

from .conftest import FakeClock, actor_of


def oldest_first(entries: list[AuditEntry]) -> list[AuditEntry]:
    """Queries answer newest first; these tests read the story in order."""
    assert [e.id for e in entries] == sorted((e.id for e in entries), reverse=True)
    return entries[::-1]


def entries_for(container: Container, target_id: str) -> list[AuditEntry]:
    return oldest_first(container.audit.query(OPERATOR, "acme", AuditQuery(target_id=target_id)))


def all_entries(container: Container) -> list[AuditEntry]:
    return oldest_first(container.audit.query(OPERATOR, "acme", AuditQuery(limit=10_000)))


def test_pat_lifecycle_is_audited_with_azure_devops_names(
    container: Container, bob: User, admin: Actor, clock: FakeClock
) -> None:
    bob_at = actor_of(bob, ip="198.51.100.23")
    issued = container.pats.create(bob_at, org="acme", user=bob.id, display_name="ci", scope="vso.code")
    auth_id = issued.record.authorization_id
    clock.advance(seconds=1)
    container.pats.update(bob_at, auth_id, display_name="ci-2", valid_to=clock.now() + timedelta(days=3))
    clock.advance(seconds=1)
    regenerated = container.pats.regenerate(bob_at, auth_id)
    clock.advance(seconds=1)
    container.pats.revoke(admin, auth_id, reason="leaked")

    found = entries_for(container, auth_id)
    assert [e.event_type for e in found] == [
        "Token.PatCreateEvent",
        "Token.PatUpdateEvent",
        "Token.PatRegenerateEvent",
        "Token.PatRevokeEvent",
    ]
    create, update, _, revoke = found
    assert all(e.target_type == "pat" and e.org_id == issued.record.org_id for e in found)
    assert create.actor_id == bob.id and create.actor_upn == bob.upn and create.ip == "198.51.100.23"
    assert create.details["displayName"] == "ci" and create.details["scope"] == "vso.code"
    assert update.details["before"]["displayName"] == "ci"
    assert update.details["after"]["displayName"] == "ci-2"
    assert revoke.actor_id == admin.user_id
    assert revoke.details["reason"] == "leaked" and revoke.details["revokedBy"] == "admin"
    assert [e.at for e in found] == sorted(e.at for e in found)
    assert found[-1].at == clock.now()

    # Neither secret, nor any hash of them, ever reaches the audit log.
    forbidden = [
        issued.secret,
        regenerated.secret,
        issued.record.secret_hash.hex(),
        regenerated.record.secret_hash.hex(),
    ]
    for entry in all_entries(container):
        text = repr(entry)
        for needle in forbidden:
            assert needle not in text


def test_revoke_many_audits_each_revoked_token(
    container: Container, bob: User, carol: User, admin: Actor
) -> None:
    a = container.pats.create(actor_of(bob), org="acme", user=bob.id, display_name="a", scope="vso.code")
    b = container.pats.create(actor_of(carol), org="acme", user=carol.id, display_name="b", scope="vso.code")
    container.pats.revoke_many(admin, "acme", [a.record.authorization_id, b.record.authorization_id])
    revokes = container.audit.query(admin, "acme", AuditQuery(event_types=("Token.PatRevokeEvent",)))
    assert sorted(e.target_id for e in revokes) == sorted(
        [a.record.authorization_id, b.record.authorization_id]
    )
    for entry in revokes:
        assert a.secret not in repr(entry) and b.secret not in repr(entry)


def test_an_idempotent_revoke_is_audited_once(container: Container, bob: User) -> None:
    issued = container.pats.create(actor_of(bob), org="acme", user=bob.id, display_name="a", scope="vso.code")
    container.pats.revoke(actor_of(bob), issued.record.authorization_id)
    container.pats.revoke(actor_of(bob), issued.record.authorization_id)
    events = [e.event_type for e in entries_for(container, issued.record.authorization_id)]
    assert events.count("Token.PatRevokeEvent") == 1


def test_a_rejected_change_writes_no_audit_entry(container: Container, bob: User) -> None:
    issued = container.pats.create(actor_of(bob), org="acme", user=bob.id, display_name="a", scope="vso.code")
    with pytest.raises(InvalidInput):
        container.pats.update(actor_of(bob), issued.record.authorization_id, scope="vso.nope")
    assert [e.event_type for e in entries_for(container, issued.record.authorization_id)] == [
        "Token.PatCreateEvent"
    ]


def test_initialization_is_audited(container: Container, init: InitResult) -> None:
    types = [e.event_type for e in all_entries(container)]
    assert types[0] == "Organization.Create"
    assert "User.Create" in types and "Organization.MembershipChange" in types
    assert types[-1] == "Token.PatCreateEvent"
    for entry in all_entries(container):
        assert init.token.secret not in repr(entry)


def test_audit_queries_are_for_admins_and_resolve_actor_upns(
    container: Container, bob: User, admin: Actor
) -> None:
    container.pats.create(actor_of(bob), org="acme", user=bob.id, display_name="a", scope="vso.code")
    with pytest.raises(Forbidden):
        container.audit.query(actor_of(bob), "acme", AuditQuery())
    by_bob = container.audit.query(admin, "acme", AuditQuery(actor_id=bob.upn))
    assert [e.event_type for e in by_bob] == ["Token.PatCreateEvent"]
    with pytest.raises(InvalidInput):
        container.audit.query(admin, "acme", AuditQuery(limit=0))
