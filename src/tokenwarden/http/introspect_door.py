"""The hot route of resource servers: ``POST /oauth2/introspect`` (RFC 7662).

Served by a thin ASGI handler beside the validate door (DESIGN.md: the framework, not the
check, sets the HTTP ceiling): the form is parsed by hand, the decision is the Validator's.
Answers that need I/O (a cache miss, a client's secret check) run in a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread

from tokenwarden.domain.errors import DomainError
from tokenwarden.http.errors import headers_of, status_of
from tokenwarden.services.oauth.introspection import Introspected, Introspector

PATH = "/oauth2/introspect"
MAX_BODY = 16 * 1024
MAX_FIELDS = 20
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class IntrospectDoor:
    def __init__(self, app: ASGIApp, introspector: Introspector, issuer: Callable[[Scope], str]) -> None:
        self.app = app
        self.introspector = introspector
        self.issuer = issuer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _send(
                send, 405, {"error": "invalid_request", "error_description": "use POST"}, {"Allow": "POST"}
            )
            return
        header = None
        content_type = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1").split(";")[0].strip().lower()
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                await _send(
                    send, 413, {"error": "invalid_request", "error_description": "request body too large"}, {}
                )
                return
        if content_type != "application/x-www-form-urlencoded":
            await _send(
                send,
                400,
                {
                    "error": "invalid_request",
                    "error_description": "the body must be application/x-www-form-urlencoded",
                },
                {},
            )
            return
        try:
            form = parse_form(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            await _send(send, 400, {"error": "invalid_request", "error_description": str(exc)}, {})
            return
        client = scope.get("client")
        ip = client[0] if client else None
        issuer = self.issuer(scope)
        try:
            answer: Introspected | None = self.introspector.introspect(
                header, form, issuer, ip, in_memory=True
            )
            if answer is None:
                answer = await anyio.to_thread.run_sync(self._decide, header, form, issuer, ip)
        except DomainError as exc:
            code = "temporarily_unavailable" if status_of(exc) == 503 else "invalid_request"
            await _send(
                send, status_of(exc), {"error": code, "error_description": exc.message}, headers_of(exc)
            )
            return
        await _send_raw(send, answer.status, answer.content(), answer.headers)

    def _decide(
        self, header: str | None, form: dict[str, list[str]], issuer: str, ip: str | None
    ) -> Introspected:
        answer = self.introspector.introspect(header, form, issuer, ip, in_memory=False)
        assert answer is not None  # noqa: S101  (only the in-memory attempt can defer)
        return answer


def parse_form(text: str) -> dict[str, list[str]]:
    """``parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)``; a form with no
    escapes (a token, a client id: the usual request) is split without it, same result."""
    if "%" in text or "+" in text or text.count("&") >= MAX_FIELDS:
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    form: dict[str, list[str]] = {}
    for pair in text.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            form.setdefault(name, []).append(value)
    return form


async def _send(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    await _send_raw(send, status, json.dumps(body).encode(), headers)


async def _send_raw(send: Send, status: int, payload: bytes, headers: dict[str, str]) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def scope_issuer(scope: Scope, configured: str | None) -> str:
    """TOKENWARDEN_ISSUER, else the base URL the request arrived at (scheme and Host)."""
    if configured:
        return configured.rstrip("/")
    host = ""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1")
            break
    if not host and scope.get("server"):
        server_host, port = scope["server"]
        host = f"{server_host}:{port}"
    return f"{scope.get('scheme', 'http')}://{host}"
