"""Microsoft Graph-shaped user revocation under ``/graph/v1.0`` and ``/graph/beta``.

Wire contract: ../shared/specs/identity-compat.md (section "Microsoft Graph-shaped user revocation").
Every answer under ``/graph`` -- errors from the services, unknown paths, wrong methods, even
unexpected failures -- is rendered here in the Graph error shape by :class:`GraphRoute`, so the
app's generic handlers never see a ``/graph`` request.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, Final
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, compile_path
from starlette.types import Scope

from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import (
    DomainError,
    Forbidden,
    InsufficientScope,
    InvalidInput,
    Unauthenticated,
    Unavailable,
)
from tokenwarden.domain.principals import Membership, RiskLevel, RiskState, Role, User, UserStatus
from tokenwarden.domain.watermarks import REFRESH_TOKENS, SIGN_IN_SESSIONS
from tokenwarden.http.auth import authenticate
from tokenwarden.http.deps import container
from tokenwarden.http.errors import headers_of, status_of
from tokenwarden.http.inputs import parse_json
from tokenwarden.services import signin_log
from tokenwarden.services.common import Actor
from tokenwarden.services.validation import Caller

log = logging.getLogger(__name__)

VERSIONS: Final = ("v1.0", "beta")
GRAPH_CODES: Final[dict[int, str]] = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "Request_ResourceNotFound",
    405: "BadRequest",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    431: "BadRequest",
    500: "generalException",
    503: "serviceNotAvailable",
}
WWW_AUTHENTICATE: Final = 'Bearer realm="tokenwarden"'
MAX_USER_IDS: Final = 1000
# Scopes of the Graph-shaped routes (in the scope catalogue; app_token implies both).
GRAPH_READ: Final = "graph.users"
GRAPH_MANAGE: Final = "graph.users_manage"

USER_PROPERTIES: Final = (
    "id",
    "userPrincipalName",
    "displayName",
    "signInSessionsValidFromDateTime",
    "refreshTokensValidFromDateTime",
)
RISKY_USER_PROPERTIES: Final = (
    "id",
    "userPrincipalName",
    "userDisplayName",
    "riskLevel",
    "riskState",
    "riskLastUpdatedDateTime",
    "isDeleted",
    "isProcessing",
    "riskDetail",
)
RISK_DETAIL: Final[dict[RiskState, str]] = {
    RiskState.CONFIRMED_COMPROMISED: "adminConfirmedUserCompromised",
    RiskState.DISMISSED: "adminDismissedAllRiskForUser",
    RiskState.CONFIRMED_SAFE: "adminConfirmedSigninSafe",
}
# Without $filter: every user whose risk level is not "none".
DEFAULT_LEVELS: Final = tuple(lv for lv in RiskLevel if lv is not RiskLevel.NONE)


# ---------------------------------------------------------------------- errors and routing
def graph_error(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The Graph error body: ``{"error": {"code", "message", "innerError": {...}}}``."""
    inner: dict[str, Any] = {
        "date": iso_z(container(request).clock.now().replace(microsecond=0)),
        "request-id": _request_id(request),
    }
    client_id = _client_request_id(request)
    if client_id is not None:
        inner["client-request-id"] = client_id
    body = {"error": {"code": GRAPH_CODES.get(status, "BadRequest"), "message": message, "innerError": inner}}
    return JSONResponse(body, status_code=status, headers=headers)


def domain_error_response(request: Request, exc: DomainError) -> JSONResponse:
    status = status_of(exc)
    headers = headers_of(exc)
    if isinstance(exc, Unauthenticated):
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE}
    elif isinstance(exc, Unavailable):
        headers = {"Retry-After": headers.get("Retry-After", "1")}
    return graph_error(request, status, exc.message, headers)


def _request_id(request: Request) -> str:
    rid = getattr(request.state, "graph_request_id", None)
    if rid is None:
        rid = str(uuid.uuid4())
        request.state.graph_request_id = rid
    return str(rid)


def _client_request_id(request: Request) -> str | None:
    value = request.headers.get("client-request-id")
    return value if value and len(value) <= 256 else None


