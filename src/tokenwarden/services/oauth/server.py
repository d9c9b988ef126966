"""The OAuth 2.0 authorization server: authlib runs the protocol (RFC 6749 grants, PKCE,
RFC 7009 revocation); this backend stores what it issues as token records so that every
revocation mode of tokenwarden reaches them.

* Authorization codes are one-time: the first exchange marks the code used (compare-and-set);
  a replay is refused (``invalid_grant``) and revokes every token issued from the code.
* Refresh tokens rotate on every use. A rotated token presented again within the grace period
  (default 10 s), while its successors are unused, yields a sibling (two tabs refreshing at
  once); anything else — later, or two generations back — is theft: the whole family dies.
* Access tokens are RFC 9068 JWTs, also stored (keyed hash of the JWT), so the Validator cuts
  them by watermark, rule or break-glass on every node at once.

Each token request runs in one unit of work; revocations a request triggers (replay, reuse)
commit in their own unit of work after it, so a refused request still kills the family. Inside
that unit of work the client is read through it, never through a second connection: a request
holding one pooled connection while it waits for another deadlocks the pool once enough
requests do so at once (on SQLite the holder also has the write lock every waiter wants).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InsecureTransportError,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint

from tokenwarden.domain import token_format
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import DomainError, Forbidden, InvalidToken
from tokenwarden.domain.events import EventType
from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.domain.oauth import AuthorizationCode, OAuthClient
from tokenwarden.domain.principals import User
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import ROTATED, TokenKind, TokenRecord
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.access_tokens import AccessTokenMinter
from tokenwarden.services.common import Actor, audit, new_id, publish, token_by_secret
from tokenwarden.services.oauth.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
    S256CodeChallenge,
)
from tokenwarden.services.oauth.models import ClientModel, CodeModel, IssuedModel, RefreshModel
from tokenwarden.services.oauth.requests import HttpRequest, TwOAuth2Request
from tokenwarden.services.signals import emit_token_revoked
from tokenwarden.services.validation import Validator

log = logging.getLogger(__name__)
Response = tuple[int, Any, list[tuple[str, str]]]


class ClientDirectory(Protocol):
    """What the server needs of the client registry."""

    def get_active(self, client_id: str, uow: UnitOfWork | None = None) -> OAuthClient | None: ...
    def authenticate(self, client_id: str, client_secret: str | None) -> OAuthClient | None: ...
    def verify_secret(self, client: OAuthClient, presented: str) -> bool: ...
    def upgrade_secret(self, client: OAuthClient, secret: str) -> None: ...


# The request whose unit of work is open on this thread (authlib's callbacks get no request).
_CURRENT: ContextVar[TwOAuth2Request | None] = ContextVar("tokenwarden_oauth_request", default=None)


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    access_token_seconds: int = 3600
    refresh_token_days: int = 90
    refresh_grace_seconds: float = 10.0
    code_seconds: int = 120
    audience: str | None = None  # the access tokens' aud; default the issuer


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """A validated authorization request waiting for the user's decision."""

    client: OAuthClient
    scopes: tuple[str, ...]
    redirect_uri: str
    grant: Any  # authlib's grant, resumed by :meth:`OAuthServer.decide`


class _Server(AuthorizationServer):
    def __init__(self, backend: OAuthServer, scopes: list[str]) -> None:
        super().__init__(scopes_supported=scopes)
        self.backend = backend

    def query_client(self, client_id: str) -> ClientModel | None:
        return self.backend.query_client(client_id)

    def save_token(self, token: dict[str, Any], request: TwOAuth2Request) -> None:
        return None

    def create_oauth2_request(self, request: TwOAuth2Request) -> TwOAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        return status, body, list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def check_params(self, request: TwOAuth2Request, client: ClientModel) -> None:
        if not request.form.get("token"):
            raise InvalidRequestError("the token parameter is required")
        # RFC 7009 §2.1: an unknown token_type_hint is ignored, every type is searched.

    def authenticate_token(self, request: TwOAuth2Request, client: ClientModel) -> IssuedModel | None:
        self.check_params(request, client)
        backend: OAuthServer = self.server.backend
        token = backend.find_issued(request.form["token"], request)
        # Another client's token: answered like an unknown one (200, nothing revoked).
        return token if token is not None and token.check_client(client) else None

    def revoke_token(self, token: IssuedModel, request: TwOAuth2Request) -> None:
        backend: OAuthServer = self.server.backend
        backend.revoke_issued(token.record, request)


