"""Sign-in, sign-out and the account page: plain HTML forms (no script; Enter submits)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Final

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from starlette.datastructures import FormData

from tokenwarden.domain.errors import DomainError, InvalidInput, NotFound, TooManyRequests, Unauthenticated
from tokenwarden.http.auth import client_ip
from tokenwarden.http.deps import container
from tokenwarden.http.errors import headers_of, status_of
from tokenwarden.http.web.csrf import check_csrf, csrf_binding, csrf_token, rotate_csrf
from tokenwarden.http.web.render import render, render_error
from tokenwarden.http.web.session import (
    DEFAULT_NEXT,
    SIGNIN_PATH,
    browser_session,
    clear_session_cookie,
    safe_next,
    session_secret,
    set_session_cookie,
    signin_redirect,
)
from tokenwarden.services.accounts import SecondFactorRequired, SignedIn
from tokenwarden.services.mfa import Enrolment, MfaStatus

router = APIRouter(include_in_schema=False)
MAX_FIELD: Final = 4096


@router.get(SIGNIN_PATH)
async def signin_page(request: Request) -> Response:
    """The sign-in form; ``next`` (a same-origin path) is where a successful sign-in goes."""
    target = safe_next(request.query_params.get("next")) or DEFAULT_NEXT
    try:
        current = await browser_session(request)
    except DomainError as exc:
        return render_error(request, exc)
    return _signin_form(request, target=target, signed_in_as=current.upn if current else None)


@router.post(SIGNIN_PATH)
async def signin(request: Request) -> Response:
    form = await request.form()
    try:
        check_csrf(request, form)
    except DomainError as exc:
        return render_error(request, exc, sign_in_again=SIGNIN_PATH)
    target = safe_next(form.get("next")) or DEFAULT_NEXT
    username = _text(form, "username")
    c = container(request)
    try:
        signed = await run_in_threadpool(
            c.accounts.sign_in,
            username,
            _text(form, "password"),
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
            previous_session=session_secret(request),
            binding=csrf_binding(request),
        )
    except SecondFactorRequired as second:
        return _mfa_form(request, target=target, challenge=second.challenge)
    except (TooManyRequests, Unauthenticated, InvalidInput) as exc:
        retry = {k: v for k, v in headers_of(exc).items() if k.lower() == "retry-after"}
        return _signin_form(
            request,
            target=target,
            username=username[:256],
            error=exc.message,
            status=status_of(exc),
            headers=retry,
        )
    except DomainError as exc:
        return render_error(request, exc)
    return _signed_in(request, target, signed)


@router.post(SIGNIN_PATH + "/mfa")
async def signin_second_step(request: Request) -> Response:
    """The second step of a sign-in: the challenge of the first and a TOTP or recovery code."""
    form = await request.form()
    try:
        check_csrf(request, form)
    except DomainError as exc:
        return render_error(request, exc, sign_in_again=SIGNIN_PATH)
    target = safe_next(form.get("next")) or DEFAULT_NEXT
    challenge = _text(form, "challenge")
    c = container(request)
    try:
        signed = await run_in_threadpool(
            c.accounts.complete_sign_in,
            challenge,
            _text(form, "code"),
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
            binding=csrf_binding(request),
            previous_session=session_secret(request),
        )
    except Unauthenticated as exc:  # expired, another browser, or the account changed meanwhile
        return _signin_form(request, target=target, error=exc.message, status=status_of(exc))
    except (TooManyRequests, InvalidInput, NotFound) as exc:
        retry = {k: v for k, v in headers_of(exc).items() if k.lower() == "retry-after"}
        return _mfa_form(
            request,
            target=target,
            challenge=challenge,
            error=exc.message,
            status=status_of(exc),
            headers=retry,
        )
    except DomainError as exc:
        return render_error(request, exc)
    return _signed_in(request, target, signed)


def _signed_in(request: Request, target: str, signed: SignedIn) -> Response:
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    max_age = int(container(request).sessions.window.absolute.total_seconds())
    set_session_cookie(request, response, signed.session.secret, max_age)
    rotate_csrf(request, response)  # nothing learnt before sign-in stays valid after it
    return response


# ---------------------------------------------------------------------- second factor
@router.get("/account/mfa")
async def mfa_page(request: Request) -> Response:
    """Two-step verification: its status, the enrolment begun (its QR code, to confirm), or the
    password form that begins one. Reading only: nothing changes on a GET."""
    target = safe_next(request.query_params.get("next")) or "/account"
    try:
        current = await browser_session(request)
        if current is None:
            return signin_redirect(request)
        c = container(request)
        actor = current.actor(client_ip(request))
        status = await run_in_threadpool(c.mfa.status, actor)
        context = _mfa_context(current.upn, target, status)
        if not status.enrolled:
            pending = await run_in_threadpool(c.mfa.pending, actor)
            if pending is not None:
                context.update(_shown(pending))
    except DomainError as exc:
        return render_error(request, exc)
    return _page(request, "mfa_enrol.html", context)


@router.post("/account/mfa/begin")
async def mfa_begin(request: Request) -> Response:
    """Begin enrolment with the password typed again; answers the QR code and key."""
    form = await request.form()
    target = safe_next(form.get("next")) or "/account"
    try:
        check_csrf(request, form)
        current = await browser_session(request)
        if current is None:
            return signin_redirect(request)
        c = container(request)
        actor = current.actor(client_ip(request))
        status = await run_in_threadpool(c.mfa.status, actor)
        context = _mfa_context(current.upn, target, status)
        try:
            enrolment = await run_in_threadpool(c.accounts.begin_factor, actor, _text(form, "password"))
        except (InvalidInput, Unauthenticated, TooManyRequests) as exc:
            return _page(request, "mfa_enrol.html", {**context, "error": exc.message}, status=status_of(exc))
    except DomainError as exc:
        return render_error(request, exc)
    return _page(request, "mfa_enrol.html", {**context, **_shown(enrolment)})


@router.post("/account/mfa")
async def mfa_confirm(request: Request) -> Response:
    """Confirm the enrolment with a first code: the recovery codes, once; the account's other
    sessions end."""
    form = await request.form()
    target = safe_next(form.get("next")) or "/account"
    try:
        check_csrf(request, form)
        current = await browser_session(request)
        if current is None:
            return signin_redirect(request)
        c = container(request)
        actor = current.actor(client_ip(request))
        try:
            codes = await run_in_threadpool(c.accounts.confirm_factor, actor, _text(form, "code"))
        except (InvalidInput, TooManyRequests, NotFound) as exc:
            status = await run_in_threadpool(c.mfa.status, actor)
            context = {**_mfa_context(current.upn, target, status), "error": exc.message}
            pending = await run_in_threadpool(c.mfa.pending, actor)
            if pending is not None:
                context.update(_shown(pending))
            return _page(request, "mfa_enrol.html", context, status=status_of(exc))
    except DomainError as exc:
        return render_error(request, exc)
    return _page(
        request,
        "mfa_enrol.html",
        {
            "title": "Recovery codes",
            "upn": current.upn,
            "next": target,
            "enrolled": False,
            "recovery_codes": codes,
        },
    )


def _mfa_context(upn: str, target: str, status: MfaStatus) -> dict[str, object]:
    return {
        "title": "Two-step verification",
        "upn": upn,
        "next": target,
        "enrolled": status.enrolled,
        "required": status.required,
        "confirmed_at": _when(status.confirmed_at),
        "codes_left": status.recovery_codes_left,
    }


def _shown(enrolment: Enrolment) -> dict[str, object]:
    """The key and its QR code (segno's SVG of our own otpauth URI: markup we made)."""
    return {"secret": enrolment.secret, "qr_svg": Markup(enrolment.qr_svg)}  # noqa: S704


@router.post("/account/mfa/remove")
async def mfa_remove(request: Request) -> Response:
    form = await request.form()
    try:
        check_csrf(request, form)
        current = await browser_session(request)
        if current is None:
            return signin_redirect(request)
        await run_in_threadpool(
            container(request).mfa.remove, current.actor(client_ip(request)), _text(form, "code")
        )
    except DomainError as exc:
        return render_error(request, exc)
    return RedirectResponse("/account/mfa", status_code=303, headers={"Cache-Control": "no-store"})


@router.get("/account/step-up")
async def step_up_page(request: Request) -> Response:
    """Enter the code again before a sensitive action (``next``: where to go back)."""
    target = safe_next(request.query_params.get("next")) or "/account"
    try:
        if await browser_session(request) is None:
            return signin_redirect(request)
    except DomainError as exc:
        return render_error(request, exc)
    return _mfa_form(request, target=target, action="/account/step-up", button="Continue")


@router.post("/account/step-up")
async def step_up(request: Request) -> Response:
    form = await request.form()
    target = safe_next(form.get("next")) or "/account"
    try:
        check_csrf(request, form)
        current = await browser_session(request)
        if current is None:
            return signin_redirect(request)
        try:
            await run_in_threadpool(
                container(request).mfa.step_up, current.actor(client_ip(request)), _text(form, "code")
            )
        except (InvalidInput, TooManyRequests, NotFound) as exc:
            retry = {k: v for k, v in headers_of(exc).items() if k.lower() == "retry-after"}
            return _mfa_form(
                request,
                target=target,
                action="/account/step-up",
                button="Continue",
                error=exc.message,
                status=status_of(exc),
                headers=retry,
            )
    except DomainError as exc:
        return render_error(request, exc)
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})


