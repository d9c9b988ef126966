"""Rotation over HTTP (issue 13): managed credentials, rotation runs and rotate-now, the rotation
status, and the consumers' door to a built-in (or file) store secret with long-polling.

Every route needs ``vso.tokenadministration`` and an administrator of the organization (the
services check the role); a non-member gets the same 404 as an unknown organization. Secret
values are never logged; a read is audited only when a value is returned (not per poll tick).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Final

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field, StrictBool, StrictInt
from starlette.concurrency import run_in_threadpool

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.managed import CredentialStatus, StoreKind
from tokenwarden.domain.principals import Organization
from tokenwarden.http.api.models import Body
from tokenwarden.http.auth import authenticate
from tokenwarden.http.deps import admin_org, container, org_caller
from tokenwarden.services.common import Actor
from tokenwarden.services.lifecycle_jobs import ROTATION_JOB
from tokenwarden.services.managed import NewCredential, credential_dict, rotation_dict

router = APIRouter(tags=["rotation"])
ADMIN: Final = "vso.tokenadministration"
CREDS: Final = "/api/v1/orgs/{org}/managed-credentials"

MAX_WAIT: Final = 600.0  # the ceiling of ?wait= (the setting secret_wait_max_seconds caps it further)
POLL_SECONDS: Final = 0.2  # how often a long-poll looks at the store's current version
MAX_WAITERS: Final = 256  # long-polls held at once per process; beyond, answers come at once
_waiters = [0]  # the event loop's own count (one thread: no lock)
RUN_WAIT_SECONDS: Final = 60.0  # a real run answered 202 (still running) past this
_DIGITS = re.compile(r"^[0-9]{1,19}$")
_NUMBER = re.compile(r"^[0-9]{1,4}(\.[0-9]{1,3})?$")
_ETAG = re.compile(r'^\s*(?:W/)?"([^"]*)"\s*$')


# ---------------------------------------------------------------------- request bodies
class CredentialCreate(Body):
    # generous bounds here; the service gives the precise rule (name alphabet, 20 contacts, ...)
    name: str = Field(max_length=1024)
    authorization_id: str = Field(alias="authorizationId", max_length=256)
    store: str = Field(max_length=64, description="builtin | file | vault | aws | azure-keyvault")
    source: str = Field(default="local", max_length=16, description="local | ado")
    user: str | None = Field(default=None, max_length=320, description="the PAT's owner, checked")
    secret_name: str | None = Field(default=None, alias="secretName", max_length=1024)
    threshold_days: StrictInt = Field(default=7, alias="thresholdDays")
    valid_days: StrictInt = Field(default=30, alias="validDays")
    overlap_minutes: StrictInt = Field(default=0, alias="overlapMinutes")
    contacts: list[str] = Field(default_factory=list, max_length=100)
    ado_url: str | None = Field(default=None, alias="adoUrl", max_length=2048)
    ado_org: str | None = Field(default=None, alias="adoOrg", max_length=512)
    ado_credential: str | None = Field(
        default=None,
        alias="adoCredential",
        max_length=8192,
        description="the external server's admin credential (body only; sealed, never shown again)",
    )


class ContactsPatch(Body):
    contacts: list[str] = Field(max_length=100)


class RunRequest(Body):
    org: str | None = Field(default=None, max_length=256)
    dry_run: StrictBool = Field(default=False, alias="dryRun")


class RotateRequest(Body):
    compromised: StrictBool = True


# ---------------------------------------------------------------------- managed credentials
@router.post(CREDS, status_code=201)
def add_credential(request: Request, org: str, body: CredentialCreate) -> dict[str, Any]:
    """Put a PAT under rotation. Nothing is written to the store until its first rotation."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    # the service finds a local PAT by the stripped, lower-cased id but keeps the id as given;
    # kept raw, " ABC…" would escape the one-credential-per-token check and the rotation's
    # revoke of the predecessor would miss it (see the issue 13 report): normalise here
    auth_id = body.authorization_id.strip()
    new = NewCredential(
        name=body.name,
        authorization_id=auth_id.lower() if body.source == "local" else auth_id,
        store=body.store,
        source=body.source,
        user=body.user,
        secret_name=body.secret_name,
        threshold_days=body.threshold_days,
        valid_days=body.valid_days,
        overlap_minutes=body.overlap_minutes,
        contacts=tuple(body.contacts),
        ado_url=body.ado_url,
        ado_org=body.ado_org,
        ado_credential=body.ado_credential,
    )
    return credential_dict(container(request).managed.add(actor, the_org.id, new))


