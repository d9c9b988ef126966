"""What the admin console reads (issue 16): paged members and tokens of one organization, a
member's page, each in the state that organization sees. Administrators see their
organization; a member sees only their own tokens. Actions go through the existing services
(revocation, directory, sessions), so they are authorized, audited and propagated as
everywhere else."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final, Generic, TypeVar

from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Forbidden, InvalidInput
from tokenwarden.domain.principals import Membership, Organization, Role, User
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.console import TOKEN_STATES, MemberQuery, Seek, TokenQuery, sort_key
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.common import Actor, get_org, member_of, reading, require_member
from tokenwarden.services.effective import EffectiveView

PAGE_SIZE: Final = 50
COUNT_UP_TO: Final = 1000  # token pages count this many past the page, then say "more than"
MAX_PAGE: Final = 200
MAX_TEXT: Final = 256
MEMBER_STATUSES: Final = ("active", "disabled")
ROLES: Final = tuple(r.value for r in Role)
RISKS: Final = ("any", "low", "medium", "high")


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: the user, the organization the console is for, and their role there."""

    user: User
    org: Organization
    role: Role
    orgs: tuple[tuple[str, str], ...] = ()  # (id, name) of every organization they are active in

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int
    at_least: bool = False  # the count stopped at ``total``: there are at least that many

    @property
    def has_next(self) -> bool:
        return self.offset + self.limit < self.total

    @property
    def has_previous(self) -> bool:
        return self.offset > 0


@dataclass(frozen=True, slots=True)
class TokenPage(Page[TokenRecord]):
    """A keyset page of tokens: ``offset`` is where it starts (as the cursor that led here
    says); ``next_after`` and ``previous_before`` are the opaque cursors of the pages around it
    (None: there is none)."""

    next_after: str | None = None
    previous_before: str | None = None

    @property
    def has_next(self) -> bool:
        return self.next_after is not None

    @property
    def has_previous(self) -> bool:
        return self.previous_before is not None


