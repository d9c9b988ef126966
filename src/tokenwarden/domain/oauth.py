"""OAuth 2.0 clients, authorization codes and the shapes of the grants tokenwarden issues.

Pure data and rules (no protocol machinery: authlib runs the protocol over these).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from tokenwarden.domain.errors import InvalidInput


class GrantType(StrEnum):
    AUTHORIZATION_CODE = "authorization_code"
    REFRESH_TOKEN = "refresh_token"
    CLIENT_CREDENTIALS = "client_credentials"


DEFAULT_GRANTS: Final = (GrantType.AUTHORIZATION_CODE, GrantType.REFRESH_TOKEN)
MAX_REDIRECT_URIS: Final = 20
MAX_URI_LENGTH: Final = 2000


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """A registered application of one organization.

    Confidential clients authenticate with a secret (only its keyed hash is stored); public
    clients (browsers, native apps) have none and must use PKCE. Redirect URIs match exactly.
    A client allowed ``client_credentials`` acts as its own service principal
    (``service_user_id``), a member of its organization.
    """

    client_id: str
    org_id: str
    name: str
    public: bool
    redirect_uris: tuple[str, ...]
    grant_types: tuple[GrantType, ...]
    scopes: tuple[str, ...]
    created_at: datetime
    secret_hash: bytes | None = None
    pepper_id: str | None = None
    service_user_id: str | None = None
    created_by: str | None = None
    disabled_at: datetime | None = None

    @property
    def confidential(self) -> bool:
        return not self.public

    def allows_grant(self, grant: str) -> bool:
        return any(g.value == grant for g in self.grant_types)

    def with_changes(self, **changes: object) -> OAuthClient:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    """A one-time code (stored by keyed hash). ``family_id`` names every token issued from it,
    so a replayed code revokes them all (RFC 6749 §4.1.2)."""

    code_hash: bytes
    client_id: str
    user_id: str
    org_id: str
    redirect_uri: str
    scope: str
    family_id: str
    created_at: datetime
    expires_at: datetime
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    session_id: str | None = None
    used_at: datetime | None = None


def check_redirect_uri(uri: str) -> str:
    """A registrable redirect URI: absolute, no fragment, http only for loopback hosts."""
    if not uri or len(uri) > MAX_URI_LENGTH:
        raise InvalidInput("redirect URI must be 1 to 2000 characters", code="invalidRedirectUri")
    if not uri.isprintable() or any(c.isspace() for c in uri):
        raise InvalidInput(
            "redirect URI must not contain spaces or control characters", code="invalidRedirectUri"
        )
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise InvalidInput(f"redirect URI is not a URL: {exc}", code="invalidRedirectUri") from exc
    if not parts.scheme or not (parts.netloc or parts.scheme not in ("http", "https")):
        raise InvalidInput("redirect URI must be absolute (scheme and host)", code="invalidRedirectUri")
    if parts.fragment or "#" in uri:
        raise InvalidInput("redirect URI must not contain a fragment", code="invalidRedirectUri")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise InvalidInput(
            "redirect URI must use https (http is allowed only for 127.0.0.1, ::1 and localhost)",
            code="invalidRedirectUri",
        )
    if parts.scheme.lower() in ("javascript", "data", "file", "vbscript"):
        raise InvalidInput(f"redirect URI scheme {parts.scheme!r} is not allowed", code="invalidRedirectUri")
    return uri


def parse_grants(values: list[str] | tuple[str, ...] | None) -> tuple[GrantType, ...]:
    """Grant types from their wire names; empty means authorization_code + refresh_token."""
    if not values:
        return DEFAULT_GRANTS
    out: list[GrantType] = []
    for value in values:
        try:
            grant = GrantType(value)
        except ValueError:
            names = ", ".join(g.value for g in GrantType)
            raise InvalidInput(
                f"unknown grant type {value!r} (one of {names})", code="invalidGrantType"
            ) from None
        if grant not in out:
            out.append(grant)
    return tuple(out)