@router.post("/signout")
async def signout(request: Request) -> Response:
    """End this browser's session (``everywhere=1``: every session of the user)."""
    form = await request.form()
    try:
        check_csrf(request, form)
        current = await browser_session(request)
        if current is not None:
            c = container(request)
            actor = current.actor(client_ip(request))
            if form.get("everywhere") == "1":
                await run_in_threadpool(c.sessions.revoke_all_mine, actor)
            else:
                await run_in_threadpool(c.sessions.sign_out, actor, current.caller)
    except DomainError as exc:
        return render_error(request, exc)
    target = safe_next(form.get("next")) or SIGNIN_PATH
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    clear_session_cookie(request, response)
    rotate_csrf(request, response)
    return response


@router.get("/account")
async def account(request: Request) -> Response:
    """The signed-in user's sessions, with sign-out and sign-out-everywhere buttons."""
    try:
        current = await browser_session(request)
        if current is None:
            return signin_redirect(request)
        c = container(request)
        records = await run_in_threadpool(c.sessions.mine, current.actor(client_ip(request)))
    except DomainError as exc:
        return render_error(request, exc)
    rows = [
        {
            "device": r.display_name,
            "user_agent": r.user_agent or "",
            "ip": r.last_used_ip or "",
            "created": _when(r.created_at),
            "last_used": _when(r.last_used_at),
            "expires": _when(r.valid_to),
            "current": r.authorization_id == current.session_id,
        }
        for r in records
    ]
    response = render(
        request,
        "account.html",
        {"title": "Your sessions", "upn": current.upn, "sessions": rows, "csrf": csrf_token(request)},
    )
    csrf_token(request, response)
    return response


