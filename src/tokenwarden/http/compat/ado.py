"""Azure DevOps-compatible routes: PAT Lifecycle, Token Admin, Graph users, discovery.

Wire contract: docs/specs/ado-compat.md; behaviour choices are documented in docs/compat.md.
"""

from __future__ import annotations

import re
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InsufficientScope,
    InvalidInput,
    NotFound,
)
from tokenwarden.domain.principals import user_id_from_descriptor
from tokenwarden.domain.tokens import TokenRecord, TokenState
from tokenwarden.http.deps import container, org_caller
from tokenwarden.http.errors import AdoJSONResponse
from tokenwarden.http.inputs import parse_json
from tokenwarden.http.timeparse import parse_timestamp
from tokenwarden.services.common import is_ascii_digits, parse_uuid
from tokenwarden.services.pats import PatFilter, PatSort

router = APIRouter(prefix="/{org}/_apis", tags=["azure-devops"], include_in_schema=True)
ZERO_UUID: Final = "00000000-0000-0000-0000-000000000000"
PATS_READ, PATS_MANAGE, ADMIN = "vso.pats", "vso.pats_manage", "vso.tokenadministration"
_API_VERSION = re.compile(r"^(\d+)\.(\d+)(-preview(\.\d+)?)?$")
GRAPH_PAGE_SIZE = 500

LOCATIONS: Final = [
    ("e81700f7-3be2-46de-8624-2eb35882fcaa", "Location", "ResourceAreas", "_apis/{resource}/{areaId}"),
    ("55967393-20ef-45a6-a96c-b5d5d5986a9a", "Tokens", "Pats", "_apis/{area}/{resource}"),
    (
        "af68438b-ed04-4407-9eb6-f1dbae3f922e",
        "TokenAdmin",
        "PersonalAccessTokens",
        "_apis/{area}/{resource}/{subjectDescriptor}",
    ),
    ("ee4afb16-e7ab-4ed8-9d4b-4ef3e78f97e4", "TokenAdmin", "RevocationRules", "_apis/{area}/{resource}"),
    ("a9c08b2c-5466-4e22-8626-1ff304ffdf0f", "TokenAdmin", "Revocations", "_apis/{area}/{resource}"),
    ("005e26ec-6b77-4e4f-a986-b3827bf241f5", "Graph", "Users", "_apis/{area}/{resource}/{userDescriptor}"),
]


