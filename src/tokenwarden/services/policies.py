"""Organization policy management (org admins)."""

from __future__ import annotations

from typing import Any

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Forbidden, InvalidInput
from tokenwarden.domain.events import EventType
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.common import (
    Actor,
    StepUpCheck,
    audit,
    get_org,
    member_of,
    no_step_up,
    publish,
    reading,
    require_admin,
)

EDITABLE = (
    "max_lifetime_days",
    "restrict_full_scope",
    "restrict_creation",
    "creation_allowlist",
    "require_external_identity",
    "disable_pat_creation",
    "break_glass_two_person",
    "break_glass_approval_minutes",
    "expiry_warning_days",
    "dormant_revoke_days",
    "security_contact",
    "admins_require_mfa",
)


def policy_as_dict(policy: OrgPolicy) -> dict[str, Any]:
    return {
        "maxLifetimeDays": policy.max_lifetime_days,
        "restrictFullScope": policy.restrict_full_scope,
        "restrictCreation": policy.restrict_creation,
        "creationAllowlist": list(policy.creation_allowlist),
        "requireExternalIdentity": policy.require_external_identity,
        "disablePatCreation": policy.disable_pat_creation,
        "breakGlassTwoPerson": policy.break_glass_two_person,
        "breakGlassApprovalMinutes": policy.break_glass_approval_minutes,
        "expiryWarningDays": list(policy.expiry_warning_days),
        "dormantRevokeDays": policy.dormant_revoke_days,
        "securityContact": policy.security_contact,
        "adminsRequireMfa": policy.admins_require_mfa,
    }


class PolicyService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock
        self.step_up: StepUpCheck = no_step_up  # policy changes need a fresh second factor

    def get(self, actor: Actor, org: str) -> OrgPolicy:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return uow.policies.get(the_org.id) or OrgPolicy(org_id=the_org.id)

    def update(self, actor: Actor, org: str, **changes: Any) -> OrgPolicy:
        """Change some policy fields; ``creation_allowlist`` takes UPNs or user ids."""
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise InvalidInput(f"unknown policy field(s): {', '.join(sorted(unknown))}", code="invalidPolicy")
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            self.step_up(uow, actor, the_org.id)
            current = uow.policies.get(the_org.id) or OrgPolicy(org_id=the_org.id)
            if "creation_allowlist" in changes:
                names = changes["creation_allowlist"] or []
                # members only, resolved like every org-scoped lookup (no probe of other orgs)
                changes["creation_allowlist"] = tuple(
                    dict.fromkeys(member_of(uow, the_org.id, n)[0].id for n in names)
                )
            if "expiry_warning_days" in changes:
                changes["expiry_warning_days"] = tuple(changes["expiry_warning_days"] or ())
            if changes.get("dormant_revoke_days") == 0:  # 0 turns the dormant-token policy off
                changes["dormant_revoke_days"] = None
            if changes.get("security_contact") == "":  # "" removes the security contact
                changes["security_contact"] = None
            updated = current.with_changes(**changes)
            lifts_two_person = current.break_glass_two_person and not updated.break_glass_two_person
            if lifts_two_person and not actor.is_operator:
                # one administrator must not be able to lift the rule that needs two of them
                raise Forbidden(
                    "the two-person break-glass rule can be turned off only by the operator "
                    "(tokenwarden policy set --break-glass-one-person)",
                    code="twoPersonRuleLocked",
                )
            uow.policies.save(updated)
            publish(uow, EventType.POLICY_CHANGED, org_id=the_org.id)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.POLICY_UPDATE,
                org_id=the_org.id,
                target_type="policy",
                target_id=the_org.id,
                details={"before": policy_as_dict(current), "after": policy_as_dict(updated)},
            )
            uow.commit()
        return updated