@router.get("/web/static/tw.css")
def stylesheet() -> Response:
    return Response(_css(), media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


@lru_cache(maxsize=1)
def _css() -> bytes:
    return resources.files("tokenwarden.http.web").joinpath("static/tw.css").read_bytes()


def _signin_form(
    request: Request,
    *,
    target: str,
    username: str = "",
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    signed_in_as: str | None = None,
) -> Response:
    response = render(
        request,
        "signin.html",
        {
            "title": "Sign in",
            "next": target,
            "username": username,
            "error": error,
            "signed_in_as": signed_in_as,
            "csrf": csrf_token(request),
        },
        status=status,
        headers=headers,
    )
    csrf_token(request, response)
    return response


def _mfa_form(
    request: Request,
    *,
    target: str,
    challenge: str | None = None,
    action: str = SIGNIN_PATH + "/mfa",
    button: str = "Verify",
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    context: dict[str, object] = {
        "title": "Two-step verification",
        "next": target,
        "challenge": challenge,
        "action": action,
        "button": button,
        "error": error,
    }
    return _page(request, "signin_mfa.html", context, status=status, headers=headers)


def _page(
    request: Request,
    template: str,
    context: dict[str, object],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    response = render(
        request, template, {**context, "csrf": csrf_token(request)}, status=status, headers=headers
    )
    csrf_token(request, response)
    return response


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value[:MAX_FIELD] if isinstance(value, str) else ""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else ""
