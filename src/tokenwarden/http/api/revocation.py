"""Native revocation routes: by value, a user's tokens, risk, risky users, break-glass."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request

from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import DomainError, InvalidInput
from tokenwarden.domain.principals import Membership, RiskLevel, RiskState, User
from tokenwarden.domain.watermarks import parse_kinds
from tokenwarden.http.api.models import BreakGlassStart, RiskChange, RiskyRevoke, TokenValue, UserRevoke
from tokenwarden.http.auth import authenticate, client_ip, secret_from_header
from tokenwarden.http.deps import container, org_caller
from tokenwarden.services.break_glass import BreakGlassOutcome
from tokenwarden.services.revocation import LookupResult, RevokeResult

router = APIRouter(prefix="/api/v1/orgs/{org}", tags=["revocation"])
# Leaked-token intake without naming an organization: searched in every one the caller administers.
any_org_router = APIRouter(prefix="/api/v1/tokens", tags=["revocation"])
ADMIN = "vso.tokenadministration"


def lookup_json(found: LookupResult, now: datetime) -> dict[str, Any]:
    """A looked-up token as the organization it was found in sees it (state, and the cause when
    revoked: direct, user, membership, rule or break-glass)."""
    r = found.record
    return {
        "authorizationId": r.authorization_id,
        "kind": r.kind.value,
        "displayName": r.display_name,
        "orgId": found.org_id,
        "state": r.state(now).value,
        "revokedCause": found.cause,
        "owner": {"id": found.owner.id, "upn": found.owner.upn},
        "scope": r.scope_string,
        "validFrom": iso_z(r.valid_from),
        "validTo": iso_z(r.valid_to),
        "lastUsedAt": iso_z(r.last_used_at),
        "lastUsedIp": r.last_used_ip,
        "revokedAt": iso_z(r.revoked_at),
        "revokeReason": r.revoke_reason,
    }


def revoke_json(result: RevokeResult) -> dict[str, Any]:
    return {
        "users": len(result.user_ids),
        "kinds": [k.value for k in result.kinds],
        "revoked": result.revoked,
        "total": result.total,
        "at": iso_z(result.at),
    }


def risk_json(member: tuple[User, Membership]) -> dict[str, Any]:
    """A member's risk in this organization."""
    user, m = member
    return {
        "id": user.id,
        "upn": user.upn,
        "riskLevel": m.risk_level.value,
        "riskState": m.risk_state.value,
        "riskLastUpdatedAt": iso_z(m.risk_updated_at),
    }


@router.post("/tokens/lookup")
def lookup(request: Request, org: str, body: TokenValue) -> dict[str, Any]:
    """Whose token is this? (an admin pasting a leaked token; the lookup is audited)"""
    _, _, actor = org_caller(request, org, ADMIN)
    c = container(request)
    return lookup_json(c.revocation.lookup(actor, org, body.token), c.clock.now())


@router.post("/tokens/revoke-by-value")
def revoke_by_value(request: Request, org: str, body: TokenValue) -> dict[str, Any]:
    """Revoke a token given its value, whatever its kind."""
    _, _, actor = org_caller(request, org, ADMIN)
    c = container(request)
    return lookup_json(c.revocation.revoke_by_value(actor, org, body.token, body.reason), c.clock.now())


@any_org_router.post("/lookup")
def lookup_anywhere(request: Request, body: TokenValue) -> dict[str, Any]:
    """Whose token is this, in any organization the caller administers? ``token`` may be the
    token, a pasted log line or header, or a Basic credential; the value is never echoed."""
    c = container(request)
    _, actor = authenticate(request, c.validator, ADMIN)
    found = c.revocation.lookup(actor, None, body.token, admin_here(request))
    return lookup_json(found, c.clock.now())


@any_org_router.post("/revoke-by-value")
def revoke_anywhere(request: Request, body: TokenValue) -> dict[str, Any]:
    """Revoke a leaked token found in any organization the caller administers."""
    c = container(request)
    _, actor = authenticate(request, c.validator, ADMIN)
    found = c.revocation.revoke_by_value(actor, None, body.token, body.reason, admin_here(request))
    return lookup_json(found, c.clock.now())


def admin_here(request: Request) -> Callable[[str], bool]:
    """Is the request's credential valid for administration *in* this organization right now
    (its cut-offs, rules and break-glass applied)? Searching other organizations must not
    escape what they did to this token."""
    c = container(request)
    secret = secret_from_header(request.headers.get("authorization"))
    ip = client_ip(request)

    def check(org_id: str) -> bool:
        try:
            c.validator.validate(secret, ADMIN, org_id, ip)
        except DomainError:
            return False
        return True

    return check


