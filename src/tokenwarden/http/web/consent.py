"""The consent page of the authorization endpoint (the route itself is the OAuth server's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import Request
from fastapi.responses import HTMLResponse

from tokenwarden.http.web.csrf import csrf_token
from tokenwarden.http.web.render import RESERVED_FIELDS, form_action_for, render


def render_consent(
    request: Request,
    *,
    client_name: str,
    org_name: str,
    scopes: Sequence[tuple[str, str]],
    hidden: Mapping[str, str],
    upn: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """A form POSTing to ``/oauth2/authorize``: every ``hidden`` field, a CSRF field, and the
    two buttons ``<button type="submit" name="decision" value="allow|deny">``. Check the post
    with ``check_csrf(request, form)``; ``decision`` says which button was pressed.

    ``hidden["redirect_uri"]``, when present, is admitted by the page's CSP ``form-action`` (the
    post ends in a redirect there, and Chrome applies form-action to that redirect). Fields
    named ``csrf_token`` or ``decision`` in ``hidden`` are dropped (the page sets those).
    """
    fields = [(k, v) for k, v in hidden.items() if k not in RESERVED_FIELDS]
    response = render(
        request,
        "consent.html",
        {
            "title": f"Allow {client_name}?",
            "client_name": client_name,
            "org_name": org_name,
            "scopes": list(scopes),
            "hidden": fields,
            "upn": upn,
            "csrf": csrf_token(request),
        },
        status=status,
        form_action=[s for s in (form_action_for(hidden.get("redirect_uri")),) if s],
    )
    csrf_token(request, response)
    return response
