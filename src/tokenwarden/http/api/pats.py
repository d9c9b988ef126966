"""Native PAT routes: the caller's own PATs in one organization."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response

from tokenwarden.http.api.models import PatCreate, PatUpdate
from tokenwarden.http.deps import container, org_caller, pat_json
from tokenwarden.services.pats import MAX_PAGE, PatFilter, PatSort

router = APIRouter(prefix="/api/v1/orgs/{org}/pats", tags=["pats"])
READ, MANAGE = "vso.pats", "vso.pats_manage"


@router.get("")
def list_pats(
    request: Request,
    org: str,
    filter: PatFilter = PatFilter.ACTIVE,
    sort: PatSort = PatSort.DISPLAY_DATE,
    ascending: bool = True,
    top: int = Query(MAX_PAGE, ge=1, le=MAX_PAGE),
    continuation: str | None = Query(None, max_length=200),
) -> dict[str, Any]:
    """List the caller's PATs (filter, sort, page with ``continuation``)."""
    the_org, _, actor = org_caller(request, org, READ)
    c = container(request)
    page = c.pats.page(
        actor, the_org.id, filter=filter, sort=sort, ascending=ascending, top=top, continuation=continuation
    )
    now = c.clock.now()
    uses = c.usage.requests_since([t.authorization_id for t in page.items], days=30)
    value = [{**pat_json(t, now), "requests30d": uses.get(t.authorization_id, 0)} for t in page.items]
    return {"value": value, "continuation": page.continuation}


@router.post("", status_code=201)
def create_pat(request: Request, org: str, body: PatCreate) -> dict[str, Any]:
    """Create a PAT for the caller; the response holds the secret, shown this once."""
    the_org, caller, actor = org_caller(request, org, MANAGE)
    c = container(request)
    issued = c.pats.create(
        actor,
        org=the_org.id,
        user=caller.user.id,
        display_name=body.display_name,
        scope=body.scope,
        valid_to=body.valid_to,
        all_orgs=body.all_orgs,
    )
    return pat_json(issued.record, c.clock.now(), issued.secret)


@router.get("/{authorization_id}")
def get_pat(request: Request, org: str, authorization_id: str) -> dict[str, Any]:
    the_org, _, actor = org_caller(request, org, READ)
    c = container(request)
    return pat_json(c.pats.get(actor, authorization_id, the_org.id), c.clock.now())


@router.patch("/{authorization_id}")
def update_pat(request: Request, org: str, authorization_id: str, body: PatUpdate) -> dict[str, Any]:
    """Rename, re-scope, extend or shorten a still-valid PAT."""
    the_org, _, actor = org_caller(request, org, MANAGE)
    c = container(request)
    record = c.pats.update(
        actor,
        authorization_id,
        display_name=body.display_name,
        scope=body.scope,
        valid_to=body.valid_to,
        all_orgs=body.all_orgs,
        org_id=the_org.id,
    )
    return pat_json(record, c.clock.now())


@router.post("/{authorization_id}/regenerate")
def regenerate_pat(request: Request, org: str, authorization_id: str) -> dict[str, Any]:
    """New secret for the same PAT; the old secret stops working at once."""
    the_org, _, actor = org_caller(request, org, MANAGE)
    c = container(request)
    issued = c.pats.regenerate(actor, authorization_id, the_org.id)
    return pat_json(issued.record, c.clock.now(), issued.secret)


@router.delete("/{authorization_id}", status_code=204)
def revoke_pat(request: Request, org: str, authorization_id: str) -> Response:
    """Revoke a PAT (its owner, or an administrator of its organization)."""
    the_org, _, actor = org_caller(request, org, MANAGE)
    container(request).pats.revoke(actor, authorization_id, org_id=the_org.id)
    return Response(status_code=204)
