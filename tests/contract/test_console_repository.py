"""The console's paged queries on every backend (issue 16): filters, counts, order, paging, and
nothing of another organization."""

from __future__ import annotations

from datetime import timedelta

from tests.contract.test_repositories import T0, make_org, make_token, make_user
from tokenwarden.domain.principals import Membership, RiskLevel, RiskState, Role, UserStatus
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.domain.watermarks import SubjectType
from tokenwarden.ports.console import EXPIRED, LIVE, REVOKED, MemberQuery, TokenQuery
from tokenwarden.ports.repositories import Database

NOW = T0 + timedelta(days=1)


def _setup(db: Database) -> dict[str, object]:
    acme, globex = make_org("acme"), make_org("globex")
    ann, bob, cat, eve = (make_user(f"{n}@acme.test") for n in ("ann", "bob", "cat", "eve"))
    outsider = make_user("zed@globex.test")
    with db() as uow:
        for o in (acme, globex):
            uow.orgs.add(o)
        for u in (ann, bob, cat, eve, outsider):
            uow.users.add(u)
        uow.users.set_membership(Membership(acme.id, ann.id, Role.ADMIN))
        uow.users.set_membership(Membership(acme.id, bob.id, Role.MEMBER, status=UserStatus.DISABLED))
        uow.users.set_membership(
            Membership(acme.id, cat.id, Role.MEMBER, risk_level=RiskLevel.HIGH, risk_state=RiskState.AT_RISK)
        )
        uow.users.set_membership(Membership(acme.id, eve.id, Role.MEMBER))
        uow.users.set_membership(Membership(globex.id, outsider.id, Role.ADMIN))
        uow.users.set_membership(Membership(globex.id, eve.id, Role.MEMBER))  # eve is in both
        live = make_token(ann, acme, scopes=("vso.code",))
        full = make_token(ann, acme, scopes=("app_token",), created_at=T0 + timedelta(minutes=1))
        soon = make_token(eve, acme, scopes=("vso.build",), created_at=T0 + timedelta(minutes=2))
        soon = soon.with_changes(valid_to=NOW + timedelta(days=3))
        revoked = make_token(bob, acme, created_at=T0 + timedelta(minutes=3)).with_changes(revoked_at=T0)
        expired = make_token(cat, acme, created_at=T0 - timedelta(days=40))
        cut = make_token(cat, acme, kind=TokenKind.SESSION, created_at=T0 + timedelta(minutes=4))
        used = make_token(eve, acme, created_at=T0 + timedelta(minutes=5)).with_changes(last_used_at=NOW)
        theirs = make_token(outsider, globex)
        for r in (live, full, soon, revoked, expired, cut, used, theirs):
            uow.tokens.add(r)
        # every session of cat's issued until now is cut in acme (a watermark, no revoked_at)
        uow.watermarks.raise_to(SubjectType.USER.value, [cat.id], ["session"], NOW)
        uow.commit()
    return {
        "acme": acme,
        "globex": globex,
        "ann": ann,
        "eve": eve,
        "ids": {
            "live": live.authorization_id,
            "full": full.authorization_id,
            "soon": soon.authorization_id,
            "revoked": revoked.authorization_id,
            "expired": expired.authorization_id,
            "cut": cut.authorization_id,
            "used": used.authorization_id,
            "theirs": theirs.authorization_id,
        },
    }


def test_members_filter_page_and_stay_in_their_organization(db: Database) -> None:
    s = _setup(db)
    acme = s["acme"].id  # type: ignore[attr-defined]
    with db.reader() as uow:
        rows, total = uow.console.members(MemberQuery(acme))
        assert total == 4 and [u.upn for u, _ in rows] == [
            "ann@acme.test",
            "bob@acme.test",
            "cat@acme.test",
            "eve@acme.test",
        ]
        assert all(m.org_id == acme for _, m in rows)
        assert [u.upn for u, _ in uow.console.members(MemberQuery(acme, text="CAT"))[0]] == ["cat@acme.test"]
        assert [u.upn for u, _ in uow.console.members(MemberQuery(acme, status="disabled"))[0]] == [
            "bob@acme.test"
        ]
        assert [u.upn for u, _ in uow.console.members(MemberQuery(acme, role="admin"))[0]] == [
            "ann@acme.test"
        ]
        assert [u.upn for u, _ in uow.console.members(MemberQuery(acme, risk="any"))[0]] == ["cat@acme.test"]
        assert uow.console.members(MemberQuery(acme, risk="low")) == ([], 0)
        page, total = uow.console.members(MemberQuery(acme, offset=2, limit=1))
        assert total == 4 and [u.upn for u, _ in page] == ["cat@acme.test"]
        assert uow.console.members(MemberQuery(acme, text="zed"))[1] == 0  # not acme's
        assert uow.console.members(MemberQuery(acme, text="100%_"))[1] == 0  # LIKE wildcards are text


def test_tokens_filter_by_state_scope_owner_and_time(db: Database) -> None:
    s = _setup(db)
    acme, ids = s["acme"].id, s["ids"]  # type: ignore[attr-defined]

    def found(**kw: object) -> set[str]:
        with db.reader() as uow:
            rows, total = uow.console.tokens(TokenQuery(acme, NOW, limit=200, **kw))  # type: ignore[arg-type]
        assert total == len(rows)
        return {r.authorization_id for r in rows}

    name = {v: k for k, v in ids.items()}  # type: ignore[union-attr]

    def names(**kw: object) -> set[str]:
        return {name[i] for i in found(**kw)}

    assert names() == {"live", "full", "soon", "revoked", "expired", "cut", "used"}  # not globex's
    assert names(state=LIVE) == {"live", "full", "soon", "used"}
    assert names(state=REVOKED) == {"revoked", "cut"}
    assert names(state=EXPIRED) == {"expired"}
    assert names(full_scope=True) == {"full"}
    assert names(scope="vso.build") == {"soon", "revoked", "expired", "cut", "used"}
    assert names(owner_id=s["eve"].id) == {"soon", "used"}  # type: ignore[attr-defined]
    assert names(expiring_before=NOW + timedelta(days=7)) == {"soon"}
    assert names(state=LIVE, unused_since=NOW - timedelta(days=1)) == {"live", "full", "soon"}
    with db.reader() as uow:
        first, total = uow.console.tokens(TokenQuery(acme, NOW, limit=2))
    assert total == 7 and [name[r.authorization_id] for r in first] == ["used", "cut"]  # newest first
    with db.reader() as uow:
        _, capped = uow.console.tokens(TokenQuery(acme, NOW, limit=2, count_up_to=1))
        soonest, _ = uow.console.tokens(TokenQuery(acme, NOW, expiring_before=NOW + timedelta(days=365)))
    assert capped == 3  # counted no further than the page and one more: "at least 3"
    assert name[soonest[0].authorization_id] == "soon"  # expiring ones: soonest first


def test_dashboard_counts_one_organization(db: Database) -> None:
    s = _setup(db)
    acme = s["acme"].id  # type: ignore[attr-defined]
    with db.reader() as uow:
        d = uow.console.dashboard(acme, NOW, NOW - timedelta(days=30))
    assert sum(d.expiring_per_week) == 4 and d.expiring_per_week[0] == 1  # "soon" ends within a week
    assert d.live_by_scope == {"vso.code": 2, "vso.build": 2, "app_token": 1}
    assert d.revoked_per_day == {T0.strftime("%Y-%m-%d"): 1}
    assert d.open_alerts_by_level == {}
