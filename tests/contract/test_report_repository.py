"""ReportRepository on every backend (memory, SQLite, PostgreSQL): what is *live* (unrevoked,
inside its validity, not cut by a watermark or rule, owner active and an active member), the
week's activity, and that nothing of another organization is ever counted (issue 12)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pytest

from tests.contract.test_repositories import T0, make_org, make_token, make_user
from tokenwarden.domain.principals import Membership, Organization, Role, User, UserStatus, member_subject
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.reports import LiveFilter, ReportScope
from tokenwarden.ports.repositories import Database

NOW = T0 + timedelta(days=100)
DAY = timedelta(days=1)
KINDS = (TokenKind.PAT, TokenKind.SERVICE)


def tok(
    user: User,
    org: Organization,
    issued: datetime,
    days: float,
    *,
    kind: TokenKind = TokenKind.PAT,
    scopes: tuple[str, ...] = ("vso.code",),
    revoked_at: datetime | None = None,
    last_used_at: datetime | None = None,
    name: str = "t",
) -> TokenRecord:
    base = make_token(user, org, kind=kind, created_at=issued, scopes=scopes)
    return replace(
        base,
        valid_to=issued + timedelta(days=days),
        revoked_at=revoked_at,
        last_used_at=last_used_at,
        display_name=name,
    )


@dataclass
class World:
    acme: Organization
    beta: Organization
    alice: User
    bob: User
    ids: dict[str, str]
    rules: tuple[RevocationRule, ...]

    def scope(self, kinds: tuple[TokenKind, ...] = KINDS) -> ReportScope:
        return ReportScope(self.acme.id, kinds, self.rules)


@pytest.fixture
def world(db: Database) -> World:
    acme, beta = make_org("acme"), make_org("beta")
    alice, bob, carol = make_user("alice@acme.test"), make_user("bob@acme.test"), make_user("carol@acme.test")
    dave = make_user("dave@acme.test", status=UserStatus.DISABLED)
    erin = make_user("erin@beta.test")
    rule = RevocationRule(new_rule_id(), acme.id, ("vso.packaging",), NOW - DAY, NOW - DAY)
    tokens = {
        "live": tok(alice, acme, NOW - 20 * DAY, 30),  # expires in 10 days
        "long": tok(alice, acme, NOW - DAY, 365),  # created this week
        "full": tok(alice, acme, NOW - 2 * DAY, 30, scopes=("app_token",)),
        "revoked": tok(alice, acme, NOW - 3 * DAY, 30, revoked_at=NOW - DAY),
        "expired": tok(alice, acme, NOW - 33 * DAY, 30),  # expired 3 days ago
        "cut": tok(bob, acme, NOW - 5 * DAY, 365),  # bob's user watermark, 2 days ago
        "after_cut": tok(bob, acme, NOW - DAY, 365),
        "disabled_member": tok(carol, acme, NOW - 30 * DAY, 60),
        "disabled_user": tok(dave, acme, NOW - 30 * DAY, 60),
        "service": tok(alice, acme, NOW - 2 * DAY, 30, kind=TokenKind.SERVICE),
        "session": tok(alice, acme, NOW - 2 * DAY, 30, kind=TokenKind.SESSION),  # not a reported kind
        "ruled": tok(alice, acme, NOW - 4 * DAY, 30, scopes=("vso.packaging",)),
        "dormant": tok(alice, acme, NOW - 80 * DAY, 365, last_used_at=NOW - 70 * DAY),
        "future": tok(alice, acme, NOW + DAY, 30),
        "beta": tok(erin, beta, NOW - DAY, 365, scopes=("app_token",)),
        "beta_alice": tok(alice, beta, NOW - DAY, 365),  # alice's, but issued in beta
    }
    with db() as uow:
        for org in (acme, beta):
            uow.orgs.add(org)
        for user in (alice, bob, carol, dave, erin):
            uow.users.add(user)
        for user in (alice, bob, dave):
            uow.users.set_membership(Membership(acme.id, user.id, Role.MEMBER))
        uow.users.set_membership(Membership(acme.id, carol.id, Role.MEMBER, status=UserStatus.DISABLED))
        uow.users.set_membership(Membership(beta.id, erin.id, Role.MEMBER))
        uow.users.set_membership(Membership(beta.id, alice.id, Role.MEMBER))
        for record in tokens.values():
            uow.tokens.add(record)
        uow.watermarks.raise_to("user", [bob.id], ["pat"], NOW - 2 * DAY)
        # what beta does to alice stays in beta
        uow.watermarks.raise_to("member", [member_subject(beta.id, alice.id)], ["pat"], NOW)
        uow.rules.add(rule)
        uow.commit()
    return World(acme, beta, alice, bob, {k: v.authorization_id for k, v in tokens.items()}, (rule,))


def new_rule_id() -> str:
    import uuid

    return str(uuid.uuid4())


FILTERS = {
    "live": LiveFilter(),
    "expiring": LiveFilter(expires_before=NOW + 30 * DAY),
    "fullScope": LiveFilter(scope="app_token"),
    "longLived": LiveFilter(lifetime_over=90 * DAY),
    "dormant": LiveFilter(unused_since=NOW - 60 * DAY),
}


def test_live_counts_honour_watermarks_rules_memberships_and_tenancy(db: Database, world: World) -> None:
    with db() as uow:
        counts = uow.reports.count_live(world.scope(), NOW, FILTERS)
    assert counts == {"live": 6, "expiring": 3, "fullScope": 1, "longLived": 3, "dormant": 1}


def test_find_live_lists_exactly_the_live_matches(db: Database, world: World) -> None:
    ids = {v: k for k, v in world.ids.items()}
    with db() as uow:
        live = uow.reports.find_live(world.scope(), NOW, LiveFilter())
        long_lived = uow.reports.find_live(world.scope(), NOW, LiveFilter(lifetime_over=90 * DAY))
        either = uow.reports.find_live(
            world.scope(), NOW, LiveFilter(scope="app_token", lifetime_over=90 * DAY, match_any=True)
        )
        first = uow.reports.find_live(world.scope(), NOW, LiveFilter(), limit=2)
    assert {ids[r.authorization_id] for r in live} == {
        "live",
        "long",
        "full",
        "after_cut",
        "service",
        "dormant",
    }
    assert [r.valid_to for r in live] == sorted(r.valid_to for r in live)
    assert ids[long_lived[0].authorization_id] == "dormant"  # soonest validTo first
    assert {ids[r.authorization_id] for r in long_lived} == {"long", "after_cut", "dormant"}
    assert {ids[r.authorization_id] for r in either} == {"long", "after_cut", "dormant", "full"}
    assert [r.authorization_id for r in first] == [r.authorization_id for r in live[:2]]


def test_pat_only_scope_leaves_service_tokens_out(db: Database, world: World) -> None:
    with db() as uow:
        counts = uow.reports.count_live(world.scope((TokenKind.PAT,)), NOW, {"live": LiveFilter()})
    assert counts == {"live": 5}


def test_the_weeks_activity(db: Database, world: World) -> None:
    with db() as uow:
        done = uow.reports.activity(world.scope(), NOW - 7 * DAY, NOW)
    # created: long, full, revoked, cut, after_cut, service, ruled (not the session, not beta's)
    # revoked: directly (revoked), by bob's watermark (cut), by the rule (ruled)
    assert done == {"created": 7, "revoked": 3, "expired": 1}
    with db() as uow:  # the week before: the 'expired' token was still live, nothing happened
        before = uow.reports.activity(world.scope(), NOW - 14 * DAY, NOW - 7 * DAY)
    assert before == {"created": 0, "revoked": 0, "expired": 0}


def test_top_owners_and_expiry_buckets(db: Database, world: World) -> None:
    bounds = [NOW + i * 7 * DAY for i in range(6)]
    with db() as uow:
        top = uow.reports.top_owners(world.scope(), NOW, 10)
        weeks = {
            str(i): LiveFilter(expires_from=lo, expires_before=hi)
            for i, (lo, hi) in enumerate(itertools.pairwise(bounds))
        }
        per_week = list(uow.reports.count_live(world.scope(), NOW, weeks).values())
        one = uow.reports.top_owners(world.scope(), NOW, 1)
    assert top == [(world.alice.id, "alice@acme.test", 5), (world.bob.id, "bob@acme.test", 1)]
    assert one == top[:1]
    # 'live' expires at +10 d (2nd week); 'full' and 'service' exactly at +28 d (5th week: lower bound)
    assert per_week == [0, 1, 0, 0, 2]


def test_org_watermark_and_state_at_an_earlier_instant(db: Database, world: World) -> None:
    with db() as uow:
        uow.watermarks.raise_to("org", [world.acme.id], ["service"], NOW - DAY)
        uow.commit()
    with db() as uow:
        now = uow.reports.count_live(world.scope(), NOW, {"live": LiveFilter()})
        # three days ago 'revoked' was not yet revoked, 'long' and 'after_cut' not yet issued
        earlier = uow.reports.count_live(
            world.scope(), NOW - 3 * DAY + timedelta(hours=1), {"n": LiveFilter()}
        )
    assert now == {"live": 5}  # the service token died with the organization's service mark
    # live, revoked (not yet revoked then) and dormant; 'expired' had just expired, 'full' and
    # 'service' were not issued yet; 'ruled' and 'cut' are judged by today's rule and watermark
    assert earlier == {"n": 3}


def test_lifetime_boundary_is_exact_to_the_microsecond(db: Database, world: World) -> None:
    exact = replace(tok(world.alice, world.acme, NOW - DAY, 90), display_name="exact")
    over = replace(
        exact,
        authorization_id=new_rule_id(),
        secret_hash=b"o" * 16,
        valid_to=exact.valid_to + timedelta(microseconds=1),
    )
    with db() as uow:
        uow.tokens.add(exact)
        uow.tokens.add(over)
        uow.commit()
    with db() as uow:
        found = uow.reports.find_live(world.scope(), NOW, LiveFilter(lifetime_over=90 * DAY))
    assert over.authorization_id in {r.authorization_id for r in found}
    assert exact.authorization_id not in {r.authorization_id for r in found}


def test_empty_filters_and_bounds(db: Database, world: World) -> None:
    with db() as uow:
        assert uow.reports.count_live(world.scope(), NOW, {}) == {}
        # OR within a filter, its kind always ANDed: full, long, after_cut and dormant
        pats_only = LiveFilter(kind=TokenKind.PAT, scope="app_token", lifetime_over=300 * DAY, match_any=True)
        assert uow.reports.count_live(world.scope(), NOW, {"n": pats_only}) == {"n": 4}
        by_kind = {"p": LiveFilter(kind=TokenKind.PAT), "s": LiveFilter(kind=TokenKind.SERVICE)}
        assert uow.reports.count_live(world.scope(), NOW, by_kind) == {"p": 5, "s": 1}
        empty = ReportScope("no-such-org", KINDS)
        assert uow.reports.count_live(empty, NOW, {"live": LiveFilter()}) == {"live": 0}
        assert uow.reports.activity(empty, NOW - 7 * DAY, NOW) == {"created": 0, "revoked": 0, "expired": 0}
        assert uow.reports.top_owners(empty, NOW, 10) == []
