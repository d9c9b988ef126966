"""``POST /api/v1/secret-scanning/github``: GitHub's secret-scanning partner endpoint (issue 14).

Authenticated by GitHub's ECDSA signature over the raw body, not by a token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from tokenwarden.http.deps import container
from tokenwarden.http.inputs import parse_json

router = APIRouter(prefix="/api/v1/secret-scanning", tags=["leaked tokens"])
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "token": {"type": "string"},
                            "type": {"type": "string"},
                            "url": {"type": "string"},
                            "source": {"type": "string"},
                        },
                        "required": ["token"],
                    },
                }
            }
        },
    }
}


@router.post("/github", openapi_extra=_BODY)
async def github_report(request: Request) -> list[dict[str, str]]:
    """Label each reported token ``true_positive`` (this installation's: revoked at once, owner
    and security contact told) or ``false_positive``; 401 for a missing or bad signature."""
    body = await request.body()
    intake = container(request).leak_intake
    await run_in_threadpool(
        intake.verify,
        body,
        request.headers.get("github-public-key-identifier"),
        request.headers.get("github-public-key-signature"),
    )
    items = parse_json(body, empty="a JSON array of reported tokens is required")
    return await run_in_threadpool(intake.report, items)
