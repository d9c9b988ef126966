"""Server-rendered browser pages: sign-in, sign-out, the account page, and the pieces the
OAuth authorization endpoint builds on (issue 11).

The public face, for other routes (e.g. ``/oauth2/authorize``)::

    session = await browser_session(request, org_id=client.org_id)   # BrowserSession | None
    if session is None:
        return signin_redirect(request)                              # 303 /signin?next=...
    return render_consent(request, client_name=..., org_name=..., scopes=[(s, d), ...],
                          hidden={"client_id": ..., "redirect_uri": ..., ...}, upn=session.upn)
    # on the POST:
    form = await request.form()
    check_csrf(request, form)                                        # Forbidden csrfTokenInvalid
    form["decision"] in ("allow", "deny")

``render_error(request, exc)`` renders any DomainError as a page with its status.
"""

from tokenwarden.http.web.consent import render_consent
from tokenwarden.http.web.csrf import check_csrf, csrf_token, rotate_csrf
from tokenwarden.http.web.render import render_error
from tokenwarden.http.web.session import BrowserSession, browser_session, safe_next, signin_redirect

__all__ = [
    "BrowserSession",
    "browser_session",
    "check_csrf",
    "csrf_token",
    "render_consent",
    "render_error",
    "rotate_csrf",
    "safe_next",
    "signin_redirect",
]
