"""The admin console at ``/console`` (issue 16): server-rendered pages on the sign-in session.

Every page: the session cookie (else the sign-in page, which comes back here), a strict CSP
(scripts and styles from this origin only, nothing inline, no framing), CSRF on every change,
every value escaped by Jinja2. Administrators see their organization (the one chosen in the
switcher, else the session's home organization); members see their own tokens. An
administrator of an organization that requires MFA is sent to set it up first; actions that
need a step-up send the browser to the step-up page and back (see ``common``).
"""

from __future__ import annotations

import csv
import io
import threading
import time
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any, Final
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from tokenwarden.domain.audit import AuditEntry, AuditEventType
from tokenwarden.domain.audit_chain import ChainReport
from tokenwarden.domain.csv_users import MAX_CSV_BYTES, size_error
from tokenwarden.domain.errors import DomainError, Forbidden, InvalidInput
from tokenwarden.domain.principals import RiskLevel, RiskState, UserStatus
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.domain.watermarks import ALL_KINDS, parse_kinds
from tokenwarden.http.api.bulk import start_runner
from tokenwarden.http.console.common import (
    ORG_COOKIE,
    date,
    days,
    done,
    flash_labels,
    form_int,
    fragment,
    json_block,
    page,
    refused,
    signed_in,
    text,
    when,
    whole,
)
from tokenwarden.http.deps import container
from tokenwarden.http.web.csrf import check_csrf
from tokenwarden.ports.alerts import ACKNOWLEDGED, OPEN, STATUSES, Alert
from tokenwarden.ports.console import TOKEN_STATES
from tokenwarden.ports.repositories import AuditQuery, BulkJobItem
from tokenwarden.services.audit_log import audit_csv, audit_row
from tokenwarden.services.bulk_revoke import results_csv
from tokenwarden.services.common import Actor
from tokenwarden.services.console import MEMBER_STATUSES, RISKS, ROLES, MemberPage, Viewer
from tokenwarden.services.pats import PatService

router = APIRouter(include_in_schema=False)

MAX_SELECTED: Final = 500
AUDIT_PAGE: Final = 100
SHOWN_ROWS: Final = 500
CHAIN_CACHE_SECONDS: Final = 60.0
# (action, label, what stops working): Entra's wording for sessions
USER_ACTIONS: Final = (
    (
        "revoke-sessions",
        "Revoke sessions",
        "Their browser sessions, refresh tokens and access tokens stop working at once on every "
        "node; they must sign in again. Their PATs keep working.",
    ),
    (
        "revoke-tokens",
        "Revoke all tokens",
        "Every token they hold in this organization — PATs, sessions, refresh and access tokens — "
        "stops working at once. Scripts and CI jobs using their PATs get 401.",
    ),
    (
        "disable",
        "Disable",
        "They can no longer sign in or use any token in this organization until enabled again.",
    ),
    (
        "confirm-compromised",
        "Confirm compromised",
        "Their risk becomes high (confirmed compromised): risk-based revocation and policies apply to them.",
    ),
    ("dismiss-risk", "Dismiss risk", "Their risk is cleared (dismissed); nothing they hold is revoked."),
)
_ACTIONS: Final = {a: (label, warning) for a, label, warning in USER_ACTIONS}
# Offboard (issue 17) is not one of them: it takes a successor, and answers with its report.
OFFBOARD_WARNING: Final = (
    "They are disabled in this organization and every token they hold here — PATs, sessions, "
    "refresh and access tokens — stops working at once on every node. Their managed credentials "
    "and token watches pass to the successor; each credential handed over is rotated at once."
)
CHOSEN_BY: Final = {
    "given": "named here",
    "securityContact": "the organization's security contact",
    "manager": "their manager (SCIM)",
}


flash_labels({a: label for a, (label, _) in _ACTIONS.items()})
flash_labels({s: s for s in STATUSES})


# ---------------------------------------------------------------------- static files
_STATIC: Final = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "vendor/htmx-2.0.11.min.js": "text/javascript",
    "vendor/chart-4.6.1.umd.min.js": "text/javascript",
}


