"""Bulk revocation from a CSV of users, run as a background job with status and results.

The job's state lives in the database, so any node (or the CLI) can resume or report it; the
thread here only drives it: it stores the rows (a chunk per transaction, the job ``creating``
meanwhile), then runs the job. Submitting the same CSV again finds the same job (its id is a
digest of the input) and resumes it if it is unfinished.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.csv_users import MAX_CSV_BYTES, size_error
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.watermarks import parse_kinds
from tokenwarden.http.deps import container, org_caller
from tokenwarden.ports.repositories import BulkJobItem
from tokenwarden.services.bulk_revoke import BulkRevokeService, JobStatus, Submission, results_csv
from tokenwarden.services.common import Actor

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/orgs/{org}", tags=["bulk revocation"])
ADMIN = "vso.tokenadministration"
_NOT_CSV = ("application/json", "multipart/form-data", "application/x-www-form-urlencoded")

_running: set[str] = set()
_running_lock = threading.Lock()


async def read_csv_body(request: Request) -> bytes:
    """The raw body, refused as soon as it passes the size limit (never buffered past it)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in _NOT_CSV:
        raise InvalidInput(
            f"send the CSV itself as the body (Content-Type text/csv or application/octet-stream), "
            f"not {content_type}",
            code="invalidCsv",
        )
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_CSV_BYTES:
        raise size_error(int(declared))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CSV_BYTES:
            raise size_error(len(body))
    return bytes(body)


def start_runner(service: BulkRevokeService, actor: Actor, submission: Submission) -> None:
    """Drive the job in a background thread, at most one per job in this process: store the
    rows it still lacks, then run it."""
    job_id = submission.job.id
    with _running_lock:
        if job_id in _running:
            return
        _running.add(job_id)

    def target() -> None:
        try:
            service.run(actor, service.store_rows(actor, submission).job.id)
        except Exception:
            log.exception("bulk job %s stopped; submit the same CSV again to resume it", job_id)
        finally:
            with _running_lock:
                _running.discard(job_id)

    threading.Thread(target=target, name=f"bulk-job-{job_id[:8]}", daemon=True).start()


def status_json(org: str, st: JobStatus) -> dict[str, Any]:
    base = f"/api/v1/orgs/{org}/jobs/{st.job.id}"
    return {
        "jobId": st.job.id,
        "type": st.job.type,
        "state": st.state,
        "total": st.total,
        "stored": st.stored,  # rows stored so far: below total only while "creating"
        "done": st.done,
        "counts": st.counts,
        "kinds": list(st.job.kinds),
        "dryRun": st.job.dry_run,
        "sourceName": st.job.source_name,
        "createdAt": iso_z(st.job.created_at),
        "updatedAt": iso_z(st.job.updated_at),
        "statusUrl": base,
        "resultsUrl": f"{base}/results",
    }


CSV_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post("/revocations/users-csv", status_code=202, openapi_extra=CSV_BODY)
async def submit_users_csv(
    request: Request,
    org: str,
    kinds: str | None = Query(None, max_length=200),
    dry_run: bool = Query(False, alias="dryRun"),
    source_name: str | None = Query(None, alias="sourceName", max_length=256),
) -> JSONResponse:
    """Revoke the tokens of every user in the CSV body (a UserPrincipalName column, or one UPN per
    line) as a background job; 202 with the job's status URL. A malformed CSV is a 400 that
    names the line, and no job is created. The job is ``creating`` until all its rows are
    stored, then ``pending``, ``running`` and ``completed``."""
    _, _, actor = await run_in_threadpool(org_caller, request, org, ADMIN)
    kind_list = parse_kinds(kinds)
    body = await read_csv_body(request)
    c = container(request)
    service = c.bulk_revoke
    submission = await run_in_threadpool(
        service.submit, actor, org, body, kind_list, dry_run, source_name or "upload"
    )
    if submission.job.status != "completed":
        start_runner(service, actor, submission)
    st = await run_in_threadpool(service.status, actor, submission.job.id, org)
    data = {
        **status_json(org, st),
        "resumed": submission.resumed,  # an interrupted job of the same input, resumed
        "job": "resumed" if submission.resumed else "new",
        "previousJobId": submission.previous.id if submission.previous is not None else None,
    }
    return JSONResponse(data, status_code=202, headers={"Location": data["statusUrl"]})


@router.get("/jobs/{job_id}")
def job_status(request: Request, org: str, job_id: str) -> dict[str, Any]:
    """State (creating | pending | running | completed), counts per row status, total, stored
    and done."""
    _, _, actor = org_caller(request, org, ADMIN)
    return status_json(org, container(request).bulk_revoke.status(actor, job_id, org))


@router.get("/jobs/{job_id}/results", response_model=None)
def job_results(
    request: Request, org: str, job_id: str, format: str = Query("csv", pattern="^(csv|json)$")
) -> Response | dict[str, Any]:
    """One row per input row in input order: CSV (UserPrincipalName,Status,Error,RevokedCount) or
    JSON with ``format=json``. Rows not processed yet are Pending."""
    _, _, actor = org_caller(request, org, ADMIN)
    service = container(request).bulk_revoke
    st = service.status(actor, job_id, org)
    rows = service.results(actor, job_id, org)
    if format == "json":
        return {
            "jobId": job_id,
            "state": st.state,
            "count": len(rows),
            "value": [item_json(r) for r in rows],
        }
    return Response(
        results_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="results-{job_id}.csv"'},
    )


def item_json(item: BulkJobItem) -> dict[str, Any]:
    return {
        "line": item.line_no,
        "userPrincipalName": item.upn,
        "status": item.status,
        "error": item.error,
        "revokedCount": item.revoked_count,
        "processedAt": iso_z(item.processed_at),
    }