DAYS: Final = 30
DASHBOARD_SECONDS: Final = 60.0
MAX_CURSOR: Final = 512
MAX_POSITION: Final = 10_000_000
_CURSOR_TEXT: Final = re.compile(r"[A-Za-z0-9_-]+")
_CURSOR_FIELDS: Final = frozenset({"s", "f", "k", "i", "n"})


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: ``id`` names its canvas and data block; values align with labels."""

    id: str
    title: str
    type: str
    labels: list[str]
    values: list[int]


@dataclass(frozen=True, slots=True)
class MemberPage:
    user: User
    membership: Membership
    tokens: list[TokenRecord]  # every kind issued here, newest first, in their state here
    tokens_total: int


class ConsoleService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, catalog: ScopeCatalog) -> None:
        self._uow = uow
        self._clock = clock
        self._catalog = catalog
        self._lock = threading.Lock()
        self._dashboards: dict[str, tuple[list[Chart], datetime, float]] = {}

    def viewer(self, actor: Actor, org_id: str) -> Viewer:
        """The console's user in ``org_id`` (an active member), else Forbidden."""
        with reading(self._uow) as uow:
            org = get_org(uow, org_id)
            m = require_member(uow, actor, org.id)
            user = uow.users.get(actor.user_id or "")
            if user is None:
                raise Forbidden("not a member of this organization", code="accessDenied")
            orgs = []
            for other in uow.users.memberships_of(user.id):
                usable = other.is_active and actor.reaches(other.org_id)
                found = uow.orgs.get(other.org_id) if usable else None
                if found is not None:
                    orgs.append((found.id, found.name))
            return Viewer(user, org, m.role, tuple(sorted(orgs, key=lambda o: o[1].casefold())))

    def members(
        self,
        viewer: Viewer,
        *,
        text: str | None = None,
        status: str | None = None,
        role: str | None = None,
        risk: str | None = None,
        offset: int = 0,
        limit: int = PAGE_SIZE,
    ) -> Page[tuple[User, Membership]]:
        _admin(viewer)
        query = MemberQuery(
            viewer.org.id,
            text=_text(text),
            status=_choice("status", status, MEMBER_STATUSES),
            role=_choice("role", role, ROLES),
            risk=_choice("risk", risk, RISKS),
            offset=_offset(offset),
            limit=_limit(limit),
        )
        with reading(self._uow) as uow:
            rows, total = uow.console.members(query)
        return Page(rows, total, query.offset, query.limit)

    def member(self, viewer: Viewer, user: str) -> MemberPage:
        """A member's page (admins; a member may open only their own)."""
        if not viewer.is_admin and user not in (viewer.user.id, viewer.user.upn):
            # refused before any lookup: a member learns nothing about who else is a member
            raise Forbidden("organization administrators only", code="accessDenied")
        with reading(self._uow) as uow:
            target, membership = member_of(uow, viewer.org.id, user)
            query = TokenQuery(viewer.org.id, self._clock.now(), owner_id=target.id, limit=MAX_PAGE)
            records, total = uow.console.tokens(query)
            shown = EffectiveView(uow, self._catalog, viewer.org.id).apply(records)
        return MemberPage(target, membership, shown, total)

    def tokens(
        self,
        viewer: Viewer,
        *,
        owner: str | None = None,
        kind: str | None = None,
        scope: str | None = None,
        state: str | None = None,
        expiring_days: int | None = None,
        full_scope: bool = False,
        dormant_days: int | None = None,
        after: str | None = None,
        before: str | None = None,
        limit: int = PAGE_SIZE,
    ) -> tuple[TokenPage, dict[str, User]]:
        """Tokens issued in the organization (a member: their own only), in their state here,
        with their owners. Keyset pages: ``after`` (the next page's cursor) or ``before`` (the
        previous page's), as a page gives them; a cursor of another filter or order, or not
        one at all, is InvalidInput. Counted at most ``COUNT_UP_TO`` past the page."""
        now = self._clock.now()
        if expiring_days is not None and not 0 <= expiring_days <= 3650:
            raise InvalidInput("expiring within: 0 to 3650 days", code="invalidFilter")
        if dormant_days is not None and not 1 <= dormant_days <= 3650:
            raise InvalidInput("dormant for: 1 to 3650 days", code="invalidFilter")
        if after and before:
            raise InvalidInput("a page is either after or before a position", code="invalidCursor")
        with reading(self._uow) as uow:
            owner_id = viewer.user.id
            if viewer.is_admin:
                owner_id = member_of(uow, viewer.org.id, owner)[0].id if owner else ""
            query = TokenQuery(
                viewer.org.id,
                now,
                owner_id=owner_id or None,
                kind=_choice("kind", kind, tuple(k.value for k in TokenKind)),
                scope=_text(scope),
                state=_choice("state", state, TOKEN_STATES),
                expiring_before=now + timedelta(days=expiring_days) if expiring_days is not None else None,
                full_scope=full_scope,
                unused_since=now - timedelta(days=dormant_days) if dormant_days is not None else None,
                limit=_limit(limit),
                count_up_to=COUNT_UP_TO,
            )
            listing = _listing(query, expiring_days, dormant_days)
            cursor = after or before
            seek, position = (None, 0) if not cursor else _seek(cursor, listing, backward=bool(before))
            records, counted = uow.console.tokens(replace(query, seek=seek))
            if seek is not None and seek.backward and len(records) < query.limit:
                seek, position = None, 0  # back at the start: the first page, whole
                records, counted = uow.console.tokens(query)
            shown = EffectiveView(uow, self._catalog, viewer.org.id).apply(records)
            owners = {
                u.id: u for u in (uow.users.get(i) for i in {r.user_id for r in shown}) if u is not None
            }
        offset = max(0, position - len(records)) if seek is not None and seek.backward else position
        total = position + counted
        end = offset + len(records)
        return TokenPage(
            shown,
            total,
            offset,
            query.limit,
            at_least=counted >= query.limit + COUNT_UP_TO,
            next_after=_cursor(listing, records[-1], end) if records and total > end else None,
            previous_before=_cursor(listing, records[0], offset) if records and offset > 0 else None,
        ), owners

    def dashboard(self, viewer: Viewer) -> tuple[list[Chart], datetime]:
        """The dashboard's five charts for the viewer's organization (admins) and when they were
        computed: they are kept for ``DASHBOARD_SECONDS`` (counting 100,000 tokens takes longer
        than a page should), so every administrator of an organization sees the same figures."""
        _admin(viewer)
        with self._lock:
            cached = self._dashboards.get(viewer.org.id)
        if cached is not None and time.monotonic() - cached[2] < DASHBOARD_SECONDS:
            return cached[0], cached[1]
        charts, at = self._dashboard(viewer)
        with self._lock:
            if len(self._dashboards) > 1000:
                self._dashboards.clear()
            self._dashboards[viewer.org.id] = (charts, at, time.monotonic())
        return charts, at

    def _dashboard(self, viewer: Viewer) -> tuple[list[Chart], datetime]:
        now = self._clock.now()
        since = (now - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
        with reading(self._uow) as uow:
            d = uow.console.dashboard(viewer.org.id, now, since)
        days = [(since + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(DAYS)]
        scopes = sorted(d.live_by_scope.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
        levels: list[str] = [lv for lv in ("high", "medium", "low", "info") if lv in d.open_alerts_by_level]
        levels += sorted(set(d.open_alerts_by_level) - set(levels))
        return [
            Chart(
                "expiring",
                "Tokens expiring per week (next 12 weeks)",
                "bar",
                [f"week {i + 1}" for i in range(12)],
                d.expiring_per_week,
            ),
            Chart("scopes", "Live tokens by scope", "bar", [s for s, _ in scopes], [n for _, n in scopes]),
            Chart(
                "revocations",
                f"Tokens revoked per day (last {DAYS} days)",
                "line",
                days,
                [d.revoked_per_day.get(x, 0) for x in days],
            ),
            Chart(
                "validations",
                f"Requests with tokens per day (last {DAYS} days)",
                "line",
                days,
                [d.requests_per_day.get(x, 0) for x in days],
            ),
            Chart(
                "alerts",
                "Open alerts by level",
                "doughnut",
                levels,
                [d.open_alerts_by_level[x] for x in levels],
            ),
        ], now

    def now(self) -> datetime:
        return self._clock.now()


def _admin(viewer: Viewer) -> None:
    if not viewer.is_admin:
        raise Forbidden("organization administrators only", code="accessDenied")


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"search text: at most {MAX_TEXT} characters", code="invalidFilter")
    return value or None


def _choice(name: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise InvalidInput(f"{name}: one of {', '.join(allowed)}", code="invalidFilter")
    return value


def _listing(query: TokenQuery, expiring_days: int | None, dormant_days: int | None) -> tuple[str, str]:
    """The order of a token listing and a fingerprint of its filters: a cursor carries both, so
    it is refused by a listing it does not belong to."""
    filters = [
        query.owner_id,
        query.kind,
        query.scope,
        query.state,
        expiring_days,
        query.full_scope,
        dormant_days,
    ]
    digest = hashlib.sha256(json.dumps(filters).encode()).hexdigest()[:16]
    return query.sort, digest


def _cursor(listing: tuple[str, str], record: TokenRecord, position: int) -> str:
    """An opaque page cursor: base64url (unpadded) JSON of the listing's order and filters, the
    row's sort key and authorization id, and the row's position (shown, never trusted)."""
    sort, digest = listing
    body = {
        "s": sort,
        "f": digest,
        "k": sort_key(record, sort).astimezone(UTC).isoformat(),
        "i": record.authorization_id,
        "n": position,
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _seek(cursor: str, listing: tuple[str, str], *, backward: bool) -> tuple[Seek, int]:
    """The position a cursor names (and the row's position in the listing), checked strictly."""
    bad = InvalidInput(
        "not a page link of this console: start again from the first page", code="invalidCursor"
    )
    if len(cursor) > MAX_CURSOR or not cursor.isascii() or not _CURSOR_TEXT.fullmatch(cursor):
        raise bad
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):  # not base64, not UTF-8, not JSON
        raise bad from None
    if not isinstance(body, dict) or set(body) != _CURSOR_FIELDS:
        raise bad
    sort, digest, key, row_id, position = (body[f] for f in ("s", "f", "k", "i", "n"))
    if not all(isinstance(v, str) for v in (sort, digest, key, row_id)) or type(position) is not int:
        raise bad
    if (sort, digest) != listing:
        raise InvalidInput(
            "this page link belongs to another filter or order: start again from the first page",
            code="invalidCursor",
        )
    if not 0 <= position <= MAX_POSITION or not 0 < len(row_id) <= 64 or not row_id.isascii():
        raise bad
    if not row_id.isprintable() or len(key) > 40:
        raise bad
    try:
        at = datetime.fromisoformat(key)
        if at.tzinfo is None:
            raise bad
        at = at.astimezone(UTC)  # OverflowError at the edges of the calendar
    except (ValueError, OverflowError):
        raise bad from None
    if not 1970 <= at.year <= 9999:
        raise bad
    return Seek(at, row_id, backward), position


def _offset(value: int) -> int:
    if not 0 <= value <= 10_000_000:
        raise InvalidInput("offset out of range", code="invalidFilter")
    return value


def _limit(value: int) -> int:
    if not 1 <= value <= MAX_PAGE:
        raise InvalidInput(f"page size: 1 to {MAX_PAGE}", code="invalidFilter")
    return value