@router.get(CREDS)
def list_credentials(request: Request, org: str) -> dict[str, Any]:
    the_org, _, actor = org_caller(request, org, ADMIN)
    rows = [credential_dict(cred, last) for cred, last in container(request).managed.all(actor, the_org.id)]
    return {"value": rows, "count": len(rows)}


@router.get(CREDS + "/{name}")
def show_credential(request: Request, org: str, name: str) -> dict[str, Any]:
    the_org, _, actor = org_caller(request, org, ADMIN)
    cred, last = container(request).managed.get(actor, the_org.id, name)
    return credential_dict(cred, last)


@router.get(CREDS + "/{name}/rotations")
def credential_rotations(
    request: Request, org: str, name: str, top: int = Query(default=20, ge=1, le=200)
) -> dict[str, Any]:
    """The credential's rotations, newest first."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    rows = [rotation_dict(r) for r in container(request).managed.history(actor, the_org.id, name, top)]
    return {"value": rows, "count": len(rows)}


@router.delete(CREDS + "/{name}", status_code=204)
def remove_credential(
    request: Request, org: str, name: str, delete_secret: bool = Query(default=False, alias="deleteSecret")
) -> Response:
    """Stop managing the credential (its token lives on); ``deleteSecret=true`` also deletes the
    secret from its store. 409 ``rotationInProgress`` while a rotation is unfinished."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    container(request).managed.remove(actor, the_org.id, name, delete_secret=delete_secret)
    return Response(status_code=204)


