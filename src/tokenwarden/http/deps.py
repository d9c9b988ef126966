"""Small helpers shared by the route modules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request

from tokenwarden.bootstrap import Container
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import DomainError, InvalidInput
from tokenwarden.domain.principals import Organization, Role
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.http.auth import authenticate, client_ip, member_org, secret_from_header
from tokenwarden.http.usage import note_token
from tokenwarden.services.common import Actor
from tokenwarden.services.effective import cause_of
from tokenwarden.services.validation import Caller


def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def org_caller(request: Request, org: str, scope: str) -> tuple[Organization, Caller, Actor]:
    """Resolve ``org`` and authenticate the request for ``scope`` within it — every route
    under ``/api/v1/orgs/{org}`` and ``/{org}/_apis`` comes here.

    A missing or invalid credential is 401 whether or not the organization exists; a valid one
    of a non-member gets the same 404 ``organizationNotFound`` as an unknown organization.
    """
    c = container(request)
    secret = secret_from_header(request.headers.get("authorization"))
    ip = client_ip(request)
    try:
        the_org, caller = member_org(c.validator, c.directory.find_org, secret, scope, org, ip)
    except DomainError as exc:
        note_token(request, exc.token_key)
        raise
    note_token(request, caller.key)
    return the_org, caller, caller.actor(ip, request.headers.get("user-agent"))


def admin_org(request: Request, org: str | None, scope: str, how: str) -> tuple[Organization, Actor]:
    """The organization an installation-level route acts for: ``org``, else the caller's only
    organization where they are an administrator; ``how`` tells the caller how to name one."""
    if org:
        the_org, _, actor = org_caller(request, org, scope)
        return the_org, actor
    _, actor = authenticate(request, container(request).validator, scope)
    admin_of = [o for o, role in container(request).directory.orgs_of(actor) if role is Role.ADMIN]
    if len(admin_of) != 1:
        raise InvalidInput(
            f"say which organization with {how} (the caller administers "
            f"{'none' if not admin_of else 'several'})",
            code="orgRequired",
        )
    the_org, _, actor = org_caller(request, admin_of[0].id, scope)
    return the_org, actor


def pat_json(record: TokenRecord, now: datetime, secret: str | None = None) -> dict[str, Any]:
    """The native PAT representation (Azure DevOps names plus lifecycle fields)."""
    return {
        "authorizationId": record.authorization_id,
        "displayName": record.display_name,
        "scope": record.scope_string,
        "targetAccounts": None if record.target_orgs is None else list(record.target_orgs),
        "allOrgs": record.all_orgs,
        "validFrom": iso_z(record.valid_from),
        "validTo": iso_z(record.valid_to),
        "state": record.state(now).value,
        "userId": record.user_id,
        "orgId": record.org_id,
        "createdAt": iso_z(record.created_at),
        "revokedAt": iso_z(record.revoked_at),
        "revokedBy": record.revoked_by,
        "revokeReason": record.revoke_reason,
        # direct | user | membership | rule | break-glass: what ended it in this organization
        "revokedCause": cause_of(record),
        "lastUsedAt": iso_z(record.last_used_at),
        "lastUsedIp": record.last_used_ip,
        "token": secret,
    }
