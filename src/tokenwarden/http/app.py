"""The FastAPI application: routers, the path normaliser for Azure DevOps clients, error rendering."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tokenwarden import __version__
from tokenwarden.bootstrap import Container, build
from tokenwarden.domain.errors import DomainError
from tokenwarden.domain.usage import area_of
from tokenwarden.http import oauth, oauth_authorize, ssf
from tokenwarden.http.api import admin, bulk, invitations, pats, reports, revocation, system
from tokenwarden.http.api import alerts as alerts_api
from tokenwarden.http.api import jobs as jobs_api  # issue 12
from tokenwarden.http.api import lifecycle as lifecycle_api  # issue 12: enforcement, self-service
from tokenwarden.http.api import mfa as mfa_api  # issue 16: second factors and step-up
from tokenwarden.http.api import rotation as rotation_api  # issue 13: managed credentials, rotation
from tokenwarden.http.api import secret_scanning as secret_scanning_api
from tokenwarden.http.api import sessions as session_api  # issue 11: sign-in and browser sessions
from tokenwarden.http.api import usage as usage_api
from tokenwarden.http.api.clients import router as clients_router  # issue 11 (part 2)
from tokenwarden.http.compat import ado, ado_audit, graph, scim
from tokenwarden.http.console import operations as console_operations  # issue 16: rotation, jobs
from tokenwarden.http.console import routes as console_routes  # issue 16: the admin console
from tokenwarden.http.console import token_page as console_token_page  # issue 16: a token's page
from tokenwarden.http.console.common import ConsoleExit, console_exit
from tokenwarden.http.docs import install_docs
from tokenwarden.http.errors import (
    ADO_TYPE_KEYS,
    ado_response,
    native_error,
    native_response,
    wrapped_exception,
)
from tokenwarden.http.introspect_door import PATH as INTROSPECT_PATH
from tokenwarden.http.introspect_door import IntrospectDoor, scope_issuer
from tokenwarden.http.limits import SizeLimits
from tokenwarden.http.metrics import Metrics
from tokenwarden.http.usage import Network, UsageMiddleware, parse_networks, with_forwarded_client
from tokenwarden.http.validate_door import PATH as VALIDATE_PATH
from tokenwarden.http.validate_door import ValidateDoor
from tokenwarden.http.web import pages as web_pages  # issue 11: sign-in and browser sessions

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ADO_PATH = re.compile(r"^/([^/]+)/_apis(/.*)?$", re.IGNORECASE)


def normalize_ado_path(path: str) -> str:
    """Lower-case the literal segments of ``/{org}/_apis/...`` paths (clients mix casings) but
    keep route values such as a subject descriptor exactly as sent; drop a trailing slash."""
    m = _ADO_PATH.match(path)
    if not m:
        return path
    org, rest = m.group(1), (m.group(2) or "").rstrip("/")
    segments = [s for s in rest.split("/") if s]
    out = []
    keep_next = False
    for seg in segments:
        out.append(seg if keep_next else seg.lower())
        keep_next = seg.lower() == "personalaccesstokens"
    return f"/{org}/_apis" + "".join("/" + s for s in out)


class AdoPathMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "_apis" in scope["path"].lower():
            scope = dict(scope)
            scope["path"] = normalize_ado_path(scope["path"])
            scope.pop("raw_path", None)
        await self.app(scope, receive, send)


class _App(FastAPI):
    """FastAPI with the hot doors also in front of its own middleware stack.

    Per request, that stack (error and telemetry middleware, body-limit wrapping, the app's
    own middleware) cost more than the introspection decision itself (BENCHMARKS.md, issue 11),
    so requests for the doors' paths go straight to the size limits and the doors; whatever a
    door does not answer itself falls through to the full stack, where the same doors are
    middleware too (so a bare ``create_app`` and the served app behave alike).
    """

    front: ASGIApp | None = None
    front_paths: frozenset[str] = frozenset()
    trusted_proxies: tuple[Network, ...] = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.trusted_proxies:
            scope = with_forwarded_client(scope, self.trusted_proxies)
        if self.front is not None and scope["type"] == "http" and scope["path"] in self.front_paths:
            await self.front(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The full FastAPI stack (the front doors' fall-through)."""
        await super().__call__(scope, receive, send)


def _is_ado(request: Request) -> bool:
    return "/_apis" in request.url.path.lower()