@router.get("/console/static/{name:path}")
def static(name: str) -> Response:
    media = _STATIC.get(name)
    if media is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(
        _static_bytes(name),
        media_type=media,
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


@lru_cache(maxsize=8)
def _static_bytes(name: str) -> bytes:
    return resources.files("tokenwarden.http.console").joinpath("static", *name.split("/")).read_bytes()


# ---------------------------------------------------------------------- pages
@router.get("/console")
async def home(request: Request) -> Response:
    viewer, _ = await signed_in(request)
    return RedirectResponse("/console/dashboard" if viewer.is_admin else "/console/tokens", status_code=303)


@router.get("/console/dashboard")
async def dashboard(request: Request) -> Response:
    viewer, _ = await signed_in(request)
    try:
        charts, as_of = await run_in_threadpool(container(request).console.dashboard, viewer)
    except DomainError as exc:
        return refused(request, viewer, exc)
    data = {
        ch.id: json_block({"type": ch.type, "label": ch.title, "labels": ch.labels, "values": ch.values})
        for ch in charts
    }
    context = {"title": "Dashboard", "charts": charts, "data": data, "as_of": when(as_of)}
    return page(request, "dashboard.html", viewer, context)


@router.get("/console/users")
async def users(request: Request) -> Response:
    viewer, _ = await signed_in(request)
    q = request.query_params
    f = {k: q.get(k, "")[:1024] for k in ("q", "status", "role", "risk")}
    try:
        listing = await run_in_threadpool(
            container(request).console.members,
            viewer,
            text=f["q"],
            status=f["status"],
            role=f["role"],
            risk=f["risk"],
            offset=whole(q.get("offset"), 0),
        )
    except DomainError as exc:
        return refused(request, viewer, exc)
    base = "/console/users?" + urlencode({k: v for k, v in f.items() if v}) + ("&" if any(f.values()) else "")
    context = {
        "title": "Users",
        "page": listing,
        "f": f,
        "statuses": MEMBER_STATUSES,
        "roles": ROLES,
        "risks": RISKS,
        "actions": USER_ACTIONS,
        "query_base": base,
    }
    return page(request, "users.html", viewer, context)


def _member_activity(
    request: Request, viewer: Viewer, actor: Actor, user_id: str
) -> tuple[list[AuditEntry], list[Alert]]:
    """A member's recent sign-ins (the audit log) and open alerts on their tokens (admins)."""
    if not viewer.is_admin:
        return [], []
    c = container(request)
    events = (AuditEventType.SIGN_IN.value, AuditEventType.SIGN_IN_FAILED.value)
    sign_ins = c.audit.query(
        actor, viewer.org.id, AuditQuery(target_id=user_id, event_types=events, limit=20)
    )
    sign_ins += c.audit.query(
        actor, viewer.org.id, AuditQuery(actor_id=user_id, event_types=events, limit=20)
    )
    unique = {e.id: e for e in sign_ins}.values()
    alerts = [a for a in c.detection.find(actor, viewer.org.id, limit=500) if a.user_id == user_id]
    return sorted(unique, key=lambda e: e.id or 0, reverse=True)[:20], alerts[:50]


@router.get("/console/users/{user}")
async def user_page(request: Request, user: str) -> Response:
    viewer, actor = await signed_in(request)
    c = container(request)
    try:
        found = await run_in_threadpool(c.console.member, viewer, user[:256])
        sign_ins, alerts = await run_in_threadpool(_member_activity, request, viewer, actor, found.user.id)
    except DomainError as exc:
        return refused(request, viewer, exc)
    context = {
        "sign_ins": sign_ins,
        "alerts": alerts,
        "title": found.user.display_name,
        "user": found.user,
        "m": found.membership,
        "tokens": found.tokens,
        "tokens_total": found.tokens_total,
        "now": c.console.now(),
        "actions": USER_ACTIONS,
        "offboard_warning": OFFBOARD_WARNING,
    }
    return page(request, "user.html", viewer, context)


# ---------------------------------------------------------------------- offboarding (issue 17)
# Registered before the generic ``/console/users/{user}/confirm/{action}`` and
# ``/console/users/{user}/{action}`` routes, which answer an unknown action.


def _offboard_form(
    request: Request, viewer: Viewer, found: MemberPage, *, successor: str = "", error: str = ""
) -> Response:
    """The offboarding question as a page (no script, or a successor to correct)."""
    context = {
        "title": "Offboard",
        "user": found.user,
        "warning": OFFBOARD_WARNING,
        "successor": successor,
        "error": error,
        "back": f"/console/users/{found.user.id}",
    }
    return page(request, "offboard_confirm.html", viewer, context, status=400 if error else 200)


@router.get("/console/users/{user}/confirm/offboard")
async def offboard_confirm(request: Request, user: str) -> Response:
    viewer, _ = await signed_in(request)
    try:
        if not viewer.is_admin:
            raise Forbidden("organization administrators only", code="accessDenied")
        found = await run_in_threadpool(container(request).console.member, viewer, user[:256])
    except DomainError as exc:
        return refused(request, viewer, exc)
    return _offboard_form(request, viewer, found)


@router.post("/console/users/{user}/offboard")
async def offboard(request: Request, user: str) -> Response:
    """Offboard a member (docs/offboarding.md); the answer is the report. A successor that is
    refused brings the form back with the reason (nothing was done)."""
    form = await request.form()
    viewer, actor = await signed_in(request)
    back = f"/console/users/{quote(user[:256], safe='')}"
    c = container(request)
    successor = text(form, "successor").strip()
    try:
        check_csrf(request, form)
        if text(form, "confirmed") != "yes":
            raise InvalidInput("the action was not confirmed", code="notConfirmed")
        if not viewer.is_admin:
            raise Forbidden("organization administrators only", code="accessDenied")
        found = await run_in_threadpool(c.console.member, viewer, user[:256])
        try:
            report = await run_in_threadpool(
                c.offboarding.offboard, actor, viewer.org.id, found.user.upn, successor or None
            )
        except InvalidInput as exc:
            if exc.code != "invalidSuccessor":
                raise
            return _offboard_form(request, viewer, found, successor=successor, error=exc.message)
    except DomainError as exc:
        return refused(request, viewer, exc, back=back)
    context = {
        "title": f"Offboarded {found.user.display_name}",
        "user": found.user,
        "r": report.as_dict(),
        "chosen_by": CHOSEN_BY,
    }
    return page(request, "offboard.html", viewer, context)


@router.get("/console/users/{user}/confirm/{action}")
async def confirm_page(request: Request, user: str, action: str) -> Response:
    """The confirmation without script: the same question as the dialog, Yes and No."""
    viewer, _ = await signed_in(request)
    if action not in _ACTIONS:
        return refused(request, viewer, InvalidInput(f"unknown action {action[:40]!r}"))
    try:
        found = await run_in_threadpool(container(request).console.member, viewer, user[:256])
        if not viewer.is_admin:
            raise Forbidden("organization administrators only", code="accessDenied")
    except DomainError as exc:
        return refused(request, viewer, exc)
    label, warning = _ACTIONS[action]
    context = {
        "title": label,
        "question": f"{label} for {found.user.display_name}?",
        "warning": warning,
        "action": f"/console/users/{found.user.id}/{action}",
        "hidden": (),
        "back": f"/console/users/{found.user.id}",
    }
    return page(request, "confirm.html", viewer, context)


@router.post("/console/users/bulk")
async def bulk_users(request: Request) -> Response:
    form = await request.form()
    viewer, actor = await signed_in(request)
    try:
        check_csrf(request, form)
        action = text(form, "action")
        if action not in _ACTIONS:
            raise InvalidInput("choose an action", code="invalidAction")
        ids = [v for v in form.getlist("user") if isinstance(v, str)][: MAX_SELECTED + 1]
        if not ids:
            raise InvalidInput("select at least one user", code="nothingSelected")
        if len(ids) > MAX_SELECTED:
            raise InvalidInput(f"at most {MAX_SELECTED} users at once", code="tooManySelected")
        label, warning = _ACTIONS[action]
        if text(form, "confirmed") != "yes":
            context = {
                "title": label,
                "question": f"{label}: {len(ids)} users?",
                "warning": warning,
                "action": "/console/users/bulk",
                "hidden": [("action", action), *(("user", i) for i in ids)],
                "back": "/console/users",
            }
            return page(request, "confirm.html", viewer, context)
        if not viewer.is_admin:
            raise Forbidden("organization administrators only", code="accessDenied")
        await run_in_threadpool(_act_on_many, request, actor, viewer, action, ids)
    except DomainError as exc:
        return refused(request, viewer, exc, back="/console/users")
    return done("/console/users", "users-action", n=len(ids), label=action)


@router.post("/console/users/{user}/{action}")
async def user_action(request: Request, user: str, action: str) -> Response:
    form = await request.form()
    viewer, actor = await signed_in(request)
    back = f"/console/users/{quote(user[:256], safe='')}"
    try:
        check_csrf(request, form)
        if action not in _ACTIONS:
            raise InvalidInput(f"unknown action {action[:40]!r}", code="invalidAction")
        if text(form, "confirmed") != "yes":
            raise InvalidInput("the action was not confirmed", code="notConfirmed")
        if not viewer.is_admin:
            raise Forbidden("organization administrators only", code="accessDenied")
        found = await run_in_threadpool(container(request).console.member, viewer, user[:256])
        await run_in_threadpool(_act_on_many, request, actor, viewer, action, [found.user.id])
    except DomainError as exc:
        return refused(request, viewer, exc, back=back)
    return done(back, "user-action", label=action)


def _act_on_many(request: Request, actor: Actor, viewer: Viewer, action: str, user_ids: list[str]) -> None:
    """One action on members of the viewer's organization, through the services that audit
    and propagate it. Members are resolved first: an id of another organization is NotFound."""
    c = container(request)
    org = viewer.org.id
    members = [c.directory.get_member(actor, org, u)[0] for u in dict.fromkeys(user_ids)]
    if len(members) > 1:  # an action on many users (bulk revocation, risk): a fresh second factor
        c.mfa.ensure_step_up(actor, org)
    if action in ("confirm-compromised", "dismiss-risk"):
        level, state = (
            (RiskLevel.HIGH, RiskState.CONFIRMED_COMPROMISED)
            if action == "confirm-compromised"
            else (RiskLevel.NONE, RiskState.DISMISSED)
        )
        c.revocation.set_risk(actor, org, [u.id for u in members], level, state)
        return
    for u in members:
        if action == "revoke-sessions":
            c.revocation.revoke_sign_in_sessions(actor, org, u.id)
        elif action == "revoke-tokens":
            c.revocation.revoke_user(actor, org, u.id)
        elif action == "disable":
            c.directory.set_status(actor, org, u.upn, UserStatus.DISABLED)


@router.get("/console/tokens")
async def tokens(request: Request) -> Response:
    viewer, _ = await signed_in(request)
    q = request.query_params
    f = {k: q.get(k, "")[:1024] for k in ("owner", "kind", "scope", "state", "expiring", "dormant", "full")}
    c = container(request)
    try:
        listing, owners = await run_in_threadpool(
            lambda: c.console.tokens(
                viewer,
                owner=f["owner"] or None,
                kind=f["kind"] or None,
                scope=f["scope"] or None,
                state=f["state"] or None,
                expiring_days=days(f["expiring"], "expiring within"),
                full_scope=f["full"] == "1",
                dormant_days=days(f["dormant"], "dormant for"),
                after=q.get("after", "")[:1024] or None,  # keyset pages: the cursors a page links
                before=q.get("before", "")[:1024] or None,
            )
        )
    except DomainError as exc:
        return refused(request, viewer, exc)
    base = (
        "/console/tokens?" + urlencode({k: v for k, v in f.items() if v}) + ("&" if any(f.values()) else "")
    )
    context = {
        "title": "Tokens",
        "page": listing,
        "owners": owners,
        "f": f,
        "kinds": [k.value for k in TokenKind],
        "states": TOKEN_STATES,
        "now": c.console.now(),
        "query_base": base,
    }
    return page(request, "tokens.html", viewer, context)


@router.post("/console/tokens/revoke")
async def revoke_tokens(request: Request) -> Response:
    form = await request.form()
    viewer, actor = await signed_in(request)
    try:
        check_csrf(request, form)
        ids = [v for v in form.getlist("token") if isinstance(v, str)][: MAX_SELECTED + 1]
        if not ids:
            raise InvalidInput("select at least one token", code="nothingSelected")
        if len(ids) > MAX_SELECTED:
            raise InvalidInput(f"at most {MAX_SELECTED} tokens at once", code="tooManySelected")
        if text(form, "confirmed") != "yes":
            context = {
                "title": "Revoke tokens",
                "question": f"Revoke {len(ids)} tokens?",
                "warning": "The selected tokens stop working on every node at once.",
                "action": "/console/tokens/revoke",
                "hidden": [("token", i) for i in ids],
                "back": "/console/tokens",
            }
            return page(request, "confirm.html", viewer, context)
        c = container(request)
        if len(ids) > 1:  # bulk revocation: a fresh second factor
            await run_in_threadpool(c.mfa.ensure_step_up, actor, viewer.org.id)
        if viewer.is_admin:
            count = await run_in_threadpool(c.pats.revoke_many, actor, viewer.org.id, ids)
        else:  # a member revokes their own
            count = await run_in_threadpool(_revoke_own, c.pats, actor, viewer.org.id, ids)
    except DomainError as exc:
        return refused(request, viewer, exc, back="/console/tokens")
    return done("/console/tokens", "tokens-revoked", n=count)


# ---------------------------------------------------------------------- CSV of users
@router.get("/console/bulk")
async def bulk_page(request: Request) -> Response:
    viewer, _ = await signed_in(request)
    if not viewer.is_admin:
        return refused(request, viewer, Forbidden("organization administrators only", code="accessDenied"))
    return page(request, "bulk.html", viewer, {"title": "CSV revocation"})


@router.post("/console/bulk")
async def bulk_upload(request: Request) -> Response:
    """A CSV of users, as a dry run first: a job whose rows say what a run would do."""
    viewer, actor = await signed_in(request)
    try:
        form = await request.form(max_files=1, max_fields=10)
        check_csrf(request, form)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("choose a CSV file", code="invalidCsv")
        content = await upload.read(MAX_CSV_BYTES + 1)
        if len(content) > MAX_CSV_BYTES:
            raise size_error(len(content))
        service = container(request).bulk_revoke
        name = (upload.filename or "upload")[:200]
        submission = await run_in_threadpool(
            service.submit, actor, viewer.org.id, content, ALL_KINDS, True, name
        )
        if submission.job.status != "completed":
            start_runner(service, actor, submission)
    except DomainError as exc:
        return refused(request, viewer, exc)
    return RedirectResponse(f"/console/bulk/{submission.job.id}", status_code=303)


def _job_view(request: Request, viewer: Viewer, actor: Actor, job_id: str) -> dict[str, Any]:
    service = container(request).bulk_revoke
    st = service.status(actor, job_id[:80], viewer.org.id)
    rows = (
        service.results(actor, st.job.id, viewer.org.id) if st.state == "completed" and st.job.dry_run else []
    )
    return {
        "title": "CSV revocation",
        "job": st.job,
        "st": st,
        "rows": rows[:SHOWN_ROWS],
        "more": len(rows) > SHOWN_ROWS,
    }


@router.get("/console/bulk/{job_id}")
async def bulk_job(request: Request, job_id: str) -> Response:
    viewer, actor = await signed_in(request)
    try:
        context = await run_in_threadpool(_job_view, request, viewer, actor, job_id)
    except DomainError as exc:
        return refused(request, viewer, exc)
    return page(request, "bulk_job.html", viewer, context)


@router.get("/console/bulk/{job_id}/progress")
async def bulk_progress(request: Request, job_id: str) -> Response:
    """The progress bar alone (htmx polls it every second until the job completes)."""
    viewer, actor = await signed_in(request)
    try:
        st = await run_in_threadpool(container(request).bulk_revoke.status, actor, job_id[:80], viewer.org.id)
    except DomainError as exc:
        return refused(request, viewer, exc)
    response = fragment("bulk_progress.html", job=st.job, st=st)
    if st.state == "completed":  # the whole page again: a dry run's table, the final counts
        response.headers["HX-Refresh"] = "true"
    return response


@router.get("/console/bulk/{job_id}/confirm")
async def bulk_confirm(request: Request, job_id: str) -> Response:
    viewer, actor = await signed_in(request)
    try:
        st = await run_in_threadpool(container(request).bulk_revoke.status, actor, job_id[:80], viewer.org.id)
    except DomainError as exc:
        return refused(request, viewer, exc)
    context = {
        "title": "Run the revocation",
        "question": f"Revoke the tokens of {st.total} users?",
        "warning": "Every token of the users found stops working on every node.",
        "action": f"/console/bulk/{st.job.id}/run",
        "hidden": (),
        "back": f"/console/bulk/{st.job.id}",
    }
    return page(request, "confirm.html", viewer, context)


@router.post("/console/bulk/{job_id}/run")
async def bulk_run(request: Request, job_id: str) -> Response:
    """Run what a dry run showed: the same rows, in the same order (needs a step-up)."""
    form = await request.form()
    viewer, actor = await signed_in(request)
    back = f"/console/bulk/{quote(job_id[:80], safe='')}"
    try:
        check_csrf(request, form)
        if text(form, "confirmed") != "yes":
            raise InvalidInput("the run was not confirmed", code="notConfirmed")
        service = container(request).bulk_revoke
        dry = await run_in_threadpool(service.status, actor, job_id[:80], viewer.org.id)
        if not dry.job.dry_run or dry.state != "completed":
            raise InvalidInput("only a completed dry run can be run", code="notADryRun")
        rows = await run_in_threadpool(service.results, actor, dry.job.id, viewer.org.id)
        content = _rows_csv(rows)
        submission = await run_in_threadpool(
            service.submit,
            actor,
            viewer.org.id,
            content,
            parse_kinds(dry.job.kinds) if dry.job.kinds else ALL_KINDS,
            False,
            dry.job.source_name,
        )
        if submission.job.status != "completed":
            start_runner(service, actor, submission)
    except DomainError as exc:
        return refused(request, viewer, exc, back=back)
    return RedirectResponse(f"/console/bulk/{submission.job.id}", status_code=303)


@router.get("/console/bulk/{job_id}/results.csv")
async def bulk_results(request: Request, job_id: str) -> Response:
    viewer, actor = await signed_in(request)
    try:
        rows = await run_in_threadpool(
            container(request).bulk_revoke.results, actor, job_id[:80], viewer.org.id
        )
    except DomainError as exc:
        return refused(request, viewer, exc)
    return Response(
        results_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="results-{quote(job_id[:80])}.csv"',
            "Cache-Control": "no-store",
        },
    )


