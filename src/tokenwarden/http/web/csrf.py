"""CSRF protection for every form: a token bound to a pre-session cookie.

The browser gets a random ``tw_csrf`` cookie (``__Host-tw_csrf`` over TLS: no subdomain can
plant it) the first time a form is rendered for it; the form carries HMAC(key, cookie value)
(services.sessions.CsrfSigner). A post is accepted only with both and a match. The cookie is
replaced at sign-in and sign-out, so a token learnt before cannot be replayed after. Requests a
browser marks ``Sec-Fetch-Site: cross-site`` are refused outright.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Final

from fastapi import Request
from fastapi.responses import Response

from tokenwarden.domain.errors import Forbidden
from tokenwarden.http.deps import container

FIELD: Final = "csrf_token"
HEADER: Final = "x-csrf-token"
COOKIE: Final = "tw_csrf"
TLS_COOKIE: Final = "__Host-tw_csrf"
_STATE_VALUE: Final = "tw_csrf_value"
_STATE_NEW: Final = "tw_csrf_new"
_MIN_LEN, _MAX_LEN = 32, 128


def is_tls(request: Request) -> bool:
    return request.url.scheme == "https"


def cookie_name(request: Request) -> str:
    return TLS_COOKIE if is_tls(request) else COOKIE


def _cookie_value(request: Request) -> str | None:
    value = request.cookies.get(cookie_name(request))
    if value is None or not _MIN_LEN <= len(value) <= _MAX_LEN or not value.isascii():
        return None
    return value


def csrf_binding(request: Request) -> str:
    """This browser's CSRF cookie value ('' without one): what binds a sign-in's second step
    to the browser that passed the first."""
    return _cookie_value(request) or ""


def csrf_token(request: Request, response: Response | None = None) -> str:
    """The CSRF form token for this browser. When the browser has no CSRF cookie yet, one is
    chosen for the request and set on ``response`` (call again with the response you return if
    you rendered before creating it: the same value comes back)."""
    value = getattr(request.state, _STATE_VALUE, None) or _cookie_value(request)
    if value is None:
        value = secrets.token_urlsafe(32)
        setattr(request.state, _STATE_NEW, True)
    setattr(request.state, _STATE_VALUE, value)
    if response is not None and getattr(request.state, _STATE_NEW, False):
        _set_cookie(request, response, value)
    return container(request).sessions.csrf.sign(value)


def rotate_csrf(request: Request, response: Response) -> None:
    """A new CSRF cookie (sign-in and sign-out): tokens issued before no longer verify."""
    value = secrets.token_urlsafe(32)
    setattr(request.state, _STATE_VALUE, value)
    setattr(request.state, _STATE_NEW, True)
    _set_cookie(request, response, value)


def check_csrf(request: Request, form: Mapping[str, object] | None = None) -> None:
    """Refuse (403 ``csrfTokenInvalid``) a state-changing request without a valid CSRF token:
    the form field ``csrf_token`` (or the ``X-CSRF-Token`` header) must match this browser's
    CSRF cookie."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise Forbidden("this form was sent from another site: refused", code="csrfTokenInvalid")
    cookie = _cookie_value(request)
    token = form.get(FIELD) if form is not None else None
    if not isinstance(token, str) or not token:
        token = request.headers.get(HEADER)
    if cookie is None:
        raise Forbidden(
            "the form's security cookie is missing: enable cookies for this site, reload the page "
            "and send the form again",
            code="csrfTokenInvalid",
        )
    if not token or len(token) > _MAX_LEN or not container(request).sessions.csrf.verify(cookie, token):
        raise Forbidden(
            "the form's security token is missing or out of date: reload the page and send the form again",
            code="csrfTokenInvalid",
        )


def _set_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        cookie_name(request), value, path="/", secure=is_tls(request), httponly=True, samesite="lax"
    )