@router.patch(CREDS + "/{name}")
def update_credential(request: Request, org: str, name: str, body: ContactsPatch) -> dict[str, Any]:
    """Replace the credential's contacts (who hears of its rotations and failures)."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    managed = container(request).managed
    managed.update_contacts(actor, the_org.id, name, body.contacts)
    cred, last = managed.get(actor, the_org.id, name)
    return credential_dict(cred, last)


# ---------------------------------------------------------------------- rotation
def _admin_org(request: Request, org: str | None) -> tuple[Organization, Actor]:
    return admin_org(request, org, ADMIN, '{"org": NAME}')


def _job_run(request: Request, actor: Actor, org_id: str, run_id: str) -> dict[str, Any]:
    return container(request).jobs_admin.run_of(actor, org_id, ROTATION_JOB, run_id)


@router.post("/api/v1/rotation/run")
async def run_rotation(request: Request, body: RunRequest | None = None) -> Response:
    """Rotate what is due in the caller's organization now.

    ``dryRun``: what a run would do, nothing changed, not recorded. Otherwise a run of the
    ``rotation`` job for this organization (recorded in the job history and audited); 200 with
    its report once it has finished, 202 ``{"id", "status": "running"}`` if it is still running
    after a minute; 409 ``jobRunning`` while another run holds the job."""
    c = container(request)
    wanted = body or RunRequest()
    the_org, actor = await run_in_threadpool(_admin_org, request, wanted.org)
    if wanted.dry_run:
        await run_in_threadpool(c.managed.all, actor, the_org.id)  # the administrator check
        dry = await run_in_threadpool(
            lambda: c.rotation.run(org_id=the_org.id, dry_run=True, trigger="manual", actor=actor)
        )
        return JSONResponse({**dry.as_dict(), "org": the_org.id, "status": "completed"})
    run_id = await run_in_threadpool(c.jobs_admin.start, actor, the_org.id, ROTATION_JOB)
    deadline = time.monotonic() + RUN_WAIT_SECONDS
    run = await run_in_threadpool(_job_run, request, actor, the_org.id, run_id)
    while run["status"] == "running" and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        run = await run_in_threadpool(_job_run, request, actor, the_org.id, run_id)
    if run["status"] == "running":
        body_running = {"id": run_id, "runId": run_id, "job": ROTATION_JOB, "org": the_org.id}
        return JSONResponse({**body_running, "status": "running"}, status_code=202)
    journaled = [
        {"credential": cred.name, **rotation_dict(last)}
        for cred, last in await run_in_threadpool(c.managed.all, actor, the_org.id)
        if last is not None and last.run_id == run_id
    ]
    report = {
        "runId": run_id,
        "job": ROTATION_JOB,
        "org": the_org.id,
        "dryRun": False,
        "trigger": run["trigger"],
        "status": run["status"],
        "error": run["error"],
        "startedAt": run["startedAt"],
        "finishedAt": run["finishedAt"],
        **(run["counts"] or {}),
        "rotations": journaled,
    }
    return JSONResponse(report)


@router.post(CREDS + "/{name}/rotate")
def rotate_credential(
    request: Request, org: str, name: str, body: RotateRequest | None = None
) -> dict[str, Any]:
    """Rotate now whatever the expiry. ``compromised`` (default true): the predecessor is revoked
    the moment the successor is served, with reason ``compromised``, and the contacts are
    alerted. 200 whatever the result: ``result`` says ``rotated``, ``pending``, ``failed``
    (rolled back; the predecessor is kept and still served) or ``busy``."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    c = container(request)
    cred = c.managed.find(actor, the_org.id, name)
    compromised = True if body is None else body.compromised
    return c.rotation.rotate_now(actor, cred, compromised=compromised).as_dict()