# ---------------------------------------------------------------------- break-glass
def _break_glass_context(request: Request, viewer: Viewer, actor: Actor) -> dict[str, Any]:
    c = container(request)
    preview = c.break_glass.preview(actor, viewer.org.id)
    found = c.break_glass.requests(actor, viewer.org.id)
    names: dict[str, str] = {}
    for user_id in {r.requested_by for r in found if r.requested_by}:
        try:
            names[user_id] = c.directory.get_member(actor, viewer.org.id, user_id)[0].upn
        except DomainError:  # no longer a member: the id is shown
            continue
    return {"title": "Break glass", "preview": preview, "requests": found[:50], "names": names}


@router.get("/console/break-glass")
async def break_glass_page(request: Request) -> Response:
    viewer, actor = await signed_in(request)
    try:
        context = await run_in_threadpool(_break_glass_context, request, viewer, actor)
    except DomainError as exc:
        return refused(request, viewer, exc)
    return page(request, "break_glass.html", viewer, context)


@router.post("/console/break-glass")
async def break_glass_start(request: Request) -> Response:
    return await _break_glass(request, None)


@router.post("/console/break-glass/{request_id}/approve")
async def break_glass_approve(request: Request, request_id: str) -> Response:
    return await _break_glass(request, request_id[:80])


