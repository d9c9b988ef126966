"""Lifecycle routes (issue 12): policy enforcement on existing tokens, extending a PAT by days,
a PAT's watchers, and where the caller's own notices go."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import Field, model_validator

from tokenwarden.domain.errors import InvalidInput, NotFound
from tokenwarden.domain.principals import User
from tokenwarden.http.api.models import Body
from tokenwarden.http.auth import authenticate
from tokenwarden.http.deps import container, org_caller, pat_json
from tokenwarden.http.timeparse import UtcDateTime
from tokenwarden.services.policy_enforcement import enforcement_json

router = APIRouter(tags=["lifecycle"])
ORG = "/api/v1/orgs/{org}"
READ, MANAGE = "vso.pats", "vso.pats_manage"
ADMIN, PROFILE_WRITE = "vso.tokenadministration", "vso.profile_write"


class EnforceBody(Body):
    grace_days: int = Field(alias="graceDays", description="0..90; 0 applies at once")


class ExtendBody(Body):
    days: int | None = Field(default=None, description="validTo = now + days")
    valid_to: UtcDateTime | None = Field(default=None, alias="validTo")

    @model_validator(mode="after")
    def _one(self) -> ExtendBody:
        if (self.days is None) == (self.valid_to is None):
            raise ValueError("give exactly one of days and validTo")
        return self


class WatcherBody(Body):
    address: str = Field(max_length=320)


class NotificationsBody(Body):
    email: str | None = Field(default=None, max_length=320, description='"" goes back to the UPN')
    digest: bool | None = None


def contact_json(user: User) -> dict[str, Any]:
    return {
        "upn": user.upn,
        "email": user.email,
        "address": user.notify_address,
        "digest": user.notify_digest,
    }


# ---------------------------------------------------------------------- policy enforcement
@router.post(f"{ORG}/policy/enforce", status_code=202)
def enforce_policy(request: Request, org: str, body: EnforceBody) -> dict[str, Any]:
    """Tell the owner of every live PAT that breaks today's policy what will happen; the tokens
    are shortened or revoked when the grace ends (with 0 days, now)."""
    _, _, actor = org_caller(request, org, ADMIN)
    return enforcement_json(container(request).enforcement.enforce(actor, org, body.grace_days))


@router.get(f"{ORG}/policy/enforcements")
def list_enforcements(request: Request, org: str) -> dict[str, Any]:
    _, _, actor = org_caller(request, org, ADMIN)
    found = container(request).enforcement.enforcements(actor, org)
    return {"value": [enforcement_json(e) for e in found], "count": len(found)}


# ---------------------------------------------------------------------- owner self-service
@router.post(f"{ORG}/pats/{{authorization_id}}/extend")
def extend_pat(request: Request, org: str, authorization_id: str, body: ExtendBody) -> dict[str, Any]:
    """Move validTo of one of the caller's still-valid PATs to now + ``days`` (or ``validTo``)."""
    the_org, _, actor = org_caller(request, org, MANAGE)
    c = container(request)
    if body.days is not None:
        record = c.token_care.extend(actor, authorization_id, body.days, the_org.id)
    else:
        record = c.pats.update(actor, authorization_id, valid_to=body.valid_to, org_id=the_org.id)
    return pat_json(record, c.clock.now())


@router.get(f"{ORG}/pats/{{authorization_id}}/watchers")
def list_watchers(request: Request, org: str, authorization_id: str) -> dict[str, Any]:
    the_org, _, actor = org_caller(request, org, READ)
    found = container(request).token_care.watchers(actor, authorization_id, the_org.id)
    return {"value": found, "count": len(found)}


@router.post(f"{ORG}/pats/{{authorization_id}}/watchers", status_code=201)
def add_watcher(request: Request, org: str, authorization_id: str, body: WatcherBody) -> dict[str, Any]:
    """Another address that hears this PAT's notices (at most 20)."""
    the_org, _, actor = org_caller(request, org, MANAGE)
    found = container(request).token_care.add_watcher(actor, authorization_id, body.address, the_org.id)
    return {"value": found, "count": len(found)}


@router.delete(f"{ORG}/pats/{{authorization_id}}/watchers/{{address}}", status_code=204)
def remove_watcher(request: Request, org: str, authorization_id: str, address: str) -> Response:
    the_org, _, actor = org_caller(request, org, MANAGE)
    if not container(request).token_care.remove_watcher(actor, authorization_id, address, the_org.id):
        raise NotFound("this address does not watch the PAT", code="watcherNotFound")
    return Response(status_code=204)


@router.patch("/api/v1/me/notifications")
def my_notifications(request: Request, body: NotificationsBody) -> dict[str, Any]:
    """Where the caller's notices go: ``email`` ("" = the UPN again) and ``digest``."""
    c = container(request)
    caller, actor = authenticate(request, c.validator, PROFILE_WRITE)
    if body.email is None and body.digest is None:
        raise InvalidInput("give email and/or digest", code="invalidInput")
    return contact_json(c.token_care.set_contact(actor, caller.user.id, body.email, body.digest))
