"""Who am I, my organizations, health and metrics."""

from __future__ import annotations

import os
import secrets
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tokenwarden import __version__
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import DomainError
from tokenwarden.http.auth import authenticate, member_org
from tokenwarden.http.deps import container
from tokenwarden.http.errors import headers_of, status_of
from tokenwarden.http.validate_door import caller_body, parse_request
from tokenwarden.services.lifecycle_jobs import ROTATION_JOB

router = APIRouter(tags=["system"])


@router.get("/api/v1/me")
def me(request: Request) -> dict[str, Any]:
    """The caller, the token it used and its organizations."""
    c = container(request)
    caller, actor = authenticate(request, c.validator)
    orgs = c.directory.orgs_of(actor)
    token = caller.token
    return {
        "id": caller.user.id,
        "upn": caller.user.upn,
        "token": {
            "authorizationId": c.validator.authorization_id(caller),
            "kind": token.kind.value,
            "scope": " ".join(token.literal_scopes),
            "allOrgs": token.targets is None,
        },
        "orgs": [{"id": o.id, "name": o.name, "role": r.value} for o, r in orgs],
    }


@router.get("/api/v1/orgs")
def my_orgs(request: Request) -> dict[str, Any]:
    c = container(request)
    _, actor = authenticate(request, c.validator)
    orgs = c.directory.orgs_of(actor)
    return {
        "value": [
            {"id": o.id, "name": o.name, "role": r.value, "createdAt": iso_z(o.created_at)} for o, r in orgs
        ]
    }


@router.get("/api/v1/validate")
def validate(request: Request, scope: str | None = None, org: str | None = None) -> JSONResponse:
    """For resource servers: is the request's credential valid (for ``scope`` in ``org``)?

    200 with the caller, or 401/403 with ``{"active": false, "error": ...}``. In a running server
    this path is answered by the thin ASGI door in ``validate_door`` with the same decision.
    """
    c = container(request)
    try:
        secret, needed, org = parse_request(request.headers.get("authorization"), request.url.query)
        ip = request.client.host if request.client else None
        if org is None:
            caller = c.validator.validate(secret, needed, None, ip)
        else:
            _, caller = member_org(c.validator, c.directory.find_org, secret, needed, org, ip)
    except DomainError as exc:
        body = {"active": False, "error": {"code": exc.code, "message": exc.message}}
        return JSONResponse(body, status_code=status_of(exc), headers=headers_of(exc))
    return JSONResponse(caller_body(caller))


_INSTANCES: dict[int, str] = {}


def instance_id() -> str:
    """A random id of this server process (per pid, so forked workers differ): tells which
    worker answered, without saying anything about the host."""
    return _INSTANCES.setdefault(os.getpid(), secrets.token_hex(4))


@router.get("/health")
def health(request: Request) -> JSONResponse:
    """Liveness and readiness: 200 when the database answers, 503 otherwise."""
    c = container(request)
    db_ok = c.database.ping()
    jobs = _job_health(c) if db_ok else None
    body = {
        "status": "ok" if db_ok else "degraded",
        "version": __version__,
        "instance": instance_id(),
        "database": db_ok,
        "eventSeq": c.validator.seq,
        "secondsSinceSync": round(c.validator.seconds_since_sync(), 3),
        "jobs": jobs,
        "rotation": _rotation_health(jobs),
    }
    return JSONResponse(body, status_code=200 if db_ok else 503)


def _job_health(c: Any) -> list[dict[str, Any]] | None:
    """Each job's last run: when, how it ended, its counts (installation-wide totals, no names:
    /health is the operator's probe; error texts stay in `tokenwarden jobs status`)."""
    try:
        jobs = c.jobs.status(limit=1)
    except DomainError:
        return None
    out = []
    for job in jobs:
        last = job["runs"][0] if job["runs"] else None
        out.append(
            {
                "name": job["name"],
                "nextRun": job["nextRun"],
                "running": job["running"],
                "lastRun": None
                if last is None
                else {
                    "startedAt": last["startedAt"],
                    "finishedAt": last["finishedAt"],
                    "status": last["status"],
                    "trigger": last["trigger"],
                    # error texts name credentials and tokens: numbers only here; and a run
                    # limited to one organization is that organization's business, not the probe's
                    "counts": None
                    if last.get("org") is not None
                    else {
                        k: len(v) if isinstance(v, list) else v
                        for k, v in (last["counts"] or {}).items()
                        if k != "deliveryErrors"
                    },
                    "failed": last["error"] is not None,
                },
            }
        )
    return out


def _rotation_health(jobs: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The ``rotation`` job's last run (issue 13) with its figures; None if it never ran (or the
    database is away). ``errors`` is how many distinct errors, not their texts."""
    job = next((j for j in jobs or [] if j["name"] == ROTATION_JOB), None)
    last = job["lastRun"] if job else None
    if last is None:
        return None
    counts = last["counts"]
    figures = ("rotated", "failed", "skipped", "pending", "errors")
    return {
        "lastRun": {
            "startedAt": last["startedAt"],
            "finishedAt": last["finishedAt"],
            "status": last["status"],
            "trigger": last["trigger"],
        },
        # one organization's run (counts None): no figures on the unauthenticated probe
        **{k: None if counts is None else _number(counts.get(k)) for k in figures},
    }


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
