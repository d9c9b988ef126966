"""Organization PAT policies, checked when a PAT is created or updated."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final

from tokenwarden.domain.errors import InvalidInput, PolicyViolation
from tokenwarden.domain.principals import IdentitySource, User
from tokenwarden.domain.scopes import FULL_ACCESS

HARD_MAX_LIFETIME_DAYS: Final = 365
DEFAULT_WARNING_DAYS: Final = (30, 14, 7, 1)
MAX_WARNING_THRESHOLDS: Final = 8
DORMANT_WARNING_DAYS: Final = 7  # the dormant-token warning comes this long before revocation
MIN_DORMANT_DAYS: Final = DORMANT_WARNING_DAYS + 1
MAX_DORMANT_DAYS: Final = 3650


def check_warning_days(days: tuple[int, ...]) -> None:
    """Expiry-warning thresholds: 1 to 8 whole days in 1..365, strictly decreasing."""
    if not days or len(days) > MAX_WARNING_THRESHOLDS:
        raise InvalidInput(
            f"expiryWarningDays needs 1 to {MAX_WARNING_THRESHOLDS} thresholds", code="invalidPolicy"
        )
    for d in days:
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= HARD_MAX_LIFETIME_DAYS:
            raise InvalidInput(
                f"expiryWarningDays: {d!r} is not a whole number of days in 1..{HARD_MAX_LIFETIME_DAYS}",
                code="invalidPolicy",
            )
    if any(a <= b for a, b in itertools.pairwise(days)):
        raise InvalidInput(
            "expiryWarningDays must be strictly decreasing, most distant first (e.g. [30, 14, 7, 1])",
            code="invalidPolicy",
        )


def check_email(value: str, field_name: str) -> str:
    """A plausible single address (local@domain, no spaces or angle brackets, ≤ 320 chars)."""
    local, sep, domain = value.rpartition("@")
    if (
        not sep
        or not local
        or "." not in domain
        or len(value) > 320
        or any(ch.isspace() or ch in '<>,;"\\' or ord(ch) < 32 for ch in value)
    ):
        raise InvalidInput(f"{field_name} is not an email address: {value[:80]!r}", code="invalidEmail")
    return value


@dataclass(frozen=True, slots=True)
class OrgPolicy:
    """What an organization allows. Defaults are permissive except the 365-day cap."""

    org_id: str
    max_lifetime_days: int = HARD_MAX_LIFETIME_DAYS
    restrict_full_scope: bool = False
    restrict_creation: bool = False
    creation_allowlist: tuple[str, ...] = field(default_factory=tuple)  # user ids
    require_external_identity: bool = False
    disable_pat_creation: bool = False
    break_glass_two_person: bool = False
    break_glass_approval_minutes: int = 30
    # ---- issue 12: lifecycle
    expiry_warning_days: tuple[int, ...] = DEFAULT_WARNING_DAYS  # most distant first
    dormant_revoke_days: int | None = None  # revoke tokens unused this long (None: off)
    security_contact: str | None = None  # also hears every expiry warning of the organization
    # ---- issue 16: administrators sign in with a second factor (and step up before the worst)
    admins_require_mfa: bool = False

    def __post_init__(self) -> None:
        check_warning_days(self.expiry_warning_days)
        if self.dormant_revoke_days is not None and not (
            MIN_DORMANT_DAYS <= self.dormant_revoke_days <= MAX_DORMANT_DAYS
        ):
            raise InvalidInput(
                f"dormantRevokeDays must be between {MIN_DORMANT_DAYS} and {MAX_DORMANT_DAYS} (or null: off)",
                code="invalidPolicy",
            )
        if self.security_contact is not None:
            check_email(self.security_contact, "securityContact")
        if not 1 <= self.break_glass_approval_minutes <= 1440:
            raise InvalidInput("breakGlassApprovalMinutes must be between 1 and 1440", code="invalidPolicy")
        if not 1 <= self.max_lifetime_days <= HARD_MAX_LIFETIME_DAYS:
            raise InvalidInput(
                f"maxLifetimeDays must be between 1 and {HARD_MAX_LIFETIME_DAYS}",
                code="invalidPolicy",
            )

    def with_changes(self, **changes: object) -> OrgPolicy:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class GlobalPolicy:
    """Installation-wide switches (from settings)."""

    pat_creation_disabled: bool = False


def check_may_create(policy: OrgPolicy, glob: GlobalPolicy, user: User) -> None:
    """Raise when ``user`` may not create PATs at all under these policies."""
    if glob.pat_creation_disabled:
        raise PolicyViolation(
            "PAT creation is disabled on this installation", code="globalPATCreationBlocked"
        )
    if policy.disable_pat_creation:
        raise PolicyViolation(
            "PAT creation is disabled by the organization policy", code="disablePatCreationPolicyViolation"
        )
    if policy.restrict_creation and user.id not in policy.creation_allowlist:
        raise PolicyViolation(
            "the organization restricts PAT creation to an allowlist that does not include this user",
            code="disablePatCreationPolicyViolation",
        )
    if policy.require_external_identity and user.identity_source is not IdentitySource.EXTERNAL:
        raise PolicyViolation(
            "the organization requires an externally backed identity to create PATs",
            code="invalidUserType",
        )


def check_token_shape(
    policy: OrgPolicy, scopes: tuple[str, ...], valid_from: datetime, valid_to: datetime
) -> None:
    """Raise when the lifetime or scopes of a PAT breach ``policy``."""
    if valid_to - valid_from > timedelta(days=policy.max_lifetime_days):
        raise PolicyViolation(
            f"validTo is beyond the organization's maximum lifetime of {policy.max_lifetime_days} days",
            code="patLifespanPolicyViolation",
        )
    if policy.restrict_full_scope and FULL_ACCESS in scopes:
        raise PolicyViolation(
            "the organization does not allow full-scope (app_token) PATs",
            code="fullScopePatPolicyViolation",
        )
