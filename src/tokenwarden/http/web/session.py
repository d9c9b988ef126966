"""The browser session of a request: the cookie, validated by the one Validator.

Cookie: ``tw_session`` (``__Host-tw_session`` over TLS), HttpOnly, Secure over TLS,
SameSite=Lax, Path=/. Its value is the session's ``tws_`` secret; the server keeps only the
keyed hash. Every answer comes from the Validator, so every revocation mode applies on every
node; the sliding window moves at most once per interval (services.sessions).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from tokenwarden.domain import token_format
from tokenwarden.domain.errors import DomainError, Forbidden, Unauthenticated
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.http.auth import client_ip
from tokenwarden.http.deps import container
from tokenwarden.http.usage import note_token
from tokenwarden.http.web.csrf import is_tls
from tokenwarden.services.common import Actor
from tokenwarden.services.validation import Caller

COOKIE: Final = "tw_session"
TLS_COOKIE: Final = "__Host-tw_session"
SIGNIN_PATH: Final = "/signin"
DEFAULT_NEXT: Final = "/account"
MAX_NEXT: Final = 4096
_PREFIX: Final = token_format.PREFIXES[TokenKind.SESSION]


@dataclass(frozen=True, slots=True)
class BrowserSession:
    """The signed-in user of a request.

    ``caller`` is the Validator's answer for ``org_id`` (the organization asked about, else the
    session's home organization); ``session_id`` is the session's authorizationId (what
    ``/api/v1/me/sessions`` lists and what an authorization code's ``session_id`` names).
    """

    user_id: str
    upn: str
    session_id: str
    org_id: str
    caller: Caller
    signed_in_at: datetime
    expires_at: datetime

    def actor(self, ip: str | None = None) -> Actor:
        """The signed-in user, acting through this session (marked interactive: the cookie of a
        browser sign-in, which a bearer token never is)."""
        actor = self.caller.actor(ip)
        if actor.token is None:
            return actor
        return replace(actor, token=replace(actor.token, interactive=True))


def cookie_name(request: Request) -> str:
    return TLS_COOKIE if is_tls(request) else COOKIE


def session_secret(request: Request) -> str | None:
    """The session cookie's value if it has the shape of a session token (else None)."""
    value = request.cookies.get(cookie_name(request))
    if value is None or len(value) != token_format.TOKEN_LEN or not value.startswith(_PREFIX):
        return None
    return value


async def _validate(request: Request, secret: str, org_id: str | None) -> Caller:
    validator = container(request).validator
    ip = client_ip(request)
    try:
        caller = validator.validate_in_memory(secret, None, org_id, ip)
        if caller is None:  # a cache miss or a stale view: the database is read, off the loop
            caller = await run_in_threadpool(validator.validate, secret, None, org_id, ip)
    except DomainError as exc:
        note_token(request, exc.token_key)
        raise
    note_token(request, caller.key)
    return caller


async def browser_session(request: Request, *, org_id: str | None = None) -> BrowserSession | None:
    """The signed-in user from the session cookie, or None (no cookie, or a session that is
    unknown, expired or revoked: signing in again helps).

    With ``org_id`` (an organization id) the session is judged by that organization: revoked
    there (its watermarks, break-glass, rules) → None, so a new sign-in gives a session it
    accepts; when the user cannot use it there at all (not a member, disabled there) →
    Forbidden ``sessionRefused``, so a caller does not send the user round a sign-in loop.
    A use slides the session's window (at most one write per interval). Unavailable (503)
    propagates: the answer is never a stale yes.
    """
    secret = session_secret(request)
    if secret is None:
        return None
    try:
        caller = await _validate(request, secret, None)
    except Unauthenticated:
        return None
    if caller.token.kind is not TokenKind.SESSION:
        return None
    if org_id is not None and org_id != caller.org_id:
        member = caller.user.members.get(org_id)
        if member is None:
            raise Forbidden("you are not a member of this organization", code="sessionRefused")
        if not member.active:
            raise Forbidden("your account is disabled in this organization", code="sessionRefused")
        try:
            caller = await _validate(request, secret, org_id)
        except Unauthenticated:
            return None
        except Forbidden as exc:
            raise Forbidden(
                f"your session cannot be used for this organization: {exc.message}", code="sessionRefused"
            ) from exc
    sessions = container(request).sessions
    session_id = sessions.cached_id(caller) or await run_in_threadpool(sessions.session_id, caller)
    if session_id is None:
        return None
    if sessions.extension_due(caller) is not None:
        await run_in_threadpool(sessions.touch, caller)
    return BrowserSession(
        user_id=caller.user.id,
        upn=caller.user.upn,
        session_id=session_id,
        org_id=caller.org_id,
        caller=caller,
        signed_in_at=datetime.fromtimestamp(caller.token.issued, UTC),
        expires_at=datetime.fromtimestamp(caller.token.valid_to, UTC),
    )


def safe_next(value: object) -> str | None:
    """``value`` if it is a same-origin relative path (``/x?y``), else None: no scheme, no host,
    no ``//`` or backslash, no control characters or spaces (browsers drop tabs and newlines,
    turning ``/\\t/evil`` into ``//evil``)."""
    if not isinstance(value, str) or not value or len(value) > MAX_NEXT:
        return None
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    if not value.isprintable() or any(c.isspace() for c in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    return value


def current_target(request: Request) -> str:
    """This request's path and query (what a sign-in should come back to)."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def signin_redirect(request: Request) -> Response:
    """303 to the sign-in page, which comes back to this request's path and query."""
    target = safe_next(current_target(request))
    location = SIGNIN_PATH
    if target and not target.startswith(SIGNIN_PATH):
        location += "?next=" + quote(target, safe="")
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


def set_session_cookie(request: Request, response: Response, secret: str, max_age_seconds: int) -> None:
    response.set_cookie(
        cookie_name(request),
        secret,
        max_age=max_age_seconds,
        path="/",
        secure=is_tls(request),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        cookie_name(request), path="/", secure=is_tls(request), httponly=True, samesite="lax"
    )
