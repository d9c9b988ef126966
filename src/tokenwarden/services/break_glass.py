"""Break-glass: revoke every token of every kind in an organization with one watermark.

Preview first (what would die), typed confirmation of the organization's name, an optional
two-person rule (a second admin approves within the policy's window), and a short-lived
recovery token for the admin who executes it, so the recovery can go on at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.principals import Organization
from tokenwarden.domain.watermarks import ALL_KINDS, SubjectType
from tokenwarden.ports.repositories import BreakGlassRequest, UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import (
    Actor,
    audit,
    get_org,
    new_id,
    parse_uuid,
    publish,
    reading,
    require_admin,
)
from tokenwarden.services.pats import IssuedPat, PatService
from tokenwarden.services.signals import emit_org_session_revoked

RECOVERY_SCOPES = "vso.tokenadministration vso.pats_manage vso.auditlog vso.graph"
RECOVERY_HOURS = 24


@dataclass(frozen=True, slots=True)
class BreakGlassOutcome:
    status: str  # "executed" or "pending"
    request: BreakGlassRequest
    revoked: dict[str, int] = field(default_factory=dict)
    recovery: IssuedPat | None = None


class BreakGlassService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        pats: PatService,
        *,
        after_commit: Callable[[], object] = lambda: None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._pats = pats
        self._after_commit = after_commit

    def preview(self, actor: Actor, org: str, top: int = 10) -> dict[str, Any]:
        """What break-glass would kill now: live tokens per kind, top owners, top clients."""
        now = self._clock.now()
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            per_kind = uow.tokens.count_live(org_id=the_org.id, issued_before=now, now=now)
            owners = []
            for user_id, count in uow.break_glass.top_owners(the_org.id, now, top):
                user = uow.users.get(user_id)
                owners.append({"userId": user_id, "upn": user.upn if user else None, "tokens": count})
            clients = [
                {"clientId": c, "tokens": n} for c, n in uow.break_glass.top_clients(the_org.id, now, top)
            ]
            policy = uow.policies.get(the_org.id) or OrgPolicy(org_id=the_org.id)
        return {
            "org": the_org.name,
            "tokensByKind": {k.value: per_kind.get(k.value, 0) for k in ALL_KINDS},
            "total": sum(per_kind.values()),
            "topOwners": owners,
            "topClients": clients,
            "twoPersonRule": policy.break_glass_two_person,
            "approvalMinutes": policy.break_glass_approval_minutes,
            "confirmWith": the_org.name,
        }

    def start(
        self, actor: Actor, org: str, confirm: str | None, reason: str | None = None
    ) -> BreakGlassOutcome:
        """Execute at once, or open a request a second admin must approve (two-person rule)."""
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            _check_confirmation(the_org, confirm)
            policy = uow.policies.get(the_org.id) or OrgPolicy(org_id=the_org.id)
            request = BreakGlassRequest(
                id=new_id(),
                org_id=the_org.id,
                requested_by=actor.user_id,
                requested_at=now,
                expires_at=now + timedelta(minutes=policy.break_glass_approval_minutes),
                status="pending",
                reason=(reason or "")[:512] or None,
            )
            uow.break_glass.add(request)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.BREAK_GLASS_REQUEST,
                org_id=the_org.id,
                target_type="org",
                target_id=the_org.id,
                details={
                    "requestId": request.id,
                    "twoPersonRule": policy.break_glass_two_person,
                    "reason": request.reason,
                },
            )
            if policy.break_glass_two_person:
                uow.commit()
                return BreakGlassOutcome("pending", request)
            outcome = self._execute(uow, actor, the_org, request)
            uow.commit()
        self._after_commit()
        return self._with_recovery(actor, the_org, self._report(actor, the_org, outcome))

    def approve(self, actor: Actor, org: str, request_id: str, confirm: str | None) -> BreakGlassOutcome:
        """The second admin's approval executes a pending request."""
        rid = parse_uuid(request_id, "requestId", code="invalidRequestId")
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            _check_confirmation(the_org, confirm)
            request = uow.break_glass.get(rid)
            if request is None or request.org_id != the_org.id:
                raise NotFound("no such break-glass request in this organization", code="requestNotFound")
            if request.status != "pending":
                raise Conflict(f"the request is {request.status}", code="requestNotPending")
            if now >= request.expires_at:
                uow.break_glass.update(replace(request, status="expired"))
                uow.commit()
                raise Conflict("the approval window has passed: start a new request", code="requestExpired")
            if actor.user_id is not None and actor.user_id == request.requested_by:
                raise Forbidden("a second administrator must approve", code="sameApprover")
            outcome = self._execute(uow, actor, the_org, replace(request, approved_by=actor.user_id))
            uow.commit()
        self._after_commit()
        return self._with_recovery(actor, the_org, self._report(actor, the_org, outcome))

    def requests(self, actor: Actor, org: str) -> list[BreakGlassRequest]:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return uow.break_glass.find(the_org.id)

    def _execute(
        self, uow: UnitOfWork, actor: Actor, org: Organization, request: BreakGlassRequest
    ) -> BreakGlassOutcome:
        now = self._clock.now()
        uow.watermarks.raise_to(SubjectType.ORG, [org.id], [k.value for k in ALL_KINDS], now)
        publish(uow, EventType.ORG_CHANGED, org_id=org.id)
        # ONE event for the whole organization (subject org:<id>), not one per user.
        emit_org_session_revoked(
            uow,
            self._clock,
            org_id=org.id,
            initiating_entity="admin",
            reason_admin=f"break-glass: every token of {org.name} revoked"
            + (f" ({request.reason})" if request.reason else ""),
        )
        done = replace(request, status="executed", executed_at=now)
        uow.break_glass.update(done)
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.BREAK_GLASS_EXECUTE,
            org_id=org.id,
            target_type="org",
            target_id=org.id,
            details={
                "requestId": request.id,
                "requestedBy": request.requested_by,
                "approvedBy": request.approved_by,
                "reason": request.reason,
            },
        )
        return BreakGlassOutcome("executed", done)

    def _report(self, actor: Actor, org: Organization, outcome: BreakGlassOutcome) -> BreakGlassOutcome:
        """Count what died — after the watermark is committed and announced, so counting a
        million rows never delays the revocation itself — and audit the figures."""
        cutoff = outcome.request.executed_at or self._clock.now()
        with self._uow() as uow:
            counts = uow.tokens.count_live(org_id=org.id, issued_before=cutoff, now=cutoff)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.BREAK_GLASS_REPORT,
                org_id=org.id,
                target_type="org",
                target_id=org.id,
                details={"requestId": outcome.request.id, "revoked": counts},
            )
            uow.commit()
        return replace(outcome, revoked=counts)

    def _with_recovery(
        self, actor: Actor, org: Organization, outcome: BreakGlassOutcome
    ) -> BreakGlassOutcome:
        """A 24-hour admin-scoped token for the executing admin, issued after the watermark. Like
        any token it holds no more than the token that asked for it: its scopes are the recovery
        scopes that token carries (none in common: no recovery token)."""
        if actor.user_id is None:
            return outcome
        scopes = [s for s in RECOVERY_SCOPES.split() if actor.token is None or s in actor.token.scopes]
        if not scopes:
            return outcome
        recovery = self._pats.create(
            actor,
            org=org.id,
            user=actor.user_id,
            display_name="break-glass recovery",
            scope=scopes,
            valid_to=self._clock.now() + timedelta(hours=RECOVERY_HOURS),
            enforce_policy=False,
        )
        return replace(outcome, recovery=recovery)


def _check_confirmation(org: Organization, confirm: str | None) -> None:
    if confirm != org.name:
        raise InvalidInput(
            f"type the organization's name exactly ({org.name!r}) to confirm", code="confirmationMismatch"
        )
