"""Organizations, users and their memberships."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    DELETED = "deleted"


class RiskLevel(StrEnum):
    """Graph riskLevel values; ``rank`` orders them for "at or above" queries."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    HIDDEN = "hidden"

    @property
    def rank(self) -> int:
        return {"none": 0, "low": 1, "medium": 2, "high": 3, "hidden": 0}[self.value]


class RiskState(StrEnum):
    NONE = "none"
    CONFIRMED_SAFE = "confirmedSafe"
    REMEDIATED = "remediated"
    DISMISSED = "dismissed"
    AT_RISK = "atRisk"
    CONFIRMED_COMPROMISED = "confirmedCompromised"


class IdentitySource(StrEnum):
    LOCAL = "local"
    EXTERNAL = "external"
    # issue 11: an OAuth client's own service principal (client_credentials), created and
    # managed only through its client (services/oauth_clients.py), never by hand.
    SERVICE = "service"


class Role(StrEnum):
    MEMBER = "member"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class User:
    id: str
    upn: str
    display_name: str
    status: UserStatus
    risk_level: RiskLevel
    identity_source: IdentitySource
    created_at: datetime
    risk_state: RiskState = RiskState.NONE
    risk_updated_at: datetime | None = None
    email: str | None = None  # where notices go; None: the UPN
    notify_digest: bool = False  # one message per job run listing every token, not one per token

    @property
    def is_active(self) -> bool:
        return self.status is UserStatus.ACTIVE

    @property
    def notify_address(self) -> str:
        """The owner's address for notices: the email, defaulting to the UPN."""
        return self.email or self.upn

    @property
    def descriptor(self) -> str:
        """Azure DevOps-style subject descriptor; uses only URL-safe characters."""
        return subject_descriptor(self.id)

    def with_changes(self, **changes: object) -> User:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Membership:
    """A user in an organization, with the state that organization (and only it) may change:
    role, status and risk. Watermarks per (user, org) live in the watermark store under
    :func:`member_subject`. Another organization never sees or changes any of it."""

    org_id: str
    user_id: str
    role: Role
    status: UserStatus = UserStatus.ACTIVE
    risk_level: RiskLevel = RiskLevel.NONE
    risk_state: RiskState = RiskState.NONE
    risk_updated_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.status is UserStatus.ACTIVE

    def with_changes(self, **changes: object) -> Membership:
        return replace(self, **changes)  # type: ignore[arg-type]


def member_subject(org_id: str, user_id: str) -> str:
    """The watermark subject id of one user in one organization."""
    return f"{org_id}:{user_id}"


@dataclass(frozen=True, slots=True)
class Invitation:
    """An organization's invitation to an identity that already belongs to another organization:
    nothing changes until that identity accepts it (its consent)."""

    id: str
    org_id: str
    user_id: str
    role: Role
    invited_by: str | None
    created_at: datetime
    expires_at: datetime
    status: str = "pending"  # pending | accepted | declined | cancelled
    decided_at: datetime | None = None


def subject_descriptor(user_id: str) -> str:
    """``aad.`` + unpadded base64url of the user id (what Token Admin routes take)."""
    raw = base64.urlsafe_b64encode(user_id.encode("ascii")).decode("ascii").rstrip("=")
    return f"aad.{raw}"


def user_id_from_descriptor(descriptor: str) -> str | None:
    """Inverse of :func:`subject_descriptor`; ``None`` when it is not one of ours."""
    if not descriptor.startswith("aad."):
        return None
    raw = descriptor[4:]
    if not _B64URL.match(raw):
        return None
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded or None


def normalize_upn(upn: str) -> str:
    """UPNs match case-insensitively; this is the stored lookup key."""
    return upn.strip().casefold()
