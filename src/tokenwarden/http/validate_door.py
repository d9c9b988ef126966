"""The hot route for resource servers: ``GET /api/v1/validate?scope=..&org=..``.

Two doors, one decision: the same validation service answers through FastAPI (documented in
OpenAPI) and through this thin ASGI handler, which is what actually serves the path. The
framework, not the check, sets the HTTP ceiling (DESIGN.md), so this door skips routing,
dependency injection and response models. Answers that need I/O (a cache miss, a stale view)
run in a worker thread so the event loop never blocks on the database.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread

from tokenwarden.domain.errors import DomainError, InvalidInput
from tokenwarden.http.auth import member_org, secret_from_header
from tokenwarden.http.errors import headers_of, status_of
from tokenwarden.http.inputs import parse_query
from tokenwarden.services.directory import DirectoryService
from tokenwarden.services.usage import UsageRecorder
from tokenwarden.services.validation import Caller, Validator

PATH = "/api/v1/validate"
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def caller_body(caller: Caller) -> dict[str, Any]:
    token = caller.token
    return {
        "active": True,
        "userId": caller.user.id,
        "upn": caller.user.upn,
        "kind": token.kind.value,
        # The organization this answer is for: the one asked about, else the token's own.
        "orgId": caller.org_id,
        "scope": " ".join(token.literal_scopes),
        "validTo": datetime.fromtimestamp(token.valid_to, UTC).isoformat().replace("+00:00", "Z"),
    }


def parse_request(header: str | None, query: str) -> tuple[str, str | None, str | None]:
    """(secret, needed scope, org as sent — a name or id) of a validate request, without any
    I/O; raises a DomainError when malformed."""
    params = parse_query(query)
    scope = params.get("scope", [None])[0]
    org = params.get("org", [None])[0]
    if scope is not None and len(scope) > 256:
        raise InvalidInput("scope is too long")
    if org is not None and len(org) > 256:
        raise InvalidInput("org is too long")
    return secret_from_header(header), scope, org or None


class ValidateDoor:
    """ASGI middleware: serves GET ``PATH`` itself, passes everything else on."""

    def __init__(
        self,
        app: ASGIApp,
        validator: Validator,
        directory: DirectoryService,
        count: Callable[[str, int], None] | None = None,
        usage: UsageRecorder | None = None,
    ) -> None:
        self.app = app
        self.usage = usage if usage is not None and usage.enabled else None
        self.validator = validator
        self.directory = directory
        self.count = count or (lambda method, status: None)
        self._org_ids: dict[str, str] = {}  # org name or id (casefolded) -> id; orgs never change

    def _decide(self, secret: str, needed: str | None, org: str | None, ip: str | None) -> Caller:
        """The decision with I/O allowed (runs in a worker thread): 401 for a bad token before
        anything about ``org``, then one 404 for an unknown organization and for a non-member."""
        if org is None:
            return self.validator.validate(secret, needed, None, ip)
        the_org, caller = member_org(self.validator, self.directory.find_org, secret, needed, org, ip)
        if len(self._org_ids) < 10_000:
            self._org_ids[org.casefold()] = the_org.id
        return caller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        header = agent = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
            elif name == b"user-agent":
                agent = value.decode("latin-1")
        client = scope.get("client")
        ip = client[0] if client else None
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            secret, needed, org = parse_request(header, query)
            org_id = self._org_ids.get(org.casefold()) if org else None
            caller = None
            if org is None or org_id is not None:
                try:  # the fast path: an answer from memory, on the loop
                    caller = self.validator.validate_in_memory(secret, needed, org_id, ip)
                except DomainError:
                    if org is None:
                        raise
                    caller = None  # what a refusal may reveal about org is decided below
            if caller is None:  # needs the database (an org lookup, a cache miss): not on the loop
                caller = await anyio.to_thread.run_sync(self._decide, secret, needed, org, ip)
            status, body, headers = 200, caller_body(caller), {}
            key: bytes | None = caller.key
        except DomainError as exc:
            status, headers = status_of(exc), headers_of(exc)
            body = {"active": False, "error": {"code": exc.code, "message": exc.message}}
            key = exc.token_key
        if key is not None and self.usage is not None:
            self.usage.record(key, ip, agent, "validate", status)
        payload = json.dumps(body).encode()
        raw_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.count("GET", status)
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})