class GraphRoute(APIRoute):
    """A route whose every non-2xx answer is Graph-shaped, matched case-insensitively (Graph
    paths are), and that stamps ``request-id`` (and the echoed ``client-request-id``)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.ci_regex = re.compile(compile_path(path)[0].pattern, re.IGNORECASE)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE or scope.get("type") != "http":
            return match, child
        # Graph paths are case-insensitive: retry on the canonical spelling of the literal
        # segments, keeping the values of the path parameters exactly as sent.
        found = self.ci_regex.match(route_path(scope))
        if found is None:
            return match, child
        canonical = self.path_format.format(**found.groupdict())
        return super().matches({**scope, "path": canonical, "root_path": ""})

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def graph_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except DomainError as exc:
                response = domain_error_response(request, exc)
            except RequestValidationError as exc:
                message = "; ".join(str(e.get("msg", "invalid")) for e in exc.errors()[:5])
                response = graph_error(request, 400, message or "invalid request")
            except StarletteHTTPException as exc:
                response = graph_error(request, exc.status_code, str(exc.detail), dict(exc.headers or {}))
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                response = graph_error(request, 500, "internal error; see the server log")
            response.headers["request-id"] = _request_id(request)
            client_id = _client_request_id(request)
            if client_id is not None:
                response.headers["client-request-id"] = client_id
            return response

        return graph_handler


def route_path(scope: Scope) -> str:
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


class GraphFallbackRoute(GraphRoute):
    """Catch-all under ``/graph``: unknown paths → 404, known paths with another method → 405,
    an unknown version segment → 400. Leaves ``/graph/_apis/...`` (an org named graph) alone."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if "/_apis" in str(scope.get("path", "")).lower():
            return Match.NONE, {}
        return super().matches(scope)


router = APIRouter(route_class=GraphRoute, tags=["microsoft-graph"])


USER_IDS_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"userIds": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
                    "required": ["userIds"],
                }
            }
        },
    }
}


def graph_route(
    path: str, method: str, openapi_extra: dict[str, Any] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the endpoint under every Graph version prefix."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for version in VERSIONS:
            router.add_api_route(
                f"/graph/{version}{path}",
                fn,
                methods=[method],
                name=f"graph_{version}_{fn.__name__}",
                response_class=JSONResponse,
                openapi_extra=openapi_extra,
            )
        return fn

    return register


# ---------------------------------------------------------------------- request helpers
def graph_caller(request: Request, scope: str) -> tuple[Caller, Actor]:
    """Bearer only (a PAT or a tokenwarden access token) carrying ``scope``. Graph has no
    organization in its URLs: a call acts within the token's own organization, and the token is
    checked against that organization's state (members, watermarks, rules, break-glass)."""
    header = (request.headers.get("authorization") or "").strip()
    if not header:
        raise Unauthenticated("Access token is empty.")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("Bearer access token required.")
    return authenticate(request, container(request).validator, scope)


def path_user(request: Request, value: str) -> str:
    """The ``{id or userPrincipalName}`` segment decoded exactly once, from the raw path when the
    server provides it (``%2540`` is a literal ``%40``; a ``+`` stays ``+``)."""
    raw = request.scope.get("raw_path")
    if not isinstance(raw, bytes):
        return value
    segments = raw.decode("latin-1").split("?", 1)[0].split("/")
    for i in range(2, len(segments) - 1):
        if segments[i].lower() == "users" and segments[i - 1].lower() in VERSIONS:
            candidate = unquote(segments[i + 1], encoding="utf-8", errors="replace")
            if value in (candidate, unquote(candidate, encoding="utf-8", errors="replace")):
                return candidate
            break
    return value


def version_of(request: Request) -> str:
    return request.url.path.split("/")[2].lower()


def context_url(request: Request, fragment: str) -> str:
    base = str(request.base_url).rstrip("/")
    return f"{base}/graph/{version_of(request)}/$metadata#{fragment}"


def query_option(request: Request, name: str) -> str | None:
    """``$name`` (``%24name`` arrives decoded the same); sent twice → 400."""
    values = request.query_params.getlist(f"${name}")
    if len(values) > 1:
        raise InvalidInput(f"Query option '${name}' was specified more than once.")
    return values[0].strip() if values else None


def select_option(request: Request, allowed: Sequence[str]) -> list[str] | None:
    """Canonical property names named in ``$select`` (``id`` always first), or None."""
    raw = query_option(request, "select")
    if not raw:
        return None
    by_lower = {p.lower(): p for p in allowed}
    chosen = ["id"]
    for item in raw.split(","):
        name = item.strip()
        canonical = by_lower.get(name.lower())
        if canonical is None:
            raise InvalidInput(f"Could not find a property named '{name:.80}' on type 'microsoft.graph'.")
        if canonical not in chosen:
            chosen.append(canonical)
    return chosen


def project(full: dict[str, Any], selected: list[str] | None) -> dict[str, Any]:
    return full if selected is None else {k: full[k] for k in selected}


def select_fragment(selected: list[str] | None) -> str:
    return "" if selected is None else "(" + ",".join(selected) + ")"


async def user_ids_body(request: Request) -> list[str]:
    """``{"userIds": ["<id or upn>", ...]}`` (no Content-Type needed)."""
    empty = 'A request body is required: {"userIds": [...]}.'
    body = parse_json(await request.body(), empty=empty, prefix="The request body")
    ids = body.get("userIds") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i.strip() for i in ids):
        raise InvalidInput("userIds must be a non-empty array of user ids or userPrincipalNames.")
    if len(ids) > MAX_USER_IDS:
        raise InvalidInput(f"At most {MAX_USER_IDS} userIds per request.")
    return [i.strip() for i in ids]