async def _break_glass(request: Request, request_id: str | None) -> Response:
    """Start (or approve) a break-glass: the typed confirmation, a step-up; the recovery token
    is shown in this answer only (every session of the organization, this one too, has ended)."""
    form = await request.form()
    viewer, actor = await signed_in(request)
    c = container(request)
    try:
        check_csrf(request, form)
        confirm, reason = text(form, "confirm"), text(form, "reason")[:512] or None
        if request_id is None:
            outcome = await run_in_threadpool(
                lambda: c.break_glass.start(actor, viewer.org.id, confirm, reason, count_within=0.05)
            )
        else:
            outcome = await run_in_threadpool(
                lambda: c.break_glass.approve(actor, viewer.org.id, request_id, confirm, count_within=0.05)
            )
        if outcome.status == "pending":
            context = await run_in_threadpool(_break_glass_context, request, viewer, actor)
            return page(request, "break_glass.html", viewer, {**context, "pending_started": True})
    except DomainError as exc:
        return refused(request, viewer, exc, back="/console/break-glass")
    secret = outcome.recovery.secret if outcome.recovery is not None else ""
    context = {
        "title": "Break glass",
        "executed": True,
        "recovery": secret,
        "preview": None,
        "requests": [],
        "names": {},
    }
    return page(request, "break_glass.html", viewer, context)


