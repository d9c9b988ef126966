"""What every console page shares: the signed-in viewer, rendering under the console's CSP,
refusals, redirects with a flash message, and form/query parsing.

A console route starts with ``viewer, actor = await signed_in(request)``: when the browser is not
signed in (or must set up MFA first) that raises :class:`ConsoleExit`, whose response the app's
exception handler sends. Domain errors go through :func:`refused`, which sends a step-up to the
step-up page and back and renders every other refusal as an error page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.datastructures import FormData, QueryParams

from tokenwarden.domain.errors import DomainError, InvalidInput
from tokenwarden.http.auth import client_ip
from tokenwarden.http.deps import container
from tokenwarden.http.errors import status_of
from tokenwarden.http.web.csrf import csrf_token
from tokenwarden.http.web.render import SECURITY_HEADERS, render_error
from tokenwarden.http.web.session import browser_session, current_target, signin_redirect
from tokenwarden.services.common import Actor
from tokenwarden.services.console import Viewer

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
ADMIN_NAV: Final = (
    ("/console/dashboard", "Dashboard"),
    ("/console/users", "Users"),
    ("/console/tokens", "Tokens"),
    ("/console/bulk", "CSV revocation"),
    ("/console/rules", "Rules"),
    ("/console/policy", "Policy"),
    ("/console/audit", "Audit"),
    ("/console/alerts", "Alerts"),
    ("/console/rotation", "Rotation"),
    ("/console/jobs", "Jobs"),
    ("/console/break-glass", "Break glass"),
)
ORG_COOKIE: Final = "tw_console_org"  # the organization chosen in the switcher (an id, not a secret)
MEMBER_NAV: Final = (("/console/tokens", "My tokens"), ("/account", "My sessions"))

# Flash messages after a change: the redirect names a code (and a count), never the text, so a
# link cannot make the console say something it did not do.
FLASH: Final = {
    "user-action": "{label}: done.",
    "users-action": "{label}: done for {n} users.",
    "tokens-revoked": "Revoked {n} tokens.",
    "alert-status": "Alert {label}.",
    "rule-saved": "Rule saved: the tokens it cuts stop working on every node.",
    "policy-saved": "Policy saved.",
    "token-extended": "Token extended.",
    "rotation-started": "Rotation started.",
    "rolled-back": "Rolled back to the previous version.",
    "job-run": "Job run: {n} changed.",
    "rotated": "Rotated: version {n} is served.",
    "rotation-pending": "Rotated: version {n} is served; the previous one works until the overlap ends.",
    "rotation-failed": "The rotation failed: the previous version is kept and still served.",
    "rotation-busy": "Another rotation of this credential is under way: try again in a minute.",
    "job-started": "Run started.",
}
_FLASH_LABELS: dict[str, str] = {}  # label codes the flash may name (registered by the pages)


def flash_labels(labels: Mapping[str, str]) -> None:
    """Register ``code -> label`` pairs a flash message may name with ``label=``."""
    _FLASH_LABELS.update(labels)


class ConsoleExit(Exception):
    """Answer ``response`` instead of the page (not signed in, MFA to set up first)."""

    def __init__(self, response: Response) -> None:
        self.response = response


async def console_exit(_: Request, exc: Exception) -> Response:
    """The app's exception handler for :class:`ConsoleExit`."""
    assert isinstance(exc, ConsoleExit)  # noqa: S101  # registered for ConsoleExit only
    return exc.response


async def signed_in(request: Request) -> tuple[Viewer, Actor]:
    """The signed-in console user and the actor they act as; raises :class:`ConsoleExit` with
    the sign-in page (or the MFA set-up an organization requires of its admins) otherwise."""
    try:
        session = await browser_session(request)
    except DomainError as exc:
        raise ConsoleExit(render_error(request, exc)) from exc
    if session is None:
        raise ConsoleExit(signin_redirect(request))
    c = container(request)
    chosen = request.cookies.get(ORG_COOKIE, "")[:80]
    org = session.org_id
    if chosen and chosen != session.org_id:
        # The session judged by the chosen organization (its watermarks, break-glass, rules):
        # revoked there, or no longer a member → the home organization, never a pass.
        try:
            there = await browser_session(request, org_id=chosen)
        except DomainError:
            there = None
        if there is not None:
            session, org = there, chosen
    actor = session.actor(client_ip(request))
    try:
        viewer = await run_in_threadpool(c.console.viewer, actor, org)
        if viewer.is_admin:
            status = await run_in_threadpool(c.mfa.status, actor)
            if status.required and not status.enrolled:
                target = quote(current_target(request), safe="")
                raise ConsoleExit(RedirectResponse(f"/account/mfa?next={target}", status_code=303))
    except DomainError as exc:
        raise ConsoleExit(render_error(request, exc)) from exc
    return viewer, actor


