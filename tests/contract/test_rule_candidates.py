"""A rule's (and an offboarding's) candidates: the live tokens of an organization, narrowed by
owner and capped by ``limit``, the same on every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.contract.test_repositories import T0, make_token, make_user, seed
from tokenwarden.domain.principals import Membership, Role
from tokenwarden.ports.repositories import Database


def test_live_tokens_narrowed_by_owner_and_capped_by_limit(db: Database) -> None:
    org, alice = seed(db)
    bob = make_user("bob@acme.test")
    now = T0 + timedelta(hours=1)
    with db() as uow:
        uow.users.add(bob)
        uow.users.set_membership(Membership(org.id, bob.id, Role.MEMBER))
        mine = [make_token(alice, org) for _ in range(5)]
        for token in mine:
            uow.tokens.add(token)
        uow.tokens.add(make_token(bob, org))
        uow.tokens.add(replace(make_token(alice, org), revoked_at=T0, revoked_by="x"))
        uow.tokens.add(make_token(alice, org, created_at=now))  # not issued before ``now``
        uow.commit()
    with db() as uow:
        found = uow.rules.live_tokens(org.id, issued_before=now, now=now, user_ids=[alice.id])
        assert {t.authorization_id for t in found} == {t.authorization_id for t in mine}
        capped = uow.rules.live_tokens(org.id, issued_before=now, now=now, user_ids=[alice.id], limit=3)
        assert len(capped) == 3 and {t.authorization_id for t in capped} <= {t.authorization_id for t in mine}
        assert len(uow.rules.live_tokens(org.id, issued_before=now, now=now, limit=100)) == 6
