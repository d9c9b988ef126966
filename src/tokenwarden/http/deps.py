"""Small helpers shared by the route modules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request

from tokenwarden.bootstrap import Container
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.principals import Organization
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.http.auth import authenticate, secret_from_header
from tokenwarden.services.common import Actor
from tokenwarden.services.validation import Caller


def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def org_caller(request: Request, org: str, scope: str) -> tuple[Organization, Caller, Actor]:
    """Resolve ``org`` and authenticate the request for ``scope`` within it.

    Authentication runs first so that an anonymous caller learns nothing about which
    organizations exist (401 before 404).
    """
    c = container(request)
    secret_from_header(request.headers.get("authorization"))
    the_org = c.directory.find_org(org)
    caller, actor = authenticate(request, c.validator, scope, the_org.id)
    return the_org, caller, actor


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
        "lastUsedAt": iso_z(record.last_used_at),
        "lastUsedIp": record.last_used_ip,
        "token": secret,
    }