# ---------------------------------------------------------------------- audit and alerts
def _audit_query(request: Request, viewer: Viewer, limit: int) -> tuple[AuditQuery, dict[str, str]]:
    q = request.query_params
    f = {k: q.get(k, "")[:256] for k in ("event", "actor", "since", "until")}
    before = q.get("before")
    query = AuditQuery(
        since=date(f["since"], "from"),
        until=date(f["until"], "until", end_of_day=True),
        actor_id=f["actor"] or None,
        event_types=(f["event"],) if f["event"] else (),
        before_id=whole(before, 0) or None,
        limit=limit,
    )
    return query, f


@router.get("/console/audit")
async def audit_page(request: Request) -> Response:
    viewer, actor = await signed_in(request)
    c = container(request)
    try:
        query, f = _audit_query(request, viewer, AUDIT_PAGE)
        entries = await run_in_threadpool(c.audit.query, actor, viewer.org.id, query)
        fresh = request.query_params.get("verify") == "1"
        chain, verified_at = await run_in_threadpool(_chain_report, request, viewer, actor, fresh)
    except DomainError as exc:
        return refused(request, viewer, exc)
    context = {
        "title": "Audit log",
        "entries": entries,
        "chain": chain,
        "verified_at": when(verified_at),
        "f": f,
        "export_query": urlencode({k: v for k, v in f.items() if v}),
        "next_before": entries[-1].id if len(entries) == AUDIT_PAGE else None,
    }
    return page(request, "audit.html", viewer, context)


