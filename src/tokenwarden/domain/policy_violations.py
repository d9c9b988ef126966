"""Which organization policies an existing token breaks, and what enforcing them would do.

Policies are checked when a PAT is created or changed (``policies.check_token_shape``); a policy
tightened later leaves older tokens in breach. This module names each breach precisely, with the
change enforcement would make: the token is not changed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.scopes import FULL_ACCESS
from tokenwarden.domain.tokens import TokenKind, TokenRecord

ViolationCode = Literal["lifetime", "fullScope"]
LIFETIME: ViolationCode = "lifetime"
FULL_SCOPE: ViolationCode = "fullScope"


@dataclass(frozen=True, slots=True)
class Violation:
    """One policy a token breaks: ``message`` says how, ``fix`` what enforcement would do."""

    code: ViolationCode
    message: str
    fix: str


def violations(policy: OrgPolicy, token: TokenRecord, *, now: datetime | None = None) -> list[Violation]:
    """The breaches of ``policy`` by ``token``: a PAT's lifetime beyond the maximum, a full-scope
    (``app_token``) PAT where those are restricted. Only PATs are subject to these policies, and
    only a live one counts: none for another kind, a revoked token or (given ``now``) one that
    is not active at ``now``. Whether a watermark or rule killed it is the caller's to know
    (``services.effective.EffectiveView``)."""
    if token.kind is not TokenKind.PAT or token.revoked_at is not None:
        return []
    if now is not None and not token.is_active(now):
        return []
    found: list[Violation] = []
    lifetime = token.valid_to - token.valid_from
    most = timedelta(days=policy.max_lifetime_days)
    if lifetime > most:
        found.append(
            Violation(
                LIFETIME,
                f"lifetime {describe_days(lifetime, beyond=most)} exceeds the organization's maximum of "
                f"{policy.max_lifetime_days} days",
                f"validTo shortened to {iso_z(token.valid_from + most)}",
            )
        )
    if policy.restrict_full_scope and FULL_ACCESS in token.scopes:
        found.append(
            Violation(
                FULL_SCOPE,
                f"full-scope ({FULL_ACCESS}) token: the organization does not allow full-scope PATs",
                "revoked (full-scope tokens are not allowed)",
            )
        )
    return found


def describe_days(span: timedelta, *, beyond: timedelta | None = None) -> str:
    """``365 days`` (to the nearest second: ``90 days 1:30:00`` when not whole days), exact to
    the microsecond when rounding would make a span longer than ``beyond`` read as no longer
    than it (a lifetime just over the maximum never reads as equal to it)."""
    rounded = timedelta(seconds=round(span.total_seconds()))
    if beyond is not None and span > beyond >= rounded:
        rounded = span
    days, rest = divmod(rounded, timedelta(days=1))
    unit = "day" if days == 1 else "days"
    return f"{days} {unit}" if not rest else f"{days} {unit} {rest}"
