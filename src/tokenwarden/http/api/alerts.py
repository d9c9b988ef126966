"""Security alerts and the detection policy of an organization (issue 14)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.http.deps import container, org_caller
from tokenwarden.http.inputs import parse_json
from tokenwarden.ports.alerts import ACKNOWLEDGED, CLOSED
from tokenwarden.services.detection import alert_json

router = APIRouter(prefix="/api/v1/orgs/{org}", tags=["alerts"])
READ, MANAGE = "vso.auditlog", "vso.tokenadministration"
_POLICY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "title": "DetectionPolicy (partial)"}}},
    }
}


@router.get("/alerts")
def list_alerts(
    request: Request,
    org: str,
    status: list[str] = Query(default_factory=list),
    token: str | None = Query(None, max_length=64),
    rule: str | None = Query(None, max_length=64),
    level: str | None = Query(None, max_length=16),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Alerts, newest first (default: open and acknowledged; ``status`` repeatable)."""
    _, _, actor = org_caller(request, org, READ)
    statuses = tuple(status) or ("open", ACKNOWLEDGED)
    found = container(request).detection.find(
        actor, org, statuses=statuses, token_id=token, rule=rule, level=level, limit=limit
    )
    return {"value": [alert_json(a) for a in found], "count": len(found)}


async def _note(request: Request) -> str | None:
    raw = await request.body()
    if not raw.strip():
        return None
    body = parse_json(raw, empty="a JSON object is expected")
    note = body.get("note") if isinstance(body, dict) else None
    if note is not None and not isinstance(note, str):
        raise InvalidInput("note must be a string", code="invalidNote")
    return note


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge_alert(request: Request, org: str, alert_id: str) -> dict[str, Any]:
    """Someone is looking at it: it stays the token's one open alert for its rule."""
    _, _, actor = await run_in_threadpool(org_caller, request, org, MANAGE)
    note = await _note(request)
    alert = await run_in_threadpool(
        container(request).detection.set_status, actor, org, alert_id, ACKNOWLEDGED, note
    )
    return alert_json(alert)


@router.post("/alerts/{alert_id}/close")
async def close_alert(request: Request, org: str, alert_id: str) -> dict[str, Any]:
    """Done with it: the rule may raise a new alert for the token from now on."""
    _, _, actor = await run_in_threadpool(org_caller, request, org, MANAGE)
    note = await _note(request)
    alert = await run_in_threadpool(
        container(request).detection.set_status, actor, org, alert_id, CLOSED, note
    )
    return alert_json(alert)


@router.get("/detection")
def get_detection_policy(request: Request, org: str) -> dict[str, Any]:
    """The organization's detection rules and automatic responses."""
    _, _, actor = org_caller(request, org, READ)
    return container(request).detection.get_policy(actor, org).to_json()


@router.patch("/detection", openapi_extra=_POLICY_BODY)
async def update_detection_policy(request: Request, org: str) -> dict[str, Any]:
    """Change some settings (a partial object); every value is validated before any applies."""
    _, _, actor = await run_in_threadpool(org_caller, request, org, MANAGE)
    body = parse_json(await request.body(), empty="a JSON object of detection settings is required")
    policy = await run_in_threadpool(container(request).detection.set_policy, actor, org, body)
    return policy.to_json()