def json_request(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` for a route that parses its JSON body by hand (json_body)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_DATE: Final = {"type": "string", "format": "date-time"}
PAT_CREATE_BODY: Final = json_request(
    {
        "title": "PatTokenCreateRequest",
        "type": "object",
        "properties": {
            "displayName": {"type": "string"},
            "scope": {"type": "string"},
            "validTo": _DATE,
            "allOrgs": {"type": "boolean"},
        },
    }
)
PAT_UPDATE_BODY: Final = json_request(
    {
        "title": "PatTokenUpdateRequest",
        "type": "object",
        "properties": {
            "authorizationId": {"type": "string", "format": "uuid"},
            "displayName": {"type": "string"},
            "scope": {"type": "string"},
            "validTo": _DATE,
            "allOrgs": {"type": "boolean"},
        },
        "required": ["authorizationId"],
    }
)
RULE_BODY: Final = json_request(
    {
        "title": "TokenAdminRevocationRule",
        "type": "object",
        "properties": {"scopes": {"type": "string"}, "createdBefore": _DATE},
        "required": ["scopes"],
    }
)
REVOCATIONS_BODY: Final = json_request(
    {
        "type": "array",
        "items": {
            "title": "TokenAdminRevocation",
            "type": "object",
            "properties": {"authorizationId": {"type": "string", "format": "uuid"}},
            "required": ["authorizationId"],
        },
        "minItems": 1,
    }
)

# Service errors a PAT create/update reports in the body (HTTP 200), as Azure DevOps does.
PAT_RESULT_ERRORS: Final = (InvalidInput, Forbidden, NotFound, Conflict)


def check_api_version(request: Request) -> None:
    """api-version from the query or the Accept header; 5.0 through 7.2; none = newest."""
    value = request.query_params.get("api-version")
    if value is None:
        for part in request.headers.get("accept", "").split(";"):
            key, _, val = part.strip().partition("=")
            if key.strip().lower() == "api-version":
                value = val.strip()
    if value is None:
        return
    m = _API_VERSION.match(value)
    if not m or not (5, 0) <= (int(m.group(1)), int(m.group(2))) <= (7, 2):
        raise InvalidInput(f"api-version {value!r:.40} is not supported (5.0 through 7.2)")


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> AdoJSONResponse:
    return AdoJSONResponse(body, status_code=status, headers=headers)


async def json_body(request: Request) -> Any:
    """The JSON body (its size is bounded before it is read, by the app's BodyLimit)."""
    return parse_json(await request.body(), empty="a JSON request body is required")


# ---------------------------------------------------------------------- discovery
@router.options("")
def options_locations(request: Request, org: str) -> AdoJSONResponse:
    """Resource locations the SDK uses to build URLs (answered with or without credentials)."""
    value = [
        {
            "id": lid,
            "area": area,
            "resourceName": resource,
            "routeTemplate": template,
            "resourceVersion": 1,
            "minVersion": "1.0",
            "maxVersion": "7.2",
            "releasedVersion": "0.0",
        }
        for lid, area, resource, template in LOCATIONS
    ]
    return ok({"count": len(value), "value": value})


@router.get("/resourceareas")
def resource_areas(request: Request, org: str) -> AdoJSONResponse:
    """Empty on purpose: keeps SDK clients on this base URL."""
    return ok({"count": 0, "value": []})


# ---------------------------------------------------------------------- PAT lifecycle
def pat_token(record: TokenRecord, secret: str | None = None) -> dict[str, Any]:
    return {
        "authorizationId": record.authorization_id,
        "displayName": record.display_name,
        "scope": record.scope_string,
        "targetAccounts": None if record.target_orgs is None else list(record.target_orgs),
        "validFrom": iso_z(record.valid_from),
        "validTo": iso_z(record.valid_to),
        "token": secret,
    }


def pat_result(
    record: TokenRecord | None, error: DomainError | None = None, secret: str | None = None
) -> Any:
    if error is not None:
        return {"patToken": None, "patTokenError": error.code, "patTokenErrorMessage": error.message}
    assert record is not None  # noqa: S101 - internal invariant
    return {"patToken": pat_token(record, secret), "patTokenError": "none", "patTokenErrorMessage": None}


def _choice(request: Request, name: str, enum: Any, default: Any) -> Any:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    for member in enum:
        if member.value.lower() == raw.lower():
            return member
    allowed = "|".join(m.value for m in enum)
    raise InvalidInput(f"{name} must be one of {allowed}, got {raw!r:.40}")


def _bool(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise InvalidInput(f"{name} must be true or false, got {raw!r:.40}")


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not is_ascii_digits(raw) or not low <= int(raw) <= high:
        raise InvalidInput(f"{name} must be an integer between {low} and {high}")
    return int(raw)


@router.get("/tokens/pats")
def get_or_list_pats(request: Request, org: str) -> AdoJSONResponse:
    """List the caller's PATs, or get one with ``authorizationId``."""
    check_api_version(request)
    the_org, _, actor = org_caller(request, org, PATS_READ)
    c = container(request)
    auth_id = request.query_params.get("authorizationId")
    if auth_id is not None:
        auth_id = parse_uuid(auth_id, "authorizationId")
        try:
            return ok(pat_result(c.pats.get(actor, auth_id, the_org.id)))
        except NotFound as exc:
            return ok(pat_result(None, exc))
    page = c.pats.page(
        actor,
        the_org.id,
        filter=_choice(request, "displayFilterOption", PatFilter, PatFilter.ACTIVE),
        sort=_choice(request, "sortByOption", PatSort, PatSort.DISPLAY_DATE),
        ascending=_bool(request, "isSortAscending", True),
        top=_int(request, "$top", 100, 1, 100),
        continuation=request.query_params.get("continuationToken"),
    )
    return ok({"continuationToken": page.continuation, "patTokens": [pat_token(t) for t in page.items]})


@router.post("/tokens/pats", openapi_extra=PAT_CREATE_BODY)
async def create_pat(request: Request, org: str) -> AdoJSONResponse:
    """Create a PAT. Failures answer 200 with patToken null and patTokenError set."""
    check_api_version(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object (PatTokenCreateRequest)")
    return await run_in_threadpool(_create_pat, request, org, body)


def _create_pat(request: Request, org: str, body: dict[str, Any]) -> AdoJSONResponse:
    the_org, caller, actor = org_caller(request, org, PATS_MANAGE)
    c = container(request)
    try:
        name = _str_field(body, "displayName", "invalidDisplayName")
        scope = _str_field(body, "scope", "invalidScope")
        valid_to = body.get("validTo")
        expires = parse_timestamp(valid_to, "validTo", "invalidValidTo") if valid_to is not None else None
        all_orgs = body.get("allOrgs", False)
        if not isinstance(all_orgs, bool) and all_orgs is not None:
            raise InvalidInput("allOrgs must be true or false", code="invalidTargetAccounts")
        issued = c.pats.create(
            actor,
            org=the_org.id,
            user=caller.user.id,
            display_name=name,
            scope=scope,
            valid_to=expires,
            all_orgs=bool(all_orgs),
        )
    except PAT_RESULT_ERRORS as exc:
        return ok(pat_result(None, exc))
    return ok(pat_result(issued.record, secret=issued.secret))


@router.put("/tokens/pats", openapi_extra=PAT_UPDATE_BODY)
async def update_pat(request: Request, org: str) -> AdoJSONResponse:
    """Update a still-valid PAT. Failures answer 200 with patTokenError set."""
    check_api_version(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object (PatTokenUpdateRequest)")
    return await run_in_threadpool(_update_pat, request, org, body)


def _update_pat(request: Request, org: str, body: dict[str, Any]) -> AdoJSONResponse:
    the_org, _, actor = org_caller(request, org, PATS_MANAGE)
    c = container(request)
    try:
        auth_id = body.get("authorizationId")
        if not isinstance(auth_id, str):
            raise InvalidInput("authorizationId is required", code="invalidAuthorizationId")
        valid_to = body.get("validTo")
        all_orgs = body.get("allOrgs")
        if all_orgs is not None and not isinstance(all_orgs, bool):
            raise InvalidInput("allOrgs must be true or false", code="invalidTargetAccounts")
        record = c.pats.update(
            actor,
            auth_id,
            display_name=_str_field(body, "displayName", "invalidDisplayName"),
            scope=_str_field(body, "scope", "invalidScope"),
            valid_to=parse_timestamp(valid_to, "validTo", "invalidValidTo") if valid_to is not None else None,
            all_orgs=all_orgs,
            org_id=the_org.id,
        )
    except PAT_RESULT_ERRORS as exc:
        return ok(pat_result(None, exc))
    return ok(pat_result(record))


@router.delete("/tokens/pats")
def revoke_pat(request: Request, org: str) -> Response:
    """Revoke one of the caller's PATs: 204, or 404 when the caller has no such PAT."""
    check_api_version(request)
    raw = request.query_params.get("authorizationId")
    if raw is None:
        raise InvalidInput("authorizationId is required")
    auth_id = parse_uuid(raw, "authorizationId")
    the_org, _, actor = org_caller(request, org, PATS_MANAGE)
    c = container(request)
    record = c.pats.get(actor, auth_id, the_org.id)  # owner only on this route
    c.pats.revoke(actor, record.authorization_id, org_id=the_org.id)
    return Response(status_code=204)


def _str_field(body: dict[str, Any], name: str, code: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", code=code)
    return value


# ---------------------------------------------------------------------- Token Admin
def session_token(record: TokenRecord, now: Any) -> dict[str, Any]:
    return {
        "accessId": record.authorization_id,
        "alternateToken": None,
        "authorizationId": record.authorization_id,
        "claims": None,
        "clientId": ZERO_UUID,
        "displayName": record.display_name,
        "hostAuthorizationId": ZERO_UUID,
        "isPublic": False,
        "isValid": record.state(now) is TokenState.ACTIVE,
        "publicData": None,
        "scope": record.scope_string,
        "source": None,
        "targetAccounts": None if record.target_orgs is None else list(record.target_orgs),
        "token": None,
        "userId": record.user_id,
        "validFrom": iso_z(record.valid_from),
        "validTo": iso_z(record.valid_to),
    }


@router.get("/tokenadmin/personalaccesstokens/{subject_descriptor}")
def admin_list_pats(request: Request, org: str, subject_descriptor: str) -> AdoJSONResponse:
    """A member's PATs (active, expired and revoked) for organization administrators."""
    check_api_version(request)
    _, _, actor = org_caller(request, org, ADMIN)
    c = container(request)
    user_id = user_id_from_descriptor(subject_descriptor)
    if user_id is None:
        raise NotFound(f"no user with descriptor {subject_descriptor!r:.80}", code="userNotFound")
    page_size = _int(request, "pageSize", 100, 1, 1000)
    is_public = _bool(request, "isPublic", False)
    _, records = c.pats.list_for_admin(actor, org, user_id)
    if is_public:
        records = []  # public (SSH) keys are not issued by tokenwarden
    start = 0
    cont = request.query_params.get("continuationToken")
    if cont:
        cont_id = parse_uuid(cont, "continuationToken", code="invalidContinuationToken")
        ids = [r.authorization_id for r in records]
        if cont_id not in ids:
            raise InvalidInput(
                "continuationToken does not match this listing", code="invalidContinuationToken"
            )
        start = ids.index(cont_id)
    page = records[start : start + page_size]
    nxt = records[start + page_size].authorization_id if start + page_size < len(records) else None
    now = c.clock.now()
    return ok({"value": [session_token(r, now) for r in page], "continuationToken": nxt})


@router.post("/tokenadmin/revocationrules", openapi_extra=RULE_BODY)
async def create_revocation_rule(request: Request, org: str) -> Response:
    """Revoke by date: tokens issued before createdBefore carrying any of the scopes die."""
    check_api_version(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object with 'scopes'")
    return await run_in_threadpool(_create_revocation_rule, request, org, body)


def _create_revocation_rule(request: Request, org: str, body: dict[str, Any]) -> Response:
    _, _, actor = org_caller(request, org, ADMIN)
    scopes = body.get("scopes")
    if not isinstance(scopes, str) or not scopes.strip():
        raise InvalidInput("scopes is required: a space-separated list of scopes")
    created_before = body.get("createdBefore")
    cutoff = parse_timestamp(created_before, "createdBefore") if created_before is not None else None
    container(request).rules.create(actor, org, scopes, cutoff)
    return Response(status_code=201)


@router.post("/tokenadmin/revocations", openapi_extra=REVOCATIONS_BODY)
async def revoke_authorizations(request: Request, org: str) -> Response:
    """Revoke many authorizations; one missing or malformed id rejects the whole batch."""
    check_api_version(request)
    _bool(request, "isPublic", False)
    body = await json_body(request)
    if not isinstance(body, list) or not body:
        raise InvalidInput('the request body must be a non-empty JSON array of {"authorizationId": ...}')
    if len(body) > 10_000:
        raise InvalidInput("at most 10000 authorizations per request")
    ids = []
    for i, item in enumerate(body):
        value = item.get("authorizationId") if isinstance(item, dict) else None
        if not isinstance(value, str):
            raise InvalidInput(f"item {i}: authorizationId is missing")
        ids.append(parse_uuid(value, f"item {i}: authorizationId"))
    await run_in_threadpool(_revoke_authorizations, request, org, ids)
    return Response(status_code=204)


def _revoke_authorizations(request: Request, org: str, ids: list[str]) -> None:
    _, _, actor = org_caller(request, org, ADMIN)
    container(request).pats.revoke_many(actor, org, ids)


# ---------------------------------------------------------------------- Graph users
@router.get("/graph/users")
def graph_users(request: Request, org: str) -> AdoJSONResponse:
    """Organization members, paged through the X-MS-ContinuationToken response header."""
    check_api_version(request)
    the_org, _, actor = _graph_caller(request, org)
    c = container(request)
    # Users only: OAuth clients' service principals are no Graph users (subjectKind "user").
    users = [u for u, _ in c.directory.list_users(actor, the_org.id) if u.identity_source.value != "service"]
    cont = request.query_params.get("continuationToken") or "0"
    if not is_ascii_digits(cont) or int(cont) > len(users):
        raise InvalidInput("continuationToken is invalid", code="invalidContinuationToken")
    start, size = int(cont), GRAPH_PAGE_SIZE
    page = users[start : start + size]
    headers = {"X-MS-ContinuationToken": str(start + size)} if start + size < len(users) else None
    value = [
        {
            "subjectKind": "user",
            "descriptor": u.descriptor,
            "principalName": u.upn,
            "displayName": u.display_name,
            "mailAddress": u.upn,
            "originId": u.id,
            "origin": "aad" if u.identity_source.value == "external" else "vsts",
        }
        for u in page
    ]
    return ok({"count": len(value), "value": value}, headers=headers)


def _graph_caller(request: Request, org: str) -> Any:
    """vso.graph or vso.tokenadministration (app_token satisfies both); admins only."""
    try:
        return org_caller(request, org, "vso.graph")
    except InsufficientScope:
        return org_caller(request, org, ADMIN)
