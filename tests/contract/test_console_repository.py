"""The console's paged queries on every backend (issue 16): filters, counts, order, paging, and
nothing of another organization."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from tests.contract.test_repositories import T0, make_org, make_token, make_user
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.principals import (
    Membership,
    Organization,
    RiskLevel,
    RiskState,
    Role,
    User,
    UserStatus,
)
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.domain.watermarks import SubjectType
from tokenwarden.ports.console import (
    CREATED,
    DORMANT,
    EXPIRED,
    LIVE,
    REVOKED,
    MemberQuery,
    Seek,
    TokenQuery,
    descending,
    sort_key,
)
from tokenwarden.ports.repositories import Database
from tokenwarden.services.console import ConsoleService, TokenPage, Viewer

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

    name = {v: k for k, v in ids.items()}  # type: ignore[attr-defined]

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
    # dormant: no use since then; never used, created before then (not just "never used")
    assert names(state=LIVE, unused_since=NOW) == {"live", "full", "soon"}  # "used": used at NOW
    assert names(state=LIVE, unused_since=T0 + timedelta(minutes=1, microseconds=1)) == {"live", "full"}
    assert names(unused_since=T0) == {"expired"}  # the rest were created at T0 or later
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


# ------------------------------------------------------------------ keyset paging (issue 16)
class _Clock:
    def now(self) -> datetime:
        return NOW


def _many(db: Database) -> tuple[Organization, User, dict[str, TokenRecord]]:
    """41 tokens of acme (and some of globex) with ties on every sort key: creation times,
    ends and last uses repeat, some never used, some revoked, two kinds."""
    acme, globex = make_org("acme"), make_org("globex")
    ann, zed = make_user("ann@acme.test"), make_user("zed@globex.test")
    tokens: dict[str, TokenRecord] = {}
    with db() as uow:
        for o in (acme, globex):
            uow.orgs.add(o)
        for u in (ann, zed):
            uow.users.add(u)
        uow.users.set_membership(Membership(acme.id, ann.id, Role.ADMIN))
        uow.users.set_membership(Membership(globex.id, zed.id, Role.ADMIN))
        for n in range(41):
            created = T0 - timedelta(days=40) + timedelta(hours=n // 3)  # three at each time
            r = make_token(
                ann, acme, created_at=created, kind=TokenKind.SESSION if n % 4 == 0 else TokenKind.PAT
            )
            r = r.with_changes(
                valid_to=NOW + timedelta(days=n % 5),  # ends repeat too (some already over)
                last_used_at=None if n % 3 == 0 else T0 - timedelta(days=n % 7),
                revoked_at=T0 if n % 6 == 5 else None,
            )
            tokens[r.authorization_id] = r
            uow.tokens.add(r)
        for _ in range(5):
            uow.tokens.add(make_token(zed, globex, created_at=T0 - timedelta(days=40)))
        uow.commit()
    return acme, ann, tokens


def _order(records: list[TokenRecord], sort: str) -> list[str]:
    ranked = sorted(records, key=lambda r: (sort_key(r, sort), r.authorization_id), reverse=descending(sort))
    return [r.authorization_id for r in ranked]


def _walk(db: Database, query: TokenQuery, *, backward_from: Seek | None = None) -> list[list[str]]:
    pages: list[list[str]] = []
    q = query
    if backward_from is not None:
        q = replace(query, seek=backward_from)
    for _ in range(100):
        with db.reader() as uow:
            rows, _ = uow.console.tokens(q)
        if not rows:
            break
        pages.append([r.authorization_id for r in rows])
        edge = rows[0] if backward_from is not None else rows[-1]
        seek = Seek(sort_key(edge, query.sort), edge.authorization_id, backward=backward_from is not None)
        q = replace(query, seek=seek)
    return pages


LISTINGS = {
    "newest first": {},
    "newest first, live sessions": {"state": LIVE, "kind": "session"},
    "expiring, soonest first": {"expiring_before": NOW + timedelta(days=3)},
    "dormant, longest unused first": {"unused_since": T0 - timedelta(days=2)},
    "dormant and live": {"unused_since": T0, "state": LIVE},
    "revoked, newest first": {"state": REVOKED},
}


@pytest.mark.parametrize("listing", list(LISTINGS))
def test_keyset_pages_visit_every_token_once_in_order(db: Database, listing: str) -> None:
    acme, _, tokens = _many(db)
    query = TokenQuery(acme.id, NOW, limit=4, **LISTINGS[listing])  # type: ignore[arg-type]
    with db.reader() as uow:
        every, total = uow.console.tokens(replace(query, limit=200))
    assert total == len(every) and 4 < len(every) <= 41  # several pages
    assert {r.org_id for r in every} == {acme.id}
    expected = _order(every, query.sort)
    assert [r.authorization_id for r in every] == expected  # one page: the order itself
    pages = _walk(db, query)
    assert [i for page in pages for i in page] == expected  # each once, in order, none skipped
    assert all(len(page) == 4 for page in pages[:-1])
    # and back from the last row: the same pages, in reverse
    last = tokens[expected[-1]]
    back = _walk(db, query, backward_from=Seek(sort_key(last, query.sort), last.authorization_id, True))
    assert [i for page in reversed(back) for i in page] == expected[:-1]


def test_keyset_counts_run_from_the_page_and_stop_at_the_cap(db: Database) -> None:
    acme, _, tokens = _many(db)
    with db.reader() as uow:
        all_rows, total = uow.console.tokens(TokenQuery(acme.id, NOW, limit=200))
        assert total == 41
        order = [r.authorization_id for r in all_rows]
        tenth = tokens[order[9]]
        after = Seek(tenth.created_at, tenth.authorization_id)
        rows, counted = uow.console.tokens(TokenQuery(acme.id, NOW, limit=5, seek=after))
        assert [r.authorization_id for r in rows] == order[10:15] and counted == 31  # rows 11..41
        _, capped = uow.console.tokens(TokenQuery(acme.id, NOW, limit=5, seek=after, count_up_to=3))
        assert capped == 8  # the page and three more: "at least"
        before = Seek(tenth.created_at, tenth.authorization_id, backward=True)
        rows, counted = uow.console.tokens(TokenQuery(acme.id, NOW, limit=5, seek=before))
        assert [r.authorization_id for r in rows] == order[4:9] and counted == 32  # from the tenth on


def test_a_position_of_another_order_is_harmless(db: Database) -> None:
    """A position taken in one order and read in another (the service refuses such a cursor;
    the repository must still stay in its lane): the rows past it in *that* order, acme's only."""
    acme, _, _ = _many(db)
    with db.reader() as uow:
        newest, _ = uow.console.tokens(TokenQuery(acme.id, NOW, limit=200))
        row = newest[7]
        dormant = TokenQuery(acme.id, NOW, unused_since=NOW, limit=5)
        full, _ = uow.console.tokens(replace(dormant, limit=200))
        seek = Seek(sort_key(row, CREATED), row.authorization_id)
        rows, _ = uow.console.tokens(replace(dormant, seek=seek))
    past = [
        r.authorization_id for r in full if (sort_key(r, DORMANT), r.authorization_id) > (seek.key, seek.id)
    ]
    assert [r.authorization_id for r in rows] == past[:5]
    assert {r.org_id for r in rows} <= {acme.id}


