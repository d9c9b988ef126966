"""Read-only, server-side paged queries behind the admin console (issue 16).

Every query names its organization; nothing returned belongs to another one (the tenancy
rule). Counts are exact; pages are ``offset``/``limit`` with a stable order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tokenwarden.domain.principals import Membership, User
from tokenwarden.domain.tokens import TokenRecord

LIVE, REVOKED, EXPIRED = "live", "revoked", "expired"
TOKEN_STATES = (LIVE, REVOKED, EXPIRED)


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
class TokenQuery:
    """Tokens issued in ``org_id``. ``state``: live (not revoked, not expired, not cut by a
    watermark), revoked (revoked or cut) or expired."""

    org_id: str
    now: datetime
    owner_id: str | None = None
    kind: str | None = None
    scope: str | None = None  # tokens whose literal scopes include this one
    state: str | None = None
    expiring_before: datetime | None = None  # live and ending before this
    full_scope: bool = False  # literal scope app_token (full access)
    unused_since: datetime | None = None  # dormant: never used, or last used before this
    offset: int = 0
    limit: int = 50
    count_up_to: int | None = None  # count at most this many past the page (None: exact)


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The console's charts for one organization (as lists aligned with their labels)."""

    expiring_per_week: list[int]  # live tokens ending in week 0..11 from now
    live_by_scope: dict[str, int]  # live tokens per literal scope (a token counts once per scope)
    revoked_per_day: dict[str, int]  # YYYY-MM-DD -> tokens revoked directly that day (last 30 days)
    requests_per_day: dict[str, int]  # YYYY-MM-DD -> recorded requests (validations) that day
    open_alerts_by_level: dict[str, int]


class ConsoleRepository(Protocol):
    def members(self, query: MemberQuery) -> tuple[list[tuple[User, Membership]], int]:
        """One page of the organization's members (UPN order) and how many match in all."""
        ...

    def tokens(self, query: TokenQuery) -> tuple[list[TokenRecord], int]:
        """One page of the organization's tokens (newest first) and how many match in all — at
        most ``offset + limit + count_up_to`` when that is set (more means "at least that many")."""
        ...

    def dashboard(self, org_id: str, now: datetime, since: datetime) -> Dashboard:
        """The charts' figures: expiry over the next 12 weeks, activity since ``since``."""
        ...
