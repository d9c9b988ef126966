"""SCIM 2.0 (RFC 7643/7644) at ``/scim/v2/{org}``: what Entra ID and Okta provision against.

Every answer under ``/scim/v2`` -- service errors, SCIM errors, unknown paths, wrong methods,
unexpected failures -- is rendered here as a SCIM ``Error`` (``application/scim+json``) by
:class:`ScimRoute`. Only the organization's provisioning tokens get in (docs/scim.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

import scim2_models as scim
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from tokenwarden.domain.errors import DomainError, InsufficientScope, InvalidToken, Unauthenticated
from tokenwarden.domain.principals import Organization
from tokenwarden.http.auth import client_ip, secret_from_header
from tokenwarden.http.deps import container
from tokenwarden.http.errors import status_of
from tokenwarden.http.inputs import parse_json
from tokenwarden.http.usage import note_token
from tokenwarden.services.common import Actor
from tokenwarden.services.scim.documents import ScimAnswer, not_modified
from tokenwarden.services.scim.models import PROVIDER, SEARCH_REQUEST
from tokenwarden.services.scim.service import SCIM_SCOPE, ScimService

log = logging.getLogger(__name__)

MEDIA_TYPE: Final = "application/scim+json"
ERROR_SCHEMA: Final = "urn:ietf:params:scim:api:messages:2.0:Error"
WWW_AUTHENTICATE: Final = 'Bearer realm="tokenwarden-scim"'
UNAUTHORIZED: Final = "a provisioning token of this organization is required (tokenwarden scim token create)"
PREFIX: Final = "/scim/v2"


class ScimResponse(JSONResponse):
    media_type = MEDIA_TYPE


def scim_error(
    status: int, detail: str, scim_type: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The SCIM ``Error`` body (RFC 7644 §3.12)."""
    body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail[:1000]}
    if scim_type:
        body["scimType"] = scim_type
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": WWW_AUTHENTICATE}
    return ScimResponse(body, status_code=status, headers=headers)


def domain_error_response(exc: DomainError) -> Response:
    status = status_of(exc)
    if isinstance(exc, (Unauthenticated, InvalidToken, InsufficientScope)) or status in (401, 403):
        return scim_error(401, UNAUTHORIZED)
    headers = {"Retry-After": "1"} if status == 503 else None
    return scim_error(status, exc.message, "invalidValue" if status == 400 else None, headers)


