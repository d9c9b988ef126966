"""The repository methods validation and revocation stand on, on every backend (memory, SQLite,
PostgreSQL): watermarks, break-glass counts and tops, live-token counts, per-membership risk and
invitations (issue 10 §6)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect

from tests.contract.conftest import ALL_TABLES
from tests.contract.test_repositories import T0, make_org, make_token, make_user, new_id, seed
from tokenwarden.adapters.memory.store import MemoryDatabase
from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.principals import (
    Invitation,
    Membership,
    Organization,
    RiskLevel,
    Role,
    User,
    UserStatus,
    member_subject,
)
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.domain.watermarks import REFRESH_TOKENS, SIGN_IN_SESSIONS, SubjectType
from tokenwarden.ports.repositories import BreakGlassRequest, Database


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def add_member(db: Database, org: Organization, upn: str, **membership: object) -> User:
    user = make_user(upn)
    with db() as uow:
        uow.users.add(user)
        uow.users.set_membership(Membership(org.id, user.id, Role.MEMBER, **membership))  # type: ignore[arg-type]
        uow.commit()
    return user


# --------------------------------------------------------------------------- the reset between tests
def test_the_reset_list_is_every_table_of_the_migrated_schema(sql_db: SqlDatabase) -> None:
    tables = set(inspect(sql_db.engine).get_table_names())
    assert set(ALL_TABLES) == tables - {"alembic_version"}
    assert len(ALL_TABLES) == len(set(ALL_TABLES))


# --------------------------------------------------------------------------- watermarks
def test_raise_to_is_set_based_over_many_subjects_and_kinds(db: Database) -> None:
    subjects = [f"subject-{i:04d}" for i in range(1203)]  # more than one statement's chunk
    kinds = ["pat", "session", SIGN_IN_SESSIONS]
    with db() as uow:
        uow.watermarks.raise_to(SubjectType.MEMBER, subjects, kinds, at(1))
        uow.commit()
    with db() as uow:
        marks = uow.watermarks.for_type(SubjectType.MEMBER)
        assert set(marks) == set(subjects)
        assert all(m == dict.fromkeys(kinds, at(1)) for m in marks.values())
        assert uow.watermarks.for_type(SubjectType.USER) == {}
        # a second raise over a mix of existing and new subjects and kinds
        uow.watermarks.raise_to(SubjectType.MEMBER, [*subjects[::2], "newcomer"], ["pat", "refresh"], at(2))
        uow.commit()
    with db() as uow:
        marks = uow.watermarks.for_type(SubjectType.MEMBER)
        assert len(marks) == 1204
        assert marks["subject-0000"] == {
            "pat": at(2),
            "session": at(1),
            SIGN_IN_SESSIONS: at(1),
            "refresh": at(2),
        }
        assert marks["subject-0001"] == dict.fromkeys(kinds, at(1))
        assert marks["newcomer"] == {"pat": at(2), "refresh": at(2)}
        assert uow.watermarks.for_subject(SubjectType.MEMBER, "subject-1202") == marks["subject-1202"]


def test_a_watermark_never_moves_down(db: Database) -> None:
    with db() as uow:
        uow.watermarks.raise_to(SubjectType.USER, ["u1", "u2"], ["pat"], at(5))
        uow.commit()
    with db() as uow:
        uow.watermarks.raise_to(SubjectType.USER, ["u1", "u2", "u3"], ["pat", "access"], at(3))
        uow.watermarks.raise_to(SubjectType.USER, ["u2"], ["pat"], at(5))  # equal: unchanged
        uow.commit()
    with db() as uow:
        assert uow.watermarks.for_subject(SubjectType.USER, "u1") == {"pat": at(5), "access": at(3)}
        assert uow.watermarks.for_subject(SubjectType.USER, "u2") == {"pat": at(5), "access": at(3)}
        assert uow.watermarks.for_subject(SubjectType.USER, "u3") == {"pat": at(3), "access": at(3)}
        uow.watermarks.raise_to(SubjectType.USER, ["u1"], ["pat"], at(5) + timedelta(microseconds=1))
        uow.commit()
    with db() as uow:
        assert uow.watermarks.for_subject(SubjectType.USER, "u1")["pat"] == at(5) + timedelta(microseconds=1)


def test_raise_to_with_nothing_to_raise_writes_nothing(db: Database) -> None:
    with db() as uow:
        uow.watermarks.raise_to(SubjectType.ORG, [], ["pat"], at(1))
        uow.watermarks.raise_to(SubjectType.ORG, ["o1"], [], at(1))
        uow.commit()
    with db() as uow:
        assert uow.watermarks.for_type(SubjectType.ORG) == {}
        assert uow.watermarks.for_subject(SubjectType.ORG, "o1") == {}


def test_raise_to_keeps_the_instant_of_a_non_utc_time(db: Database) -> None:
    local = at(1).astimezone(timezone(timedelta(hours=-7)))
    with db() as uow:
        uow.watermarks.raise_to(SubjectType.ORG, ["o1"], ["pat"], local)
        uow.commit()
    with db() as uow:
        mark = uow.watermarks.for_subject(SubjectType.ORG, "o1")["pat"]
        assert mark == at(1) and mark.tzinfo is not None
        uow.watermarks.raise_to(SubjectType.ORG, ["o1"], ["pat"], at(0.5).astimezone(UTC))
        uow.commit()
    with db() as uow:
        assert uow.watermarks.for_subject(SubjectType.ORG, "o1")["pat"] == at(1)


def test_subject_types_do_not_mix(db: Database) -> None:
    with db() as uow:
        uow.watermarks.raise_to(SubjectType.USER, ["same"], ["pat"], at(1))
        uow.watermarks.raise_to(SubjectType.MEMBER, ["same"], ["pat"], at(2))
        uow.watermarks.raise_to(SubjectType.ORG, ["same"], ["pat"], at(3))
        uow.watermarks.raise_to(SubjectType.CLIENT, ["same"], ["pat"], at(4))
        uow.commit()
    with db() as uow:
        assert uow.watermarks.for_subject(SubjectType.USER, "same") == {"pat": at(1)}
        assert uow.watermarks.for_subject(SubjectType.MEMBER, "same") == {"pat": at(2)}
        assert uow.watermarks.for_type(SubjectType.ORG) == {"same": {"pat": at(3)}}
        assert uow.watermarks.for_type(SubjectType.CLIENT) == {"same": {"pat": at(4)}}
        assert uow.watermarks.for_subject(SubjectType.USER, "other") == {}


def test_member_subjects_of_two_uuids_round_trip(db: Database) -> None:
    org_id, user_id = new_id(), new_id()
    subject = member_subject(org_id, user_id)
    assert len(subject) == 73
    marks = {"pat": at(1), SIGN_IN_SESSIONS: at(2), REFRESH_TOKENS: at(3)}
    with db() as uow:
        for kind, when in marks.items():
            uow.watermarks.raise_to(SubjectType.MEMBER, [subject], [kind], when)
        uow.commit()
    with db() as uow:
        assert uow.watermarks.for_subject(SubjectType.MEMBER, subject) == marks
        assert uow.watermarks.for_type(SubjectType.MEMBER) == {subject: marks}
        # the subject of the same user in another organization is another subject
        assert uow.watermarks.for_subject(SubjectType.MEMBER, member_subject(new_id(), user_id)) == {}


def test_raising_without_commit_leaves_no_watermark(db: Database) -> None:
    with db() as uow:
        uow.watermarks.raise_to(SubjectType.USER, ["u1"], ["pat"], at(1))
        uow.commit()
    with db() as uow:
        uow.watermarks.raise_to(SubjectType.USER, ["u1", "u2"], ["pat"], at(9))
    with db() as uow:
        assert uow.watermarks.for_type(SubjectType.USER) == {"u1": {"pat": at(1)}}


def test_a_subject_or_kind_named_twice_in_one_raise_counts_once(sql_db: SqlDatabase) -> None:
    db = sql_db
    with db() as uow:
        uow.watermarks.raise_to(SubjectType.MEMBER, ["m1", "m1"], ["pat", "pat"], at(1))
        uow.commit()
    with db() as uow:
        assert uow.watermarks.for_type(SubjectType.MEMBER) == {"m1": {"pat": at(1)}}


# --------------------------------------------------------------------------- TokenRepository.count_live
def test_token_count_live_filters(db: Database) -> None:
    org, alice = seed(db)
    beta = make_org("beta")
    bob = make_user("bob@acme.test")
    now = at(10)
    with db() as uow:
        uow.orgs.add(beta)
        uow.users.add(bob)
        uow.users.set_membership(Membership(org.id, bob.id, Role.MEMBER))
        uow.users.set_membership(Membership(beta.id, bob.id, Role.MEMBER))
        uow.tokens.add(make_token(alice, org, created_at=at(1)))
        uow.tokens.add(make_token(alice, org, created_at=at(2), kind=TokenKind.SESSION))
        uow.tokens.add(make_token(alice, org, created_at=now))  # not issued before `now`
        uow.tokens.add(replace(make_token(alice, org, created_at=at(1)), revoked_at=at(2)))
        uow.tokens.add(replace(make_token(alice, org, created_at=at(1)), valid_to=now))  # expired at now
        uow.tokens.add(make_token(bob, org, created_at=at(3)))
        uow.tokens.add(make_token(bob, beta, created_at=at(3), kind=TokenKind.REFRESH))
        uow.commit()
    with db() as uow:
        count = uow.tokens.count_live
        assert count(issued_before=now, now=now) == {"pat": 2, "session": 1, "refresh": 1}
        assert count(issued_before=now + timedelta(microseconds=1), now=now) == {
            "pat": 3,
            "session": 1,
            "refresh": 1,
        }
        assert count(user_ids=[alice.id], issued_before=now, now=now) == {"pat": 1, "session": 1}
        assert count(org_id=beta.id, issued_before=now, now=now) == {"refresh": 1}
        assert count(org_id=org.id, kinds=["pat"], issued_before=now, now=now) == {"pat": 2}
        assert count(user_ids=[bob.id], org_id=org.id, issued_before=now, now=now) == {"pat": 1}
        assert count(issued_before=at(2), now=now) == {"pat": 1}
        assert count(user_ids=[], issued_before=now, now=now) == {}
        assert count(kinds=[], issued_before=now, now=now) == {}
        assert count(issued_before=now, now=at(1) + timedelta(days=30)) == {
            "session": 1,
            "pat": 1,
            "refresh": 1,
        }


# --------------------------------------------------------------------------- BreakGlassRepository
def test_break_glass_count_live_with_member_user_and_org_marks(db: Database) -> None:
    org, alice = seed(db)
    beta = make_org("beta")
    bob = add_member(db, org, "bob@acme.test")
    carol = add_member(db, org, "carol@acme.test")
    now = at(10)
    with db() as uow:
        uow.orgs.add(beta)
        uow.users.set_membership(Membership(beta.id, bob.id, Role.MEMBER))
        for kind in (TokenKind.PAT, TokenKind.SESSION, TokenKind.REFRESH, TokenKind.ACCESS):
            for owner in (alice, bob, carol):
                uow.tokens.add(make_token(owner, org, kind=kind, created_at=at(1)))
                uow.tokens.add(make_token(owner, org, kind=kind, created_at=at(5)))
        uow.tokens.add(make_token(bob, beta, created_at=at(1)))  # another organization's
        # alice: member marks in this org; bob: member marks in *beta* only; carol: global ones
        uow.watermarks.raise_to(SubjectType.MEMBER, [member_subject(org.id, alice.id)], ["pat"], at(2))
        uow.watermarks.raise_to(
            SubjectType.MEMBER, [member_subject(org.id, alice.id)], [REFRESH_TOKENS], at(6)
        )
        uow.watermarks.raise_to(
            SubjectType.MEMBER, [member_subject(beta.id, bob.id)], ["pat", "session"], at(9)
        )
        uow.watermarks.raise_to(SubjectType.USER, [carol.id], [SIGN_IN_SESSIONS], at(3))
        uow.watermarks.raise_to(SubjectType.USER, [carol.id], ["access"], at(2))  # below signInSessions
        # stored org marks are not what counts: the marks passed in are
        uow.watermarks.raise_to(SubjectType.ORG, [org.id], ["pat", "session", "refresh", "access"], at(9))
        uow.commit()
    with db() as uow:
        live = uow.break_glass.count_live(org.id, now=now, issued_before=now, org_marks={})
        # alice: pat 1 (5 h), session 0 (both < 6 h), refresh 0, access 2; bob: 2 of each;
        # carol: pat 2, session 1, refresh 1, access 1 (signInSessions at 3 h cuts the 1 h ones)
        assert live == {"pat": 5, "session": 3, "refresh": 3, "access": 5}
        marked = uow.break_glass.count_live(
            org.id, now=now, issued_before=now, org_marks={"pat": at(5), "access": at(6)}
        )
        # an org mark kills what was issued before it (a token issued at the mark survives)
        assert marked == {"pat": 3, "session": 3, "refresh": 3}
        before = uow.break_glass.count_live(org.id, now=now, issued_before=at(5), org_marks={})
        assert before == {"pat": 2, "session": 1, "refresh": 1, "access": 2}
        # in beta, bob's member marks there do apply: his beta token is dead
        assert uow.break_glass.count_live(beta.id, now=now, issued_before=now, org_marks={}) == {}
        later = at(1) + timedelta(days=30)  # the 1 h tokens have expired
        assert uow.break_glass.count_live(org.id, now=later, issued_before=later, org_marks={}) == {
            "pat": 3,
            "session": 2,
            "refresh": 2,
            "access": 3,
        }


def test_break_glass_top_owners_and_clients(db: Database) -> None:
    org, alice = seed(db)
    beta = make_org("beta")
    bob = add_member(db, org, "bob@acme.test")
    carol = add_member(db, org, "carol@acme.test")
    now = at(10)
    with db() as uow:
        uow.orgs.add(beta)
        uow.users.set_membership(Membership(beta.id, carol.id, Role.MEMBER))

        def add(owner: User, client: str | None, n: int, where: Organization = org, **kw: object) -> None:
            for _ in range(n):
                uow.tokens.add(replace(make_token(owner, where, created_at=at(1)), client_id=client, **kw))

        add(alice, "app-b", 3)
        add(bob, "app-a", 2)
        add(bob, None, 1)
        add(carol, "app-c", 1)
        add(carol, "app-c", 5, revoked_at=at(2))  # revoked: not counted
        add(carol, "app-c", 5, valid_to=now)  # expired at now: not counted
        add(carol, "app-z", 9, where=beta)  # another organization's
        uow.commit()
    with db() as uow:
        bg = uow.break_glass
        assert bg.top_owners(org.id, now, 10) == sorted(
            [(alice.id, 3), (bob.id, 3), (carol.id, 1)], key=lambda kv: (-kv[1], kv[0])
        )
        assert bg.top_owners(org.id, now, 1) == [min((alice.id, 3), (bob.id, 3))]
        assert bg.top_clients(org.id, now, 10) == [("app-b", 3), ("app-a", 2), ("app-c", 1)]
        assert bg.top_clients(org.id, now, 2) == [("app-b", 3), ("app-a", 2)]
        assert bg.top_clients(beta.id, now, 10) == [("app-z", 9)]
        assert bg.top_owners(beta.id, now, 10) == [(carol.id, 9)]
        assert bg.top_owners(make_org("empty").id, now, 10) == []


def test_break_glass_requests_round_trip(db: Database) -> None:
    org, alice = seed(db)
    first = BreakGlassRequest(
        id=new_id(),
        org_id=org.id,
        requested_by=alice.id,
        requested_at=at(1),
        expires_at=at(2),
        status="pending",
        reason="leak",
    )
    second = replace(first, id=new_id(), requested_at=at(3), expires_at=at(4), reason=None)
    with db() as uow:
        uow.break_glass.add(second)
        uow.break_glass.add(first)
        uow.commit()
    with db() as uow:
        assert uow.break_glass.get(first.id) == first
        assert uow.break_glass.find(org.id) == [first, second]
        executed = replace(first, status="executed", approved_by=new_id(), executed_at=at(1.5))
        uow.break_glass.update(executed)
        uow.commit()
    with db() as uow:
        assert uow.break_glass.get(first.id) == executed
        assert uow.break_glass.get(new_id()) is None
        assert uow.break_glass.find(make_org("other").id) == []


# --------------------------------------------------------------------------- per-membership risk
def test_ids_at_risk_reads_the_membership_risk_in_that_org_only(db: Database) -> None:
    acme, beta = make_org("acme"), make_org("beta")
    with db() as uow:
        uow.orgs.add(acme)
        uow.orgs.add(beta)
        uow.commit()
    zed = add_member(db, acme, "zed@acme.test", risk_level=RiskLevel.HIGH)
    amy = add_member(db, acme, "Amy@acme.test", risk_level=RiskLevel.MEDIUM)
    low = add_member(db, acme, "low@acme.test", risk_level=RiskLevel.LOW, status=UserStatus.DISABLED)
    calm = add_member(db, acme, "calm@acme.test")
    with db() as uow:
        # the identity's own (global) risk level and another org's membership risk do not count
        uow.users.update(calm.with_changes(risk_level=RiskLevel.HIGH))
        uow.users.set_membership(Membership(beta.id, calm.id, Role.MEMBER, risk_level=RiskLevel.HIGH))
        uow.users.set_membership(Membership(beta.id, zed.id, Role.MEMBER, risk_level=RiskLevel.NONE))
        uow.commit()
    with db() as uow:
        risky = uow.users.ids_at_risk
        assert risky(acme.id, ["high"]) == [zed.id]
        assert risky(acme.id, ["medium", "high"]) == [amy.id, zed.id]  # in UPN order, case-insensitively
        assert risky(acme.id, ["low", "medium", "high"]) == [amy.id, low.id, zed.id]  # disabled too
        assert risky(acme.id, ["none"]) == [calm.id]
        assert risky(acme.id, []) == []
        assert risky(beta.id, ["high"]) == [calm.id]
        uow.users.remove_membership(acme.id, zed.id)
        uow.commit()
    with db() as uow:
        assert uow.users.ids_at_risk(acme.id, ["high"]) == []


# --------------------------------------------------------------------------- invitations
def make_invitation(org: Organization, user: User, created: datetime, **kw: object) -> Invitation:
    invitation = Invitation(
        id=new_id(),
        org_id=org.id,
        user_id=user.id,
        role=Role.MEMBER,
        invited_by=None,
        created_at=created,
        expires_at=created + timedelta(days=7),
    )
    return replace(invitation, **kw)  # type: ignore[arg-type]


def test_invitations_add_get_update_and_find(db: Database) -> None:
    acme, alice = seed(db)
    beta, gamma = make_org("beta"), make_org("gamma")
    bob = make_user("bob@beta.test")
    with db() as uow:
        uow.orgs.add(beta)
        uow.orgs.add(gamma)
        uow.users.add(bob)
        uow.commit()
    to_bob = make_invitation(beta, bob, at(2), invited_by=alice.id)
    to_alice = make_invitation(beta, alice, at(1), role=Role.ADMIN)
    gamma_bob = make_invitation(gamma, bob, at(3))
    with db() as uow:
        for inv in (to_bob, gamma_bob, to_alice):
            uow.invitations.add(inv)
        uow.commit()
    with db() as uow:
        assert uow.invitations.get(to_alice.id) == to_alice
        assert uow.invitations.get(new_id()) is None
        assert uow.invitations.find(org_id=beta.id) == [to_alice, to_bob]  # oldest first
        assert uow.invitations.find(user_id=bob.id) == [to_bob, gamma_bob]
        assert uow.invitations.find(org_id=gamma.id, user_id=bob.id) == [gamma_bob]
        assert uow.invitations.find(org_id=acme.id) == []
        assert uow.invitations.find() == [to_alice, to_bob, gamma_bob]
        accepted = replace(to_bob, status="accepted", decided_at=at(2.5))
        uow.invitations.update(accepted)
        uow.invitations.update(make_invitation(beta, bob, at(4)))  # unknown id: nothing happens
        uow.commit()
    with db() as uow:
        assert uow.invitations.get(to_bob.id) == accepted
        assert uow.invitations.find(org_id=beta.id) == [to_alice, accepted]
        stored = uow.invitations.get(to_bob.id)
        assert stored is not None and stored.decided_at is not None and stored.decided_at.tzinfo is not None


def test_invitations_with_one_instant_are_ordered_by_id(db: Database) -> None:
    org, alice = seed(db)
    many = [make_invitation(org, alice, at(1)) for _ in range(5)]
    with db() as uow:
        for inv in many:
            uow.invitations.add(inv)
        uow.commit()
    with db() as uow:
        assert [i.id for i in uow.invitations.find(org_id=org.id)] == sorted(i.id for i in many)


def test_a_duplicate_invitation_id_is_a_conflict_in_memory() -> None:
    db = MemoryDatabase()
    with db() as uow:
        org, user = make_org(), make_user("alice@acme.test")
        uow.orgs.add(org)
        uow.users.add(user)
        inv = make_invitation(org, user, at(1))
        uow.invitations.add(inv)
        with pytest.raises(Conflict):
            uow.invitations.add(replace(inv, created_at=at(2)))


def test_a_duplicate_invitation_id_is_a_conflict(sql_db: SqlDatabase) -> None:
    db = sql_db
    org, alice = seed(db)
    inv = make_invitation(org, alice, at(1))
    with db() as uow:
        uow.invitations.add(inv)
        uow.commit()
    with db() as uow, pytest.raises(Conflict):
        uow.invitations.add(replace(inv, created_at=at(2)))
