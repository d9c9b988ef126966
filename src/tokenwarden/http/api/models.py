"""Request bodies of the native API (camelCase on the wire, unknown fields rejected)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from tokenwarden.domain.principals import IdentitySource, RiskLevel, RiskState, Role, UserStatus
from tokenwarden.http.inputs import lone_surrogate
from tokenwarden.http.timeparse import UtcDateTime


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        """Refuse strings that are not text (a lone surrogate) before any field sees them."""
        where = lone_surrogate(data)
        if where is not None:
            raise ValueError(f"{where} holds a lone surrogate (not valid Unicode text)")
        return data


class PatCreate(Body):
    display_name: str | None = Field(default=None, alias="displayName", max_length=100_000)
    scope: str | None = Field(default=None, max_length=10_000)
    valid_to: UtcDateTime | None = Field(default=None, alias="validTo")
    all_orgs: bool = Field(default=False, alias="allOrgs")


class PatUpdate(Body):
    display_name: str | None = Field(default=None, alias="displayName", max_length=100_000)
    scope: str | None = Field(default=None, max_length=10_000)
    valid_to: UtcDateTime | None = Field(default=None, alias="validTo")
    all_orgs: bool | None = Field(default=None, alias="allOrgs")


class UserCreate(Body):
    upn: str = Field(max_length=256)
    display_name: str | None = Field(default=None, alias="displayName", max_length=100_000)
    role: Role = Role.MEMBER
    identity_source: IdentitySource = Field(default=IdentitySource.LOCAL, alias="identitySource")


class UserPatch(Body):
    role: Role | None = None
    status: UserStatus | None = None
    risk_level: RiskLevel | None = Field(default=None, alias="riskLevel")
    email: str | None = Field(default=None, max_length=320, description='notices go here; "" = the UPN')


class PolicyPatch(Body):
    max_lifetime_days: int | None = Field(default=None, alias="maxLifetimeDays")
    restrict_full_scope: bool | None = Field(default=None, alias="restrictFullScope")
    restrict_creation: bool | None = Field(default=None, alias="restrictCreation")
    creation_allowlist: list[str] | None = Field(default=None, alias="creationAllowlist", max_length=10_000)
    require_external_identity: bool | None = Field(default=None, alias="requireExternalIdentity")
    disable_pat_creation: bool | None = Field(default=None, alias="disablePatCreation")
    break_glass_two_person: bool | None = Field(default=None, alias="breakGlassTwoPerson")
    break_glass_approval_minutes: int | None = Field(default=None, alias="breakGlassApprovalMinutes")
    # strict: JSON true is not a day count
    expiry_warning_days: list[StrictInt] | None = Field(default=None, alias="expiryWarningDays", max_length=8)
    dormant_revoke_days: int | None = Field(
        default=None,
        alias="dormantRevokeDays",
        description="revoke unused PATs; 0: off",
    )
    security_contact: str | None = Field(
        default=None,
        alias="securityContact",
        max_length=320,
        description='"" clears',
    )
    admins_require_mfa: bool | None = Field(
        default=None, alias="adminsRequireMfa", description="administrators must use a second factor"
    )


class RuleCreate(Body):
    scopes: str | None = Field(default=None, max_length=10_000)
    created_before: UtcDateTime | None = Field(default=None, alias="createdBefore")
    created_after: UtcDateTime | None = Field(default=None, alias="createdAfter")
    kinds: list[str] | None = Field(default=None, max_length=10)
    users: list[str] | None = Field(default=None, max_length=10_000)
    match_implied: bool = Field(default=False, alias="matchImplied")


class TokenValue(Body):
    """The token itself, or text holding it: a log line, a header, a ``Basic`` credential."""

    token: str = Field(max_length=8192)
    reason: str | None = Field(default=None, max_length=512)


class UserRevoke(Body):
    kinds: list[str] | None = Field(default=None, max_length=10)
    reason: str | None = Field(default=None, max_length=512)


class OffboardRequest(Body):
    """``POST /api/v1/orgs/{org}/users/{user}/offboard`` (docs/offboarding.md)."""

    successor: str | None = Field(
        default=None,
        max_length=256,
        description="UPN (or id) of an active member who takes over the leaver's managed credentials "
        "and token watches; left out or null: the organization's security contact, if it names "
        "an active member, else nobody",
    )


class RiskyRevoke(Body):
    min_risk_level: RiskLevel = Field(default=RiskLevel.HIGH, alias="minRiskLevel")
    kinds: list[str] | None = Field(default=None, max_length=10)


class RiskChange(Body):
    risk_level: RiskLevel = Field(alias="riskLevel")
    risk_state: RiskState | None = Field(default=None, alias="riskState")


class BreakGlassStart(Body):
    confirm: str | None = Field(default=None, max_length=256)
    reason: str | None = Field(default=None, max_length=512)


class RevocationsRequest(Body):
    authorization_ids: list[str] = Field(alias="authorizationIds", min_length=1, max_length=10_000)
