"""Organization PAT policies, checked when a PAT is created or updated."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final

from tokenwarden.domain.errors import InvalidInput, PolicyViolation
from tokenwarden.domain.principals import IdentitySource, User
from tokenwarden.domain.scopes import FULL_ACCESS

HARD_MAX_LIFETIME_DAYS: Final = 365


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

    def __post_init__(self) -> None:
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
