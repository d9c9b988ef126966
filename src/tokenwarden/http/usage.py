"""Counting authenticated requests per token (usage records, issue 14) and the client address.

:class:`UsageMiddleware` gives each request a slot; whatever authenticates the request notes
the token's key in it (:func:`note_token`, success or refusal); when the response starts the
middleware records (token, client, user agent, area, status) in the process's
:class:`~tokenwarden.services.usage.UsageRecorder`. The hot doors record directly.

:func:`with_forwarded_client` replaces the socket's address with the client's from
``X-Forwarded-For`` only when the socket's peer is a configured trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

from starlette.requests import Request

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.usage import area_of
from tokenwarden.services.usage import UsageRecorder

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
SLOT: Final = "tokenwarden.usage"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class UsageSlot:
    __slots__ = ("key",)

    def __init__(self) -> None:
        self.key: bytes | None = None


def note_token(request: Request, key: bytes | None) -> None:
    """Say which token this request used (its keyed hash); the middleware counts it."""
    slot = request.scope.get(SLOT)
    if slot is not None and key is not None:
        slot.key = key


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class UsageMiddleware:
    """Records one usage event per request that noted a token."""

    def __init__(self, app: ASGIApp, recorder: UsageRecorder, areas: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.recorder = recorder
        self.areas = areas  # the areas routes exist for; anything else is "other"

    def area(self, path: str) -> str:
        name = area_of(path)
        return name if not self.areas or name in self.areas else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.recorder.enabled:
            await self.app(scope, receive, send)
            return
        slot = UsageSlot()
        scope[SLOT] = slot
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if slot.key is not None:
                client = scope.get("client")
                self.recorder.record(
                    slot.key,
                    client[0] if client else None,
                    header(scope, b"user-agent"),
                    self.area(scope["path"]),
                    status[0],
                )


def parse_networks(text: str | Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (comma- or space-separated, or a list); a bad one is an error naming it."""
    items = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise InvalidInput(f"not a CIDR: {item!r:.60}", code="invalidNetwork") from None
    return tuple(out)


def _in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in n for n in networks)


def forwarded_client(peer: str, forwarded: list[str], trusted: tuple[Network, ...]) -> str:
    """The client behind a chain of proxies: walking ``X-Forwarded-For`` from the right, the
    first address that is not a trusted proxy (a client cannot forge what its proxy appends)."""
    if not _in(peer, trusted):
        return peer
    hops = [h.strip() for value in forwarded for h in value.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client  # garbage: stop at the last address we could trust
        client = hop
        if not _in(hop, trusted):
            return hop
    return client


def with_forwarded_client(scope: Scope, trusted: tuple[Network, ...]) -> Scope:
    """``scope`` with the client address from ``X-Forwarded-For`` when the socket's peer is a
    trusted proxy (a copy; the original otherwise)."""
    client = scope.get("client")
    if not client or not _in(client[0], trusted):
        return scope
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"]
    if not values:
        return scope
    scope = dict(scope)
    scope["client"] = (forwarded_client(client[0], values, trusted), client[1])
    return scope