class ScimRoute(APIRoute):
    """A route whose every non-2xx answer is a SCIM error."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def scim_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except scim.SCIMException as exc:
                error = exc.to_error()
                return scim_error(
                    int(error.status or 400), error.detail or "invalid request", error.scim_type
                )
            except DomainError as exc:
                return domain_error_response(exc)
            except RequestValidationError as exc:
                message = "; ".join(str(e.get("msg", "invalid")) for e in exc.errors()[:5])
                return scim_error(400, message or "invalid request", "invalidValue")
            except StarletteHTTPException as exc:
                return scim_error(exc.status_code, str(exc.detail), None, dict(exc.headers or {}))
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return scim_error(500, "internal error; see the server log")

        return scim_handler


router = APIRouter(route_class=ScimRoute, tags=["scim"])


# ---------------------------------------------------------------------- request helpers
def provisioning(request: Request, org: str) -> tuple[ScimService, Organization, Actor, str]:
    """The SCIM service, the organization, the acting provisioning token and the base URL.
    Every refusal is the same ``401``, whether or not the organization exists."""
    c = container(request)
    header = (request.headers.get("authorization") or "").strip()
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise scim.SCIMException.from_error(scim.Error(status=401, detail=UNAUTHORIZED))
    secret = secret_from_header(header)
    the_org = c.scim.organization(org)
    if the_org is None:
        raise scim.SCIMException.from_error(scim.Error(status=401, detail=UNAUTHORIZED))
    ip = client_ip(request)
    try:
        caller = c.validator.validate(secret, SCIM_SCOPE, the_org.id, ip)
    except DomainError as exc:
        note_token(request, exc.token_key)
        raise
    note_token(request, caller.key)
    c.scim.check_caller(caller, the_org)
    base = f"{str(request.base_url).rstrip('/')}{PREFIX}/{org}"
    return c.scim, the_org, caller.actor(ip, request.headers.get("user-agent")), base


def scim_body(raw: bytes) -> Any:
    """The request's JSON — parsed only once the caller is authenticated, so an anonymous body
    learns nothing but ``401``."""
    return parse_json(raw, empty="a SCIM request needs a JSON body", prefix="the body")


def answer(result: ScimAnswer) -> Response:
    headers: dict[str, str] = {}
    if result.etag:
        headers["ETag"] = result.etag
    if result.location and result.status == 201:
        headers["Location"] = result.location
    return ScimResponse(result.body, status_code=result.status, headers=headers)


def read_answer(request: Request, result: ScimAnswer, version_etag: str | None) -> Response:
    """A GET answer, or ``304`` when ``If-None-Match`` names the current version."""
    if version_etag is not None:
        version = int(version_etag.removeprefix("W/").strip('"'))
        if not_modified(version, request.headers.get("if-none-match")):
            return Response(status_code=304, headers={"ETag": version_etag})
    return answer(result)


def int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise scim.InvalidValueException(detail=f"{name} must be an integer, not {raw!r:.40}") from None


def search_params(body: Any) -> dict[str, Any]:
    """The parameters of a ``POST .search`` (RFC 7644 §3.4.3)."""
    if not isinstance(body, dict):
        raise scim.InvalidSyntaxException(detail="a SearchRequest is a JSON object")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or SEARCH_REQUEST not in schemas:
        raise scim.InvalidSyntaxException(detail=f"a SearchRequest names the schema {SEARCH_REQUEST}")

    def text(key: str) -> str | None:
        value = body.get(key)
        if value is None:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ",".join(value)
        if not isinstance(value, str):
            raise scim.InvalidValueException(detail=f"{key} must be a string")
        return value

    def number(key: str) -> int | None:
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise scim.InvalidValueException(detail=f"{key} must be an integer")
        return value

    return {
        "filter_text": text("filter"),
        "start_index": number("startIndex"),
        "count": number("count"),
        "attributes": text("attributes"),
        "excluded": text("excludedAttributes"),
    }


# ---------------------------------------------------------------------- discovery
def _with_meta(body: dict[str, Any], resource_type: str, location: str) -> dict[str, Any]:
    return {**body, "meta": {"resourceType": resource_type, "location": location}}


def _listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len(items),
        "startIndex": 1,
        "itemsPerPage": len(items),
        "Resources": items,
    }


def _dumped(resource: Any) -> dict[str, Any]:
    body: dict[str, Any] = resource.model_dump(scim_ctx=scim.Context.RESOURCE_QUERY_RESPONSE)
    return body


def _schemas(base: str) -> list[dict[str, Any]]:
    return [_with_meta(_dumped(s), "Schema", f"{base}/Schemas/{s.id}") for s in PROVIDER.schemas]


def _resource_types(base: str) -> list[dict[str, Any]]:
    return [
        _with_meta(_dumped(r), "ResourceType", f"{base}/ResourceTypes/{r.id}")
        for r in PROVIDER.resource_types
    ]


@router.get("/scim/v2/{org}/ServiceProviderConfig", response_class=ScimResponse)
def service_provider_config(request: Request, org: str) -> Response:
    """What this SCIM service supports (RFC 7643 §5)."""
    _, _, _, base = provisioning(request, org)
    body = _dumped(PROVIDER.config)
    return ScimResponse(_with_meta(body, "ServiceProviderConfig", f"{base}/ServiceProviderConfig"))


@router.get("/scim/v2/{org}/ResourceTypes", response_class=ScimResponse)
def resource_types(request: Request, org: str) -> Response:
    _, _, _, base = provisioning(request, org)
    return ScimResponse(_listing(_resource_types(base)))


@router.get("/scim/v2/{org}/ResourceTypes/{type_id}", response_class=ScimResponse)
def resource_type(request: Request, org: str, type_id: str) -> Response:
    _, _, _, base = provisioning(request, org)
    found = [r for r in _resource_types(base) if r["id"] == type_id]
    if not found:
        raise scim.NotFoundException(detail=f"no resource type {type_id!r:.80}")
    return ScimResponse(found[0])


@router.get("/scim/v2/{org}/Schemas", response_class=ScimResponse)
def schemas(request: Request, org: str) -> Response:
    _, _, _, base = provisioning(request, org)
    return ScimResponse(_listing(_schemas(base)))


@router.get("/scim/v2/{org}/Schemas/{schema_id}", response_class=ScimResponse)
def schema(request: Request, org: str, schema_id: str) -> Response:
    _, _, _, base = provisioning(request, org)
    found = [s for s in _schemas(base) if s["id"] == schema_id]
    if not found:
        raise scim.NotFoundException(detail=f"no schema {schema_id!r:.80}")
    return ScimResponse(found[0])


# ---------------------------------------------------------------------- Users and Groups
def _endpoint(service: ScimService, kind: str) -> Any:
    return service.users if kind == "Users" else service.groups


def _register(kind: str) -> None:
    """The same six operations for ``/Users`` and ``/Groups``."""
    path = f"/scim/v2/{{org}}/{kind}"

    def search(request: Request, org: str) -> Response:
        service, the_org, _, base = provisioning(request, org)
        q = request.query_params
        return answer(
            _endpoint(service, kind).search(
                the_org,
                base,
                q.get("filter"),
                int_param(request, "startIndex"),
                int_param(request, "count"),
                q.get("attributes"),
                q.get("excludedAttributes"),
            )
        )

    async def search_post(request: Request, org: str) -> Response:
        raw = await request.body()
        return await _threaded(request, lambda: _search_post(request, org, raw))

    def _search_post(request: Request, org: str, raw: bytes) -> Response:
        service, the_org, _, base = provisioning(request, org)
        return answer(_endpoint(service, kind).search(the_org, base, **search_params(scim_body(raw))))

    async def create(request: Request, org: str) -> Response:
        raw = await request.body()

        def run() -> Response:
            service, the_org, actor, base = provisioning(request, org)
            return answer(_endpoint(service, kind).create(actor, the_org, scim_body(raw), base))

        return await _threaded(request, run)

    def get(request: Request, org: str, scim_id: str) -> Response:
        service, the_org, _, base = provisioning(request, org)
        q = request.query_params
        result = _endpoint(service, kind).get(
            the_org, scim_id, base, q.get("attributes"), q.get("excludedAttributes")
        )
        return read_answer(request, result, result.etag)

    async def put(request: Request, org: str, scim_id: str) -> Response:
        raw = await request.body()

        def run() -> Response:
            service, the_org, actor, base = provisioning(request, org)
            if_match, body = request.headers.get("if-match"), scim_body(raw)
            return answer(_endpoint(service, kind).replace(actor, the_org, scim_id, body, base, if_match))

        return await _threaded(request, run)

    async def patch(request: Request, org: str, scim_id: str) -> Response:
        raw = await request.body()

        def run() -> Response:
            service, the_org, actor, base = provisioning(request, org)
            if_match, body = request.headers.get("if-match"), scim_body(raw)
            return answer(_endpoint(service, kind).patch(actor, the_org, scim_id, body, base, if_match))

        return await _threaded(request, run)

    def delete(request: Request, org: str, scim_id: str) -> Response:
        service, the_org, actor, _ = provisioning(request, org)
        _endpoint(service, kind).delete(actor, the_org, scim_id, request.headers.get("if-match"))
        return Response(status_code=204)

    name = kind.lower()
    router.add_api_route(path, search, methods=["GET"], name=f"scim_{name}_list")
    router.add_api_route(f"{path}/.search", search_post, methods=["POST"], name=f"scim_{name}_search")
    router.add_api_route(path, create, methods=["POST"], name=f"scim_{name}_create", status_code=201)
    item = f"{path}/{{scim_id}}"
    router.add_api_route(item, get, methods=["GET"], name=f"scim_{name}_get")
    router.add_api_route(item, put, methods=["PUT"], name=f"scim_{name}_replace")
    router.add_api_route(item, patch, methods=["PATCH"], name=f"scim_{name}_patch")
    router.add_api_route(item, delete, methods=["DELETE"], name=f"scim_{name}_delete", status_code=204)


async def _threaded(request: Request, fn: Callable[[], Response]) -> Response:
    """Run the blocking part (database, offboarding) off the event loop."""
    return await run_in_threadpool(fn)


_register("Users")
_register("Groups")


@router.post("/scim/v2/{org}/.search", response_class=ScimResponse)
async def search_everything(request: Request, org: str) -> Response:
    """``POST /.search`` at the root: users and groups in one list."""
    raw = await request.body()

    def run() -> Response:
        service, the_org, _, base = provisioning(request, org)
        return answer(service.search_all(the_org, base, **search_params(scim_body(raw))))

    return await _threaded(request, run)


# ---------------------------------------------------------------------- everything else
_ALL_METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_ALLOWED: Final = {
    "ServiceProviderConfig": "GET",
    "ResourceTypes": "GET",
    "Schemas": "GET",
    "Users": "GET, POST",
    "Groups": "GET, POST",
}


def fallback(request: Request, rest: str) -> Response:
    """``405`` (with ``Allow``) for a known endpoint and another method, else a SCIM ``404``."""
    parts = [p for p in rest.split("/") if p][1:]  # after the organization
    allowed = None
    if len(parts) == 1:
        allowed = _ALLOWED.get(parts[0])
    elif len(parts) == 2 and parts[0] in ("Users", "Groups"):
        allowed = "POST" if parts[1] == ".search" else "GET, PUT, PATCH, DELETE"
    elif len(parts) == 2 and parts[0] in ("ResourceTypes", "Schemas"):
        allowed = "GET"
    if allowed is not None and request.method not in allowed.split(", "):
        return scim_error(405, f"{request.method} is not supported here", None, {"Allow": allowed})
    shown = "/" + "/".join(parts)
    return scim_error(404, f"no SCIM endpoint {shown[:120]!r} (endpoints are case-sensitive)")


router.add_api_route(
    "/scim/v2/{rest:path}", fallback, methods=_ALL_METHODS, include_in_schema=False, name="scim_fallback"
)
