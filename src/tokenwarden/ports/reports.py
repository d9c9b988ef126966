"""The reporting port: set-based counts and listings of an organization's tokens (issue 12).

Every method answers for *really live* tokens where it says so: unrevoked at the instant asked
about, inside ``[valid_from, valid_to)``, not cut by a watermark of the owner, the membership,
the organization or the OAuth client, not caught by one of ``ReportScope.rules``, and owned by a
user who is active and an active member of the organization. Watermarks, rules and memberships
are taken as they stand now (a watermark row keeps only its newest instant), so a report for a
past week counts with today's cuts. Tokens belong to the organization that issued them
(``tokens.org_id``, the same notion as the administrators' PAT listing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.tokens import TokenKind, TokenRecord


@dataclass(frozen=True, slots=True)
class ReportScope:
    """The tokens a report looks at: of ``org_id`` and ``kinds``. ``rules`` are the
    organization's revocation rules with implied scopes already expanded (``match_implied``
    false: the store matches scopes literally, it has no catalog)."""

    org_id: str
    kinds: tuple[TokenKind, ...]
    rules: tuple[RevocationRule, ...] = ()


@dataclass(frozen=True, slots=True)
class LiveFilter:
    """Conditions on live tokens; the given ones combine with AND (with ``match_any``: OR).
    A filter with no condition matches every live token."""

    expires_from: datetime | None = None  # valid_to >= this
    expires_before: datetime | None = None  # valid_to < this
    scope: str | None = None  # carries this scope literally
    lifetime_over: timedelta | None = None  # valid_to - valid_from > this
    unused_since: datetime | None = None  # last use (creation when never used) <= this
    match_any: bool = False
    kind: TokenKind | None = None  # only tokens of this kind (always ANDed)


class ReportRepository(Protocol):
    def count_live(
        self, scope: ReportScope, at: datetime, filters: Mapping[str, LiveFilter]
    ) -> dict[str, int]:
        """name -> live tokens at ``at`` matching that filter: every filter in one pass over the
        organization's tokens (a report asks for all its counts at once)."""
        ...

    def find_live(
        self, scope: ReportScope, at: datetime, where: LiveFilter, limit: int | None = None
    ) -> list[TokenRecord]:
        """Live tokens at ``at`` matching ``where``, by (valid_to, id), at most ``limit``."""
        ...

    def activity(self, scope: ReportScope, start: datetime, end: datetime) -> dict[str, int]:
        """What happened in ``[start, end)``: ``created`` (created_at in it), ``revoked`` (the
        first revocation fell in it, while the token was unexpired: directly, by a watermark
        raised in it, by a rule created in it) and ``expired`` (valid_to in it, not revoked
        before)."""
        ...

    def top_owners(self, scope: ReportScope, at: datetime, limit: int) -> list[tuple[str, str, int]]:
        """(user id, UPN, live tokens at ``at``), most tokens first, then by UPN."""
        ...