class OAuthServer:
    """tokenwarden's backend of authlib's authorization server."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        validator: Validator,
        hasher: SecretHasher,
        minter: AccessTokenMinter,
        catalog: ScopeCatalog,
        clock: Clock,
        clients: ClientDirectory,
        settings: OAuthSettings | None = None,
    ) -> None:
        self._uow = uow
        self._validator = validator
        self._hasher = hasher
        self._minter = minter
        self._catalog = catalog
        self._clock = clock
        self._clients = clients
        self.settings = settings or OAuthSettings()
        self._server = _Server(self, sorted(catalog.scopes))
        self._server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
        self._server.register_grant(RefreshTokenGrant)
        self._server.register_grant(ClientCredentialsGrant)
        self._server.register_endpoint(_Revocation)

    # ------------------------------------------------------------------ endpoints
    @staticmethod
    def request_for(http: HttpRequest, issuer: str) -> TwOAuth2Request | Response:
        """authlib's request, or the refusal of plain http to a non-loopback address."""
        try:
            return TwOAuth2Request(http, issuer)
        except InsecureTransportError:
            return (
                400,
                {
                    "error": "invalid_request",
                    "error_description": "OAuth needs https (plain http only on loopback addresses); "
                    "behind a TLS proxy set TOKENWARDEN_ISSUER to the public https URL",
                },
                [("Cache-Control", "no-store")],
            )

    def token(self, http: HttpRequest, issuer: str) -> Response:
        """``POST /oauth2/token``."""
        request = self.request_for(http, issuer)
        if not isinstance(request, TwOAuth2Request):
            return request
        self._minter.ready()
        with self._uow() as uow:
            request.uow = uow
            current = _CURRENT.set(request)
            try:
                status, body, headers = self._server.create_token_response(request)
            finally:
                _CURRENT.reset(current)
            if status == 200:
                uow.commit()
        self._after(request)
        return status, body, headers

    def revoke(self, http: HttpRequest, issuer: str) -> Response:
        """``POST /oauth2/revoke`` (RFC 7009)."""
        request = self.request_for(http, issuer)
        if not isinstance(request, TwOAuth2Request):
            return request
        with self._uow() as uow:
            request.uow = uow
            current = _CURRENT.set(request)
            try:
                status, body, headers = self._server.create_endpoint_response("revocation", request)
            finally:
                _CURRENT.reset(current)
            if status == 200:
                uow.commit()
        self._after(request)
        return status, body, headers

    def validate_authorization(self, http: HttpRequest, issuer: str, user: User) -> ConsentRequest | Response:
        """``GET /oauth2/authorize``: a consent request, or the error response (a redirect to
        the client when its redirect URI is known and valid, else a 400 for the user)."""
        request = self.request_for(http, issuer)
        if not isinstance(request, TwOAuth2Request):
            return request
        request.user = user
        try:
            grant = self._server.get_consent_grant(request, end_user=user)
        except OAuth2Error as error:
            return self._error(request, error)
        client: OAuthClient = grant.client.client
        if not self._is_member(user.id, client.org_id):
            return self._error(
                request,
                _AccessDenied("you are not a member of the organization this application belongs to", grant),
            )
        scopes = tuple(request.scope.split()) if request.scope else ()
        if not scopes:
            return self._error(
                request, _InvalidScope("none of the requested scopes is allowed for this application", grant)
            )
        return ConsentRequest(client, scopes, grant.redirect_uri, grant)

    def decide(
        self, http: HttpRequest, issuer: str, user: User, allow: bool, session_id: str | None
    ) -> Response:
        """``POST /oauth2/authorize``: the user allowed (a code) or denied (``access_denied``)."""
        consent = self.validate_authorization(http, issuer, user)
        if not isinstance(consent, ConsentRequest):
            return consent
        request: TwOAuth2Request = consent.grant.request
        request.session_id = session_id
        with self._uow() as uow:
            request.uow = uow
            current = _CURRENT.set(request)
            try:
                response: Response = self._server.create_authorization_response(
                    request, grant_user=user if allow else None, grant=consent.grant
                )
            finally:
                _CURRENT.reset(current)
            if allow:
                audit(
                    uow,
                    self._clock,
                    Actor(user.id, user.upn, http.ip),
                    AuditEventType.OAUTH_CONSENT,
                    org_id=consent.client.org_id,
                    target_type="client",
                    target_id=consent.client.client_id,
                    details={"scope": " ".join(consent.scopes), "redirectUri": consent.redirect_uri},
                )
                uow.commit()
        return response

    def user(self, user_id: str) -> User | None:
        """The signed-in user the authorization endpoint acts for."""
        with self._uow() as uow:
            return uow.users.get(user_id)

    # ------------------------------------------------------------------ authlib callbacks
    def query_client(self, client_id: str) -> ClientModel | None:
        if not client_id or len(client_id) > 64:
            return None
        request = _CURRENT.get()  # inside a token or revocation request: read through its uow
        client = self._clients.get_active(client_id, None if request is None else request.uow)
        return None if client is None else ClientModel(client, self._check_secret)

    def _check_secret(self, client: OAuthClient, secret: str) -> bool:
        """The secret against the client record just read (no second read); a secret hashed
        with a retired pepper is re-hashed once the request's unit of work is over."""
        request = _CURRENT.get()
        if request is None:
            return self._clients.authenticate(client.client_id, secret) is not None
        if not self._clients.verify_secret(client, secret):
            return False
        if client.pepper_id != self._hasher.current_id:
            request.secrets_to_upgrade.append((client, secret))
        return True

    def save_code(self, code: str, request: TwOAuth2Request) -> None:
        now = self._clock.now()
        data = request.payload.data
        client: OAuthClient = request.client.client
        request.uow.oauth.add_code(
            AuthorizationCode(
                code_hash=self._hasher.hash(code),
                client_id=client.client_id,
                user_id=request.user.id,
                org_id=client.org_id,
                redirect_uri=data.get("redirect_uri") or "",
                scope=request.scope or "",
                family_id=new_id(),
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.code_seconds),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                session_id=request.session_id,
            )
        )

    def take_code(self, code: str, client: ClientModel, request: TwOAuth2Request) -> CodeModel | None:
        """The code, marked used; None when unknown, another client's, expired or used (a
        replay, which revokes everything issued from it once this request ends)."""
        if not code or len(code) > 256:
            return None
        uow: UnitOfWork = request.uow
        code_hash = self._hasher.hash(code)
        stored = uow.oauth.get_code(code_hash)
        if stored is None or stored.client_id != client.get_client_id():
            return None
        now = self._clock.now()
        if not uow.oauth.use_code(code_hash, now):
            request.families_to_revoke.append((stored, "authorization code used twice"))
            return None
        if now >= stored.expires_at:
            return None
        return CodeModel(stored)

    def code_user(self, code: CodeModel, request: TwOAuth2Request) -> User | None:
        """The user a code was issued to, if every cut-off still allows the grant: a session
        revocation between the consent and the exchange kills the code too."""
        stored = code.code
        probe = TokenRecord(
            authorization_id=stored.family_id,
            kind=TokenKind.SESSION,
            user_id=stored.user_id,
            org_id=stored.org_id,
            display_name="authorization code",
            scopes=tuple(stored.scope.split()),
            target_orgs=(stored.org_id,),
            secret_hash=b"",
            pepper_id="",
            valid_from=stored.created_at,
            valid_to=stored.created_at + timedelta(days=1),  # its expiry was checked by take_code
            created_at=stored.created_at,
        )
        if not self._still_allowed(probe):
            return None
        user: User | None = request.uow.users.get(stored.user_id)
        return user

    def take_refresh_token(self, secret: str, request: TwOAuth2Request) -> RefreshModel | None:
        """The presented refresh token, rotated (compare-and-set); or None — and, for a reused
        one outside the grace, the family's revocation once this request ends."""
        if not secret.startswith(
            token_format.PREFIXES[TokenKind.REFRESH]
        ) or not token_format.looks_like_token(secret):
            return None
        uow: UnitOfWork = request.uow
        record = token_by_secret(uow, self._hasher, secret)
        if record is None or record.kind is not TokenKind.REFRESH:
            return None
        if request.client is None or record.client_id != request.client.get_client_id():
            return None
        now = self._clock.now()
        user = uow.users.get(record.user_id)
        if user is None:
            return None
        if record.rotated_at is None and record.revoked_at is None:
            if not self._still_allowed(record):
                return None
            if uow.tokens.mark_rotated(record.authorization_id, now):
                publish(uow, EventType.TOKEN_REVOKED, hashes=[record.secret_hash.hex()])
                return RefreshModel(record, user, now)
            record = uow.tokens.get(record.authorization_id) or record  # lost a race: now rotated
        if record.rotated_at is None or record.revoke_reason != ROTATED:
            return None  # revoked for another reason: simply dead
        children = uow.tokens.children(record.authorization_id)
        in_grace = (now - record.rotated_at).total_seconds() <= self.settings.refresh_grace_seconds
        successors_unused = bool(children) and all(c.revoked_at is None for c in children)
        if in_grace and successors_unused and self._still_allowed(record):
            return RefreshModel(record, user, now)
        request.families_to_revoke.append((record, "refresh token reused"))
        return None

    def issue(
        self,
        request: TwOAuth2Request,
        client_model: ClientModel,
        user: User | None,
        scope: str,
        refresh: bool,
    ) -> dict[str, Any]:
        """Mint and store the access token (and a refresh token) of one grant."""
        uow: UnitOfWork = request.uow
        client = uow.oauth.get_client(client_model.client.client_id)  # as of this transaction:
        if client is None or client.disabled_at is not None:  # a disable committing meanwhile wins
            raise InvalidClientError("this client is disabled or removed")
        client_model = ClientModel(client, self._check_secret)
        now = self._clock.now()
        grant = request.payload.grant_type
        parent: TokenRecord | None = None
        if grant == "client_credentials":
            if client.service_user_id is None:
                raise UnauthorizedClientError("this client has no service principal")
            user_id, subject, family = client.service_user_id, client.client_id, new_id()
            refresh = False
        elif grant == "refresh_token":
            parent = request.refresh_token.record
            if parent is None or user is None:
                raise InvalidRequestError("there is no user for this refresh token")
            user_id, subject, family = user.id, user.id, parent.family_id or new_id()
        else:
            if user is None:
                raise InvalidRequestError("there is no user for this code")
            user_id, subject, family = user.id, user.id, request.authorization_code.code.family_id
        # Within what the client may have now (a refresh also within its family's scope, which
        # authlib checked): narrowing a client's scopes narrows every token issued after.
        scope = client_model.get_allowed_scope(scope or None)
        if not scope:
            raise InvalidScopeError("none of the requested scopes is allowed for this client")
        scopes = tuple(scope.split())
        expires = now + timedelta(seconds=self.settings.access_token_seconds)
        jti, jwt = self._minter.mint(
            issuer=request.issuer,
            subject=subject,
            audience=self.settings.audience or request.issuer,
            client_id=client.client_id,
            scope=scope,
            issued_at=now,
            expires_at=expires,
            org_id=client.org_id,
        )
        base = TokenRecord(
            authorization_id=jti,
            kind=TokenKind.ACCESS,
            user_id=user_id,
            org_id=client.org_id,
            display_name=f"{client.name} (access token)",
            scopes=scopes,
            target_orgs=(client.org_id,),
            secret_hash=self._hasher.hash(jwt),
            pepper_id=self._hasher.current_id,
            valid_from=now,
            valid_to=expires,
            created_at=now,
            client_id=client.client_id,
            family_id=family,
        )
        uow.tokens.add(base)
        body: dict[str, Any] = {
            "access_token": jwt,
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_seconds,
            "scope": scope,
        }
        if refresh and client.allows_grant("refresh_token"):
            secret = token_format.generate(TokenKind.REFRESH)
            uow.tokens.add(
                base.with_changes(
                    authorization_id=new_id(),
                    kind=TokenKind.REFRESH,
                    display_name=f"{client.name} (refresh token)",
                    scopes=tuple(s for s in parent.scopes if s in client.scopes)
                    if parent is not None
                    else scopes,
                    secret_hash=self._hasher.hash(secret),
                    valid_to=now + timedelta(days=self.settings.refresh_token_days),
                    parent_id=parent.authorization_id if parent is not None else None,
                )
            )
            body["refresh_token"] = secret
        if grant != "refresh_token":  # rotations are not audited one by one (volume); grants are
            audit(
                uow,
                self._clock,
                Actor(user_id, user.upn if user else client.client_id, request.http.ip),
                AuditEventType.OAUTH_TOKEN_ISSUE,
                org_id=client.org_id,
                target_type="client",
                target_id=client.client_id,
                details={"grant": grant, "scope": scope, "family": family, "accessTokenId": jti},
            )
        return body

    # ------------------------------------------------------------------ revocation endpoint
    def find_issued(self, secret: str, request: TwOAuth2Request) -> IssuedModel | None:
        """The token record of any kind with this value (RFC 7009 searches every type)."""
        if not secret or len(secret) > 4096:
            return None
        record = token_by_secret(request.uow, self._hasher, secret)
        return None if record is None else IssuedModel(record)

    def revoke_issued(self, record: TokenRecord, request: TwOAuth2Request) -> None:
        """RFC 7009: revoking a refresh token revokes its whole family (the access tokens of
        the same grant included); an access token dies alone."""
        if record.kind is TokenKind.REFRESH and record.family_id:
            request.families_to_revoke.append((record, "revoked by the client (RFC 7009)"))
            return
        uow: UnitOfWork = request.uow
        current = uow.tokens.get(record.authorization_id)
        if current is None or current.revoked_at is not None:
            return
        revoked = current.with_changes(
            revoked_at=self._clock.now(), revoked_by=None, revoke_reason="revoked by the client (RFC 7009)"
        )
        uow.tokens.update(revoked)
        publish(uow, EventType.TOKEN_REVOKED, hashes=[current.secret_hash.hex()])
        owner = uow.users.get(current.user_id)
        if owner is not None:
            emit_token_revoked(
                uow, self._clock, user=owner, record=revoked, initiating_entity="user", reason_admin=None
            )
        audit(
            uow,
            self._clock,
            Actor(None, current.client_id, request.http.ip),
            AuditEventType.OAUTH_TOKEN_REVOKE,
            org_id=current.org_id,
            target_type=current.kind.value,
            target_id=current.authorization_id,
            details={"client": current.client_id, "reason": revoked.revoke_reason},
        )

    # ------------------------------------------------------------------ helpers
    def _error(self, request: TwOAuth2Request, error: OAuth2Error) -> Response:
        status, body, headers = self._server.handle_error_response(request, error)
        return int(status), body, list(headers)

    def _after(self, request: TwOAuth2Request) -> None:
        """Revoke the families this request found compromised and re-hash secrets of retired
        peppers (its own transaction is over: a second writer inside it would wait for itself)."""
        for found, reason in request.families_to_revoke:
            self.revoke_family(found, reason, request.http.ip)
        for client, secret in request.secrets_to_upgrade:
            self._clients.upgrade_secret(client, secret)

    def revoke_family(self, found: TokenRecord | AuthorizationCode, reason: str, ip: str | None) -> int:
        """Revoke every token of the grant ``found`` belongs to; returns how many were live."""
        family = found.family_id
        if not family:
            return 0
        event = (
            AuditEventType.OAUTH_CODE_REPLAY
            if isinstance(found, AuthorizationCode)
            else AuditEventType.OAUTH_REFRESH_REUSE
            if "reused" in reason
            else AuditEventType.OAUTH_TOKEN_REVOKE
        )
        with self._uow() as uow:
            revoked = uow.tokens.revoke_family(family, self._clock.now(), None, reason)
            if revoked:
                publish(uow, EventType.TOKEN_REVOKED, hashes=[t.secret_hash.hex() for t in revoked])
                owner = uow.users.get(found.user_id)
                if owner is not None:
                    for record in revoked:
                        if record.kind is TokenKind.REFRESH:
                            emit_token_revoked(
                                uow,
                                self._clock,
                                user=owner,
                                record=record,
                                initiating_entity="system"
                                if event is not AuditEventType.OAUTH_TOKEN_REVOKE
                                else "user",
                                reason_admin=reason,
                            )
            audit(
                uow,
                self._clock,
                Actor(None, found.client_id, ip),
                event,
                org_id=found.org_id,
                target_type="tokenFamily",
                target_id=family,
                details={"client": found.client_id, "reason": reason, "revoked": len(revoked)},
            )
            uow.commit()
        if event is not AuditEventType.OAUTH_TOKEN_REVOKE:
            log.warning(
                "%s: family %s of client %s revoked (%d tokens)",
                reason,
                family,
                found.client_id,
                len(revoked),
            )
        return len(revoked)

    def _still_allowed(self, record: TokenRecord) -> bool:
        try:
            self._validator.check_record(record, record.org_id)
        except (InvalidToken, Forbidden) as exc:
            log.info("grant of %s refused: %s", record.user_id, exc)
            return False
        return True

    def _is_member(self, user_id: str, org_id: str) -> bool:
        with self._uow() as uow:
            membership = uow.users.membership(org_id, user_id)
        return membership is not None and membership.is_active


class _AccessDenied(OAuth2Error):
    error = "access_denied"

    def __init__(self, description: str, grant: Any) -> None:
        super().__init__(
            description=description, redirect_uri=grant.redirect_uri, state=grant.request.payload.state
        )


class _InvalidScope(OAuth2Error):
    error = "invalid_scope"

    def __init__(self, description: str, grant: Any) -> None:
        super().__init__(
            description=description, redirect_uri=grant.redirect_uri, state=grant.request.payload.state
        )


__all__ = ["ClientDirectory", "ConsentRequest", "DomainError", "HttpRequest", "OAuthServer", "OAuthSettings"]
