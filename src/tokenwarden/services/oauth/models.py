"""authlib's model interfaces over tokenwarden's records (clients, codes, refresh tokens)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin

from tokenwarden.domain.oauth import AuthorizationCode, OAuthClient
from tokenwarden.domain.principals import User
from tokenwarden.domain.tokens import TokenRecord


class ClientModel(ClientMixin):
    """A registered client as authlib sees it. Redirect URIs match exactly (no prefix, no
    pattern); the secret is checked by the registry (keyed hash, constant time)."""

    def __init__(self, client: OAuthClient, check_secret: Callable[[OAuthClient, str], bool]) -> None:
        self.client = client
        self._check_secret = check_secret

    def get_client_id(self) -> str:
        return self.client.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.client.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = self.client.scopes
        if not scope:
            return " ".join(allowed)
        wanted = scope.split()
        return " ".join(s for s in dict.fromkeys(wanted) if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.client.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client.confidential and self._check_secret(self.client, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.client.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and self.client.allows_grant("authorization_code")

    def check_grant_type(self, grant_type: str) -> bool:
        return self.client.allows_grant(grant_type)


class CodeModel(AuthorizationCodeMixin):
    def __init__(self, code: AuthorizationCode) -> None:
        self.code = code
        self.code_challenge = code.code_challenge
        self.code_challenge_method = code.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.code.redirect_uri

    def get_scope(self) -> str:
        return self.code.scope


class RefreshModel(TokenMixin):
    """A presented refresh token that may be exchanged (already checked for reuse)."""

    def __init__(self, record: TokenRecord, user: User, now: datetime) -> None:
        self.record = record
        self.user = user
        self._now = now

    def check_client(self, client: ClientModel) -> bool:
        return self.record.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.record.scope_string

    def get_expires_in(self) -> int:
        return max(0, int((self.record.valid_to - self._now).total_seconds()))

    def is_expired(self) -> bool:
        return self._now >= self.record.valid_to

    def is_revoked(self) -> bool:
        return False

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> None:
        return None


class IssuedModel(TokenMixin):
    """A token record found by the revocation endpoint."""

    def __init__(self, record: TokenRecord) -> None:
        self.record = record

    def check_client(self, client: ClientModel) -> bool:
        return self.record.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.record.scope_string
