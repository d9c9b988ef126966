"""A token's own page in the console (issue 16): what it is, its state in this organization,
its usage, and — for the viewer's own active PAT — extend and regenerate.

Who sees what: an administrator any token issued in (or valid in) the organization, a member
only their own; anything else is the same 404 page as an unknown id, so the page tells nobody
whether a token exists. No secret or hash is ever rendered, except the new secret on the one
answer to a regenerate (``Cache-Control: no-store``).

Extend and regenerate act with the owner's own authority (a browser session holds only the
profile scopes): ``PatService.extend_own_interactive`` / ``regenerate_own_interactive`` need the
owner's interactive session and a second factor proved within five minutes; a stale one sends
the browser to the step-up page and back here.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from tokenwarden.domain.errors import DomainError, InvalidInput, NotFound
from tokenwarden.domain.tokens import TokenKind, TokenState
from tokenwarden.domain.usage import UsageTotals
from tokenwarden.http.console.common import date, done, page, refused, signed_in, text
from tokenwarden.http.deps import container
from tokenwarden.http.web.csrf import check_csrf
from tokenwarden.services.common import Actor
from tokenwarden.services.console import Viewer

router = APIRouter(include_in_schema=False)

MAX_ID: Final = 80
SHOWN: Final = 10  # networks, user agents and areas listed
EXTENDABLE: Final = (TokenState.ACTIVE, TokenState.NOT_YET_VALID)
REGENERATE_WARNING: Final = (
    "A new secret replaces this one at once, on every node: scripts and apps using the old secret "
    "get 401 until they are given the new one. The new secret is shown once."
)


def _path(authorization_id: str) -> str:
    return f"/console/tokens/{quote(authorization_id[:MAX_ID], safe='')}"


def _context(request: Request, viewer: Viewer, actor: Actor, authorization_id: str) -> dict[str, Any]:
    """What the page shows (raises NotFound for a token the viewer may not see)."""
    c = container(request)
    view = c.pats.token_in_org(actor, viewer.org.id, authorization_id[:MAX_ID])
    record = view.record
    usage: UsageTotals | None = None
    if record.org_id == viewer.org.id:  # usage is the issuing organization's record
        usage = c.usage.totals(actor, viewer.org.id, record.authorization_id)[0]
    now = c.console.now()
    state = record.state(now)
    own_pat = view.is_own and record.kind is TokenKind.PAT
    home = view.is_own or record.org_id == viewer.org.id
    enrolled = c.mfa.status(actor).enrolled if own_pat else False
    return {
        "title": record.display_name or f"{record.kind.value} token",
        "t": record,
        "view": view,
        "state": state.value,
        "reason_shown": view.is_own or record.org_id == viewer.org.id,
        "usage": usage,
        # the record's last use reaches the database with the node's next drain; usage sooner
        # the record's last use and IP are global: shown where the token was issued (or to its
        # owner), not to another organization it is merely valid in
        "last_used": max(
            (u for u in (record.last_used_at, usage.last_used if usage else None) if u is not None),
            default=None,
        )
        if home
        else None,
        "last_ip": record.last_used_ip if home else None,
        "home": home,
        "shown": SHOWN,
        "retention_days": c.usage.retention_days,
        # what POST /console/tokens/revoke does: an administrator revokes what this organization
        # issued, a member their own PATs
        "may_revoke": state in EXTENDABLE
        and (record.org_id == viewer.org.id if viewer.is_admin else own_pat),
        "may_extend": own_pat and state in EXTENDABLE,
        "may_regenerate": own_pat and state is TokenState.ACTIVE,
        "enrolled": enrolled,
        "regenerate_warning": REGENERATE_WARNING,
        "path": _path(record.authorization_id),
        "secret": None,
    }


@router.get("/console/tokens/{authorization_id}")
async def token_page(request: Request, authorization_id: str) -> Response:
    """A token's page: identity, scopes, organizations, dates, state here, usage, actions."""
    viewer, actor = await signed_in(request)
    try:
        context = await run_in_threadpool(_context, request, viewer, actor, authorization_id)
    except DomainError as exc:
        return refused(request, viewer, exc)
    return page(request, "token.html", viewer, context)


@router.post("/console/tokens/{authorization_id}/extend")
async def extend(request: Request, authorization_id: str) -> Response:
    """Move validTo of one's own PAT to the end of the chosen day (UTC): the policy's maximum
    lifetime applies; a fresh second factor is needed."""
    form = await request.form()
    viewer, actor = await signed_in(request)
    back = _path(authorization_id)
    try:
        check_csrf(request, form)
        until = date(text(form, "valid_to").strip(), "valid to", end_of_day=True)
        if until is None:
            raise InvalidInput("valid to: choose a date", code="invalidValidTo")
        pats = container(request).pats
        await run_in_threadpool(
            pats.extend_own_interactive, actor, authorization_id[:MAX_ID], until, viewer.org.id
        )
    except DomainError as exc:
        return refused(request, viewer, exc, back=back)
    return done(back, "token-extended")


@router.post("/console/tokens/{authorization_id}/regenerate")
async def regenerate(request: Request, authorization_id: str) -> Response:
    """A new secret for one's own active PAT, shown once on this answer (never stored, never
    cached); asks first without ``confirmed``; a fresh second factor is needed."""
    form = await request.form()
    viewer, actor = await signed_in(request)
    back = _path(authorization_id)
    c = container(request)
    try:
        check_csrf(request, form)
        if text(form, "confirmed") != "yes":
            view = await run_in_threadpool(
                c.pats.token_in_org, actor, viewer.org.id, authorization_id[:MAX_ID]
            )
            if not view.is_own or view.record.kind is not TokenKind.PAT:
                raise NotFound("no such token in this organization", code="tokenNotFound")
            ask = {
                "title": "Regenerate",
                "question": f"Regenerate {view.record.display_name}?",
                "warning": REGENERATE_WARNING,
                "action": f"{back}/regenerate",
                "hidden": (),
                "back": back,
            }
            return page(request, "confirm.html", viewer, ask)
        issued = await run_in_threadpool(
            c.pats.regenerate_own_interactive, actor, authorization_id[:MAX_ID], viewer.org.id
        )
    except DomainError as exc:
        return refused(request, viewer, exc, back=back)
    context: dict[str, Any]
    try:
        context = await run_in_threadpool(_context, request, viewer, actor, issued.record.authorization_id)
    except DomainError:  # the secret is shown whatever else fails: it exists only in this answer
        context = {"title": issued.record.display_name, "t": issued.record, "view": None}
    context["secret"] = issued.secret
    response = page(request, "token.html", viewer, context)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
