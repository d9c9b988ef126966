"""BreakGlassRepository.count_live on every backend: live means unrevoked, unexpired and not
dead by the owner's user watermarks or the organization marks passed in (issue 10)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.contract.test_repositories import T0, make_token, make_user, seed
from tokenwarden.domain.principals import Membership, Role
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.ports.repositories import Database


def test_count_live_excludes_watermark_dead_tokens(db: Database) -> None:
    org, alice = seed(db)
    bob = make_user("bob@acme.test")
    now = T0 + timedelta(hours=10)
    with db() as uow:
        uow.users.add(bob)
        uow.users.set_membership(Membership(org.id, bob.id, Role.MEMBER))
        at = lambda h: T0 + timedelta(hours=h)  # noqa: E731
        uow.tokens.add(make_token(alice, org, created_at=at(1)))  # dead: alice's pat mark at 2 h
        uow.tokens.add(make_token(alice, org, created_at=at(3)))  # live
        uow.tokens.add(make_token(alice, org, kind=TokenKind.SESSION, created_at=at(1)))  # signInSessions
        uow.tokens.add(make_token(alice, org, kind=TokenKind.REFRESH, created_at=at(5)))  # live
        uow.tokens.add(make_token(bob, org, created_at=at(1)))  # live unless the org mark applies
        uow.tokens.add(replace(make_token(bob, org, created_at=at(1)), revoked_at=at(2)))  # revoked
        uow.tokens.add(make_token(bob, org, created_at=T0 - timedelta(days=40)))  # expired
        uow.watermarks.raise_to("user", [alice.id], ["pat"], at(2))
        uow.watermarks.raise_to("user", [alice.id], ["signInSessions"], at(4))
        uow.commit()
    with db() as uow:
        live = uow.break_glass.count_live(org.id, now=now, issued_before=now, org_marks={})
        assert live == {"pat": 2, "refresh": 1}
        marked = uow.break_glass.count_live(org.id, now=now, issued_before=now, org_marks={"pat": at(2)})
        assert marked == {"pat": 1, "refresh": 1}
        before = uow.break_glass.count_live(org.id, now=now, issued_before=at(4), org_marks={})
        assert before == {"pat": 2}
