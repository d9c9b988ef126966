"""Server-rendered pages: Jinja2 templates packaged with tokenwarden, every value escaped, no
script at all, and the headers that keep the pages from being framed, sniffed or cached."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Final
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from tokenwarden.domain.errors import DomainError
from tokenwarden.http.errors import headers_of, status_of

# No script anywhere; forms post only to this origin (a page that ends in a redirect to
# another origin names it, see form_action_for: Chrome checks form-action on redirects too).
CSP_TEMPLATE: Final = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action {form_action}"
)
SECURITY_HEADERS: Final[dict[str, str]] = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}
RESERVED_FIELDS: Final = frozenset({"csrf_token", "decision"})


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("tokenwarden.http.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def content_security_policy(extra_form_action: Iterable[str] = ()) -> str:
    sources = ["'self'", *dict.fromkeys(s for s in extra_form_action if s)]
    return CSP_TEMPLATE.format(form_action=" ".join(sources))


def form_action_for(uri: str | None) -> str | None:
    """The CSP source that admits a redirect to ``uri`` after a form post: its origin for
    http(s), its scheme for a native app's private-use scheme; None when it is not usable."""
    if not uri:
        return None
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or any(c in uri for c in " ;,'\"\r\n\t"):
        return None
    if scheme in ("http", "https"):
        return f"{scheme}://{parts.netloc}" if parts.netloc else None
    if scheme in ("javascript", "data", "file", "vbscript", "blob", "filesystem"):
        return None
    return f"{scheme}:"


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    form_action: Iterable[str] = (),
) -> HTMLResponse:
    """A page with the security headers (CSP, no framing, no caching)."""
    html = environment().get_template(template).render(**context)
    response = HTMLResponse(html, status_code=status)
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers["Content-Security-Policy"] = content_security_policy(form_action)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def render_error(
    request: Request, error: DomainError, *, title: str | None = None, sign_in_again: str | None = None
) -> HTMLResponse:
    """A domain error as a page: its status from http.errors, ``Retry-After`` kept (never a
    ``WWW-Authenticate``, which would make a browser prompt for Basic credentials)."""
    status = status_of(error)
    headers = {k: v for k, v in headers_of(error).items() if k.lower() == "retry-after"}
    return render(
        request,
        "error.html",
        {
            "title": title or _TITLES.get(status, "Something went wrong"),
            "message": error.message,
            "code": error.code,
            "status": status,
            "sign_in_again": sign_in_again,
        },
        status=status,
        headers=headers,
    )


_TITLES: Final[dict[int, str]] = {
    400: "The request cannot be used",
    401: "Not signed in",
    403: "Refused",
    404: "Not found",
    429: "Too many attempts",
    503: "Temporarily unavailable",
}
