"""Rotation and jobs in the console (issue 16 item 5): the organization's managed credentials
and their rotation history with **Rotate now**, and the lifecycle jobs with **Run now** and a
run's live state.

Administrators only (a member gets the same 403 page as every admin page). Every change asks
first (a dialog, or without script a page with Yes and No), carries the CSRF token and goes
through the same services as the API (``ManagedCredentialService``, ``RotationService``,
``JobsAdmin``): authorized, scoped to the organization, audited. No secret value is ever read
here: the pages show names, versions, dates, results and error texts only. Ids in URLs are
truncated before they reach a service; an unknown one is the 404 page.

Roll back: the rotation service has no use case to go back to a previous version once a
rotation has succeeded (a failed rotation rolls itself back: the predecessor is kept and still
served), so the console offers none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from tokenwarden.domain.errors import DomainError, Forbidden, InvalidInput
from tokenwarden.domain.managed import CredentialStatus, ManagedCredential
from tokenwarden.domain.rotation import Step
from tokenwarden.http.console.common import done, fragment, page, refused, signed_in, text, when
from tokenwarden.http.deps import container
from tokenwarden.http.web.csrf import check_csrf
from tokenwarden.ports.rotation import RotationRecord
from tokenwarden.services.common import Actor
from tokenwarden.services.console import Viewer
from tokenwarden.services.lifecycle_jobs import ROTATION_JOB
from tokenwarden.services.rotation import Outcome

router = APIRouter(include_in_schema=False)

MAX_NAME: Final = 128  # a credential's or a job's name (the services check the alphabet)
MAX_RUN_ID: Final = 80
HISTORY: Final = 20  # rotations shown on a credential's page
SHOWN_OUTCOMES: Final = 200
# (action, label, what happens): the two ways to rotate now
ROTATE_ACTIONS: Final = (
    (
        "rotate",
        "Rotate now",
        "A new token is created, written to the secret store, read back and served; the current "
        "one keeps working until the credential's overlap window ends, then it is revoked.",
    ),
    (
        "rotate-compromised",
        "Rotate now (compromised)",
        "A new token is created and served; the current one is revoked the moment the new one is "
        "served (no overlap) and the contacts are alerted. Consumers still holding the old secret "
        "get 401 until they read the new one.",
    ),
)
_ROTATE: Final = {a: (label, warning) for a, label, warning in ROTATE_ACTIONS}
RUN_WARNING: Final = (
    "The job runs now for this organization only, as its schedule would run it: what it does "
    "(revocations, notices, rotations) is done and audited."
)
# a rotation's journal step as the page says it
STEP_TEXT: Final = {
    Step.DONE.value: "rotated",
    Step.ROLLED_BACK.value: "failed, rolled back (previous version kept)",
    Step.FAILED.value: "failed (nothing created)",
    Step.ROLLING_BACK.value: "rolling back",
}
BAD_STEPS: Final = frozenset({Step.ROLLED_BACK.value, Step.FAILED.value, Step.ROLLING_BACK.value})


def _admin_only(viewer: Viewer) -> None:
    if not viewer.is_admin:
        raise Forbidden("organization administrators only", code="accessDenied")


def _rotation_path(name: str) -> str:
    return f"/console/rotation/{quote(name[:MAX_NAME], safe='')}"


def _run_path(job: str, run_id: str) -> str:
    return f"/console/jobs/{quote(job[:MAX_NAME], safe='')}/{quote(run_id[:MAX_RUN_ID], safe='')}"


def at(value: object) -> str:
    """An ISO-8601 instant (as the job runner gives them) the way the console shows dates."""
    if not isinstance(value, str) or not value:
        return "—"
    try:
        return when(datetime.fromisoformat(value))
    except ValueError:
        return value[:40]


def figures(counts: object) -> list[tuple[str, str]]:
    """A run's counts as (name, figure) pairs: numbers and short words only (lists such as the
    errors and the rotation outcomes are shown on their own)."""
    if not isinstance(counts, dict):
        return []
    out: list[tuple[str, str]] = []
    for key, value in counts.items():
        if isinstance(value, bool):
            out.append((str(key)[:64], "yes" if value else "no"))
        elif isinstance(value, int | float):
            out.append((str(key)[:64], str(value)))
        elif isinstance(value, str) and len(value) <= 120:
            out.append((str(key)[:64], value))
    return out


def _errors(run: dict[str, Any]) -> list[str]:
    counts = run.get("counts")
    listed = counts.get("errors") if isinstance(counts, dict) else None
    found = [str(e)[:500] for e in listed if isinstance(e, str)] if isinstance(listed, list) else []
    return found[:20]


def _outcomes(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The rotation job's per-credential outcomes (credential, result, detail, version)."""
    counts = run.get("counts")
    listed = counts.get("credentials") if isinstance(counts, dict) else None
    if not isinstance(listed, list):
        return []
    return [o for o in listed if isinstance(o, dict) and "credential" in o][:SHOWN_OUTCOMES]


