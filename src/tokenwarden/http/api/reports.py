"""Reports of an organization's tokens (issue 12): policy violations and the weekly report.

Administrators of the organization only (``vso.tokenadministration``): a member is 403, a
caller of another organization gets the same 404 as an unknown organization (``org_caller``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tokenwarden.http.deps import container, org_caller
from tokenwarden.http.timeparse import UtcDateTime
from tokenwarden.services.policy_check import violation_json

router = APIRouter(prefix="/api/v1/orgs/{org}", tags=["reports"])
ADMIN = "vso.tokenadministration"


@router.get("/policy/violations")
def policy_violations(request: Request, org: str) -> dict[str, Any]:
    """Live PATs issued in the organization that break its current policy, each with what
    enforcement would do (``fix``). Read-only."""
    _, _, actor = org_caller(request, org, ADMIN)
    found = container(request).policy_check.violations(actor, org)
    return {"count": len(found), "value": [violation_json(v) for v in found]}


@router.get("/reports/weekly")
def weekly_report(request: Request, org: str, end: UtcDateTime | None = None) -> dict[str, Any]:
    """The weekly report: the 7 days ending at ``end`` (ISO-8601, default now)."""
    _, _, actor = org_caller(request, org, ADMIN)
    return container(request).weekly_report.build(actor, org, end=end)