def test_dormant_counts_never_used_tokens_by_their_creation(db: Database) -> None:
    acme, _, tokens = _many(db)
    since = T0 - timedelta(days=3)
    with db.reader() as uow:
        rows, total = uow.console.tokens(TokenQuery(acme.id, NOW, unused_since=since, limit=200))
    expected = {i for i, r in tokens.items() if (r.last_used_at or r.created_at) < since}
    never = {i for i, r in tokens.items() if r.last_used_at is None}
    assert {r.authorization_id for r in rows} == expected and total == len(expected)
    assert never & expected and never - expected == set()  # every never-used one is old enough here
    with db.reader() as uow:  # created after the cut-off and never used: not dormant
        young, _ = uow.console.tokens(
            TokenQuery(acme.id, NOW, unused_since=T0 - timedelta(days=39), limit=200)
        )
    assert {r.authorization_id for r in young} == {
        i for i, r in tokens.items() if (r.last_used_at or r.created_at) < T0 - timedelta(days=39)
    }
    assert [r.authorization_id for r in rows] == _order(rows, DORMANT)  # longest unused first


def _service(db: Database) -> tuple[ConsoleService, Viewer]:
    acme, ann, _ = _many(db)
    return ConsoleService(db, _Clock(), ScopeCatalog.default()), Viewer(ann, acme, Role.ADMIN)


def test_service_cursors_page_through_and_refuse_garbage(db: Database) -> None:
    service, viewer = _service(db)
    seen: list[str] = []
    page, _ = service.tokens(viewer, state="live", limit=4)
    firsts = [page]
    while True:
        seen += [r.authorization_id for r in page.items]
        assert page.offset == len(seen) - len(page.items) and not page.at_least
        if page.next_after is None:
            break
        page, _ = service.tokens(viewer, state="live", limit=4, after=page.next_after)
        firsts.append(page)
    assert len(seen) == len(set(seen)) == page.total and len(firsts) > 2
    # Previous from the last page: the page before it
    assert page.previous_before is not None
    back, _ = service.tokens(viewer, state="live", limit=4, before=page.previous_before)
    assert [r.authorization_id for r in back.items] == [r.authorization_id for r in firsts[-2].items]
    assert back.offset == firsts[-2].offset and back.next_after is not None
    assert isinstance(back, TokenPage) and firsts[0].previous_before is None
    cursor = firsts[0].next_after
    assert cursor is not None
    for bad in (
        "garbage!",
        "x" * 600,
        "eyJ9",  # '{}' cut short
        "W10",  # []
        cursor[:-3],
        cursor + "AAAA",
        "eyJzIjoiY3JlYXRlZCJ9",  # {"s":"created"}: fields missing
    ):
        with pytest.raises(InvalidInput):
            service.tokens(viewer, state="live", limit=4, after=bad)
    # a well-formed cursor whose date sits at the calendar's edge (UTC conversion overflows)
    fields = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    for edge in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1900-01-01T00:00:00+00:00"):
        forged = {
            k: (edge if isinstance(v, str) and v[:2] == "20" and "T" in v else v) for k, v in fields.items()
        }
        assert forged != fields
        token = (
            base64.urlsafe_b64encode(json.dumps(forged, separators=(",", ":")).encode()).decode().rstrip("=")
        )
        with pytest.raises(InvalidInput):
            service.tokens(viewer, state="live", limit=4, after=token)
    with pytest.raises(InvalidInput):  # another filter
        service.tokens(viewer, state="revoked", limit=4, after=cursor)
    with pytest.raises(InvalidInput):  # another order
        service.tokens(viewer, state="live", dormant_days=30, limit=4, after=cursor)
    with pytest.raises(InvalidInput):
        service.tokens(viewer, state="live", limit=4, after=cursor, before=cursor)
