"""RFC 7662 token introspection, on the Validator's decision path (no framework, no database
read for a cached token): the same answer a resource server would get from /api/v1/validate.

Callers authenticate with client credentials (HTTP Basic or form fields; a confidential
client of the organization whose tokens it asks about) or with a Bearer token carrying
``tokenwarden.introspect`` (``app_token`` implies it) that is valid in the token's organization.
Anything inactive — unknown, expired, revoked, rotated, another organization's — is exactly
``{"active": false}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_plus

from tokenwarden.domain.errors import DomainError, InvalidToken
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.services.oauth.server import ClientDirectory
from tokenwarden.services.validation import CachedToken, Caller, UserState, Validator

INTROSPECT_SCOPE: Final = "tokenwarden.introspect"
INACTIVE: Final = {"active": False}
_TOKEN_USE: Final = {
    TokenKind.ACCESS: "access_token",
    TokenKind.REFRESH: "refresh_token",
    TokenKind.PAT: "pat",
    TokenKind.SESSION: "session",
    TokenKind.SERVICE: "service",
}
_CLIENT_CACHE_SECONDS: Final = 1.0  # = the Validator's staleness bound: no longer than it trusts itself
_CLIENT_CACHE_MAX: Final = 10_000
_ANSWER_CACHE_MAX: Final = 10_000  # serialised active answers (≈ 0.7 KB each)


@dataclass(frozen=True, slots=True)
class Introspected:
    status: int
    body: dict[str, Any] | None  # None when only ``payload`` is at hand (a remembered answer)
    headers: dict[str, str]
    payload: bytes | None = None  # the body as JSON, when already serialised

    def content(self) -> bytes:
        """The body as JSON."""
        return self.payload if self.payload is not None else json.dumps(self.body).encode()


class Introspector:
    def __init__(self, validator: Validator, clients: ClientDirectory, issuer: str | None = None) -> None:
        self._validator = validator
        self._clients = clients
        self._issuer = issuer
        self._client_cache: dict[tuple[str, bytes], tuple[float, str]] = {}
        # token key -> (entry, owner state, org, issuer, JSON of the active answer): see _active
        self._answers: dict[bytes, tuple[CachedToken, UserState, str, str, bytes]] = {}

    # ------------------------------------------------------------------ caller
    def caller_org_of_client(self, client_id: str, client_secret: str) -> str | None:
        """The organization of an authenticated confidential client (cached for one staleness
        bound, keyed by the secret's hash, so a removed client or rotated secret stops within it)."""
        key = (client_id, _digest(client_secret))
        now = time.monotonic()
        hit = self._client_cache.get(key)
        if hit is not None and now - hit[0] < _CLIENT_CACHE_SECONDS:
            return hit[1]
        client = self._clients.authenticate(client_id, client_secret)
        if client is None or client.public:
            self._client_cache.pop(key, None)
            return None
        if len(self._client_cache) >= _CLIENT_CACHE_MAX:
            self._client_cache.clear()
        self._client_cache[key] = (now, client.org_id)
        return client.org_id

    def _client_org(self, client_id: str, client_secret: str, in_memory: bool) -> str | None:
        if not in_memory:
            return self.caller_org_of_client(client_id, client_secret)
        hit = self._client_cache.get((client_id, _digest(client_secret)))
        if hit is None or time.monotonic() - hit[0] >= _CLIENT_CACHE_SECONDS:
            raise _NeedsIoError  # the registry is in the database
        return hit[1]

    # ------------------------------------------------------------------ decision
    def introspect(
        self, header: str | None, form: dict[str, list[str]], issuer: str, ip: str | None, *, in_memory: bool
    ) -> Introspected | None:
        """The answer; ``None`` when ``in_memory`` and it needs I/O (run it again off the loop)."""
        token = _one(form, "token")
        try:
            client_org, bearer = self._credentials(header, form, in_memory=in_memory)
        except _NeedsIoError:
            return None
        if client_org is None and bearer is None:
            return Introspected(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "authenticate with client credentials or a Bearer token",
                },
                {"WWW-Authenticate": 'Basic realm="tokenwarden"'},
            )
        if not token:
            return Introspected(
                400, {"error": "invalid_request", "error_description": "the token parameter is required"}, {}
            )
        validate = self._validator.validate_in_memory if in_memory else self._validator.validate
        try:
            target = validate(token, None, None, ip)
            if target is None:
                return None
            if bearer is not None:
                allowed = validate(bearer, INTROSPECT_SCOPE, target.org_id, ip)
                if allowed is None:
                    return None
            elif client_org != target.org_id:
                return Introspected(200, dict(INACTIVE), _NO_STORE)
        except DomainError:
            return Introspected(200, dict(INACTIVE), _NO_STORE)
        return Introspected(200, None, _NO_STORE, self._active(token, target, issuer))

    def _active(self, token: str, caller: Caller, issuer: str) -> bytes:
        """The JSON of an active answer, remembered per token: it is a function of the cache
        entry and owner state the Validator just answered with (both replaced, never mutated,
        when anything about them changes — so they are compared by identity), the organization,
        the issuer and the token's own claims (the key is the keyed hash of the whole token).
        Whether the token is active is decided on every call, before this."""
        hit = self._answers.get(caller.key)
        if (
            hit is not None
            and hit[0] is caller.token
            and hit[1] is caller.user
            and hit[2] == caller.org_id
            and hit[3] == issuer
        ):
            return hit[4]
        payload = json.dumps(self._active_body(token, caller, issuer)).encode()
        if len(self._answers) >= _ANSWER_CACHE_MAX:
            self._answers.clear()
        self._answers[caller.key] = (caller.token, caller.user, caller.org_id, issuer, payload)
        return payload

    def _credentials(
        self, header: str | None, form: dict[str, list[str]], *, in_memory: bool
    ) -> tuple[str | None, str | None]:
        """(client's org, bearer token): at most one is set."""
        if header:
            scheme, _, value = header.strip().partition(" ")
            value = value.strip()
            if scheme.lower() == "bearer" and value:
                try:  # an invalid bearer is an unauthenticated caller
                    checked = (self._validator.validate_in_memory if in_memory else self._validator.validate)(
                        value, INTROSPECT_SCOPE
                    )
                except DomainError:
                    return None, None
                if checked is None:
                    raise _NeedsIoError
                return None, value
            if scheme.lower() == "basic" and value:
                try:
                    decoded = base64.b64decode(value, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    return None, None
                client_id, sep, secret = decoded.partition(":")
                if not sep:
                    return None, None
                return self._client_org(unquote_plus(client_id), unquote_plus(secret), in_memory), None
            return None, None
        form_id, form_secret = _one(form, "client_id"), _one(form, "client_secret")
        if form_id and form_secret:
            return self._client_org(form_id, form_secret, in_memory), None
        return None, None

    def _active_body(self, token: str, caller: Caller, issuer: str) -> dict[str, Any]:
        entry = caller.token
        body: dict[str, Any] = {
            "active": True,
            "scope": " ".join(entry.literal_scopes),
            "username": caller.user.upn,
            "token_type": "Bearer",
            "token_use": _TOKEN_USE[entry.kind],
            "exp": int(entry.valid_to),
            "iat": int(entry.issued),
            "nbf": int(entry.issued),
            "sub": caller.user.id,
            "iss": self._issuer or issuer,
            "org_id": caller.org_id,
        }
        if entry.client_id is not None:
            body["client_id"] = entry.client_id
        if entry.kind is TokenKind.ACCESS:  # the JWT's own claims (verified when it was cached)
            claims = _claims(token)
            for name in ("sub", "aud", "iss", "jti", "client_id"):
                if name in claims:
                    body[name] = claims[name]
        return body


class _NeedsIoError(Exception):
    """The in-memory attempt cannot answer without the database."""


_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _one(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _digest(secret: str) -> bytes:
    return hashlib.blake2b(secret.encode(), digest_size=32).digest()


def _claims(jwt: str) -> dict[str, Any]:
    try:
        part = jwt.split(".")[1]
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError, binascii.Error):
        raise InvalidToken("malformed access token") from None
    return value if isinstance(value, dict) else {}