# ---------------------------------------------------------------------- rendering
@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("tokenwarden.http.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "—"


def flash_text(query: QueryParams) -> str:
    """The message a ``?done=CODE[&n=N][&label=L]`` redirect names, or "" (unknown code)."""
    template = FLASH.get(query.get("done", ""))
    if template is None:
        return ""
    n = query.get("n", "")
    label = _FLASH_LABELS.get(query.get("label", ""), "")
    if ("{n}" in template and not (n.isascii() and n.isdigit() and len(n) <= 9)) or (
        "{label}" in template and not label
    ):
        return ""
    return template.format(n=n, label=label)


def with_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers["Content-Security-Policy"] = CSP
    return response


def page(
    request: Request, template: str, viewer: Viewer, context: Mapping[str, Any], *, status: int = 200
) -> HTMLResponse:
    """Render a console page (the layout's navigation, CSRF token and flash message)."""
    csrf = csrf_token(request)
    html = (
        environment()
        .get_template(template)
        .render(
            viewer=viewer,
            nav=ADMIN_NAV if viewer.is_admin else MEMBER_NAV,
            here=request.url.path,
            csrf=csrf,
            when=when,
            flash=flash_text(request.query_params),
            **context,
        )
    )
    response = HTMLResponse(html, status_code=status)
    with_headers(response)
    csrf_token(request, response)
    return response


def fragment(template: str, **context: Any) -> HTMLResponse:
    """A piece of a page (htmx swaps it in), under the console's headers."""
    response = HTMLResponse(environment().get_template(template).render(when=when, **context))
    with_headers(response)
    return response


def refused(request: Request, viewer: Viewer, exc: DomainError, *, back: str | None = None) -> Response:
    """A domain error as the console answers it: a step-up sends the browser to the step-up
    page and then back to ``back``; anything else is an error page with the right status."""
    if exc.code == "stepUpRequired" and back is not None:
        return RedirectResponse(f"/account/step-up?next={quote(back, safe='')}", status_code=303)
    context = {"title": "Refused", "heading": "That did not work", "message": exc.message}
    return page(request, "error.html", viewer, context, status=status_of(exc))


def done(path: str, code: str, *, n: int | None = None, label: str | None = None) -> Response:
    """Back to ``path`` after a change, with the flash message ``code`` names."""
    params: dict[str, str | int] = {"done": code}
    if n is not None:
        params["n"] = n
    if label is not None:
        params["label"] = label
    return RedirectResponse(f"{path}?{urlencode(params)}", status_code=303)


def json_block(value: object) -> Markup:
    """JSON for a ``<script type="application/json">`` block: ``<``, ``>`` and ``&`` escaped as
    JSON unicode escapes, so no value can close the element (a block's text is not HTML-decoded)."""
    text = json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704  # escaped above for the script-data context


# ---------------------------------------------------------------------- input helpers
def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value[:4096] if isinstance(value, str) else ""


def whole(value: str | None, default: int) -> int:
    """A page offset (or another count) from the query string."""
    if not value:
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise InvalidInput("a page offset is a whole number", code="invalidFilter")
    return int(value)


def days(value: str, what: str) -> int | None:
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 5:
        raise InvalidInput(f"{what}: a number of days", code="invalidFilter")
    return int(value)


def form_int(form: FormData, name: str, what: str) -> int:
    value = text(form, name).strip()
    if not value.isascii() or not value.isdigit() or len(value) > 6:
        raise InvalidInput(f"{what}: a whole number", code="invalidPolicy")
    return int(value)


def date(value: str, what: str, *, end_of_day: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        return day + timedelta(days=1) if end_of_day else day
    except (ValueError, OverflowError):
        raise InvalidInput(f"{what}: a date like 2026-12-31", code="invalidFilter") from None
