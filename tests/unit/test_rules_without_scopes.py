"""Revocation rules without scopes: "every token created before a date" (issue 10)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tokenwarden.domain.revocation import RevocationRule, RuleIndex
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import TokenKind

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CATALOG = ScopeCatalog.default()


def rule(org: str = "o1", scopes: tuple[str, ...] = (), **kw: object) -> RevocationRule:
    return RevocationRule(
        id=str(uuid.uuid4()),
        org_id=org,
        scopes=scopes,
        created_before=T0,
        created_at=T0,
        **kw,  # type: ignore[arg-type]
    )


def revokes(index: RuleIndex, scopes: tuple[str, ...], issued: datetime, **kw: object) -> bool:
    kind = kw.get("kind", TokenKind.PAT)
    user = kw.get("user", "u1")
    orgs = kw.get("orgs", ("o1",))
    return index.revokes(orgs, scopes, kind, user, issued.timestamp())  # type: ignore[arg-type]


def test_a_rule_without_scopes_cuts_every_scope_and_even_scopeless_tokens() -> None:
    index = RuleIndex.build([rule()], CATALOG)
    before, after = T0 - timedelta(seconds=1), T0 + timedelta(seconds=1)
    for scopes in (("vso.code",), ("app_token",), ("vso.work", "vso.packaging"), ()):
        assert revokes(index, scopes, before)
        assert not revokes(index, scopes, after)
    assert not revokes(index, ("vso.code",), before, orgs=("o2",))  # its organization only
    assert index.size == 1 and not index.plain  # one entry per org, not one per scope
    assert rule().catches(("app_token",), TokenKind.PAT, "u1", before, CATALOG)


def test_a_rule_without_scopes_can_be_restricted_to_kinds_users_and_a_range() -> None:
    r = rule(kinds=(TokenKind.SESSION,), user_ids=("u1",), created_after=T0 - timedelta(days=1))
    index = RuleIndex.build([r], CATALOG)
    inside = T0 - timedelta(hours=1)
    assert revokes(index, ("vso.code",), inside, kind=TokenKind.SESSION)
    assert not revokes(index, ("vso.code",), inside, kind=TokenKind.PAT)
    assert not revokes(index, ("vso.code",), inside, kind=TokenKind.SESSION, user="u2")
    assert not revokes(index, ("vso.code",), T0 - timedelta(days=2), kind=TokenKind.SESSION)
    for args in ((("vso.code",), TokenKind.SESSION, "u1", inside), ((), TokenKind.SESSION, "u1", inside)):
        assert r.catches(*args, CATALOG)  # type: ignore[arg-type]


def test_scoped_and_unscoped_rules_combine_and_the_latest_cutoff_wins() -> None:
    later = RevocationRule(
        id="r2", org_id="o1", scopes=(), created_before=T0 + timedelta(days=1), created_at=T0
    )
    index = RuleIndex.build([rule(scopes=("vso.code",)), later, rule()], CATALOG)
    assert revokes(index, ("vso.work",), T0 + timedelta(hours=1))
    assert not revokes(index, ("vso.work",), T0 + timedelta(days=2))
    assert index.any_plain == {"o1": (T0 + timedelta(days=1)).timestamp()}