# ---------------------------------------------------------------------- users
def user_json(user: User, marks: dict[str, datetime]) -> dict[str, Any]:
    """Both watermarks are never null: the account's creation time until the first revocation.
    A sign-in-session revocation also kills refresh tokens, so it raises refreshTokens too."""
    sessions = max(user.created_at, marks.get(SIGN_IN_SESSIONS, user.created_at))
    refresh = max(sessions, marks.get(REFRESH_TOKENS, user.created_at))
    return {
        "id": user.id,
        "userPrincipalName": user.upn,
        "displayName": user.display_name,
        "signInSessionsValidFromDateTime": iso_z(sessions),
        "refreshTokensValidFromDateTime": iso_z(refresh),
    }


def _get_user(request: Request, target: str | None) -> JSONResponse:
    caller, actor = graph_caller(request, GRAPH_READ)
    selected = select_option(request, USER_PROPERTIES)
    user, marks = container(request).revocation.user_marks(actor, caller.org_id, target or caller.user.id)
    body = {
        "@odata.context": context_url(request, f"users{select_fragment(selected)}/$entity"),
        **project(user_json(user, marks), selected),
    }
    return JSONResponse(body)


def _revoke_sign_in_sessions(request: Request, target: str | None) -> JSONResponse:
    caller, actor = graph_caller(request, GRAPH_MANAGE)
    container(request).revocation.revoke_sign_in_sessions(actor, caller.org_id, target or caller.user.id)
    return JSONResponse({"@odata.context": context_url(request, "Edm.Boolean"), "value": True})


def _invalidate_refresh_tokens(request: Request, target: str | None) -> Response:
    caller, actor = graph_caller(request, GRAPH_MANAGE)
    container(request).revocation.invalidate_refresh_tokens(actor, caller.org_id, target or caller.user.id)
    return Response(status_code=204)


@graph_route("/users/{user}", "GET")
def get_user(request: Request, user: str) -> Response:
    """A user (id or userPrincipalName, matched case-insensitively) with both watermarks."""
    return _get_user(request, path_user(request, user))


@graph_route("/me", "GET")
def get_me(request: Request) -> Response:
    return _get_user(request, None)


@graph_route("/users/{user}/revokeSignInSessions", "POST")
def revoke_sign_in_sessions(request: Request, user: str) -> Response:
    """Sessions, refresh and access tokens of the user issued until now stop working."""
    return _revoke_sign_in_sessions(request, path_user(request, user))


@graph_route("/me/revokeSignInSessions", "POST")
def revoke_my_sign_in_sessions(request: Request) -> Response:
    return _revoke_sign_in_sessions(request, None)


@graph_route("/users/{user}/invalidateAllRefreshTokens", "POST")
def invalidate_refresh_tokens(request: Request, user: str) -> Response:
    """Refresh tokens and sessions of the user issued until now stop working (204)."""
    return _invalidate_refresh_tokens(request, path_user(request, user))


