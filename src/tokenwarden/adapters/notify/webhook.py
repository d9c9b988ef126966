"""Signed webhook delivery over HTTP (Standard Webhooks, https://www.standardwebhooks.com).

Each POST carries ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64
HMAC-SHA256(key, "{id}.{timestamp}." + body)>``, the key being the base64-decoded part of the
endpoint's ``whsec_`` secret. Redirects are never followed. Right before every POST the host is
resolved and checked again (``domain.webhook_urls.delivery_refusal``); a plain-http request then
goes to the address that was checked (the Host header keeps the name), so a name cannot resolve
elsewhere between the check and the connection. Over https, a re-resolved name pointing inward
would fail the certificate check before any request is sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx

from tokenwarden.domain import webhook_urls
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.netpolicy import PushAllowList, parse_ip
from tokenwarden.ports.notify import SendResult, WebhookRequest

log = logging.getLogger(__name__)

USER_AGENT: Final = "tokenwarden-webhooks"
RETRYABLE_STATUS: Final = frozenset({408, 409, 425, 429})
MAX_RETRY_AFTER: Final = 24 * 3600.0
_MAX_ERROR_BODY: Final = 200

Resolver = Callable[[str, int], list[str]]


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order of preference."""
    seen: dict[str, None] = {}
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        seen[str(info[4][0])] = None
    return list(seen)


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    key = webhook_urls.secret_key(secret)
    digest = hmac.digest(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(digest).decode("ascii")


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP-date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


def _short(text: str) -> str:
    return " ".join(text.split())[:_MAX_ERROR_BODY]


class HttpWebhookSender:
    """``WebhookSender`` over one reused ``httpx.Client``. ``resolve`` is for tests."""

    def __init__(
        self,
        timeout: float,
        allow: PushAllowList,
        *,
        client: httpx.Client | None = None,
        resolve: Resolver | None = None,
    ) -> None:
        self._allow = allow
        self._resolve = resolve or resolve_host
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the target check must see the real target
        )

    def __repr__(self) -> str:
        return f"HttpWebhookSender(allow={self._allow!r})"

    def close(self) -> None:
        self._client.close()

    def send(self, request: WebhookRequest) -> SendResult:
        try:
            target = self._target(request.url)
        except _Refused as exc:
            return SendResult(ok=False, error=f"target not allowed: {exc}"[:300], retryable=False)
        except _Unresolved as exc:
            return SendResult(ok=False, error=f"target did not resolve: {exc}"[:300], retryable=True)
        url, host_header = target
        try:
            signature = sign(request.secret, request.message_id, request.timestamp, request.body)
        except InvalidInput as exc:
            return SendResult(ok=False, error=exc.message, retryable=False)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": request.message_id,
            "webhook-timestamp": str(request.timestamp),
            "webhook-signature": signature,
        }
        if host_header is not None:
            headers["host"] = host_header
        try:
            with self._client.stream("POST", url, content=request.body, headers=headers) as response:
                snippet = b""
                for chunk in response.iter_bytes():
                    snippet += chunk
                    if len(snippet) >= _MAX_ERROR_BODY:
                        break
                return _result(response, snippet[:_MAX_ERROR_BODY].decode("utf-8", "replace"))
        except httpx.HTTPError as exc:
            return SendResult(ok=False, error=f"{type(exc).__name__}: {_short(str(exc))}", retryable=True)
        except (httpx.InvalidURL, ValueError) as exc:
            return SendResult(ok=False, error=f"invalid URL: {type(exc).__name__}", retryable=False)

    def _target(self, url: str) -> tuple[str, str | None]:
        """The URL to connect to (pinned to the checked address for plain http) and the Host
        header to send with it (None: httpx's own)."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise _Refused("not a valid URL") from None
        host = (parts.hostname or "").rstrip(".")
        if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
            raise _Refused("not an http(s) URL with a host")
        literal = parse_ip(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = self._resolve(host, port)
            except (OSError, UnicodeError) as exc:
                raise _Unresolved(f"{host!r}: {type(exc).__name__}") from None
            if not addresses:
                raise _Unresolved(repr(host))
        refused = webhook_urls.delivery_refusal(host, addresses, self._allow)
        if refused is not None:
            raise _Refused(refused)
        if literal is not None or parts.scheme != "http":
            return url, None
        pinned = parse_ip(addresses[0])
        shown = f"[{pinned}]" if pinned is not None and pinned.version == 6 else addresses[0]
        netloc = f"{shown}:{parts.port}" if parts.port else shown
        host_header = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), host_header


class _Refused(Exception):
    pass


class _Unresolved(Exception):
    pass


def _result(response: httpx.Response, snippet: str) -> SendResult:
    status = response.status_code
    if 200 <= status < 300:
        return SendResult(ok=True, retryable=False)
    error = f"HTTP {status}"
    if 300 <= status < 400:
        location = _short(response.headers.get("location", ""))[:150]
        return SendResult(
            ok=False, error=f"{error}: redirect not followed (to {location!r})", retryable=False
        )
    if snippet.strip():
        error = f"{error}: {_short(snippet)}"
    if status in RETRYABLE_STATUS or status >= 500:
        wait = retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
        return SendResult(ok=False, error=error, retryable=True, retry_after=wait)
    return SendResult(ok=False, error=error, retryable=False)