_CHAIN_CACHE: dict[str, tuple[float, ChainReport, datetime]] = {}
_chain_lock = threading.Lock()


def _chain_report(
    request: Request, viewer: Viewer, actor: Actor, fresh: bool
) -> tuple[ChainReport, datetime]:
    """The organization's chain verification, re-run at most once a minute per organization
    (it reads the whole chain) unless ``fresh``; the page says when it ran."""
    c = container(request)
    now = time.monotonic()
    with _chain_lock:
        cached = _CHAIN_CACHE.get(viewer.org.id)
    if viewer.is_admin and not fresh and cached is not None and now - cached[0] < CHAIN_CACHE_SECONDS:
        return cached[1], cached[2]
    report = c.audit_chain.verify(actor, viewer.org.id)[0]  # authorizes (admins of this org)
    at = c.console.now()
    with _chain_lock:
        _CHAIN_CACHE[viewer.org.id] = (now, report, at)
    return report, at


@router.get("/console/audit.csv")
async def audit_export(request: Request) -> Response:
    viewer, actor = await signed_in(request)
    try:
        query, _ = _audit_query(request, viewer, 10_000)
        entries = await run_in_threadpool(container(request).audit.query, actor, viewer.org.id, query)
    except DomainError as exc:
        return refused(request, viewer, exc)
    return Response(
        audit_csv([audit_row(e) for e in entries]),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"', "Cache-Control": "no-store"},
    )