@graph_route("/me/invalidateAllRefreshTokens", "POST")
def invalidate_my_refresh_tokens(request: Request) -> Response:
    return _invalidate_refresh_tokens(request, None)


# ---------------------------------------------------------------------- risky users
_CLAUSE = re.compile(
    r"^\(?\s*(riskLevel|riskState)\s+eq\s+(?:microsoft\.graph\.(?:riskLevel|riskState))?'([^']*)'\s*\)?$",
    re.IGNORECASE,
)
_OR = re.compile(r"\s+or\s+", re.IGNORECASE)


def parse_risk_filter(raw: str | None) -> tuple[set[RiskLevel], set[RiskState]] | None:
    """``riskLevel eq 'high'`` / ``riskLevel eq microsoft.graph.riskLevel'high'`` / the same for
    riskState, joined with ``or``. None = no filter."""
    if not raw:
        return None
    levels: set[RiskLevel] = set()
    states: set[RiskState] = set()
    for clause in _OR.split(raw.strip()):
        m = _CLAUSE.match(clause.strip())
        if m is None:
            raise InvalidInput(
                f"Unsupported $filter {raw!r:.120}: use riskLevel eq '<level>' or "
                "riskState eq '<state>', optionally joined with 'or'."
            )
        prop, value = m.group(1).lower(), m.group(2)
        enum: Any = RiskLevel if prop == "risklevel" else RiskState
        member = next((e for e in enum if e.value.lower() == value.lower()), None)
        if member is None:
            allowed = ", ".join(e.value for e in enum)
            raise InvalidInput(f"Invalid {m.group(1)} {value!r:.40}: use one of {allowed}.")
        (levels if prop == "risklevel" else states).add(member)
    return levels, states


def risky_user_json(member: tuple[User, Membership]) -> dict[str, Any]:
    """A member's risk as the token's organization sees it."""
    user, m = member
    return {
        "id": user.id,
        "userPrincipalName": user.upn,
        "userDisplayName": user.display_name,
        "riskLevel": m.risk_level.value,
        "riskState": m.risk_state.value,
        "riskLastUpdatedDateTime": iso_z(m.risk_updated_at or user.created_at),
        "isDeleted": user.status is UserStatus.DELETED,
        "isProcessing": False,
        "riskDetail": RISK_DETAIL.get(m.risk_state, "none"),
    }


def _risky_users(request: Request) -> JSONResponse:
    caller, actor = graph_caller(request, GRAPH_READ)
    wanted = parse_risk_filter(query_option(request, "filter"))
    selected = select_option(request, RISKY_USER_PROPERTIES)
    query_option(request, "top")  # accepted and ignored (no paging)
    if caller.role_in(caller.org_id) is not Role.ADMIN:
        raise Forbidden("Insufficient privileges to complete the operation.")
    if wanted is None:
        levels: Sequence[RiskLevel] = DEFAULT_LEVELS
    else:
        levels = tuple(RiskLevel) if wanted[1] else tuple(wanted[0])
    found = container(request).revocation.risky_users(actor, caller.org_id, levels)
    users = sorted(found, key=lambda pair: pair[0].upn.casefold())
    if wanted is not None:
        users = [(u, m) for u, m in users if m.risk_level in wanted[0] or m.risk_state in wanted[1]]
    body: dict[str, Any] = {
        "@odata.context": context_url(request, f"identityProtection/riskyUsers{select_fragment(selected)}")
    }
    if (query_option(request, "count") or "").lower() == "true":
        body["@odata.count"] = len(users)
    body["value"] = [project(risky_user_json(u), selected) for u in users]
    return JSONResponse(body)


@graph_route("/identityProtection/riskyUsers", "GET")
def list_risky_users(request: Request) -> Response:
    """Members at risk in the token's organization (its administrators only)."""
    return _risky_users(request)


async def _set_risk(request: Request, level: RiskLevel, state: RiskState) -> Response:
    caller, actor = await run_in_threadpool(graph_caller, request, GRAPH_MANAGE)  # 401 before 400
    ids = await user_ids_body(request)
    await run_in_threadpool(container(request).revocation.set_risk, actor, caller.org_id, ids, level, state)
    return Response(status_code=204)


