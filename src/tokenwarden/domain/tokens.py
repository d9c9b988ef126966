"""Token records and their derived lifecycle state."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum


class TokenKind(StrEnum):
    """What a token is for; each kind has its own prefix and watermarks."""

    PAT = "pat"
    ACCESS = "access"
    REFRESH = "refresh"
    SESSION = "session"
    SERVICE = "service"


class TokenState(StrEnum):
    """Lifecycle state, derived from timestamps (never stored)."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_YET_VALID = "notYetValid"


ROTATED = "rotated: exchanged for a new refresh token"


class RevokedBy(StrEnum):
    """Who ended a token's life."""

    OWNER = "owner"
    ADMIN = "admin"
    SYSTEM = "system"


# ``TokenRecord.purpose`` of the short-lived admin token a break-glass issues to its executor.
BREAK_GLASS_RECOVERY = "break-glass-recovery"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored token. The secret itself is never kept: only its keyed hash."""

    authorization_id: str
    kind: TokenKind
    user_id: str
    org_id: str
    display_name: str
    scopes: tuple[str, ...]
    target_orgs: tuple[str, ...] | None  # None = all of the owner's organizations
    secret_hash: bytes
    pepper_id: str
    valid_from: datetime
    valid_to: datetime
    created_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None
    last_used_at: datetime | None = None
    last_used_ip: str | None = None
    client_id: str | None = None  # OAuth client for access/refresh/session tokens
    family_id: str | None = None  # OAuth grant: every token issued from one code or sign-in chain
    parent_id: str | None = None  # the refresh token this one was rotated from
    rotated_at: datetime | None = None  # when this refresh token was exchanged for its successor
    user_agent: str | None = None  # sessions: the browser that signed in
    purpose: str | None = None  # BREAK_GLASS_RECOVERY, or None for an ordinary token

    @property
    def is_recovery(self) -> bool:
        """A break-glass recovery token (whatever it has been renamed to)."""
        return self.purpose == BREAK_GLASS_RECOVERY

    @property
    def all_orgs(self) -> bool:
        return self.target_orgs is None

    @property
    def scope_string(self) -> str:
        return " ".join(self.scopes)

    def state(self, now: datetime) -> TokenState:
        if self.revoked_at is not None:
            return TokenState.REVOKED
        if now >= self.valid_to:
            return TokenState.EXPIRED
        if now < self.valid_from:
            return TokenState.NOT_YET_VALID
        return TokenState.ACTIVE

    def is_active(self, now: datetime) -> bool:
        return self.state(now) is TokenState.ACTIVE

    def with_changes(self, **changes: object) -> TokenRecord:
        return replace(self, **changes)  # type: ignore[arg-type]
