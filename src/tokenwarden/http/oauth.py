"""OAuth 2.0 endpoints: token, revocation (RFC 7009), authorization, metadata (RFC 8414).

Thin: the request becomes a framework-neutral :class:`HttpRequest`, authlib's server (through
``services/oauth``) decides, the ``(status, body, headers)`` it returns is rendered here. The
hot introspection endpoint is not a route: ``introspect_door.py`` serves it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tokenwarden.domain.errors import DomainError
from tokenwarden.http.auth import client_ip
from tokenwarden.http.deps import container
from tokenwarden.http.errors import headers_of, status_of
from tokenwarden.http.ssf import issuer
from tokenwarden.services.oauth.requests import HttpRequest

router = APIRouter(tags=["oauth"])
MAX_FORM_FIELDS = 50
FORM = "application/x-www-form-urlencoded"


def oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An RFC 6749 §5.2 error body."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def parse_form(raw: bytes) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body; ValueError when it is not one."""
    text = raw.decode("utf-8")
    return parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FORM_FIELDS)


async def http_request(request: Request, *, with_form: bool) -> HttpRequest:
    """The neutral request; raises ValueError for a body that is not a form."""
    form: dict[str, list[str]] = {}
    if with_form:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != FORM:
            raise ValueError(f"the body must be {FORM}")
        form = parse_form(await request.body())
    query = parse_qs(request.url.query, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    base = issuer(request)
    url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return HttpRequest(
        method=request.method,
        url=url,
        headers=dict(request.headers),
        query=query,
        form=form,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )


def render(status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
    if status in (301, 302, 303, 307):
        return Response(status_code=status, headers=dict(headers))
    response = JSONResponse(body if body is not None else {}, status_code=status)
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


async def _run(request: Request, call: str) -> Response:
    c = container(request)
    try:
        http = await http_request(request, with_form=True)
    except (ValueError, UnicodeDecodeError) as exc:
        return oauth_error(400, "invalid_request", str(exc))
    endpoint = c.oauth.token if call == "token" else c.oauth.revoke
    try:
        status, body, headers = await anyio.to_thread.run_sync(endpoint, http, issuer(request))
    except DomainError as exc:  # the store is down (503) or similar: still an OAuth error body
        code = "temporarily_unavailable" if status_of(exc) == 503 else "invalid_request"
        return oauth_error(status_of(exc), code, exc.message, headers_of(exc))
    return render(status, body, headers)


def _form_body(fields: dict[str, str], required: list[str]) -> dict[str, Any]:
    """OpenAPI for a form body the handler parses itself (so the document shows it)."""
    schema = {
        "type": "object",
        "properties": {name: {"type": "string", "description": text} for name, text in fields.items()},
        "required": required,
    }
    return {"requestBody": {"required": True, "content": {FORM: {"schema": schema}}}}


_CLIENT_FIELDS = {"client_id": "client id (or HTTP Basic)", "client_secret": "client secret (or HTTP Basic)"}


@router.post(
    "/oauth2/token",
    summary="OAuth 2.0 token endpoint (RFC 6749 §3.2)",
    openapi_extra=_form_body(
        {
            "grant_type": "authorization_code | refresh_token | client_credentials",
            "code": "the authorization code",
            "redirect_uri": "the redirect URI of the authorization request",
            "code_verifier": "PKCE verifier",
            "refresh_token": "the refresh token",
            "scope": "requested scopes (space-separated)",
            **_CLIENT_FIELDS,
        },
        ["grant_type"],
    ),
)
async def token(request: Request) -> Response:
    """Grants ``authorization_code`` (PKCE S256; required for public clients), ``refresh_token``
    (rotated on every use) and ``client_credentials`` (a JWT, no refresh token). Form body."""
    return await _run(request, "token")


@router.post(
    "/oauth2/revoke",
    summary="OAuth 2.0 token revocation (RFC 7009)",
    openapi_extra=_form_body(
        {"token": "the token to revoke", "token_type_hint": "access_token | refresh_token", **_CLIENT_FIELDS},
        ["token"],
    ),
)
async def revoke(request: Request) -> Response:
    """Client authentication required; 200 whether or not the token existed. Revoking a refresh
    token revokes every token of its grant."""
    return await _run(request, "revoke")


@router.post(
    "/oauth2/introspect",
    summary="OAuth 2.0 token introspection (RFC 7662)",
    openapi_extra=_form_body(
        {
            "token": "the token to introspect",
            "token_type_hint": "ignored: every kind is searched",
            **_CLIENT_FIELDS,
        },
        ["token"],
    ),
)
async def introspect(request: Request) -> Response:  # pragma: no cover - the door answers first
    """Served by the thin introspection door (``http/introspect_door.py``); this route documents it.
    Callers authenticate with client credentials or a Bearer token carrying
    ``tokenwarden.introspect``; anything inactive is exactly ``{"active": false}``."""
    return oauth_error(404, "invalid_request", "served by the introspection door")


def metadata(request: Request) -> dict[str, Any]:
    base = issuer(request)
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth2/authorize",
        "token_endpoint": f"{base}/oauth2/token",
        "revocation_endpoint": f"{base}/oauth2/revoke",
        "introspection_endpoint": f"{base}/oauth2/introspect",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "bearer",
        ],
        "scopes_supported": sorted(container(request).catalog.scopes),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }


@router.get("/.well-known/oauth-authorization-server", summary="Authorization server metadata (RFC 8414)")
def authorization_server_metadata(request: Request) -> JSONResponse:
    return JSONResponse(metadata(request), headers={"Cache-Control": "public, max-age=300"})


@router.get("/.well-known/openid-configuration", summary="The same metadata, where OpenID clients look")
def openid_configuration(request: Request) -> JSONResponse:
    return JSONResponse(metadata(request), headers={"Cache-Control": "public, max-age=300"})