@router.get("/console/alerts")
async def alerts_page(request: Request) -> Response:
    viewer, actor = await signed_in(request)
    status = request.query_params.get("status", "")[:32]
    try:
        statuses = (status,) if status else (OPEN, ACKNOWLEDGED)
        found = await run_in_threadpool(
            lambda: container(request).detection.find(actor, viewer.org.id, statuses=statuses, limit=200)
        )
    except DomainError as exc:
        return refused(request, viewer, exc)
    context = {"title": "Alerts", "alerts": found, "statuses": STATUSES, "f": {"status": status}}
    return page(request, "alerts.html", viewer, context)


@router.post("/console/alerts/{alert_id}")
async def alert_action(request: Request, alert_id: str) -> Response:
    form = await request.form()
    viewer, actor = await signed_in(request)
    try:
        check_csrf(request, form)
        status = text(form, "status")
        await run_in_threadpool(
            container(request).detection.set_status, actor, viewer.org.id, alert_id[:64], status
        )
    except DomainError as exc:
        return refused(request, viewer, exc)
    return done("/console/alerts", "alert-status", label=status)


# ---------------------------------------------------------------------- rules
@router.get("/console/rules")
async def rules_page(request: Request) -> Response:
    viewer, actor = await signed_in(request)
    try:
        rules = await run_in_threadpool(container(request).rules.find, actor, viewer.org.id)
    except DomainError as exc:
        return refused(request, viewer, exc)
    context: dict[str, Any] = {
        "title": "Rules",
        "rules": rules,
        "f": {},
        "kinds": [k.value for k in TokenKind],
        "preview": None,
    }
    return page(request, "rules.html", viewer, context)