def create_app(container: Container, *, start_background: bool = True) -> FastAPI:
    """Build the ASGI app around a wired container."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_background:
            container.start_background()
        try:
            yield
        finally:
            container.close()

    app = _App(
        title="tokenwarden",
        version=__version__,
        description="Self-hosted token authority: PATs, policies, validation, revocation, audit.",
        lifespan=lifespan,
        docs_url=None,  # served by http.docs from packaged assets (offline), not the CDN
        redoc_url=None,
    )
    app.state.container = container
    install_docs(app)
    app.state.metrics = Metrics(container.validator, container.usage, container.detection)
    routers: list[APIRouter] = []

    def include(router: APIRouter) -> None:
        app.include_router(router)
        routers.append(router)

    for module in (system, pats, admin, invitations, revocation, bulk, ado, graph, ssf, oauth):
        include(module.router)
    include(revocation.any_org_router)
    include(clients_router)  # issue 11 (part 2): the OAuth client registry
    include(reports.router)  # issue 12: policy violations, the weekly report
    # ---- issue 11 part 1: sign-in pages and browser sessions
    include(web_pages.router)
    include(session_api.router)
    include(oauth_authorize.router)  # issue 11: the authorization endpoint (consent)
    # ----
    include(jobs_api.router)  # issue 12: lifecycle jobs, webhooks, the outbox
    include(lifecycle_api.router)  # issue 12: policy enforcement, extend, watchers, contact
    include(rotation_api.router)  # issue 13: managed credentials, rotation, secrets
    include(ado_audit.router)  # issue 14: the Azure DevOps Audit Log API
    include(usage_api.router)  # issue 14: usage records
    include(alerts_api.router)  # issue 14: alerts, detection policy
    include(secret_scanning_api.router)  # issue 14: GitHub secret-scanning intake
    include(mfa_api.router)  # issue 16: second factors and step-up
    include(console_routes.router)  # issue 16: the admin console
    include(console_operations.router)  # issue 16: rotation and jobs status
    include(console_token_page.router)  # issue 16: a token's own page, extend/regenerate one's own PAT
    include(scim.router)  # issue 17: SCIM 2.0 provisioning
    app.add_exception_handler(ConsoleExit, console_exit)  # a console page's sign-in redirect

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        app.state.metrics.requests.labels(request.method, str(response.status_code)).inc()
        return response

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return ado_response(exc) if _is_ado(request) else native_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = "; ".join(_describe(e) for e in exc.errors()[:10]) or "invalid request"
        if _is_ado(request):
            return wrapped_exception(400, message, ADO_TYPE_KEYS[400])
        return native_error(400, "invalidInput", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = _body_error(exc) or str(exc.detail)
        if _is_ado(request):
            return wrapped_exception(
                exc.status_code, message, ADO_TYPE_KEYS.get(exc.status_code, "VssServiceException")
            )
        return native_error(exc.status_code, "httpError", message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return native_error(500, "internalError", "internal error; see the server log")

    app.add_middleware(AdoPathMiddleware)
    # issue 14: every authenticated request counted per token (inside the doors, which count
    # their own answers)
    app.add_middleware(UsageMiddleware, recorder=container.usage.recorder, areas=_route_areas(routers))
    app.trusted_proxies = parse_networks(container.settings.trusted_proxies)
    metrics = app.state.metrics
    settings = container.settings
    doors: dict[str, Any] = {
        "validate": {
            "validator": container.validator,
            "directory": container.directory,
            "count": lambda method, status: metrics.requests.labels(method, str(status)).inc(),
            "usage": container.usage.recorder,
        },
        "introspect": {
            "introspector": container.introspector,
            "issuer": lambda scope: scope_issuer(scope, settings.issuer),
        },
        "limits": {
            "render": _render_error,
            "max_body": settings.max_body_bytes,
            "max_upload": settings.max_upload_bytes,
            "max_headers": settings.max_header_bytes,
        },
    }
    app.add_middleware(ValidateDoor, **doors["validate"])
    app.add_middleware(IntrospectDoor, **doors["introspect"])
    app.add_middleware(SizeLimits, **doors["limits"])
    # The same three, in front of the framework for their paths (see _App).
    app.front = SizeLimits(
        IntrospectDoor(ValidateDoor(app.stack, **doors["validate"]), **doors["introspect"]),
        **doors["limits"],
    )
    app.front_paths = frozenset({VALIDATE_PATH, INTROSPECT_PATH})
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _route_areas(routers: list[APIRouter]) -> frozenset[str]:
    """The usage areas of the routes (a request for any other path counts as "other")."""
    areas = {area_of(getattr(route, "path", "")) for router in routers for route in router.routes}
    return frozenset(areas | {area_of(VALIDATE_PATH), area_of(INTROSPECT_PATH)})


def _render_error(scope: Scope, exc: DomainError) -> Response:
    """A domain error in the shape of the door ``scope`` is addressed to (before routing)."""
    path = str(scope.get("path", "")).lower()
    if "/_apis" in path:
        return ado_response(exc)
    if path.startswith("/graph/"):
        return graph.domain_error_response(Request(scope), exc)
    if path.startswith("/scim/v2/"):
        return scim.domain_error_response(exc)
    return native_response(exc)


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """OpenAPI as the server behaves: 400 (not 422) for bad input, 401/403 documented, and the
    Basic/Bearer security schemes so /docs can authorize."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "a tokenwarden token"},
        "basic": {"type": "http", "scheme": "basic", "description": "any user name, the token as password"},
    }
    open_paths = {"/health", "/metrics", "/{org}/_apis", "/api/v1/secret-scanning/github"}
    error_ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            responses.setdefault("400", {"description": "Bad input", **error_ref})
            if path in open_paths or (path == "/{org}/_apis" and method == "options"):
                continue
            op["security"] = [{"bearer": []}, {"basic": []}]
            responses.setdefault("401", {"description": "Missing or invalid credential", **error_ref})
            responses.setdefault("403", {"description": "Scope or role missing", **error_ref})
    if "/{org}/_apis/tokenadmin/revocationrules" in schema.get("paths", {}):
        op = schema["paths"]["/{org}/_apis/tokenadmin/revocationrules"]["post"]
        op["responses"].pop("200", None)
        op["responses"]["201"] = {"description": "Rule created (no body)"}
    app.openapi_schema = schema
    return schema


def _body_error(exc: StarletteHTTPException) -> str | None:
    """FastAPI answers any failure to parse a JSON body with one vague 400; say which."""
    if isinstance(exc.__cause__, RecursionError):
        return "request body is nested too deeply"
    if isinstance(exc.__cause__, UnicodeDecodeError):
        return "request body is not UTF-8 text"
    return None


def _describe(error: Any) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
    msg = error.get("msg", "invalid")
    if error.get("type") == "json_invalid":
        return f"request body is not valid JSON: {msg}"
    return f"{loc}: {msg}"


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker builds its own container)."""
    container = build()
    return create_app(container)
