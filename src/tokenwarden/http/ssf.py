"""Shared Signals Framework 1.0 transmitter routes: discovery, JWKS, stream management,
RFC 8936 poll and a Server-Sent Events stream. Receivers authenticate with a tokenwarden token
(Bearer) carrying ``ssf.manage`` (``ssf.read`` for reads, poll and SSE); a stream belongs to the
organization of that token, and only its administrators create, change or delete streams,
change their status or subjects, or request verification."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio
import anyio.to_thread
from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from tokenwarden.domain import secevent
from tokenwarden.domain.errors import Forbidden, InvalidInput, NotFound
from tokenwarden.domain.principals import Role
from tokenwarden.http.auth import authenticate
from tokenwarden.http.deps import container
from tokenwarden.ports.signals import Stream
from tokenwarden.services.ssf import Receiver, SsfService

router = APIRouter(tags=["shared signals"])
READ: Final = "ssf.read"
MANAGE: Final = "ssf.manage"
SSE_STEP: Final = 0.25
SSE_KEEPALIVE: Final = 15.0
ORG_ISSUER_PATH: Final = "/ssf/orgs"


def _ssf(request: Request) -> SsfService:
    return container(request).ssf


def issuer(request: Request) -> str:
    """TOKENWARDEN_ISSUER, else this request's base URL."""
    configured = container(request).settings.issuer
    return (configured or str(request.base_url)).rstrip("/")


def org_issuer(request: Request, org_id: str) -> str:
    """The ``iss`` of an organization's SETs: one issuer per organization, so a receiver that
    checks ``iss`` never takes another organization's SET for its own, whatever ``aud`` says."""
    return f"{issuer(request)}{ORG_ISSUER_PATH}/{org_id}"


def receiver(request: Request, scope: str) -> Receiver:
    c = container(request)
    caller, _ = authenticate(request, c.validator, scope)
    org_id = caller.token.org_id
    role = caller.role_in(org_id)
    if role is None:
        raise Forbidden("the token's owner is not a member of its organization", code="accessDenied")
    return Receiver(org_id=org_id, user_id=caller.user.id, is_admin=role is Role.ADMIN)


def stream_json(request: Request, stream: Stream) -> dict[str, Any]:
    """The SSF stream configuration (``authorization_header`` is write-only: never shown)."""
    delivery: dict[str, Any] = {"method": stream.delivery_method}
    if stream.delivery_method == secevent.POLL:
        delivery["endpoint_url"] = f"{issuer(request)}/ssf/poll?stream_id={stream.stream_id}"
    else:
        delivery["endpoint_url"] = stream.endpoint_url
    body: dict[str, Any] = {
        "stream_id": stream.stream_id,
        "iss": stream.iss,
        "aud": stream.aud[0] if len(stream.aud) == 1 else list(stream.aud),
        "events_supported": list(secevent.EVENTS_SUPPORTED),
        "events_requested": list(stream.events_requested),
        "events_delivered": SsfService.events_delivered(stream),
        "delivery": delivery,
    }
    if stream.description is not None:
        body["description"] = stream.description
    if stream.min_verification_interval is not None:
        body["min_verification_interval"] = stream.min_verification_interval
    if stream.inactivity_timeout is not None:
        body["inactivity_timeout"] = stream.inactivity_timeout
    return body


def status_json(stream: Stream) -> dict[str, Any]:
    body: dict[str, Any] = {"stream_id": stream.stream_id, "status": stream.status}
    if stream.status_reason:
        body["reason"] = stream.status_reason
    return body


# ---------------------------------------------------------------------- discovery
@router.get("/.well-known/ssf-configuration")
def configuration(request: Request) -> dict[str, Any]:
    """SSF transmitter metadata. Each organization's SETs carry its own issuer (the stream's
    ``iss``), described at ``/.well-known/ssf-configuration/ssf/orgs/{org id}``."""
    return _metadata(request, issuer(request))


@router.get("/.well-known/ssf-configuration/ssf/orgs/{org_id}")
def org_configuration(request: Request, org_id: str) -> dict[str, Any]:
    """The metadata of one organization's issuer (RFC 8414-style path insertion). Answered for
    any well-formed id without a lookup, so it tells nobody which organizations exist."""
    try:
        canonical = str(uuid.UUID(org_id))
    except ValueError as exc:
        raise NotFound("no such issuer", code="issuerNotFound") from exc
    return _metadata(request, org_issuer(request, canonical))


def _metadata(request: Request, iss: str) -> dict[str, Any]:
    base = issuer(request)
    return {
        "spec_version": "1_0",
        "issuer": iss,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "delivery_methods_supported": list(secevent.DELIVERY_METHODS),
        "configuration_endpoint": f"{base}/ssf/stream",
        "status_endpoint": f"{base}/ssf/status",
        "add_subject_endpoint": f"{base}/ssf/subjects/add",
        "remove_subject_endpoint": f"{base}/ssf/subjects/remove",
        "verification_endpoint": f"{base}/ssf/verify",
        "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
        "default_subjects": "ALL",
    }


@router.get("/.well-known/jwks.json")
def jwks(request: Request) -> JSONResponse:
    """Public keys that verify SETs (and, later, access tokens)."""
    return JSONResponse(_ssf(request).keys.jwks(), headers={"Cache-Control": "public, max-age=300"})


# ---------------------------------------------------------------------- streams
@router.post("/ssf/stream", status_code=201)
def create_stream(request: Request, body: dict[str, Any] = Body(default_factory=dict)) -> dict[str, Any]:
    """Create a stream (omitted ``delivery``: poll). Organization administrators only."""
    who = receiver(request, MANAGE)
    return stream_json(request, _ssf(request).create(who, body, org_issuer(request, who.org_id)))


