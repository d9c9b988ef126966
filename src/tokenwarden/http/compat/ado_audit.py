"""Azure DevOps Audit Log API: ``GET /{org}/_apis/audit/auditlog`` (scope ``vso.auditlog``).

Projects tokenwarden's audit entries onto Azure DevOps' ``DecoratedAuditLogEntry`` so scripts
written for ``auditservice.dev.azure.com`` run unchanged (docs/compat.md, "Audit log").
Entries come newest first; ``continuationToken`` is opaque and pages on within the same window.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.principals import Organization
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.http.compat.ado import check_api_version, ok
from tokenwarden.http.deps import container, org_caller
from tokenwarden.http.errors import AdoJSONResponse
from tokenwarden.http.timeparse import parse_timestamp
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.common import is_ascii_digits

router = APIRouter(prefix="/{org}/_apis/audit", tags=["azure-devops"])
AUDIT_LOG: Final = "vso.auditlog"
DEFAULT_BATCH: Final = 1000
MAX_BATCH: Final = 5000
# Azure DevOps' default window when startTime is absent
DEFAULT_WINDOW: Final = timedelta(days=90)
_NAMESPACE: Final = uuid.UUID("6f1d2a4e-9b7c-4f0e-8d3a-2c5b7e9f1a30")
_TOKEN_TARGETS: Final = frozenset(k.value for k in TokenKind)

# (verb fragments of the event name, Azure DevOps category) — first match wins
_CATEGORIES: Final = (
    (("Create", "Issue", "Invite", "Add", "Request"), "create"),
    (("Revoke", "Delete", "Remove", "Disable", "Expired", "Cancel", "Invalidate"), "remove"),
    (("Update", "Change", "Regenerate", "Rotate", "Set", "Enable", "Accept", "Decline"), "modify"),
    (("SignIn", "Lookup", "Read", "Consent"), "access"),
)


def category(event_type: str) -> str:
    """Azure DevOps' category (create, modify, remove, access, execute) of an event type."""
    action = event_type.rpartition(".")[2]
    for fragments, name in _CATEGORIES:
        if any(f in action for f in fragments):
            return name
    return "execute"


def _pascal(key: str) -> str:
    return key[:1].upper() + key[1:]


def _data(entry: AuditEntry) -> dict[str, Any]:
    """``data``: the entry's details with Azure DevOps' PascalCase keys; ``TokenId`` names the
    token (its authorizationId) for token events."""
    data = {_pascal(k): v for k, v in entry.details.items()}
    if entry.target_type in _TOKEN_TARGETS:
        data["TokenId"] = entry.target_id
        data.setdefault("TokenType", entry.target_type)
    else:
        data.setdefault("TargetType", entry.target_type)
        data.setdefault("TargetId", entry.target_id)
    return data


def _details(entry: AuditEntry) -> str:
    """A one-line human summary (Azure DevOps' ``details``)."""
    what = entry.details.get("displayName") or entry.target_id
    who = entry.actor_upn or "tokenwarden"
    return f"{entry.event_type} by {who} on {entry.target_type} {what!s:.200}"


def decorated_entry(entry: AuditEntry, org: Organization, names: dict[str, str]) -> dict[str, Any]:
    """One ``DecoratedAuditLogEntry``."""
    activity = str(uuid.uuid5(_NAMESPACE, f"{org.id}:{entry.id}"))
    correlation = entry.details.get("correlationId") or entry.details.get("jobId") or activity
    area = entry.event_type.partition(".")[0]
    cat = category(entry.event_type)
    return {
        "id": f"{entry.id};{activity}",
        "correlationId": str(correlation),
        "activityId": activity,
        "actorCUID": entry.actor_id,
        "actorUserId": entry.actor_id,
        "actorClientId": "00000000-0000-0000-0000-000000000000",
        "actorUPN": entry.actor_upn,
        "actorDisplayName": names.get(entry.actor_id or "") or entry.actor_upn or "tokenwarden",
        "actorImageUrl": None,
        "authenticationMechanism": entry.details.get("authenticationMechanism"),
        "timestamp": iso_z(entry.at),
        "scopeType": "organization",
        "scopeId": org.id,
        "scopeDisplayName": f"{org.name} (Organization)",
        "projectId": None,
        "projectName": None,
        "ipAddress": entry.ip,
        "userAgent": entry.user_agent,
        "actionId": entry.event_type,
        "area": area,
        "category": cat,
        "categoryDisplayName": cat.capitalize(),
        "details": _details(entry),
        "data": _data(entry),
    }


def encode_continuation(before_id: int) -> str:
    raw = json.dumps({"v": 1, "before": before_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continuation(token: str) -> int:
    """The id the next page starts below; anything else is a 400."""
    bad = InvalidInput("continuationToken is invalid", code="invalidContinuationToken")
    if len(token) > 200:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    before = value.get("before") if isinstance(value, dict) and value.get("v") == 1 else None
    if not isinstance(before, int) or isinstance(before, bool) or before < 1:
        raise bad
    return before


def _time(request: Request, name: str) -> datetime | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    return parse_timestamp(value, name)


def _batch(request: Request) -> int:
    value = request.query_params.get("batchSize")
    if value is None or value == "":
        return DEFAULT_BATCH
    if not is_ascii_digits(value) or not 1 <= int(value) <= MAX_BATCH:
        raise InvalidInput(f"batchSize must be an integer from 1 to {MAX_BATCH}", code="invalidBatchSize")
    return int(value)


@router.get("/auditlog")
async def audit_log(request: Request, org: str) -> AdoJSONResponse:
    """Audit entries of the organization between ``startTime`` and ``endTime``, newest first,
    ``batchSize`` at a time (``hasMore`` and ``continuationToken`` page on)."""
    return await run_in_threadpool(_audit_log, request, org)


def _audit_log(request: Request, org: str) -> AdoJSONResponse:
    check_api_version(request)
    the_org, _, actor = org_caller(request, org, AUDIT_LOG)
    c = container(request)
    end = _time(request, "endTime")
    start = _time(request, "startTime")
    if start is None:
        start = (end or c.clock.now()) - DEFAULT_WINDOW
    if end is not None and start >= end:
        raise InvalidInput("startTime must be before endTime", code="invalidTimeRange")
    batch = _batch(request)
    cont = request.query_params.get("continuationToken")
    before = decode_continuation(cont) if cont else None
    query = AuditQuery(since=start, until=end, before_id=before, limit=batch + 1)
    entries, names = c.audit.query_with_names(actor, the_org.id, query)
    more = len(entries) > batch
    page = entries[:batch]
    body = {
        "decoratedAuditLogEntries": [decorated_entry(e, the_org, names) for e in page],
        "continuationToken": encode_continuation(page[-1].id) if more and page[-1].id else None,
        "hasMore": more,
    }
    return ok(body)