@router.post("/users/{user}/revoke")
def revoke_user(request: Request, org: str, user: str, body: UserRevoke | None = None) -> dict[str, Any]:
    """Revoke every token of a member, of the given kinds (default all): one watermark per kind."""
    _, _, actor = org_caller(request, org, ADMIN)
    body = body or UserRevoke()
    result = container(request).revocation.revoke_user(actor, org, user, parse_kinds(body.kinds), body.reason)
    return revoke_json(result)


@router.put("/users/{user}/risk")
def set_risk(request: Request, org: str, user: str, body: RiskChange) -> dict[str, Any]:
    """Set a member's risk level (and state; default atRisk, or none for level none)."""
    _, _, actor = org_caller(request, org, ADMIN)
    c = container(request)
    target, _ = c.directory.get_member(actor, org, user)
    state = body.risk_state or (RiskState.NONE if body.risk_level.rank == 0 else RiskState.AT_RISK)
    return risk_json(c.revocation.set_risk(actor, org, [target.id], body.risk_level, state)[0])


@router.get("/risky-users")
def risky_users(
    request: Request, org: str, min_risk_level: str = Query("low", alias="minRiskLevel", max_length=16)
) -> dict[str, Any]:
    """Members at or above a risk level."""
    _, _, actor = org_caller(request, org, ADMIN)
    try:
        floor = RiskLevel(min_risk_level)
    except ValueError:
        raise InvalidInput("minRiskLevel must be low, medium or high", code="invalidRiskLevel") from None
    levels = [lv for lv in RiskLevel if lv.rank >= max(floor.rank, 1) and lv is not RiskLevel.HIDDEN]
    users = container(request).revocation.risky_users(actor, org, levels)
    return {"value": [risk_json(u) for u in users], "count": len(users)}


@router.post("/risky-users/revoke")
def revoke_risky(request: Request, org: str, body: RiskyRevoke | None = None) -> dict[str, Any]:
    """Revoke every token of every member at or above ``minRiskLevel`` (default high) in one call."""
    _, _, actor = org_caller(request, org, ADMIN)
    body = body or RiskyRevoke()
    result = container(request).revocation.revoke_risky(
        actor, org, body.min_risk_level, parse_kinds(body.kinds)
    )
    return revoke_json(result)


# A break-glass answers within this many seconds of its commit; a longer count of what died
# finishes in the background (``counting``: true) and is audited when done.
BREAK_GLASS_ANSWER_WITHIN = 0.05


def outcome_json(outcome: BreakGlassOutcome) -> dict[str, Any]:
    req = outcome.request
    data: dict[str, Any] = {
        "status": outcome.status,
        "requestId": req.id,
        "requestedAt": iso_z(req.requested_at),
        "expiresAt": iso_z(req.expires_at),
        "executedAt": iso_z(req.executed_at),
        # None while a big organization is still being counted: the figures are then audited
        # (break-glass.report) when done — the revocation itself is in force everywhere already
        "revoked": outcome.revoked,
        "total": None if outcome.revoked is None else sum(outcome.revoked.values()),
        "counting": outcome.revoked is None,
        "recoveryToken": None,
    }
    if outcome.recovery is not None:
        data["recoveryToken"] = {
            "authorizationId": outcome.recovery.record.authorization_id,
            "scope": outcome.recovery.record.scope_string,
            "validTo": iso_z(outcome.recovery.record.valid_to),
            "token": outcome.recovery.secret,
        }
    return data


@router.get("/break-glass/preview")
def break_glass_preview(request: Request, org: str) -> dict[str, Any]:
    """What break-glass would revoke now: live tokens per kind, top owners, top clients."""
    _, _, actor = org_caller(request, org, ADMIN)
    return container(request).break_glass.preview(actor, org)


@router.post("/break-glass")
def break_glass(request: Request, org: str, body: BreakGlassStart) -> dict[str, Any]:
    """Revoke every token of every kind in the organization (``confirm`` = the org's name).

    With the two-person rule the answer is ``pending`` and a second admin must approve.
    The executing admin receives a 24-hour recovery token (shown once).
    """
    _, _, actor = org_caller(request, org, ADMIN)
    return outcome_json(
        container(request).break_glass.start(
            actor, org, body.confirm, body.reason, count_within=BREAK_GLASS_ANSWER_WITHIN
        )
    )


@router.post("/break-glass/{request_id}/approve")
def break_glass_approve(request: Request, org: str, request_id: str, body: BreakGlassStart) -> dict[str, Any]:
    """A second administrator approves (and thereby executes) a pending break-glass request."""
    _, _, actor = org_caller(request, org, ADMIN)
    return outcome_json(
        container(request).break_glass.approve(
            actor, org, request_id, body.confirm, count_within=BREAK_GLASS_ANSWER_WITHIN
        )
    )