@router.get("/api/v1/orgs/{org}/rotation/status")
def rotation_status(request: Request, org: str) -> dict[str, Any]:
    """Every managed credential, how many are failing, and the rotation job's newest run (its
    counts only if it was a run for this organization)."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    c = container(request)
    creds = c.managed.all(actor, the_org.id)
    job = next((j for j in c.jobs_admin.status(actor, the_org.id) if j["name"] == ROTATION_JOB), None)
    runs = job["runs"] if job else []
    last = runs[0] if runs else None
    return {
        "credentials": [credential_dict(cred, r) for cred, r in creds],
        "count": len(creds),
        "failing": sum(1 for cred, _ in creds if cred.status is CredentialStatus.FAILING),
        "nextRun": job["nextRun"] if job else None,
        "running": job["running"] if job else False,
        "lastRun": None
        if last is None
        else {
            "id": last["id"],
            "trigger": last["trigger"],
            "status": last["status"],
            "startedAt": last["startedAt"],
            "finishedAt": last["finishedAt"],
            "counts": last["counts"],
            "error": last["error"],
            "org": last["org"],
        },
    }


# ---------------------------------------------------------------------- consumers
def _etags(header: str | None) -> set[str] | None:
    """The versions an ``If-None-Match`` names (``"*"`` as ``*``); None without the header."""
    if header is None:
        return None
    if header.strip() == "*":
        return {"*"}
    found = set()
    for part in header.split(","):
        m = _ETAG.match(part)
        if m:
            found.add(m.group(1))
    return found


def _query(version: str | None, raw: str | None) -> tuple[str | None, float]:
    """``version`` (digits) and ``wait`` (seconds, 0..600), with precise messages."""
    if version is not None and not _DIGITS.match(version):
        raise InvalidInput(
            f"version must be a version number (digits), not {version!r:.40}", code="invalidVersion"
        )
    wait = 0.0
    if raw is not None:
        if not _NUMBER.match(raw) or float(raw) > MAX_WAIT:
            raise InvalidInput(
                f"wait must be a number of seconds from 0 to {MAX_WAIT:.0f}, not {raw!r:.40}",
                code="invalidWait",
            )
        wait = float(raw)
    return version, wait


def _not_modified(version: str) -> Response:
    return Response(status_code=304, headers={"ETag": f'"{version}"', "Cache-Control": "no-store"})


@router.get("/api/v1/orgs/{org}/secrets/{name}")
async def read_secret(
    request: Request,
    org: str,
    name: str,
    version: str | None = Query(default=None, max_length=64, description="the version the caller has"),
    wait: str | None = Query(
        default=None, max_length=64, description="seconds (0-600) to wait for a version other than it"
    ),
) -> Response:
    """The current value of a managed credential's built-in (or file) store secret, audited.

    ``ETag: "<version>"``; ``If-None-Match`` with that tag, or ``?version=N``, answers 304 while
    N is still current. ``&wait=S`` holds the request up to S seconds (at most
    ``secret_wait_max_seconds``) for a new version first: 200 with it the moment one is served,
    else 304. Credentials in vault, aws or azure-keyvault are read from there (400
    ``externalStore``)."""
    c = container(request)
    version, seconds = _query(version, wait)
    the_org, _, actor = await run_in_threadpool(org_caller, request, org, ADMIN)
    cred = await run_in_threadpool(c.managed.find, actor, the_org.id, name)
    known = {version} if version is not None else _etags(request.headers.get("if-none-match"))
    if known and cred.store in (StoreKind.BUILTIN, StoreKind.FILE):
        store = await run_in_threadpool(c.stores, cred.store)
        current = await run_in_threadpool(store.current_version, cred.secret_name)
        if current is not None and "*" in known:
            return _not_modified(current)
        limit = min(seconds, float(c.settings.secret_wait_max_seconds))
        if _waiters[0] >= MAX_WAITERS:
            limit = 0.0  # every poll costs a thread hop and a query: a flood is answered at once
        deadline = time.monotonic() + limit
        waited = False
        _waiters[0] += 1
        try:
            while current is not None and current in known:
                left = deadline - time.monotonic()
                if left <= 0 or await request.is_disconnected():
                    return _not_modified(current)
                await asyncio.sleep(min(POLL_SECONDS, left))
                waited = True
                current = await run_in_threadpool(store.current_version, cred.secret_name)
        finally:
            _waiters[0] -= 1
        if waited:  # the token may have been revoked, the admin demoted, while the request waited
            the_org, _, actor = await run_in_threadpool(org_caller, request, org, ADMIN)
    # NotFound before the first rotation; externalStore for the other stores; audited
    cred, stored = await run_in_threadpool(lambda: c.managed.read_secret(actor, the_org.id, cred.name))
    if known and stored.version in known:  # replaced and then discarded meanwhile: unchanged
        return _not_modified(stored.version)
    body = {
        "name": cred.name,
        "value": stored.value,
        "version": stored.version,
        "expiresAt": stored.expires_at.isoformat() if stored.expires_at else None,
        "contentType": stored.content_type,
    }
    return JSONResponse(body, headers={"ETag": f'"{stored.version}"', "Cache-Control": "no-store"})


@router.get("/api/v1/secrets/{name}")
async def read_secret_of_callers_org(
    request: Request,
    name: str,
    version: str | None = Query(default=None, max_length=64, description="the version the caller has"),
    wait: str | None = Query(
        default=None, max_length=64, description="seconds (0-600) to wait for a version other than it"
    ),
) -> Response:
    """``/api/v1/orgs/{org}/secrets/{name}`` in the organization of the caller's token."""
    c = container(request)
    caller, _ = await run_in_threadpool(authenticate, request, c.validator)
    return await read_secret(request, caller.org_id, name, version, wait)
