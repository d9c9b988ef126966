"""Lifecycle jobs, webhooks and the outbox over HTTP (issue 12).

Jobs are installation-wide, so an organization's administrator sees every job's schedule and
state but the counts and errors only of runs for their own organization (a run over every
organization would tell one tenant about the others), and triggers runs limited to it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from tokenwarden.domain.principals import Organization
from tokenwarden.http.api.models import Body
from tokenwarden.http.deps import admin_org, container, org_caller
from tokenwarden.services.common import Actor
from tokenwarden.services.notifications import message_dict
from tokenwarden.services.webhooks import webhook_dict

router = APIRouter(tags=["lifecycle jobs"])
ADMIN = "vso.tokenadministration"


class WebhookCreate(Body):
    url: str = Field(max_length=4096)
    events: list[str] = Field(default_factory=list, max_length=20)
    description: str | None = Field(default=None, max_length=1000)


class ReplayRequest(Body):
    ids: list[int] = Field(min_length=1, max_length=1000)


def _admin_org(request: Request, org: str | None) -> tuple[Organization, Actor]:
    return admin_org(request, org, ADMIN, "?org=NAME")


@router.get("/api/v1/jobs")
def list_jobs(request: Request, org: str | None = Query(default=None, max_length=256)) -> dict[str, Any]:
    """Every job: schedule, next run, whether it runs now, and its recent runs (counts and
    errors only of the caller's organization's runs)."""
    the_org, actor = _admin_org(request, org)
    jobs = container(request).jobs_admin.status(actor, the_org.id)
    return {"count": len(jobs), "value": jobs}


@router.post("/api/v1/jobs/{name}/run", status_code=202)
def run_job(
    request: Request, name: str, org: str | None = Query(default=None, max_length=256)
) -> dict[str, Any]:
    """Start a run of the job for the caller's organization now; 409 ``jobRunning`` while
    another run holds the job. Follow it with ``GET /api/v1/jobs/{name}/runs/{id}``."""
    container(request).jobs.spec(name)
    the_org, actor = _admin_org(request, org)
    run_id = container(request).jobs_admin.start(actor, the_org.id, name)
    return {"id": run_id, "job": name, "org": the_org.id, "status": "running"}


@router.get("/api/v1/jobs/{name}/runs/{run_id}")
def get_run(
    request: Request, name: str, run_id: str, org: str | None = Query(default=None, max_length=256)
) -> dict[str, Any]:
    """One run of the caller's organization (its counts, messages and errors)."""
    container(request).jobs.spec(name)
    the_org, actor = _admin_org(request, org)
    return container(request).jobs_admin.run_of(actor, the_org.id, name, run_id)


# ---------------------------------------------------------------- webhooks
@router.post("/api/v1/orgs/{org}/webhooks", status_code=201)
def add_webhook(request: Request, org: str, body: WebhookCreate) -> dict[str, Any]:
    """Register a webhook. Its signing ``secret`` (``whsec_…``) is in this response only."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    made = container(request).webhooks.add(
        actor, the_org.id, body.url, events=body.events, description=body.description
    )
    return {**webhook_dict(made.hook), "secret": made.secret}


@router.get("/api/v1/orgs/{org}/webhooks")
def list_webhooks(request: Request, org: str) -> dict[str, Any]:
    the_org, _, actor = org_caller(request, org, ADMIN)
    hooks = [webhook_dict(h) for h in container(request).webhooks.list(actor, the_org.id)]
    return {"count": len(hooks), "value": hooks}


@router.delete("/api/v1/orgs/{org}/webhooks/{hook_id}", status_code=204)
def remove_webhook(request: Request, org: str, hook_id: str) -> Response:
    the_org, _, actor = org_caller(request, org, ADMIN)
    container(request).webhooks.remove(actor, the_org.id, hook_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- outbox
@router.get("/api/v1/orgs/{org}/notifications")
def list_notifications(
    request: Request,
    org: str,
    status: str | None = Query(default=None, max_length=16),
    limit: int = Query(default=100, ge=1, le=10_000),
) -> dict[str, Any]:
    """The organization's messages, newest first (``status=dead``: the dead letters)."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    found = container(request).notifications.messages(actor, the_org.id, status=status, limit=limit)
    rows = [message_dict(m) for m in found]
    return {"count": len(rows), "value": rows}


@router.post("/api/v1/orgs/{org}/notifications/replay")
def replay_notifications(request: Request, org: str, body: ReplayRequest) -> dict[str, Any]:
    """Dead letters back into the queue (ids of other organizations are ignored)."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    done = container(request).notifications.replay(actor, the_org.id, body.ids)
    return {"replayed": done, "count": len(done)}
