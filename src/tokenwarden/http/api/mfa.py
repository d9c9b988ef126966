"""Second factors over the native API (issue 16): the caller's own TOTP factor and step-up
(``/api/v1/me/mfa``, ``/api/v1/me/step-up``), and an administrator's reset of a member's.

A step-up attaches to the credential that made it — a browser session, or the Bearer token the
request came with — and holds five minutes. Break-glass, policy changes and bulk revocation
answer ``403 {"code": "stepUpRequired"}`` without one (for a caller with a factor, or an
administrator whose organization requires one).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import Field

from tokenwarden.domain.clock import iso_z
from tokenwarden.http.api.models import Body
from tokenwarden.http.api.sessions import ADMIN, READ, WRITE, _me
from tokenwarden.http.deps import container, org_caller

router = APIRouter(tags=["mfa"])


class Code(Body):
    code: str = Field(min_length=1, max_length=64, description="a 6-digit TOTP code, or a recovery code")


def _no_store(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


@router.get("/api/v1/me/mfa")
async def mfa_status(request: Request) -> JSONResponse:
    """Whether the caller has a second factor, recovery codes left, and the step-up of the
    credential asking."""
    me = await _me(request, READ, unsafe=False)
    s = await run_in_threadpool(container(request).mfa.status, me.actor)
    return _no_store(
        {
            "enrolled": s.enrolled,
            "pending": s.pending,
            "confirmedAt": iso_z(s.confirmed_at),
            "recoveryCodesLeft": s.recovery_codes_left,
            "steppedUpUntil": iso_z(s.stepped_up_until),
            "requiredByPolicy": s.required,
        }
    )


class Begin(Body):
    password: str | None = Field(
        default=None,
        max_length=1024,
        description="the account's password, typed again (required when the account has one)",
    )


@router.post("/api/v1/me/mfa", status_code=201)
async def mfa_begin(request: Request, body: Begin | None = None) -> JSONResponse:
    """Begin enrolment with the account's password: the TOTP key, its ``otpauth://`` URI and QR
    code (SVG), shown this once. Confirm with ``POST /api/v1/me/mfa/confirm``."""
    me = await _me(request, WRITE, unsafe=True)
    password = body.password if body is not None else None
    e = await run_in_threadpool(container(request).accounts.begin_factor, me.actor, password)
    return _no_store({"secret": e.secret, "otpauthUri": e.uri, "qrSvg": e.qr_svg}, 201)


@router.post("/api/v1/me/mfa/confirm")
async def mfa_confirm(request: Request, body: Code) -> JSONResponse:
    """Confirm enrolment with a current code; answers ten recovery codes, this once. The
    account's other browser sessions end (they were opened without the factor)."""
    me = await _me(request, WRITE, unsafe=True)
    codes = await run_in_threadpool(container(request).accounts.confirm_factor, me.actor, body.code)
    return _no_store({"enrolled": True, "recoveryCodes": codes})


@router.post("/api/v1/me/mfa/recovery-codes")
async def mfa_recovery_codes(request: Request, body: Code) -> JSONResponse:
    """New recovery codes against a current code (the old ones stop working)."""
    me = await _me(request, WRITE, unsafe=True)
    codes = await run_in_threadpool(container(request).mfa.renew_codes, me.actor, body.code)
    return _no_store({"recoveryCodes": codes})


@router.post("/api/v1/me/mfa/remove")
async def mfa_remove(request: Request, body: Code) -> JSONResponse:
    """Turn the second factor off, against a current code."""
    me = await _me(request, WRITE, unsafe=True)
    await run_in_threadpool(container(request).mfa.remove, me.actor, body.code)
    return _no_store({"enrolled": False})


@router.post("/api/v1/me/step-up")
async def step_up(request: Request, body: Code) -> JSONResponse:
    """Prove the second factor again for this credential (a session or a token): break-glass,
    policy changes and bulk revocation are allowed for five minutes."""
    me = await _me(request, READ, unsafe=True)
    until = await run_in_threadpool(container(request).mfa.step_up, me.actor, body.code)
    return _no_store({"steppedUpUntil": iso_z(until)})


@router.delete("/api/v1/orgs/{org}/users/{user}/mfa")
def reset_member_mfa(request: Request, org: str, user: str) -> dict[str, Any]:
    """Remove a member's second factor — a lost device (admins; needs a step-up of its own)."""
    _, _, actor = org_caller(request, org, ADMIN)
    had = container(request).mfa.reset(actor, org, user)
    return {"reset": had}
