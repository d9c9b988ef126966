"""Native organization administration: members, policy, audit log, bulk revocation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response

from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.principals import Invitation, Membership, User
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.watermarks import parse_kinds
from tokenwarden.http.api.models import (
    OffboardRequest,
    PolicyPatch,
    RevocationsRequest,
    RuleCreate,
    UserCreate,
    UserPatch,
)
from tokenwarden.http.deps import container, org_caller, pat_json
from tokenwarden.http.inputs import MAX_ID
from tokenwarden.http.timeparse import UtcDateTime
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.audit_log import audit_csv, audit_row, check_format
from tokenwarden.services.policies import policy_as_dict

router = APIRouter(prefix="/api/v1/orgs/{org}", tags=["administration"])
ADMIN = "vso.tokenadministration"
AUDIT = "vso.auditlog"


def user_json(user: User, membership: Membership) -> dict[str, Any]:
    """A member as this organization sees them: status, risk and role are this organization's."""
    return {
        "id": user.id,
        "upn": user.upn,
        "displayName": user.display_name,
        "status": membership.status.value,
        "riskLevel": membership.risk_level.value,
        "riskState": membership.risk_state.value,
        "identitySource": user.identity_source.value,
        "descriptor": user.descriptor,
        "createdAt": iso_z(user.created_at),
        "role": membership.role.value,
    }


def invitation_json(inv: Invitation, upn: str, org_name: str | None = None) -> dict[str, Any]:
    return {
        "invitationId": inv.id,
        "orgId": inv.org_id,
        "org": org_name,
        "upn": upn,
        "role": inv.role.value,
        "status": inv.status,
        "createdAt": iso_z(inv.created_at),
        "expiresAt": iso_z(inv.expires_at),
    }


@router.get("/users")
def list_users(request: Request, org: str) -> dict[str, Any]:
    _, _, actor = org_caller(request, org, ADMIN)
    users = container(request).directory.list_users(actor, org)
    return {"value": [user_json(u, r) for u, r in users], "count": len(users)}


@router.post("/users", status_code=201, responses={202: {"description": "an invitation was sent"}})
def add_user(request: Request, org: str, body: UserCreate, response: Response) -> dict[str, Any]:
    """Add a member. A new UPN creates the user (201). An identity that already exists is only
    *invited* (202): it becomes a member when it accepts (``POST /api/v1/invitations/{id}``)."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    result = container(request).directory.add_user(
        actor,
        org,
        body.upn,
        display_name=body.display_name,
        role=body.role,
        identity_source=body.identity_source,
    )
    if result.invitation is not None:
        response.status_code = 202
        return invitation_json(result.invitation, result.user.upn, the_org.name)
    assert result.membership is not None  # noqa: S101 - no invitation means a membership
    return user_json(result.user, result.membership)


@router.get("/invitations")
def list_invitations(request: Request, org: str) -> dict[str, Any]:
    """The organization's pending invitations."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    found = container(request).directory.list_invitations(actor, org)
    return {"value": [invitation_json(inv, user.upn, the_org.name) for inv, user in found]}


@router.delete("/invitations/{invitation_id}", status_code=204)
def cancel_invitation(request: Request, org: str, invitation_id: str) -> Response:
    """Withdraw a pending invitation."""
    _, _, actor = org_caller(request, org, ADMIN)
    container(request).directory.cancel_invitation(actor, org, invitation_id)
    return Response(status_code=204)


@router.get("/users/{user}")
def get_user(request: Request, org: str, user: str) -> dict[str, Any]:
    _, _, actor = org_caller(request, org, ADMIN)
    found, role = container(request).directory.get_member(actor, org, user)
    return user_json(found, role)


@router.patch("/users/{user}")
def patch_user(request: Request, org: str, user: str, body: UserPatch) -> dict[str, Any]:
    """Change a member's role, status (disabling kills every token of the user at once) or the
    address their notices go to (``email``; "" = the UPN)."""
    _, _, actor = org_caller(request, org, ADMIN)
    d = container(request).directory
    if body.risk_level is not None:
        raise InvalidInput("riskLevel cannot be changed yet", code="notSupported")
    if body.role is not None:
        d.set_role(actor, org, user, body.role)
    if body.status is not None:
        d.set_status(actor, org, user, body.status)
    if body.email is not None:
        container(request).token_care.set_contact(actor, user, body.email, None, org=org)
    found, role = d.get_member(actor, org, user)
    return user_json(found, role)


@router.delete("/users/{user}", status_code=204)
def remove_user(request: Request, org: str, user: str) -> Response:
    _, _, actor = org_caller(request, org, ADMIN)
    container(request).directory.remove_member(actor, org, user)
    return Response(status_code=204)


@router.post("/users/{user}/offboard")
def offboard_user(
    request: Request, org: str, user: str, body: OffboardRequest | None = None
) -> dict[str, Any]:
    """Offboard a member (docs/offboarding.md): in one transaction their membership is disabled,
    every token of theirs here (PATs, OAuth tokens, sessions) is cut and their managed credentials
    and token watches pass to ``successor`` (default: the security contact, if an active member);
    then each handed-over credential is rotated. The body is optional. 200 with the report
    (``credentialsHandedOver[].rotated`` false and ``warnings`` say what is left to do); 400
    ``invalidSuccessor`` (nothing done), ``cannotOffboardSelf``; 404 ``userNotFound``; 409
    ``servicePrincipal``. Running it again finishes an interrupted offboarding."""
    _, _, actor = org_caller(request, org, ADMIN)
    successor = body.successor if body is not None else None
    return container(request).offboarding.offboard(actor, org, user, successor).as_dict()