# ---------------------------------------------------------------------- rotation
@dataclass(frozen=True, slots=True)
class CredentialRow:
    """One managed credential as the rotation page lists it (never its secret)."""

    cred: ManagedCredential
    last: RotationRecord | None
    owner: str
    next_due: datetime | None

    @property
    def failing(self) -> bool:
        return self.cred.status is CredentialStatus.FAILING

    @property
    def path(self) -> str:
        return _rotation_path(self.cred.name)


def _owners(request: Request, viewer: Viewer, actor: Actor, creds: list[ManagedCredential]) -> dict[str, str]:
    c = container(request)
    names: dict[str, str] = {}
    for user_id in {cr.user_id for cr in creds if cr.user_id}:
        try:
            names[user_id] = c.directory.get_member(actor, viewer.org.id, user_id)[0].upn
        except DomainError:  # no longer a member: the id is shown
            continue
    return names


def _row(cred: ManagedCredential, last: RotationRecord | None, owners: dict[str, str]) -> CredentialRow:
    owner = owners.get(cred.user_id, cred.user_id) if cred.user_id else f"{cred.source.value} source"
    due = cred.valid_to - timedelta(days=cred.rotation.threshold_days) if cred.valid_to else None
    return CredentialRow(cred, last, owner or "", due)


def _rotation_job(request: Request, viewer: Viewer, actor: Actor) -> dict[str, Any] | None:
    jobs = container(request).jobs_admin.status(actor, viewer.org.id)
    return next((j for j in jobs if j["name"] == ROTATION_JOB), None)


def _rotation_context(request: Request, viewer: Viewer, actor: Actor) -> dict[str, Any]:
    creds = container(request).managed.all(actor, viewer.org.id)
    owners = _owners(request, viewer, actor, [cr for cr, _ in creds])
    rows = sorted((_row(cr, last, owners) for cr, last in creds), key=lambda r: r.cred.name.lower())
    return {
        "title": "Rotation",
        "rows": rows,
        "job": _rotation_job(request, viewer, actor),
        "failing": sum(1 for r in rows if r.failing),
        "step_text": STEP_TEXT,
        "bad_steps": BAD_STEPS,
        "at": at,
    }


@router.get("/console/rotation")
async def rotation_page(request: Request) -> Response:
    """Every managed credential of the organization: its store, owner and contacts, when it
    is due, its last rotation and current version."""
    viewer, actor = await signed_in(request)
    try:
        _admin_only(viewer)
        context = await run_in_threadpool(_rotation_context, request, viewer, actor)
    except DomainError as exc:
        return refused(request, viewer, exc)
    return page(request, "rotation.html", viewer, context)


