"""Usage records of one token (issue 14): who used it, from where, how often, with what result."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tokenwarden.domain.errors import InsufficientScope
from tokenwarden.http.deps import container, org_caller
from tokenwarden.services.common import Actor
from tokenwarden.services.usage import totals_json

router = APIRouter(prefix="/api/v1/orgs/{org}", tags=["usage"])
# an administrator's audit or token-admin token, or the owner's own PAT-reading one
SCOPES = ("vso.auditlog", "vso.tokenadministration", "vso.pats")


def usage_caller(request: Request, org: str) -> Actor:
    """The caller, authenticated with any of :data:`SCOPES` (the service decides owner/admin)."""
    for scope in SCOPES[:-1]:
        try:
            return org_caller(request, org, scope)[2]
        except InsufficientScope:
            continue
    return org_caller(request, org, SCOPES[-1])[2]


@router.get("/tokens/{token_id}/usage")
def token_usage(request: Request, org: str, token_id: str) -> dict[str, Any]:
    """First and last use, networks, requests per day, user agents, areas and the last 24
    hours' status classes (401/403 counts) of one token of the organization (its owner or an
    administrator). Counts reach the table within a few seconds of the requests."""
    actor = usage_caller(request, org)
    c = container(request)
    totals, about = c.usage.totals(actor, org, token_id)
    return totals_json(totals, about, c.usage.retention_days)
