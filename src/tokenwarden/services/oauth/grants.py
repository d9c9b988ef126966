"""The grants tokenwarden serves, as authlib grant classes whose storage hooks call the
server's backend (:class:`tokenwarden.services.oauth.server.OAuthServer`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749 import grants as rfc6749
from authlib.oauth2.rfc7636 import CodeChallenge

from tokenwarden.services.oauth.models import CodeModel, RefreshModel
from tokenwarden.services.oauth.requests import TwOAuth2Request

if TYPE_CHECKING:
    from tokenwarden.services.oauth.server import OAuthServer


class _Issuing:
    """Every grant issues through the backend, which knows the request (family, parent)."""

    request: TwOAuth2Request
    server: Any
    GRANT_TYPE: str

    def generate_token(
        self,
        user: Any = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        backend: OAuthServer = self.server.backend
        return backend.issue(self.request, self.request.client, user, scope or "", include_refresh_token)

    def save_token(self, token: dict[str, Any]) -> None:
        return None  # stored by issue(), in the request's transaction


class AuthorizationCodeGrant(_Issuing, rfc6749.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code: str, request: TwOAuth2Request) -> None:
        self.server.backend.save_code(code, request)

    def query_authorization_code(self, code: str, client: Any) -> CodeModel | None:
        backend: OAuthServer = self.server.backend
        return backend.take_code(code, client, self.request)

    def delete_authorization_code(self, authorization_code: CodeModel) -> None:
        return None  # a used code is kept (marked used) until it expires: a replay is detected

    def authenticate_user(self, authorization_code: CodeModel) -> Any:
        return self.server.backend.code_user(authorization_code, self.request)


class RefreshTokenGrant(_Issuing, rfc6749.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshModel | None:
        backend: OAuthServer = self.server.backend
        return backend.take_refresh_token(refresh_token, self.request)

    def authenticate_user(self, refresh_token: RefreshModel) -> Any:
        return refresh_token.get_user()

    def revoke_old_credential(self, refresh_token: RefreshModel) -> None:
        return None  # rotated (compare-and-set) when it was taken


class ClientCredentialsGrant(_Issuing, rfc6749.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only (``plain`` protects nothing against a leaked request), required for
    public clients already at the authorization endpoint."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        request: TwOAuth2Request = grant.request
        data = request.payload.data
        challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
        if request.client is not None and request.client.client.public and not challenge:
            raise InvalidRequestError("public clients must use PKCE: send code_challenge (S256)")
        if challenge and method != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)
