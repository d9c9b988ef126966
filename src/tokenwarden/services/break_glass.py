"""Break-glass: revoke every token of every kind in an organization with one watermark.

Preview first (what would die), typed confirmation of the organization's name, an optional
two-person rule (a second admin approves within the policy's window), and a short-lived
recovery token for the admin who executes it, so the recovery can go on at once.

A recovery token neither starts nor approves a break-glass: each would mint it a successor (a
fresh 24 hours, past a policy that disables PAT creation — one stolen token renewing itself for
ever), and under the two-person rule it would count as a second administrator although the last
break-glass minted it. A new break-glass takes an administrator's ordinary credential, or the
operator's explicit override.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.principals import Organization
from tokenwarden.domain.tokens import BREAK_GLASS_RECOVERY
from tokenwarden.domain.watermarks import ALL_KINDS, SubjectType
from tokenwarden.ports.repositories import BreakGlassRequest, UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import (
    Actor,
    StepUpCheck,
    audit,
    get_org,
    new_id,
    no_step_up,
    parse_uuid,
    publish,
    reading,
    require_admin,
)
from tokenwarden.services.pats import IssuedPat, PatService
from tokenwarden.services.signals import emit_org_session_revoked

log = logging.getLogger(__name__)

RECOVERY_SCOPES = "vso.tokenadministration vso.pats_manage vso.auditlog vso.graph"
RECOVERY_HOURS = 24


@dataclass(frozen=True, slots=True)
class BreakGlassOutcome:
    status: str  # "executed" or "pending"
    request: BreakGlassRequest
    # what died, per kind; None while still being counted (the count is audited when done)
    revoked: dict[str, int] | None = field(default_factory=dict)
    recovery: IssuedPat | None = None
    marks_before: dict[str, datetime] = field(default_factory=dict)  # the org's, before execution


class BreakGlassService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        pats: PatService,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._pats = pats
        self.step_up: StepUpCheck = no_step_up  # break-glass needs a fresh second factor

    def preview(self, actor: Actor, org: str, top: int = 10) -> dict[str, Any]:
        """What break-glass would kill now: live tokens per kind, top owners, top clients."""
        now = self._clock.now()
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            marks = uow.watermarks.for_subject(SubjectType.ORG, the_org.id)
            per_kind = uow.break_glass.count_live(the_org.id, now=now, issued_before=now, org_marks=marks)
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
        self,
        actor: Actor,
        org: str,
        confirm: str | None,
        reason: str | None = None,
        *,
        operator_override: bool = False,
        count_within: float | None = None,
    ) -> BreakGlassOutcome:
        """Execute at once, or open a request a second admin must approve (two-person rule).

        ``count_within``: answer after at most that many seconds once executed, counting what
        died in the background if it takes longer (``revoked`` is then None; the count is
        audited as ``break-glass.report`` when done). None: wait for the count.

        The requester is an administrator of the organization acting with their own
        credential. The operator (no user) may only execute as an explicit, reasoned override,
        which skips the two-person rule and is audited as such."""
        now = self._clock.now()
        reason = (reason or "").strip()[:512] or None
        if operator_override and (not actor.is_operator or reason is None):
            raise InvalidInput("an operator override needs the operator and a reason", code="overrideInvalid")
        if actor.is_operator and not operator_override:
            raise Forbidden(
                "break-glass needs an administrator's own credential (or an explicit operator override)",
                code="credentialRequired",
            )
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            self.step_up(uow, actor, the_org.id)
            _refuse_recovery_token(uow, actor)
            _check_confirmation(the_org, confirm)
            policy = uow.policies.get(the_org.id) or OrgPolicy(org_id=the_org.id)
            request = BreakGlassRequest(
                id=new_id(),
                org_id=the_org.id,
                requested_by=actor.user_id,
                requested_at=now,
                expires_at=now + timedelta(minutes=policy.break_glass_approval_minutes),
                status="pending",
                reason=reason,
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
                    "twoPersonRule": policy.break_glass_two_person and not operator_override,
                    "operatorOverride": operator_override,
                    "requestedBy": actor.user_id,
                    "requestedByUpn": actor.upn,
                    "reason": request.reason,
                },
            )
            if policy.break_glass_two_person and not operator_override:
                uow.commit()
                return BreakGlassOutcome("pending", request)
            outcome = self._execute(uow, actor, the_org, request, override=operator_override)
            uow.commit()
        return self._finish(actor, the_org, outcome, count_within)

    def approve(
        self,
        actor: Actor,
        org: str,
        request_id: str,
        confirm: str | None,
        count_within: float | None = None,
    ) -> BreakGlassOutcome:
        """The second admin's approval executes a pending request: an administrator of the
        organization, with their own credential, who is not the requester."""
        rid = parse_uuid(request_id, "requestId", code="invalidRequestId")
        if actor.is_operator or actor.user_id is None:
            raise Forbidden(
                "approval needs the approving administrator's own credential", code="credentialRequired"
            )
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            self.step_up(uow, actor, the_org.id)
            _refuse_recovery_token(uow, actor)
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
            if request.requested_by is None or actor.user_id == request.requested_by:
                raise Forbidden("a second administrator must approve", code="sameApprover")
            outcome = self._execute(uow, actor, the_org, replace(request, approved_by=actor.user_id))
            uow.commit()
        return self._finish(actor, the_org, outcome, count_within)

    def requests(self, actor: Actor, org: str) -> list[BreakGlassRequest]:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return uow.break_glass.find(the_org.id)

    def _execute(
        self,
        uow: UnitOfWork,
        actor: Actor,
        org: Organization,
        request: BreakGlassRequest,
        *,
        override: bool = False,
    ) -> BreakGlassOutcome:
        now = self._clock.now()
        before = uow.watermarks.for_subject(SubjectType.ORG, org.id)
        requester = uow.users.get(request.requested_by) if request.requested_by else None
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
                "requestedByUpn": requester.upn if requester else actor.upn,
                "approvedBy": request.approved_by,
                "approvedByUpn": actor.upn if request.approved_by else None,
                "operatorOverride": override,
                "reason": request.reason,
            },
        )
        return BreakGlassOutcome("executed", done, marks_before=before)

    def _finish(
        self, actor: Actor, org: Organization, outcome: BreakGlassOutcome, count_within: float | None
    ) -> BreakGlassOutcome:
        """The recovery token and the count of what died. The watermark is committed and
        announced already: every node refuses the organization's tokens while this runs."""
        if count_within is None:
            return self._with_recovery(actor, org, self._report(actor, org, outcome))
        began = time.monotonic()
        counted: list[BreakGlassOutcome] = []
        done = threading.Event()

        def count() -> None:
            try:
                counted.append(self._report(actor, org, outcome))
            except Exception:  # the execution is audited already; only the figures are missing
                log.exception("break-glass %s: counting what died failed", outcome.request.id)
            finally:
                done.set()

        threading.Thread(target=count, name="tokenwarden-break-glass-count", daemon=True).start()
        with_recovery = self._with_recovery(actor, org, replace(outcome, revoked=None))
        if done.wait(max(0.0, count_within - (time.monotonic() - began))) and counted:
            return replace(with_recovery, revoked=counted[0].revoked)
        return with_recovery

    def _report(self, actor: Actor, org: Organization, outcome: BreakGlassOutcome) -> BreakGlassOutcome:
        """Count what died — after the watermark is committed and announced, so counting a
        million rows never delays the revocation itself, and in a read, so that it never holds
        the write lock (SQLite's only one) either — and audit the figures."""
        cutoff = outcome.request.executed_at or self._clock.now()
        with reading(self._uow) as uow:
            counts = uow.break_glass.count_live(
                org.id, now=cutoff, issued_before=cutoff, org_marks=outcome.marks_before
            )
        with self._uow() as uow:
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
            purpose=BREAK_GLASS_RECOVERY,
        )
        return replace(outcome, recovery=recovery)


def _refuse_recovery_token(uow: UnitOfWork, actor: Actor) -> None:
    """Forbidden when the actor acts through a break-glass recovery token."""
    key = actor.token.key if actor.token is not None else None
    record = uow.tokens.by_hash(key) if key is not None else None
    if record is not None and record.is_recovery:
        raise Forbidden(
            "a break-glass recovery token cannot start or approve a break-glass: use an "
            "administrator's own credential (the operator issues one with `tokenwarden pat create`), "
            "or the operator's `tokenwarden revoke org --operator-override --reason R`",
            code="recoveryTokenRefused",
        )


def _check_confirmation(org: Organization, confirm: str | None) -> None:
    if confirm != org.name:
        raise InvalidInput(
            f"type the organization's name exactly ({org.name!r}) to confirm", code="confirmationMismatch"
        )