@router.get("/users/{user}/pats")
def list_user_pats(request: Request, org: str, user: str) -> dict[str, Any]:
    """Every PAT of a member, active, expired and revoked."""
    _, _, actor = org_caller(request, org, ADMIN)
    c = container(request)
    _, records = c.pats.list_for_admin(actor, org, user)
    now = c.clock.now()
    return {"value": [pat_json(r, now) for r in records], "count": len(records)}


@router.get("/policy")
def get_policy(request: Request, org: str) -> dict[str, Any]:
    _, _, actor = org_caller(request, org, ADMIN)
    return policy_as_dict(container(request).policies.get(actor, org))


@router.patch("/policy")
def patch_policy(request: Request, org: str, body: PolicyPatch) -> dict[str, Any]:
    """Change PAT policies; fields left out keep their value."""
    _, _, actor = org_caller(request, org, ADMIN)
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise InvalidInput("no policy field given", code="invalidPolicy")
    return policy_as_dict(container(request).policies.update(actor, org, **changes))


def _rule_args(body: RuleCreate) -> dict[str, Any]:
    return {
        "created_after": body.created_after,
        "kinds": parse_kinds(body.kinds) if body.kinds else None,
        "users": body.users,
        "match_implied": body.match_implied,
    }


@router.post("/revocation-rules", status_code=201)
def create_rule(request: Request, org: str, body: RuleCreate) -> dict[str, Any]:
    """Revoke every token issued before ``createdBefore`` that literally carries one of ``scopes``;
    without ``scopes`` (then ``createdBefore`` is required), every token issued before it."""
    _, _, actor = org_caller(request, org, ADMIN)
    rule = container(request).rules.create(actor, org, body.scopes, body.created_before, **_rule_args(body))
    return rule_json(rule)


@router.post("/revocation-rules/preview")
def preview_rule(request: Request, org: str, body: RuleCreate) -> dict[str, Any]:
    """Dry run: how many live tokens the rule would cut. Nothing is stored."""
    _, _, actor = org_caller(request, org, ADMIN)
    found = container(request).rules.preview(actor, org, body.scopes, body.created_before, **_rule_args(body))
    return {
        "dryRun": True,
        "liveTokens": found.live_tokens,
        "byKind": found.by_kind,
        "rule": rule_json(found.rule),
    }


@router.delete("/revocation-rules/{rule_id}")
def delete_rule(
    request: Request, org: str, rule_id: str, dry_run: bool = Query(False, alias="dryRun")
) -> dict[str, Any]:
    """Delete a rule: the tokens it cut (and nothing else cuts) are valid again (audited)."""
    _, _, actor = org_caller(request, org, ADMIN)
    done = container(request).rules.delete(actor, org, rule_id, dry_run=dry_run)
    return {
        "dryRun": dry_run,
        "deleted": not dry_run,
        "restoredTokens": done.restored_tokens,
        "byKind": done.by_kind,
        "rule": rule_json(done.rule),
    }


@router.get("/revocation-rules")
def list_rules(request: Request, org: str) -> dict[str, Any]:
    _, _, actor = org_caller(request, org, ADMIN)
    rules = container(request).rules.find(actor, org)
    return {"value": [rule_json(r) for r in rules], "count": len(rules)}


def rule_json(rule: RevocationRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "scopes": " ".join(rule.scopes) or None,  # null: every scope
        "createdBefore": iso_z(rule.created_before),
        "createdAfter": iso_z(rule.created_after),
        "kinds": [k.value for k in rule.kinds] if rule.kinds else None,
        "userIds": list(rule.user_ids) if rule.user_ids else None,
        "matchImplied": rule.match_implied,
        "createdAt": iso_z(rule.created_at),
        "createdBy": rule.created_by,
    }


@router.post("/revocations")
def revoke_many(request: Request, org: str, body: RevocationsRequest) -> dict[str, Any]:
    """Revoke many PATs by authorizationId; every id is checked before anything changes."""
    _, _, actor = org_caller(request, org, ADMIN)
    count = container(request).pats.revoke_many(actor, org, body.authorization_ids)
    return {"revoked": count}


@router.get("/audit", response_model=None)
def query_audit(
    request: Request,
    org: str,
    since: UtcDateTime | None = None,
    until: UtcDateTime | None = None,
    actor: str | None = Query(None, max_length=256),
    target: str | None = Query(None, max_length=256),
    event_type: list[str] = Query(default_factory=list, alias="eventType"),
    after_id: int = Query(0, ge=0, le=MAX_ID, alias="afterId"),
    before_id: int | None = Query(None, ge=1, le=MAX_ID, alias="beforeId"),
    limit: int = Query(1000, ge=1, le=10_000),
    format: str = Query("json", max_length=16),
) -> dict[str, Any] | Response:
    """Audit entries of the organization, newest first (JSON, or CSV with ``format=csv``).

    Page on with ``beforeId`` = the ``nextBeforeId`` of the previous page (null on the last
    page); ``afterId`` keeps only entries newer than an id. An unknown ``eventType`` or
    ``format`` is a 400 that lists the valid values."""
    check_format(format)
    _, _, who = org_caller(request, org, AUDIT)
    entries = container(request).audit.query(
        who,
        org,
        AuditQuery(
            since=since,
            until=until,
            actor_id=actor,
            target_id=target,
            event_types=tuple(event_type),
            after_id=after_id,
            before_id=before_id,
            limit=limit,
        ),
    )
    rows = [audit_row(e) for e in entries]
    if format == "csv":
        return Response(audit_csv(rows), media_type="text/csv; charset=utf-8")
    more = len(rows) == limit
    return {"value": rows, "count": len(rows), "nextBeforeId": rows[-1]["id"] if more else None}
