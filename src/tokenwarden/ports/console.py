"""Read-only, server-side paged queries behind the admin console (issue 16).

Every query names its organization; nothing returned belongs to another one (the tenancy
rule). Member pages are ``offset``/``limit``; token pages are keyset ("seek") pages: a page
starts after (or ends before) a position in the listing's order, the sort key and the
authorization id of one row, so a deep page costs what the first one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tokenwarden.domain.principals import Membership, User
from tokenwarden.domain.tokens import TokenRecord

LIVE, REVOKED, EXPIRED = "live", "revoked", "expired"
TOKEN_STATES = (LIVE, REVOKED, EXPIRED)
# the orders of a token listing: newest first; soonest end first; longest unused first
CREATED, EXPIRY, DORMANT = "created", "expiry", "dormant"
TOKEN_SORTS = (CREATED, EXPIRY, DORMANT)


@dataclass(frozen=True, slots=True)
class MemberQuery:
    org_id: str
    text: str | None = None  # a part of the UPN or display name, case-insensitive
    status: str | None = None  # "active" | "disabled"
    role: str | None = None  # "admin" | "member"
    risk: str | None = None  # a risk level, or "any" (any level but none)
    offset: int = 0
    limit: int = 50


@dataclass(frozen=True, slots=True)
class Seek:
    """A position in a token listing's order: the sort key (see ``sort_key``) and the
    authorization id (the tie-breaker) of one row. The page is the rows just after it, or with
    ``backward`` the rows just before it."""

    key: datetime
    id: str
    backward: bool = False


@dataclass(frozen=True, slots=True)
class TokenQuery:
    """Tokens issued in ``org_id``. ``state``: live (not revoked, not expired, not cut by a
    watermark), revoked (revoked or cut) or expired. The order (``sort``) follows the filters:
    expiring ones soonest end first, dormant ones longest unused first, else newest first; ties
    by authorization id, in the same direction."""

    org_id: str
    now: datetime
    owner_id: str | None = None
    kind: str | None = None
    scope: str | None = None  # tokens whose literal scopes include this one
    state: str | None = None
    expiring_before: datetime | None = None  # live and ending before this
    full_scope: bool = False  # literal scope app_token (full access)
    unused_since: datetime | None = None  # dormant: no use since (never used: created before) this
    seek: Seek | None = None  # None: the first page
    limit: int = 50
    count_up_to: int | None = None  # count at most this many past the page (None: exact)

    @property
    def sort(self) -> str:
        """The listing's order: ``EXPIRY``, ``DORMANT`` or ``CREATED``."""
        if self.expiring_before is not None:
            return EXPIRY
        if self.unused_since is not None:
            return DORMANT
        return CREATED


def sort_key(record: TokenRecord, sort: str) -> datetime:
    """What a token listing in ``sort`` order is ordered by (before the authorization id): the
    end of validity, the last activity (last use, else creation), or the creation."""
    if sort == EXPIRY:
        return record.valid_to
    if sort == DORMANT:
        return record.last_used_at or record.created_at
    return record.created_at


def descending(sort: str) -> bool:
    """Whether ``sort`` lists the greatest key first (newest first)."""
    return sort == CREATED


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The console's charts for one organization (as lists aligned with their labels)."""

    expiring_per_week: list[int]  # live tokens ending in week 0..11 from now
    live_by_scope: dict[str, int]  # live tokens per literal scope (a token counts once per scope)
    revoked_per_day: dict[str, int]  # YYYY-MM-DD -> tokens revoked directly that day (last 30 days)
    requests_per_day: dict[str, int]  # YYYY-MM-DD -> recorded requests (validations) that day
    open_alerts_by_level: dict[str, int]


class ConsoleRepository(Protocol):
    """The console's read-only queries, each of one organization."""

    def members(self, query: MemberQuery) -> tuple[list[tuple[User, Membership]], int]:
        """One page of the organization's members (UPN order) and how many match in all."""
        ...

    def tokens(self, query: TokenQuery) -> tuple[list[TokenRecord], int]:
        """One page of the organization's tokens in ``query.sort`` order, and how many match from
        the page's position on: all of them on the first page, after ``seek`` going forward, from
        ``seek`` itself on going backward (the rows after the page). At most ``limit +
        count_up_to`` when that is set (that many means "at least that many")."""
        ...

    def dashboard(self, org_id: str, now: datetime, since: datetime) -> Dashboard:
        """The charts' figures: expiry over the next 12 weeks, activity since ``since``."""
        ...
