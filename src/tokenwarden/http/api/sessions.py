"""Browser sessions over the native API: the user's own (``/api/v1/me/sessions``, with the
session cookie or a Bearer token of the user) and a member's, for organization admins."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import Unauthenticated
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.http.auth import authenticate, client_ip
from tokenwarden.http.deps import container, org_caller
from tokenwarden.http.web.csrf import check_csrf, csrf_token
from tokenwarden.http.web.session import browser_session, clear_session_cookie
from tokenwarden.services.common import Actor
from tokenwarden.services.effective import cause_of
from tokenwarden.services.sessions import SessionService

router = APIRouter(tags=["sessions"])
READ: Final = "vso.profile"
WRITE: Final = "vso.profile_write"
ADMIN: Final = "vso.tokenadministration"


class _Me:
    """Who is asking: a Bearer/Basic credential of the user, else the browser session cookie
    (state-changing requests with the cookie need the ``X-CSRF-Token`` header)."""

    def __init__(self, actor: Actor, current_key: bytes | None, session_id: str | None) -> None:
        self.actor = actor
        self.current_key = current_key
        self.session_id = session_id  # set when authenticated by the session cookie

    @property
    def by_cookie(self) -> bool:
        return self.session_id is not None


async def _me(request: Request, scope: str, *, unsafe: bool) -> _Me:
    c = container(request)
    if request.headers.get("authorization"):
        caller, actor = await run_in_threadpool(authenticate, request, c.validator, scope)
        return _Me(actor, caller.key, None)
    session = await browser_session(request)
    if session is None:
        raise Unauthenticated("authentication required: send Basic or Bearer credentials or sign in")
    if unsafe:
        check_csrf(request)
    return _Me(session.actor(client_ip(request)), session.caller.key, session.session_id)


def session_json(
    sessions: SessionService, record: TokenRecord, now: datetime, *, current: bool, org_id: str | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sessionId": record.authorization_id,
        "device": record.display_name,
        "userAgent": record.user_agent,
        "ip": record.last_used_ip,
        "createdAt": iso_z(record.created_at),
        "lastUsedAt": iso_z(record.last_used_at),
        "expiresAt": iso_z(record.valid_to),
        "absoluteExpiresAt": iso_z(sessions.absolute_end(record)),
        "state": record.state(now).value,
        "current": current,
        "revokedAt": iso_z(record.revoked_at),
        "revokedCause": cause_of(record),
    }
    if org_id is not None:
        data["issuedHere"] = record.org_id == org_id
    return data


# ---------------------------------------------------------------------- the user's own
@router.get("/api/v1/me/sessions")
async def my_sessions(request: Request, includeEnded: bool = False) -> JSONResponse:
    """The caller's browser sessions, newest first (live ones; ``includeEnded=true`` for all).
    With the session cookie the body also carries ``csrfToken`` for the ``X-CSRF-Token`` header."""
    me = await _me(request, READ, unsafe=False)
    c = container(request)
    records = await run_in_threadpool(c.sessions.mine, me.actor, include_ended=includeEnded)
    now = c.clock.now()
    body: dict[str, Any] = {
        "value": [session_json(c.sessions, r, now, current=r.secret_hash == me.current_key) for r in records],
        "count": len(records),
    }
    if not me.by_cookie:
        return JSONResponse(body)
    body["csrfToken"] = csrf_token(request)
    response = JSONResponse(body, headers={"Cache-Control": "no-store"})
    csrf_token(request, response)
    return response


@router.delete("/api/v1/me/sessions/{session_id}", status_code=204)
async def revoke_my_session(request: Request, session_id: str) -> Response:
    """Revoke one of the caller's sessions (everywhere); the current one signs this browser out."""
    me = await _me(request, WRITE, unsafe=True)
    c = container(request)
    record = await run_in_threadpool(c.sessions.revoke_mine, me.actor, session_id)
    response = Response(status_code=204)
    if me.by_cookie and record.authorization_id == me.session_id:
        clear_session_cookie(request, response)
    return response


@router.post("/api/v1/me/sessions/revoke-all")
async def revoke_all_my_sessions(request: Request) -> JSONResponse:
    """Sign out everywhere: every live session of the caller, the current one included."""
    me = await _me(request, WRITE, unsafe=True)
    c = container(request)
    count = await run_in_threadpool(c.sessions.revoke_all_mine, me.actor)
    response = JSONResponse({"revoked": count})
    if me.by_cookie:
        clear_session_cookie(request, response)
    return response


# ---------------------------------------------------------------------- organization admins
@router.get("/api/v1/orgs/{org}/users/{user}/sessions")
def member_sessions(request: Request, org: str, user: str, includeEnded: bool = False) -> dict[str, Any]:
    """A member's sessions usable in this organization, in their state here (admins)."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    c = container(request)
    owner, records = c.sessions.for_admin(actor, org, user, include_ended=includeEnded)
    now = c.clock.now()
    return {
        "user": {"id": owner.id, "upn": owner.upn},
        "value": [session_json(c.sessions, r, now, current=False, org_id=the_org.id) for r in records],
        "count": len(records),
    }


@router.delete("/api/v1/orgs/{org}/users/{user}/sessions/{session_id}", status_code=204)
def revoke_member_session(request: Request, org: str, user: str, session_id: str) -> Response:
    """Revoke one session of a member, issued in this organization (admins)."""
    _, _, actor = org_caller(request, org, ADMIN)
    container(request).sessions.admin_revoke(actor, org, user, session_id)
    return Response(status_code=204)


@router.post("/api/v1/orgs/{org}/users/{user}/sessions/revoke-all")
def revoke_member_sessions(request: Request, org: str, user: str) -> dict[str, Any]:
    """Every session of a member stops working in this organization (admins; a watermark)."""
    _, _, actor = org_caller(request, org, ADMIN)
    count = container(request).sessions.admin_revoke_all(actor, org, user)
    return {"revoked": count}