def _credential_context(request: Request, viewer: Viewer, actor: Actor, name: str) -> dict[str, Any]:
    managed = container(request).managed
    cred, last = managed.get(actor, viewer.org.id, name[:MAX_NAME])
    history = managed.history(actor, viewer.org.id, cred.name, HISTORY)
    owners = _owners(request, viewer, actor, [cred])
    return {
        "title": cred.name,
        "r": _row(cred, last, owners),
        "needs_factor": not container(request).mfa.status(actor).enrolled,
        "history": history,
        "actions": ROTATE_ACTIONS,
        "step_text": STEP_TEXT,
        "bad_steps": BAD_STEPS,
    }


def _rotate_now(
    request: Request, viewer: Viewer, actor: Actor, cred: ManagedCredential, compromised: bool
) -> Outcome:
    """Rotate now through the service: from a browser session it needs a fresh second factor
    (the successor is as wide as the credential, wider than the session; it goes to the
    secret store, never to the administrator)."""
    return container(request).rotation.rotate_now(actor, cred, compromised=compromised)


@router.get("/console/rotation/{name}")
async def credential_page(request: Request, name: str) -> Response:
    """One managed credential: its settings, its last rotations (newest first), Rotate now."""
    viewer, actor = await signed_in(request)
    try:
        _admin_only(viewer)
        context = await run_in_threadpool(_credential_context, request, viewer, actor, name)
    except DomainError as exc:
        return refused(request, viewer, exc)
    return page(request, "rotation_one.html", viewer, context)


@router.get("/console/rotation/{name}/confirm/{action}")
async def rotate_confirm(request: Request, name: str, action: str) -> Response:
    """The confirmation without script: the same question as the dialog, Yes and No."""
    viewer, actor = await signed_in(request)
    try:
        _admin_only(viewer)
        if action not in _ROTATE:
            raise InvalidInput(f"unknown action {action[:40]!r}", code="invalidAction")
        cred = await run_in_threadpool(container(request).managed.find, actor, viewer.org.id, name[:MAX_NAME])
    except DomainError as exc:
        return refused(request, viewer, exc)
    label, warning = _ROTATE[action]
    path = _rotation_path(cred.name)
    context = {
        "title": label,
        "question": f"{label}: {cred.name}?",
        "warning": warning,
        "action": f"{path}/{action}",
        "hidden": (),
        "back": path,
    }
    return page(request, "confirm.html", viewer, context)


@router.post("/console/rotation/{name}/{action}")
async def rotate_action(request: Request, name: str, action: str) -> Response:
    """Rotate the credential now (confirmed, a fresh second factor for those who have one);
    back to its page with what happened: rotated, pending the overlap, failed or busy."""
    form = await request.form()
    viewer, actor = await signed_in(request)
    back = _rotation_path(name)
    c = container(request)
    try:
        check_csrf(request, form)
        _admin_only(viewer)
        if action not in _ROTATE:
            raise InvalidInput(f"unknown action {action[:40]!r}", code="invalidAction")
        if text(form, "confirmed") != "yes":
            raise InvalidInput("the rotation was not confirmed", code="notConfirmed")
        cred = await run_in_threadpool(c.managed.find, actor, viewer.org.id, name[:MAX_NAME])
        compromised = action == "rotate-compromised"
        outcome = await run_in_threadpool(_rotate_now, request, viewer, actor, cred, compromised)
    except DomainError as exc:
        return refused(request, viewer, exc, back=back)
    path = _rotation_path(cred.name)
    if outcome.result in ("rotated", "pending") and outcome.version is not None:
        return done(path, outcome.result.replace("pending", "rotation-pending"), n=outcome.version)
    if outcome.result == "failed":
        return done(path, "rotation-failed")
    if outcome.result == "busy":
        return done(path, "rotation-busy")
    return done(path, "rotation-started")


# ---------------------------------------------------------------------- jobs
def _jobs_context(request: Request, viewer: Viewer, actor: Actor) -> dict[str, Any]:
    jobs = container(request).jobs_admin.status(actor, viewer.org.id)
    return {
        "title": "Jobs",
        "jobs": jobs,
        "at": at,
        "figures": figures,
        "org_id": viewer.org.id,
        "run_warning": RUN_WARNING,
        "quote": lambda v: quote(str(v), safe=""),
    }


