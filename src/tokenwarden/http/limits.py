"""Request size limits, enforced before anything reads the body or authenticates the caller.

An ASGI middleware (outermost, so the validate door and every route are behind it):

* headers larger than ``max_header_bytes`` in total → 431, the app is never called;
* a ``Content-Length`` above the route's limit → 413 at once, the body is never read;
* a body streamed without ``Content-Length`` (chunked) is counted as it arrives: past the limit
  the middleware answers 413 itself and the app sees the client disconnect — at most one chunk
  past the limit is ever held in memory.

The error body is the one of the door the path belongs to (native, Azure DevOps, Graph); the
status comes from ``http.errors`` like every other error.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.responses import Response

from tokenwarden.domain.errors import DomainError, HeadersTooLarge, InvalidInput, PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Render = Callable[[Scope, DomainError], Response]

UPLOAD_PATHS = re.compile(r"^(/api/v1/orgs/[^/]+/revocations/users-csv|/console/bulk)/?$", re.IGNORECASE)
_DISCONNECT: Message = {"type": "http.disconnect"}


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 and n % (1024 * 1024) == 0 else f"{n:,} bytes"


class SizeLimits:
    def __init__(
        self,
        app: ASGIApp,
        *,
        render: Render,
        max_body: int,
        max_upload: int,
        max_headers: int,
        upload_paths: re.Pattern[str] = UPLOAD_PATHS,
    ) -> None:
        self.app = app
        self.render = render
        self.max_body = max_body
        self.max_upload = max_upload
        self.max_headers = max_headers
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        if sum(len(k) + len(v) for k, v in headers) > self.max_headers:
            error: DomainError = HeadersTooLarge(
                f"request headers exceed the limit of {_size(self.max_headers)}"
            )
            await self._answer(scope, receive, send, error)
            return
        limit = self.max_upload if self.upload_paths.match(scope.get("path", "")) else self.max_body
        declared = [v for k, v in headers if k == b"content-length"]
        if declared:
            value = declared[0].strip()
            if not value.isdigit() or len(declared) > 1:
                await self._answer(scope, receive, send, InvalidInput("malformed Content-Length header"))
                return
            if int(value) > limit:
                await self._answer(scope, receive, send, self._too_large(limit))
                return
            # The server frames the body by the one declared length: nothing to count (and the
            # hot doors keep two wrapper calls per message off their path).
            await self.app(scope, receive, send)
            return

        received = 0
        started = answered = False

        async def counted_receive() -> Message:
            nonlocal received, answered
            if answered:
                return _DISCONNECT
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    answered = True
                    if not started:
                        await self.render(scope, self._too_large(limit))(scope, _no_receive, send)
                    return _DISCONNECT
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 went out: whatever the app says after the disconnect is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)

    @staticmethod
    def _too_large(limit: int) -> DomainError:
        return PayloadTooLarge(f"request body exceeds the limit of {_size(limit)}")

    async def _answer(self, scope: Scope, receive: Receive, send: Send, error: DomainError) -> None:
        await self.render(scope, error)(scope, receive, send)


async def _no_receive() -> Message:
    return _DISCONNECT
