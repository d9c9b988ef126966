"""The authorization endpoint: ``GET /oauth2/authorize`` shows the consent page on the browser
session (or sends the user to sign in first), ``POST /oauth2/authorize`` records the decision
and redirects to the client with a code or ``access_denied``.

Errors that cannot be trusted to the client's redirect URI (an unknown client, a redirect URI
that is not registered exactly) are shown to the user as a page, never redirected (RFC 6749
§4.1.2.1: no open redirect).
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from tokenwarden.domain.errors import DomainError, InvalidInput
from tokenwarden.http.deps import container
from tokenwarden.http.oauth import http_request, render
from tokenwarden.http.ssf import issuer
from tokenwarden.http.web.consent import render_consent
from tokenwarden.http.web.csrf import check_csrf
from tokenwarden.http.web.render import render_error
from tokenwarden.http.web.session import browser_session, signin_redirect
from tokenwarden.services.oauth.requests import HttpRequest
from tokenwarden.services.oauth.server import ConsentRequest

router = APIRouter(tags=["oauth"])
_PASSED_ON = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)


def _error_page(request: Request, status: int, body: object) -> Response:
    description = body.get("error_description") if isinstance(body, dict) else None
    error = body.get("error") if isinstance(body, dict) else None
    return render_error(
        request,
        InvalidInput(
            str(description or error or "invalid authorization request"), code=str(error or "invalidRequest")
        ),
        title="This sign-in link cannot be used",
    )


@router.get("/oauth2/authorize", summary="OAuth 2.0 authorization endpoint (consent page)")
async def authorize(request: Request) -> Response:
    """Authorization code flow: the signed-in user sees which application asks for which scopes
    and answers Allow or Deny."""
    c = container(request)
    try:
        session = await browser_session(request)
    except DomainError as exc:
        return render_error(request, exc)
    if session is None:
        return signin_redirect(request)
    try:
        http = await http_request(request, with_form=False)
    except ValueError as exc:  # e.g. more query parameters than any authorization request has
        return render_error(request, InvalidInput(str(exc)))
    user = await anyio.to_thread.run_sync(c.oauth.user, session.user_id)
    if user is None:
        return signin_redirect(request)
    consent = await anyio.to_thread.run_sync(c.oauth.validate_authorization, http, issuer(request), user)
    if not isinstance(consent, ConsentRequest):
        status, body, headers = consent
        return render(status, body, headers) if status == 302 else _error_page(request, status, body)
    try:  # the session must be good for the application's organization too
        await browser_session(request, org_id=consent.client.org_id)
    except DomainError as exc:
        return render_error(request, exc)
    org = await anyio.to_thread.run_sync(c.directory.find_org, consent.client.org_id)
    hidden = {k: v[0] for k, v in http.query.items() if k in _PASSED_ON and v}
    return render_consent(
        request,
        client_name=consent.client.name,
        org_name=org.name,
        scopes=[(s, c.catalog.scopes.get(s, s)) for s in consent.scopes],
        hidden=hidden,
        upn=session.upn,
    )


@router.post(
    "/oauth2/authorize",
    summary="OAuth 2.0 authorization decision (the consent form posts here)",
    include_in_schema=False,
)
async def decide(request: Request) -> Response:
    c = container(request)
    try:
        http = await http_request(request, with_form=True)
    except (ValueError, UnicodeDecodeError) as exc:
        return render_error(request, InvalidInput(str(exc)))
    form = {k: v[0] for k, v in http.form.items() if v}
    try:
        check_csrf(request, form)
        session = await browser_session(request)
    except DomainError as exc:
        return render_error(request, exc)
    if session is None:
        return signin_redirect(request)
    decision = form.get("decision")
    if decision not in ("allow", "deny"):
        return render_error(request, InvalidInput("choose Allow or Deny", code="decisionRequired"))
    # the decision is about the request in the form (the consent page's hidden fields)
    params = {k: [form[k]] for k in _PASSED_ON if k in form}
    decided = HttpRequest(
        http.method, http.url, http.headers, query=params, form=params, ip=http.ip, user_agent=http.user_agent
    )
    user = await anyio.to_thread.run_sync(c.oauth.user, session.user_id)
    if user is None:
        return signin_redirect(request)
    try:
        status, body, headers = await anyio.to_thread.run_sync(
            c.oauth.decide, decided, issuer(request), user, decision == "allow", session.session_id
        )
    except DomainError as exc:
        return render_error(request, exc)
    return render(status, body, headers) if status == 302 else _error_page(request, status, body)