@router.post("/console/rules")
async def rules_post(request: Request) -> Response:
    """Count what the rule would cut (nothing written); with ``confirmed``, save it (step-up)."""
    form = await request.form()
    viewer, actor = await signed_in(request)
    c = container(request)
    f = {k: text(form, k)[:1024] for k in ("scopes", "before", "after", "kinds")}
    try:
        check_csrf(request, form)
        before = date(f["before"], "issued before")
        after = date(f["after"], "issued on or after")
        kinds = parse_kinds(f["kinds"]) if f["kinds"] else None
        scopes = f["scopes"] or None
        if text(form, "confirmed") == "yes":
            await run_in_threadpool(
                lambda: c.rules.create(actor, viewer.org.id, scopes, before, created_after=after, kinds=kinds)
            )
            return done("/console/rules", "rule-saved")
        preview = await run_in_threadpool(
            lambda: c.rules.preview(actor, viewer.org.id, scopes, before, created_after=after, kinds=kinds)
        )
        rules = await run_in_threadpool(c.rules.find, actor, viewer.org.id)
    except DomainError as exc:
        return refused(request, viewer, exc, back="/console/rules")
    context = {
        "title": "Rules",
        "rules": rules,
        "f": f,
        "kinds": [k.value for k in TokenKind],
        "preview": preview,
    }
    return page(request, "rules.html", viewer, context)


# ---------------------------------------------------------------------- policy
@router.get("/console/policy")
async def policy_page(request: Request) -> Response:
    viewer, actor = await signed_in(request)
    try:
        policy = await run_in_threadpool(container(request).policies.get, actor, viewer.org.id)
    except DomainError as exc:
        return refused(request, viewer, exc)
    return page(request, "policy.html", viewer, {"title": "Policy", "p": policy, "preview": None})


@router.post("/console/policy")
async def policy_post(request: Request) -> Response:
    """Show the violations a change would create (nothing written); with ``confirmed``, save it
    (a step-up)."""
    form = await request.form()
    viewer, actor = await signed_in(request)
    c = container(request)
    try:
        check_csrf(request, form)
        changes: dict[str, Any] = {
            "max_lifetime_days": form_int(form, "max_lifetime_days", "maximum lifetime"),
            "dormant_revoke_days": form_int(form, "dormant_revoke_days", "dormant days") or None,
            "security_contact": text(form, "security_contact")[:320].strip() or None,
        }
        for flag in (
            "restrict_full_scope",
            "disable_pat_creation",
            "admins_require_mfa",
            "break_glass_two_person",
        ):
            changes[flag] = text(form, flag) == "1"
        if text(form, "confirmed") == "yes":
            await run_in_threadpool(lambda: c.policies.update(actor, viewer.org.id, **changes))
            return done("/console/policy", "policy-saved")
        preview = await run_in_threadpool(
            lambda: c.policy_check.violations_if(actor, viewer.org.id, **changes)
        )
        current = await run_in_threadpool(c.policies.get, actor, viewer.org.id)
        shown = current.with_changes(**changes)
    except DomainError as exc:
        return refused(request, viewer, exc, back="/console/policy")
    return page(request, "policy.html", viewer, {"title": "Policy", "p": shown, "preview": preview})


def _rows_csv(rows: list[BulkJobItem]) -> bytes:
    """The dry run's rows as the CSV the run reads: the same users in the same order (so the
    same line numbers), each cell quoted as needed — a name with a comma, quote or line end is
    still one cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["UserPrincipalName"])
    writer.writerows([r.upn] for r in rows)
    return buf.getvalue().encode()


def _revoke_own(pats: PatService, actor: Actor, org_id: str, ids: list[str]) -> int:
    """A member revokes their own PATs (each checked by the PAT service: theirs, this org)."""
    for token_id in ids:
        pats.revoke(actor, token_id, org_id=org_id)
    return len(ids)


# ---------------------------------------------------------------------- organization switcher
@router.post("/console/org")
async def switch_org(request: Request) -> Response:
    """Show the console for another organization the user is an active member of (a cookie
    names it; every page still checks the membership and role there)."""
    form = await request.form()
    viewer, _ = await signed_in(request)
    try:
        check_csrf(request, form)
        chosen = text(form, "org")[:80]
        if chosen not in {org_id for org_id, _ in viewer.orgs}:
            raise Forbidden("not a member of that organization", code="accessDenied")
    except DomainError as exc:
        return refused(request, viewer, exc)
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(
        ORG_COOKIE,
        chosen,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/console",
    )
    return response