@graph_route("/identityProtection/riskyUsers/confirmCompromised", "POST", USER_IDS_BODY)
async def confirm_compromised(request: Request) -> Response:
    """riskLevel high, riskState confirmedCompromised (audited as User.RiskChange)."""
    return await _set_risk(request, RiskLevel.HIGH, RiskState.CONFIRMED_COMPROMISED)


@graph_route("/identityProtection/riskyUsers/dismiss", "POST", USER_IDS_BODY)
async def dismiss(request: Request) -> Response:
    """riskLevel none, riskState dismissed (audited as User.RiskChange)."""
    return await _set_risk(request, RiskLevel.NONE, RiskState.DISMISSED)


# ---------------------------------------------------------------------- sign-in log (issue 14)
SIGN_IN_SCOPES: Final = ("vso.auditlog", GRAPH_READ)


def _sign_ins(request: Request) -> JSONResponse:
    try:
        caller, actor = graph_caller(request, SIGN_IN_SCOPES[0])
    except InsufficientScope:
        caller, actor = graph_caller(request, SIGN_IN_SCOPES[1])
    if caller.role_in(caller.org_id) is not Role.ADMIN:
        raise Forbidden("Insufficient privileges to complete the operation.")
    top_raw, skip_raw = query_option(request, "top"), query_option(request, "skiptoken")
    if top_raw is not None and (not top_raw.isdigit() or not 1 <= int(top_raw) <= signin_log.MAX_TOP):
        raise InvalidInput(f"Invalid value for $top: it must be an integer from 1 to {signin_log.MAX_TOP}.")
    if skip_raw is not None and (not skip_raw.isdigit() or len(skip_raw) > 18 or int(skip_raw) < 1):
        raise InvalidInput("Invalid $skiptoken.")
    top = int(top_raw) if top_raw else signin_log.MAX_TOP
    base = signin_log.SignInFilter(top=top, before_id=int(skip_raw) if skip_raw else None)
    wanted = signin_log.parse_filter(query_option(request, "filter"), base)
    entries = signin_log.SignInLog(container(request).audit).list(actor, caller.org_id, wanted)
    body: dict[str, Any] = {"@odata.context": context_url(request, "auditLogs/signIns")}
    body["value"] = [signin_log.sign_in_json(e) for e in entries]
    if len(entries) == top and entries[-1].id is not None:
        params = {k: v for k, v in request.query_params.items() if k != "$skiptoken"}
        params["$skiptoken"] = str(entries[-1].id)
        body["@odata.nextLink"] = str(request.url.replace_query_params(**params))
    return JSONResponse(body)


@graph_route("/auditLogs/signIns", "GET")
def list_sign_ins(request: Request) -> Response:
    """Sign-ins and failed sign-ins of the token's organization, newest first (its
    administrators; ``vso.auditlog`` or ``graph.users``): ``$filter`` on ``createdDateTime``,
    ``userPrincipalName`` and ``status/errorCode``, ``$top``, ``@odata.nextLink``."""
    return _sign_ins(request)


# ---------------------------------------------------------------------- everything else
_ALL_METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def fallback(request: Request, rest: str) -> Response:
    """Graph-shaped 400 (unknown version), 405 (known path, other method) or 404."""
    version = rest.split("/", 1)[0].lower()
    if version not in VERSIONS:
        return graph_error(request, 400, f"Invalid version: {version[:40]}")
    path = route_path(request.scope)
    allowed = sorted(
        {
            method
            for route in router.routes
            if isinstance(route, GraphRoute)
            and not isinstance(route, GraphFallbackRoute)
            and route.ci_regex.match(path)
            for method in (route.methods or ())
        }
    )
    if allowed:
        return graph_error(
            request,
            405,
            "Specified HTTP method is not allowed for the request uri.",
            {"Allow": ", ".join(allowed)},
        )
    return graph_error(request, 404, f"Resource not found for the segment '{path.rsplit('/', 1)[-1]:.80}'.")


router.add_api_route(
    "/graph/{rest:path}",
    fallback,
    methods=_ALL_METHODS,
    include_in_schema=False,
    route_class_override=GraphFallbackRoute,
)
