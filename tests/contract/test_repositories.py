"""The storage ports' contract: every backend must pass every test here unchanged."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.audit_chain import ChainCheckpoint, ChainHead, entry_hash, verify_chain
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.events import EventType, InvalidationEvent
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.principals import (
    IdentitySource,
    Membership,
    Organization,
    RiskLevel,
    RiskState,
    Role,
    User,
    UserStatus,
)
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.repositories import AuditQuery, Database, UnitOfWork

# Microseconds on purpose: every backend must keep them.
T0 = datetime(2026, 11, 22, 1, 28, 52, 502403, tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def make_org(name: str = "acme", created_at: datetime = T0) -> Organization:
    return Organization(id=new_id(), name=name, created_at=created_at)


def make_user(upn: str, status: UserStatus = UserStatus.ACTIVE, created_at: datetime = T0) -> User:
    return User(
        id=new_id(),
        upn=upn,
        display_name=upn.split("@")[0].title(),
        status=status,
        risk_level=RiskLevel.NONE,
        identity_source=IdentitySource.LOCAL,
        created_at=created_at,
    )


def make_token(
    user: User,
    org: Organization,
    *,
    kind: TokenKind = TokenKind.PAT,
    created_at: datetime = T0,
    scopes: tuple[str, ...] = ("vso.code", "vso.build"),
    target_orgs: tuple[str, ...] | None = None,
) -> TokenRecord:
    return TokenRecord(
        authorization_id=new_id(),
        kind=kind,
        user_id=user.id,
        org_id=org.id,
        display_name=f"{kind.value} token",
        scopes=scopes,
        target_orgs=target_orgs,
        secret_hash=secrets.token_bytes(16),
        pepper_id="p1",
        valid_from=created_at,
        valid_to=created_at + timedelta(days=30),
        created_at=created_at,
    )


def make_entry(
    event_type: str = "Token.PatCreateEvent",
    *,
    at: datetime = T0,
    org_id: str | None = "org-1",
    actor_id: str | None = "actor-1",
    target_id: str = "target-1",
) -> AuditEntry:
    return AuditEntry(
        at=at,
        event_type=event_type,
        org_id=org_id,
        actor_id=actor_id,
        actor_upn=f"{actor_id}@acme.test" if actor_id else None,
        target_type="pat",
        target_id=target_id,
        ip="203.0.113.7",
        details={"displayName": "ci", "scope": "vso.code", "nested": {"allOrgs": False, "n": [1, 2]}},
    )


def seed(db: Database) -> tuple[Organization, User]:
    """One committed organization and one member (parents for foreign keys)."""
    org = make_org()
    user = make_user("alice@acme.test")
    with db() as uow:
        uow.orgs.add(org)
        uow.users.add(user)
        uow.users.set_membership(Membership(org.id, user.id, Role.MEMBER))
        uow.commit()
    return org, user


def is_utc(value: datetime | None) -> bool:
    return value is not None and value.tzinfo is not None and value.utcoffset() == timedelta(0)


# --------------------------------------------------------------------------- organizations
def test_org_add_and_get(db: Database) -> None:
    org = make_org("Acme")
    with db() as uow:
        assert uow.orgs.get(org.id) is None
        uow.orgs.add(org)
        uow.commit()
    with db() as uow:
        assert uow.orgs.get(org.id) == org
        assert uow.orgs.get(new_id()) is None


def test_org_by_name_is_case_insensitive_and_keeps_the_spelling(db: Database) -> None:
    org = make_org("Acme-Corp")
    with db() as uow:
        uow.orgs.add(org)
        uow.commit()
    with db() as uow:
        for spelling in ("Acme-Corp", "acme-corp", "ACME-CORP"):
            found = uow.orgs.by_name(spelling)
            assert found == org
            assert found is not None and found.name == "Acme-Corp"
        assert uow.orgs.by_name("acme") is None


def test_org_all_lists_every_org(db: Database) -> None:
    orgs = [make_org("beta"), make_org("Acme"), make_org("charlie")]
    with db() as uow:
        assert uow.orgs.all() == []
        for org in orgs:
            uow.orgs.add(org)
        uow.commit()
    with db() as uow:
        listed = uow.orgs.all()
    assert sorted(listed, key=lambda o: o.id) == sorted(orgs, key=lambda o: o.id)


def test_duplicate_org_name_is_a_conflict_and_the_unit_of_work_survives(db: Database) -> None:
    first, clash, other = make_org("acme"), make_org("ACME"), make_org("beta")
    with db() as uow:
        uow.orgs.add(first)
        with pytest.raises(Conflict):
            uow.orgs.add(clash)
        uow.orgs.add(other)
        uow.commit()
    with db() as uow:
        assert {o.id for o in uow.orgs.all()} == {first.id, other.id}
        assert uow.orgs.get(clash.id) is None


# --------------------------------------------------------------------------- users
def test_user_add_get_and_by_upn_case_insensitive(db: Database) -> None:
    user = make_user("Alice.Smith@Acme.Test")
    with db() as uow:
        uow.users.add(user)
        uow.commit()
    with db() as uow:
        assert uow.users.get(user.id) == user
        for spelling in ("Alice.Smith@Acme.Test", "alice.smith@acme.test", "ALICE.SMITH@ACME.TEST"):
            found = uow.users.by_upn(spelling)
            assert found == user
        assert uow.users.by_upn("alice@acme.test") is None
        assert uow.users.get(new_id()) is None


def test_user_update_changes_every_field(db: Database) -> None:
    user = make_user("alice@acme.test")
    with db() as uow:
        uow.users.add(user)
        uow.commit()
    changed = user.with_changes(
        upn="alice.new@acme.test",
        display_name="Alice New",
        status=UserStatus.DISABLED,
        risk_level=RiskLevel.HIGH,
        identity_source=IdentitySource.EXTERNAL,
    )
    with db() as uow:
        uow.users.update(changed)
        uow.commit()
    with db() as uow:
        assert uow.users.get(user.id) == changed
        assert uow.users.by_upn("ALICE.NEW@acme.test") == changed
        assert uow.users.by_upn("alice@acme.test") is None


def test_user_find_by_org_and_status(db: Database) -> None:
    acme, beta = make_org("acme"), make_org("beta")
    a = make_user("a@acme.test")
    b = make_user("b@acme.test")
    c = make_user("c@beta.test")
    d = make_user("d@nowhere.test", UserStatus.DISABLED)
    with db() as uow:
        uow.orgs.add(acme)
        uow.orgs.add(beta)
        for u in (a, b, c, d):
            uow.users.add(u)
        uow.users.set_membership(Membership(acme.id, a.id, Role.ADMIN))
        uow.users.set_membership(Membership(acme.id, b.id, Role.MEMBER, status=UserStatus.DISABLED))
        uow.users.set_membership(Membership(beta.id, c.id, Role.MEMBER))
        uow.users.set_membership(Membership(beta.id, b.id, Role.MEMBER))  # disabled in acme only
        uow.commit()

    def ids(users: list[User]) -> set[str]:
        return {u.id for u in users}

    with db() as uow:
        assert ids(uow.users.find()) == {a.id, b.id, c.id, d.id}
        assert ids(uow.users.find(org_id=acme.id)) == {a.id, b.id}
        assert ids(uow.users.find(org_id=beta.id)) == {b.id, c.id}
        # Without an organization: the users' own (operator-level) status.
        assert ids(uow.users.find(status=UserStatus.ACTIVE)) == {a.id, b.id, c.id}
        # With one: the membership status there, and only there.
        assert ids(uow.users.find(org_id=acme.id, status=UserStatus.DISABLED)) == {b.id}
        assert uow.users.find(org_id=beta.id, status=UserStatus.DISABLED) == []
        assert len(uow.users.find()) == 4  # a join must not duplicate users


def test_membership_state_and_risk_are_per_org(db: Database) -> None:
    acme, beta = make_org("acme"), make_org("beta")
    user = make_user("u@acme.test")
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    risky = Membership(
        acme.id,
        user.id,
        Role.ADMIN,
        status=UserStatus.DISABLED,
        risk_level=RiskLevel.HIGH,
        risk_state=RiskState.CONFIRMED_COMPROMISED,
        risk_updated_at=at,
    )
    with db() as uow:
        uow.orgs.add(acme)
        uow.orgs.add(beta)
        uow.users.add(user)
        uow.users.set_membership(risky)
        uow.users.set_membership(Membership(beta.id, user.id, Role.MEMBER))
        uow.commit()
    with db() as uow:
        assert uow.users.membership(acme.id, user.id) == risky
        assert uow.users.membership(beta.id, user.id) == Membership(beta.id, user.id, Role.MEMBER)
        assert uow.users.ids_at_risk(acme.id, ["high"]) == [user.id]
        assert uow.users.ids_at_risk(beta.id, ["low", "medium", "high"]) == []
        uow.users.set_membership(risky.with_changes(risk_level=RiskLevel.NONE, status=UserStatus.ACTIVE))
        uow.commit()
    with db() as uow:
        again = uow.users.membership(acme.id, user.id)
        assert again is not None and again.risk_level is RiskLevel.NONE and again.is_active
        assert uow.users.ids_at_risk(acme.id, ["high"]) == []


def test_memberships_set_replace_remove_and_list(db: Database) -> None:
    acme, beta = make_org("acme"), make_org("beta")
    user, other = make_user("alice@acme.test"), make_user("bob@acme.test")
    with db() as uow:
        uow.orgs.add(acme)
        uow.orgs.add(beta)
        uow.users.add(user)
        uow.users.add(other)
        uow.users.set_membership(Membership(acme.id, user.id, Role.MEMBER))
        uow.users.set_membership(Membership(beta.id, user.id, Role.MEMBER))
        uow.users.set_membership(Membership(acme.id, other.id, Role.ADMIN))
        uow.commit()
    with db() as uow:
        assert uow.users.membership(acme.id, user.id) == Membership(acme.id, user.id, Role.MEMBER)
        uow.users.set_membership(Membership(acme.id, user.id, Role.ADMIN))  # replace, not add
        uow.commit()
    with db() as uow:
        assert uow.users.membership(acme.id, user.id) == Membership(acme.id, user.id, Role.ADMIN)
        assert sorted(uow.users.memberships_of(user.id), key=lambda m: m.org_id) == sorted(
            [Membership(acme.id, user.id, Role.ADMIN), Membership(beta.id, user.id, Role.MEMBER)],
            key=lambda m: m.org_id,
        )
        assert uow.users.memberships_of(other.id) == [Membership(acme.id, other.id, Role.ADMIN)]
        assert uow.users.remove_membership(acme.id, user.id) is True
        assert uow.users.remove_membership(acme.id, user.id) is False
        uow.commit()
    with db() as uow:
        assert uow.users.membership(acme.id, user.id) is None
        assert uow.users.memberships_of(user.id) == [Membership(beta.id, user.id, Role.MEMBER)]
        assert uow.users.membership(acme.id, other.id) is not None  # others untouched
        assert uow.users.memberships_of(new_id()) == []


def test_user_count(db: Database) -> None:
    with db() as uow:
        assert uow.users.count() == 0
        for i in range(3):
            uow.users.add(make_user(f"user{i}@acme.test"))
        assert uow.users.count() == 3
        uow.commit()
    with db() as uow:
        assert uow.users.count() == 3


def test_duplicate_upn_is_a_conflict_and_the_unit_of_work_stays_usable(db: Database) -> None:
    alice = make_user("alice@acme.test")
    clash = make_user("ALICE@Acme.Test")
    bob = make_user("bob@acme.test")
    with db() as uow:
        uow.users.add(alice)
        with pytest.raises(Conflict):
            uow.users.add(clash)
        uow.users.add(bob)  # the transaction still works after the conflict
        uow.commit()
    with db() as uow:
        assert uow.users.count() == 2
        assert uow.users.get(alice.id) == alice
        assert uow.users.get(bob.id) == bob
        assert uow.users.get(clash.id) is None


# --------------------------------------------------------------------------- tokens
def test_token_add_get_and_by_hash_round_trip(db: Database) -> None:
    org, user = seed(db)
    scoped = make_token(user, org, target_orgs=(org.id,))
    everywhere = make_token(user, org, scopes=("app_token",), target_orgs=None)
    with db() as uow:
        uow.tokens.add(scoped)
        uow.tokens.add(everywhere)
        uow.commit()
    with db() as uow:
        assert uow.tokens.get(scoped.authorization_id) == scoped
        assert uow.tokens.by_hash(scoped.secret_hash) == scoped
        assert uow.tokens.get(everywhere.authorization_id) == everywhere
        got = uow.tokens.by_hash(everywhere.secret_hash)
        assert got is not None and got.target_orgs is None and got.scopes == ("app_token",)
        assert uow.tokens.get(new_id()) is None
        assert uow.tokens.by_hash(secrets.token_bytes(16)) is None


def test_duplicate_token_hash_is_a_conflict(db: Database) -> None:
    org, user = seed(db)
    first = make_token(user, org)
    clash = make_token(user, org).with_changes(secret_hash=first.secret_hash)
    with db() as uow:
        uow.tokens.add(first)
        with pytest.raises(Conflict):
            uow.tokens.add(clash)
        uow.commit()
    with db() as uow:
        assert uow.tokens.get(first.authorization_id) == first
        assert uow.tokens.get(clash.authorization_id) is None


def test_token_update_persists_every_change(db: Database) -> None:
    org, user = seed(db)
    token = make_token(user, org, target_orgs=(org.id,))
    with db() as uow:
        uow.tokens.add(token)
        uow.commit()
    changed = token.with_changes(
        display_name="renamed",
        scopes=("vso.work_write",),
        target_orgs=None,
        valid_to=T0 + timedelta(days=7, microseconds=1),
        revoked_at=T0 + timedelta(hours=1, microseconds=17),
        revoked_by=user.id,
        revoke_reason="revoked by owner",
    )
    with db() as uow:
        uow.tokens.update(changed)
        uow.commit()
    with db() as uow:
        assert uow.tokens.get(token.authorization_id) == changed
        assert uow.tokens.by_hash(token.secret_hash) == changed


def test_token_update_of_the_secret_hash_moves_the_lookup(db: Database) -> None:
    org, user = seed(db)
    token = make_token(user, org)
    with db() as uow:
        uow.tokens.add(token)
        uow.commit()
    new_hash = secrets.token_bytes(16)
    rotated = token.with_changes(secret_hash=new_hash, pepper_id="p2")
    with db() as uow:
        uow.tokens.update(rotated)
        uow.commit()
    with db() as uow:
        assert uow.tokens.by_hash(token.secret_hash) is None
        assert uow.tokens.by_hash(new_hash) == rotated
        assert uow.tokens.get(token.authorization_id) == rotated


def test_token_rehash_is_a_compare_and_set_on_the_hash_alone(db: Database) -> None:
    org, user = seed(db)
    token = make_token(user, org)
    with db() as uow:
        uow.tokens.add(token)
        uow.commit()
    # A change committed after the re-hasher read the token: the re-hash must not undo it.
    revoked = token.with_changes(revoked_at=T0 + timedelta(hours=1), revoked_by=user.id, revoke_reason="x")
    with db() as uow:
        uow.tokens.update(revoked)
        uow.commit()
    new_hash = secrets.token_bytes(16)
    with db() as uow:
        assert uow.tokens.rehash(token.authorization_id, secrets.token_bytes(16), new_hash, "p2") is False
        assert uow.tokens.rehash(new_id(), token.secret_hash, new_hash, "p2") is False
        assert uow.tokens.rehash(token.authorization_id, token.secret_hash, new_hash, "p2") is True
        uow.commit()
    with db() as uow:
        got = uow.tokens.get(token.authorization_id)
        assert got == revoked.with_changes(secret_hash=new_hash, pepper_id="p2")
        assert uow.tokens.by_hash(token.secret_hash) is None
        assert uow.tokens.by_hash(new_hash) == got
        # The old hash is gone: a second, late re-hash from it does nothing.
        assert (
            uow.tokens.rehash(token.authorization_id, token.secret_hash, secrets.token_bytes(16), "p3")
            is False
        )


def test_list_for_user_filters_by_owner_and_kind(db: Database) -> None:
    org, user = seed(db)
    other = make_user("bob@acme.test")
    with db() as uow:
        uow.users.add(other)
        uow.commit()
    pat1 = make_token(user, org, created_at=T0)
    pat2 = make_token(user, org, created_at=T0 + timedelta(minutes=1))
    session = make_token(user, org, kind=TokenKind.SESSION, created_at=T0 + timedelta(minutes=2))
    foreign = make_token(other, org)
    with db() as uow:
        for t in (pat2, session, foreign, pat1):
            uow.tokens.add(t)
        uow.commit()

    def ids(tokens: list[TokenRecord]) -> set[str]:
        return {t.authorization_id for t in tokens}

    with db() as uow:
        assert ids(uow.tokens.list_for_user(user.id, TokenKind.PAT)) == {
            pat1.authorization_id,
            pat2.authorization_id,
        }
        assert ids(uow.tokens.list_for_user(user.id, TokenKind.SESSION)) == {session.authorization_id}
        assert ids(uow.tokens.list_for_user(user.id)) == {
            pat1.authorization_id,
            pat2.authorization_id,
            session.authorization_id,
        }
        assert uow.tokens.list_for_user(user.id, TokenKind.REFRESH) == []
        assert uow.tokens.list_for_user(other.id) == [foreign]
        assert uow.tokens.list_for_user(new_id()) == []


def test_record_usage_sets_last_use_by_hash_and_never_moves_it_backwards(db: Database) -> None:
    org, user = seed(db)
    a, b = make_token(user, org), make_token(user, org)
    with db() as uow:
        uow.tokens.add(a)
        uow.tokens.add(b)
        uow.commit()
    t1 = T0 + timedelta(minutes=5, microseconds=123)
    with db() as uow:
        uow.tokens.record_usage([(a.secret_hash, t1, "198.51.100.1"), (b.secret_hash, t1, None)])
        uow.commit()
    with db() as uow:
        got_a, got_b = uow.tokens.get(a.authorization_id), uow.tokens.get(b.authorization_id)
        assert got_a is not None and (got_a.last_used_at, got_a.last_used_ip) == (t1, "198.51.100.1")
        assert got_b is not None and (got_b.last_used_at, got_b.last_used_ip) == (t1, None)

    older, newer = t1 - timedelta(seconds=1), t1 + timedelta(seconds=1)
    with db() as uow:
        uow.tokens.record_usage(
            [
                (a.secret_hash, older, "192.0.2.99"),  # late report of an older use: ignored
                (b.secret_hash, newer, "192.0.2.2"),
                (secrets.token_bytes(16), newer, "192.0.2.3"),  # unknown token: ignored, no error
            ]
        )
        uow.tokens.record_usage([])
        uow.commit()
    with db() as uow:
        got_a, got_b = uow.tokens.get(a.authorization_id), uow.tokens.get(b.authorization_id)
        assert got_a is not None and (got_a.last_used_at, got_a.last_used_ip) == (t1, "198.51.100.1")
        assert got_b is not None and (got_b.last_used_at, got_b.last_used_ip) == (newer, "192.0.2.2")
        # Other fields are untouched by usage recording.
        assert got_a.with_changes(last_used_at=None, last_used_ip=None) == a


# --------------------------------------------------------------------------- policies
def test_policy_get_and_save_round_trip(db: Database) -> None:
    org, user = seed(db)
    with db() as uow:
        assert uow.policies.get(org.id) is None
        uow.policies.save(OrgPolicy(org_id=org.id))
        uow.commit()
    with db() as uow:
        assert uow.policies.get(org.id) == OrgPolicy(org_id=org.id)
    strict = OrgPolicy(
        org_id=org.id,
        max_lifetime_days=7,
        restrict_full_scope=True,
        restrict_creation=True,
        creation_allowlist=(user.id, "another-user-id"),
        require_external_identity=True,
        disable_pat_creation=True,
    )
    with db() as uow:
        uow.policies.save(strict)  # replaces the first one
        uow.commit()
    with db() as uow:
        assert uow.policies.get(org.id) == strict
        assert uow.policies.get(new_id()) is None


# --------------------------------------------------------------------------- audit
def test_audit_append_and_query_round_trip_in_id_order(db: Database) -> None:
    entries = [make_entry(at=T0 + timedelta(seconds=i), target_id=f"t{i}") for i in range(5)]
    with db() as uow:
        assert uow.audit.query(AuditQuery()) == []
        for e in entries:
            uow.audit.append(e)
        uow.commit()
    with db() as uow:
        found = uow.audit.query(AuditQuery())
    ids = [e.id for e in found]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [e.target_id for e in found] == [f"t{i}" for i in range(5)]
    assert [replace(e, id=None, chain_seq=None, prev_hash=None, hash=None) for e in found] == entries
    # chained in append order: seq 1..5, each linked to the one before, hashes as the domain says
    assert [e.chain_seq for e in found] == [1, 2, 3, 4, 5]
    assert [e.prev_hash for e in found[1:]] == [e.hash for e in found[:-1]]
    assert all(e.hash == entry_hash(e, e.chain_seq or 0, e.prev_hash or "") for e in found)


def test_audit_chains_are_per_organization_and_continue_across_transactions(db: Database) -> None:
    for org_id in ("o1", "o2", "o1", None, "o1"):
        with db() as uow:
            uow.audit.append(make_entry(org_id=org_id))
            uow.commit()
    with db() as uow:
        heads = {h.chain: h.seq for h in uow.audit.heads()}
        o1 = uow.audit.chain_entries("o1")
        installation = uow.audit.chain_entries("")
    assert heads == {"": 1, "o1": 3, "o2": 1}
    assert [e.chain_seq for e in o1] == [1, 2, 3] and [e.chain_seq for e in installation] == [1]
    report = verify_chain("o1", o1, [], lambda cp: True, expected_head=ChainHead("o1", 3, o1[-1].hash or ""))
    assert report.ok and report.entries == 3


def test_audit_rolled_back_entries_leave_no_trace_in_the_chain(db: Database) -> None:
    with db() as uow:
        uow.audit.append(make_entry(org_id="o1"))
        uow.commit()
    with db() as uow:
        uow.audit.append(make_entry(org_id="o1"))  # never committed
    with db() as uow:
        uow.audit.append(make_entry(org_id="o1"))
        uow.commit()
    with db() as uow:
        assert [e.chain_seq for e in uow.audit.chain_entries("o1")] == [1, 2]
        assert {h.chain: h.seq for h in uow.audit.heads()} == {"o1": 2}


def test_audit_checkpoints_round_trip(db: Database) -> None:
    cps = [
        ChainCheckpoint(
            chain="o1", seq=s, hash=f"{s:064x}", at=T0 + timedelta(minutes=s), kid="k1", signature=f"sig{s}"
        )
        for s in (5, 1, 9)
    ]
    with db() as uow:
        for cp in cps:
            uow.audit.add_checkpoint(cp)
        uow.audit.add_checkpoint(replace(cps[0], chain="o2"))
        uow.commit()
    with db() as uow:
        found = uow.audit.checkpoints("o1")
        ranged = uow.audit.checkpoints("o1", from_seq=2, to_seq=9)
        last = uow.audit.last_checkpoint("o1")
        none = uow.audit.last_checkpoint("o3")
    assert [replace(c, id=None) for c in found] == sorted(cps, key=lambda c: c.seq)
    assert [c.seq for c in ranged] == [5, 9]
    assert last is not None and last.seq == 9 and none is None


def test_audit_query_filters(db: Database) -> None:
    rows = [
        make_entry("Token.PatCreateEvent", at=T0, org_id="o1", actor_id="u1", target_id="p1"),
        make_entry(
            "Token.PatUpdateEvent", at=T0 + timedelta(seconds=1), org_id="o1", actor_id="u2", target_id="p1"
        ),
        make_entry(
            "Token.PatRevokeEvent", at=T0 + timedelta(seconds=2), org_id="o2", actor_id="u1", target_id="p2"
        ),
        make_entry("User.Create", at=T0 + timedelta(seconds=3), org_id=None, actor_id=None, target_id="u9"),
        make_entry(
            "Token.PatRevokeEvent", at=T0 + timedelta(seconds=4), org_id="o1", actor_id="u2", target_id="p3"
        ),
    ]
    with db() as uow:
        for r in rows:
            uow.audit.append(r)
        uow.commit()
    with db() as uow:
        everything = uow.audit.query(AuditQuery())
        ids = [e.id or 0 for e in everything]

        def targets(q: AuditQuery) -> list[str]:
            return [f"{e.event_type}:{e.target_id}" for e in uow.audit.query(q)]

        assert targets(AuditQuery(org_id="o1")) == [
            "Token.PatCreateEvent:p1",
            "Token.PatUpdateEvent:p1",
            "Token.PatRevokeEvent:p3",
        ]
        # since is inclusive, until is exclusive
        assert targets(AuditQuery(since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=3))) == [
            "Token.PatUpdateEvent:p1",
            "Token.PatRevokeEvent:p2",
        ]
        assert targets(AuditQuery(since=T0 + timedelta(seconds=4))) == ["Token.PatRevokeEvent:p3"]
        assert targets(AuditQuery(until=T0 + timedelta(microseconds=1))) == ["Token.PatCreateEvent:p1"]
        # a non-UTC bound means the same instant
        plus2 = timezone(timedelta(hours=2))
        assert targets(AuditQuery(since=(T0 + timedelta(seconds=4)).astimezone(plus2))) == [
            "Token.PatRevokeEvent:p3"
        ]
        assert targets(AuditQuery(actor_id="u1")) == ["Token.PatCreateEvent:p1", "Token.PatRevokeEvent:p2"]
        assert targets(AuditQuery(target_id="p1")) == ["Token.PatCreateEvent:p1", "Token.PatUpdateEvent:p1"]
        assert targets(AuditQuery(event_types=("Token.PatRevokeEvent", "User.Create"))) == [
            "Token.PatRevokeEvent:p2",
            "User.Create:u9",
            "Token.PatRevokeEvent:p3",
        ]
        assert targets(AuditQuery(after_id=ids[2])) == ["User.Create:u9", "Token.PatRevokeEvent:p3"]
        assert targets(AuditQuery(limit=2)) == ["Token.PatCreateEvent:p1", "Token.PatUpdateEvent:p1"]
        assert targets(AuditQuery(after_id=ids[0], limit=1)) == ["Token.PatUpdateEvent:p1"]
        # filters combine with AND
        assert targets(AuditQuery(org_id="o1", actor_id="u2", event_types=("Token.PatRevokeEvent",))) == [
            "Token.PatRevokeEvent:p3"
        ]
        assert targets(AuditQuery(org_id="o2", actor_id="u2")) == []


# --------------------------------------------------------------------------- events
def test_events_append_since_and_latest_seq_in_order(db: Database) -> None:
    with db() as uow:
        assert uow.events.latest_seq() == 0
        assert uow.events.since(0) == []
        uow.events.append(InvalidationEvent(EventType.TOKEN_REVOKED, {"hashes": ["aa", "bb"]}))
        uow.events.append(InvalidationEvent(EventType.USER_CHANGED, {"user_id": "u1"}))
        uow.commit()
    with db() as uow:
        uow.events.append(InvalidationEvent(EventType.RULE_ADDED, {"rule_id": "r1", "org_id": "o1"}))
        uow.commit()
    with db() as uow:
        events = uow.events.since(0)
        latest = uow.events.latest_seq()
        assert [(e.type, e.payload) for e in events] == [
            (EventType.TOKEN_REVOKED, {"hashes": ["aa", "bb"]}),
            (EventType.USER_CHANGED, {"user_id": "u1"}),
            (EventType.RULE_ADDED, {"rule_id": "r1", "org_id": "o1"}),
        ]
        seqs = [e.seq for e in events]
        assert seqs[0] > 0 and seqs == sorted(seqs) and len(set(seqs)) == 3
        assert latest == seqs[-1]
        assert [e.seq for e in uow.events.since(seqs[0])] == seqs[1:]
        assert [e.seq for e in uow.events.since(seqs[0], limit=1)] == [seqs[1]]
        assert [e.seq for e in uow.events.since(0, limit=2)] == seqs[:2]
        assert uow.events.since(latest) == []
        assert all(isinstance(e.type, EventType) for e in events)


# --------------------------------------------------------------------------- rules
def test_rules_add_and_find_by_org(db: Database) -> None:
    acme, beta = make_org("acme"), make_org("beta")
    with db() as uow:
        uow.orgs.add(acme)
        uow.orgs.add(beta)
        uow.commit()
    r1 = RevocationRule(new_id(), acme.id, ("vso.code", "vso.packaging"), T0, T0 + timedelta(seconds=1), "u1")
    r2 = RevocationRule(new_id(), beta.id, ("vso.build",), T0, T0 + timedelta(seconds=2))
    r3 = RevocationRule(new_id(), acme.id, ("app_token",), T0 + timedelta(days=1), T0 + timedelta(seconds=3))
    with db() as uow:
        assert uow.rules.find() == []
        for r in (r1, r2, r3):
            uow.rules.add(r)
        uow.commit()
    with db() as uow:
        assert sorted(uow.rules.find(), key=lambda r: r.created_at) == [r1, r2, r3]
        assert sorted(uow.rules.find(acme.id), key=lambda r: r.created_at) == [r1, r3]
        assert uow.rules.find(beta.id) == [r2]
        assert uow.rules.find(new_id()) == []


# --------------------------------------------------------------------------- transactions
def _write_one_of_everything(uow: UnitOfWork) -> tuple[Organization, User, TokenRecord]:
    org, user = make_org("ghost"), make_user("ghost@acme.test")
    token = make_token(user, org)
    uow.orgs.add(org)
    uow.users.add(user)
    uow.users.set_membership(Membership(org.id, user.id, Role.ADMIN))
    uow.tokens.add(token)
    uow.policies.save(OrgPolicy(org_id=org.id, max_lifetime_days=5))
    uow.audit.append(make_entry(org_id=org.id))
    uow.events.append(InvalidationEvent(EventType.POLICY_CHANGED, {"org_id": org.id}))
    uow.rules.add(RevocationRule(new_id(), org.id, ("vso.code",), T0, T0))
    return org, user, token


def _assert_nothing_of(db: Database, org: Organization, user: User, token: TokenRecord) -> None:
    with db() as uow:
        assert uow.orgs.get(org.id) is None
        assert uow.orgs.by_name(org.name) is None
        assert uow.users.get(user.id) is None
        assert uow.users.by_upn(user.upn) is None
        assert uow.users.membership(org.id, user.id) is None
        assert uow.tokens.get(token.authorization_id) is None
        assert uow.tokens.by_hash(token.secret_hash) is None
        assert uow.policies.get(org.id) is None
        assert uow.audit.query(AuditQuery(org_id=org.id)) == []
        assert uow.events.since(0) == []
        assert uow.events.latest_seq() == 0
        assert uow.rules.find(org.id) == []


def test_leaving_without_commit_leaves_nothing_behind(db: Database) -> None:
    with db() as uow:
        org, user, token = _write_one_of_everything(uow)
        assert uow.tokens.get(token.authorization_id) == token  # visible inside the transaction
    _assert_nothing_of(db, org, user, token)


def test_an_exception_rolls_back_and_propagates(db: Database) -> None:
    written: list[tuple[Organization, User, TokenRecord]] = []

    def fail_midway() -> None:
        with db() as uow:
            written.append(_write_one_of_everything(uow))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_midway()
    _assert_nothing_of(db, *written[0])


def test_work_after_commit_is_rolled_back_on_exit(db: Database) -> None:
    kept, dropped = make_org("kept"), make_org("dropped")
    with db() as uow:
        uow.orgs.add(kept)
        uow.commit()
        uow.orgs.add(dropped)
    with db() as uow:
        assert uow.orgs.get(kept.id) == kept
        assert uow.orgs.get(dropped.id) is None


def test_reader_sees_committed_data(db: Database) -> None:
    org, user = seed(db)
    with db.reader() as uow:
        assert uow.orgs.get(org.id) == org
        assert uow.users.by_upn(user.upn) == user


def test_is_initialized_once_an_org_exists(db: Database) -> None:
    assert db.is_initialized() is False
    assert db.ping() is True
    seed(db)
    assert db.is_initialized() is True


# --------------------------------------------------------------------------- timestamps
def test_timestamps_come_back_as_aware_utc_with_microseconds(db: Database) -> None:
    created = T0 + timedelta(microseconds=1)
    org = make_org(created_at=created)
    user = make_user("alice@acme.test", created_at=created + timedelta(microseconds=1))
    token = make_token(user, org, created_at=created + timedelta(microseconds=2)).with_changes(
        valid_to=created + timedelta(days=3, microseconds=999_999),
        revoked_at=created + timedelta(hours=2, microseconds=5),
    )
    used = created + timedelta(hours=1, microseconds=7)
    rule = RevocationRule(
        new_id(),
        org.id,
        ("vso.code",),
        created + timedelta(microseconds=3),
        created + timedelta(microseconds=4),
    )
    entry = make_entry(at=created + timedelta(microseconds=6))
    with db() as uow:
        uow.orgs.add(org)
        uow.users.add(user)
        uow.tokens.add(token)
        uow.tokens.record_usage([(token.secret_hash, used, None)])
        uow.rules.add(rule)
        uow.audit.append(entry)
        uow.commit()
    with db() as uow:
        got_org, got_user = uow.orgs.get(org.id), uow.users.get(user.id)
        got_token = uow.tokens.get(token.authorization_id)
        (got_rule,) = uow.rules.find(org.id)
        (got_entry,) = uow.audit.query(AuditQuery())
    assert got_org is not None and got_user is not None and got_token is not None
    pairs = [
        (got_org.created_at, org.created_at),
        (got_user.created_at, user.created_at),
        (got_token.valid_from, token.valid_from),
        (got_token.valid_to, token.valid_to),
        (got_token.created_at, token.created_at),
        (got_token.revoked_at, token.revoked_at),
        (got_token.last_used_at, used),
        (got_rule.created_before, rule.created_before),
        (got_rule.created_at, rule.created_at),
        (got_entry.at, entry.at),
    ]
    for got, stored in pairs:
        assert is_utc(got), got
        assert got == stored
        assert got is not None and stored is not None and got.microsecond == stored.microsecond


def test_a_non_utc_timestamp_keeps_its_instant(db: Database) -> None:
    plus5 = timezone(timedelta(hours=5, minutes=30))
    org = make_org(created_at=T0.astimezone(plus5))
    with db() as uow:
        uow.orgs.add(org)
        uow.commit()
    with db() as uow:
        got = uow.orgs.get(org.id)
    assert got is not None and got.created_at == T0
    assert got.created_at.tzinfo is not None


# --------------------------------------------------------------------------- SQL-only guarantees
@pytest.mark.parametrize(
    "statement", ["UPDATE audit_log SET event_type = 'tampered'", "DELETE FROM audit_log"]
)
def test_audit_log_is_append_only_in_the_database(sql_db: SqlDatabase, statement: str) -> None:
    with sql_db() as uow:
        uow.audit.append(make_entry())
        uow.commit()
    with pytest.raises(DBAPIError, match="append-only"), sql_db.engine.begin() as conn:
        conn.execute(text(statement))
    with sql_db() as uow:
        (entry,) = uow.audit.query(AuditQuery())
    assert entry.event_type == "Token.PatCreateEvent"


def test_upgrade_is_idempotent(sql_db: SqlDatabase) -> None:
    org, _ = seed(sql_db)
    sql_db.upgrade()
    with sql_db() as uow:
        assert uow.orgs.get(org.id) == org


def test_update_to_a_taken_upn_is_a_conflict(db: Database) -> None:
    # Regression: memory accepted two users with one UPN, SQL raised a raw IntegrityError.
    alice, bob = make_user("alice@acme.test"), make_user("bob@acme.test")
    with db() as uow:
        uow.users.add(alice)
        uow.users.add(bob)
        uow.commit()
    with db() as uow, pytest.raises(Conflict):
        uow.users.update(bob.with_changes(upn="ALICE@acme.test"))


def test_audit_query_newest_first_pages_with_before_id(db: Database) -> None:
    with db() as uow:
        for i in range(5):
            uow.audit.append(make_entry("User.Create", at=T0 + timedelta(seconds=i), target_id=f"t{i}"))
        uow.commit()
    with db() as uow:
        first = uow.audit.query(AuditQuery(newest_first=True, limit=2))
        assert [e.target_id for e in first] == ["t4", "t3"]
        second = uow.audit.query(AuditQuery(newest_first=True, limit=2, before_id=first[-1].id))
        assert [e.target_id for e in second] == ["t2", "t1"]
        last = uow.audit.query(AuditQuery(newest_first=True, limit=2, before_id=second[-1].id))
        assert [e.target_id for e in last] == ["t0"]