@router.get("/console/jobs")
async def jobs_page(request: Request) -> Response:
    """Every lifecycle job: schedule, next run, whether it runs now, its last run (counts and
    errors of this organization's runs only), Run now."""
    viewer, actor = await signed_in(request)
    try:
        _admin_only(viewer)
        context = await run_in_threadpool(_jobs_context, request, viewer, actor)
    except DomainError as exc:
        return refused(request, viewer, exc)
    return page(request, "jobs.html", viewer, context)


@router.get("/console/jobs/{name}/confirm")
async def job_confirm(request: Request, name: str) -> Response:
    """Run now without script: a page with Yes and No."""
    viewer, _ = await signed_in(request)
    try:
        _admin_only(viewer)
        spec = container(request).jobs.spec(name[:MAX_NAME])
    except DomainError as exc:
        return refused(request, viewer, exc)
    path = f"/console/jobs/{quote(spec.name, safe='')}"
    context = {
        "title": f"Run {spec.name}",
        "question": f"Run {spec.name} now?",
        "warning": RUN_WARNING,
        "action": f"{path}/run",
        "hidden": (),
        "back": "/console/jobs",
    }
    return page(request, "confirm.html", viewer, context)


@router.post("/console/jobs/{name}/run")
async def job_run(request: Request, name: str) -> Response:
    """Start a run of the job for this organization (confirmed); to the run's page. 409 page
    while another run holds the job."""
    form = await request.form()
    viewer, actor = await signed_in(request)
    c = container(request)
    try:
        check_csrf(request, form)
        _admin_only(viewer)
        spec = c.jobs.spec(name[:MAX_NAME])
        if text(form, "confirmed") != "yes":
            raise InvalidInput("the run was not confirmed", code="notConfirmed")
        run_id = await run_in_threadpool(c.jobs_admin.start, actor, viewer.org.id, spec.name)
    except DomainError as exc:
        return refused(request, viewer, exc, back="/console/jobs")
    return done(_run_path(spec.name, run_id), "job-started")


def _run(request: Request, viewer: Viewer, actor: Actor, name: str, run_id: str) -> dict[str, Any]:
    return container(request).jobs_admin.run_of(actor, viewer.org.id, name[:MAX_NAME], run_id[:MAX_RUN_ID])


def _run_context(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run": run,
        "job": str(run.get("job", "")),
        "path": _run_path(str(run.get("job", "")), str(run.get("id", ""))),
        "figures": figures(run.get("counts")),
        "errors": _errors(run),
        "outcomes": _outcomes(run),
        "at": at,
    }


@router.get("/console/jobs/{name}/{run_id}")
async def job_run_page(request: Request, name: str, run_id: str) -> Response:
    """One run of this organization: its state, counts and errors (polled while it runs)."""
    viewer, actor = await signed_in(request)
    try:
        _admin_only(viewer)
        run = await run_in_threadpool(_run, request, viewer, actor, name, run_id)
    except DomainError as exc:
        return refused(request, viewer, exc)
    context = {"title": f"Run of {run.get('job', name[:MAX_NAME])}", **_run_context(run)}
    return page(request, "job_run.html", viewer, context)


@router.get("/console/jobs/{name}/{run_id}/progress")
async def job_progress(request: Request, name: str, run_id: str) -> Response:
    """The run's state alone (htmx polls it every 2 s while it runs; once it has finished the
    whole page is loaded again)."""
    viewer, actor = await signed_in(request)
    try:
        _admin_only(viewer)
        run = await run_in_threadpool(_run, request, viewer, actor, name, run_id)
    except DomainError as exc:
        return refused(request, viewer, exc)
    response = fragment("job_progress.html", **_run_context(run))
    if run.get("status") != "running":
        response.headers["HX-Refresh"] = "true"
    return response