@router.get("/ssf/stream", response_model=None)
def read_stream(
    request: Request, stream_id: str | None = Query(default=None)
) -> dict[str, Any] | list[dict[str, Any]]:
    """One stream (``?stream_id=``) or every stream of the caller's organization."""
    who = receiver(request, READ)
    ssf = _ssf(request)
    if stream_id is not None:
        return stream_json(request, ssf.get(who, stream_id))
    return [stream_json(request, s) for s in ssf.streams(who)]


@router.patch("/ssf/stream")
def update_stream(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    who = receiver(request, MANAGE)
    return stream_json(request, _ssf(request).update(who, body, replace_all=False))


@router.put("/ssf/stream")
def replace_stream(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    who = receiver(request, MANAGE)
    return stream_json(request, _ssf(request).update(who, body, replace_all=True))


@router.delete("/ssf/stream", status_code=204)
def delete_stream(request: Request, stream_id: str = Query(...)) -> Response:
    who = receiver(request, MANAGE)
    _ssf(request).delete(who, stream_id)
    return Response(status_code=204)


@router.get("/ssf/status")
def read_status(request: Request, stream_id: str = Query(...)) -> dict[str, Any]:
    who = receiver(request, READ)
    return status_json(_ssf(request).get(who, stream_id))


@router.post("/ssf/status")
def update_status(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """``{"stream_id", "status": enabled|paused|disabled, "reason"}``."""
    who = receiver(request, MANAGE)
    status = body.get("status")
    if not isinstance(status, str):
        raise InvalidInput("status is required", code="invalidStatus")
    stream = _ssf(request).set_status(who, body.get("stream_id", ""), status, body.get("reason"))
    return status_json(stream)


@router.post("/ssf/subjects/add")
def add_subject(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    who = receiver(request, MANAGE)
    _ssf(request).add_subject(who, body.get("stream_id", ""), body.get("subject"), body.get("verified"))
    return Response(status_code=200)


@router.post("/ssf/subjects/remove", status_code=204)
def remove_subject(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    who = receiver(request, MANAGE)
    _ssf(request).remove_subject(who, body.get("stream_id", ""), body.get("subject"))
    return Response(status_code=204)


@router.post("/ssf/verify", status_code=204)
def verify(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Queue a verification SET (``state`` echoed) on the stream."""
    who = receiver(request, MANAGE)
    _ssf(request).verify(who, body.get("stream_id", ""), body.get("state"))
    return Response(status_code=204)


# ---------------------------------------------------------------------- delivery
def _first(body: dict[str, Any], *names: str) -> Any:
    return next((body[n] for n in names if n in body), None)


@router.post("/ssf/poll")
def poll(
    request: Request,
    body: dict[str, Any] = Body(default_factory=dict),
    stream_id: str | None = Query(default=None),
) -> dict[str, Any]:
    """RFC 8936 poll: ``{maxEvents, returnImmediately, ack, setErrs}`` (snake_case accepted too,
    ``stream_id`` in the body or the query) -> ``{sets: {jti: SET}, moreAvailable}``."""
    who = receiver(request, READ)
    max_events = _first(body, "maxEvents", "max_events")
    immediately = _first(body, "returnImmediately", "return_immediately")
    acks = body.get("ack", [])
    errs = _first(body, "setErrs", "set_errs") or {}
    if max_events is not None and (isinstance(max_events, bool) or not isinstance(max_events, int)):
        raise InvalidInput("maxEvents must be an integer", code="invalidRequest")
    if immediately is not None and not isinstance(immediately, bool):
        raise InvalidInput("returnImmediately must be a boolean", code="invalidRequest")
    if not isinstance(acks, list) or not all(isinstance(a, str) for a in acks):
        raise InvalidInput("ack must be a list of jti strings", code="invalidRequest")
    if not isinstance(errs, dict):
        raise InvalidInput("setErrs must be an object", code="invalidRequest")
    errors = {str(jti): _describe_err(err) for jti, err in errs.items()}
    result = _ssf(request).poll(
        who,
        _first(body, "stream_id", "streamId") or stream_id or "",
        max_events=max_events,
        return_immediately=bool(immediately),
        acks=acks,
        errors=errors,
    )
    return {"sets": result.sets, "moreAvailable": result.more_available}


def _describe_err(err: Any) -> str:
    if isinstance(err, dict):
        return f"{err.get('err', 'error')}: {err.get('description', '')}".strip()[:512]
    return str(err)[:512]


@router.get("/ssf/sse")
async def sse(request: Request, stream_id: str = Query(...)) -> StreamingResponse:
    """The SETs of a poll stream as Server-Sent Events: ``event: set`` / ``data: <JWS>``, ``id``
    the jti. Delivery is at-least-once per stream: acknowledge through poll (``ack``, with
    ``maxEvents: 0`` to receive nothing), else the SET is offered again after the redelivery
    delay, on SSE or poll."""
    ssf = _ssf(request)
    who = await anyio.to_thread.run_sync(receiver, request, READ)
    await anyio.to_thread.run_sync(ssf.check_sse, who, stream_id)

    async def events() -> AsyncIterator[str]:
        idle = 0.0
        yield ": tokenwarden SSF event stream\n\n"
        while not await request.is_disconnected():
            batch = await anyio.to_thread.run_sync(ssf.sse_batch, who, stream_id)
            for d in batch:
                yield f"id: {d.jti}\nevent: set\ndata: {d.set_jws}\n\n"
            if batch:
                idle = 0.0
                continue
            await anyio.sleep(SSE_STEP)
            idle += SSE_STEP
            if idle >= SSE_KEEPALIVE:
                idle = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
