"""The OAuth client registry: an organization's administrators register, change, rotate,
disable and remove its applications; the authorization server authenticates them.

* ``client_id``: ``c_`` + 32 lower-case hex digits (128 random bits). Not a secret and not a
  token: no ``tw?_`` prefix, so no scanner or validator takes it for one.
* Client secrets: ``twcs_`` + 43 base62 characters of 32 random bytes + a 6-character CRC32
  checksum (the token alphabet, so a leak scanner can recognise one). Shown once, at
  registration and rotation; stored only as a keyed hash with the deployment's pepper (its id
  recorded), verified in constant time, re-hashed with the current pepper on first use.
* A client allowed ``client_credentials`` acts as its own service principal: a user
  (``identitySource: service``, UPN ``<client_id>@clients.<org>``) that is a *member* of the
  client's organization. Disabling or removing the client — or dropping the grant — disables
  that membership (and cuts its tokens with the member watermark).
* Disabling a client raises its watermarks (subject type ``client``, every kind) to now;
  removing one also raises ``CLIENT_REMOVED`` to the end of time: every token naming the client
  dies on every node at the next sync, in O(1), whenever it was issued.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Conflict, InvalidInput, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.domain.oauth import (
    MAX_REDIRECT_URIS,
    GrantType,
    OAuthClient,
    check_redirect_uri,
    parse_grants,
)
from tokenwarden.domain.principals import (
    IdentitySource,
    Membership,
    Organization,
    RiskLevel,
    Role,
    User,
    UserStatus,
    member_subject,
)
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.token_format import BODY_LEN, b62encode, checksum
from tokenwarden.domain.watermarks import ALL_KINDS, CLIENT_REMOVED, END_OF_TIME, SubjectType
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import Actor, audit, get_org, new_id, publish, reading, require_admin

log = logging.getLogger(__name__)

CLIENT_ID_PREFIX: Final = "c_"
SECRET_PREFIX: Final = "twcs_"
MAX_CLIENT_NAME: Final = 128
MAX_CLIENT_ID: Final = 64
MAX_SECRET_LENGTH: Final = 256  # far above a real secret (54): longer input is not hashed at all
DEFAULT_CLIENT_SCOPES: Final = ("vso.profile",)
_KINDS: Final = [k.value for k in ALL_KINDS]


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """A client plus its secret: exists only in the response that creates or rotates it
    (``secret`` is None for public clients)."""

    client: OAuthClient
    secret: str | None


def new_client_id() -> str:
    return CLIENT_ID_PREFIX + secrets.token_hex(16)


def new_client_secret() -> str:
    head = SECRET_PREFIX + b62encode(int.from_bytes(secrets.token_bytes(32), "big"), BODY_LEN)
    return head + checksum(head)


def service_upn(client_id: str, org: Organization) -> str:
    """The UPN of a client's service principal (lower case: UPNs match case-insensitively)."""
    return f"{client_id}@clients.{org.name.lower()}"


def verify_secret(hasher: SecretHasher, client: OAuthClient, presented: str) -> bool:
    """Does ``presented`` match the client's stored secret hash? Constant-time in the secret.

    The hash is taken with the pepper the client's hash was made with (its recorded id: the
    current pepper or a retired one still configured); a hash without a pepper id is tried
    against every configured pepper. A pepper no longer configured verifies nothing."""
    stored = client.secret_hash
    if stored is None or not presented or len(presented) > MAX_SECRET_LENGTH:
        return False
    if client.pepper_id is None:
        peppers = hasher.peppers
    else:
        peppers = tuple(p for p in hasher.peppers if p.id == client.pepper_id)
    try:
        candidates = [
            hasher.hash(presented) if p.id == hasher.current_id else hasher.hash_with(p, presented)
            for p in peppers
        ]
    except UnicodeEncodeError:  # a lone surrogate is no secret of ours
        return False
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate, stored)
    return matched


def check_client_name(name: str | None) -> str:
    """1 to 128 characters, not blank, no control or format characters."""
    if name is None or not name.strip():
        raise InvalidInput("name is required", code="invalidClientName")
    if len(name) > MAX_CLIENT_NAME:
        raise InvalidInput(f"name is longer than {MAX_CLIENT_NAME} characters", code="invalidClientName")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") for ch in name):
        raise InvalidInput("name contains control characters", code="invalidClientName")
    return name


def check_redirect_uris(uris: Sequence[str]) -> tuple[str, ...]:
    """At most 20 registrable redirect URIs (see ``domain.oauth.check_redirect_uri``), each
    kept exactly as given (they are matched exactly); duplicates dropped."""
    if len(uris) > MAX_REDIRECT_URIS:
        raise InvalidInput(
            f"at most {MAX_REDIRECT_URIS} redirect URIs, got {len(uris)}", code="tooManyRedirectUris"
        )
    for uri in uris:
        try:
            check_redirect_uri(uri)
        except InvalidInput as exc:
            raise InvalidInput(f"{exc.message}: {uri!r:.120}", code=exc.code) from None
    return tuple(dict.fromkeys(uris))


def check_shape(public: bool, grants: tuple[GrantType, ...], redirect_uris: tuple[str, ...]) -> None:
    """The rules a client's grants and redirect URIs must satisfy together."""
    if public and GrantType.CLIENT_CREDENTIALS in grants:
        raise InvalidInput(
            "a public client cannot use client_credentials: it has no secret to authenticate with",
            code="invalidGrantType",
        )
    if GrantType.REFRESH_TOKEN in grants and GrantType.AUTHORIZATION_CODE not in grants:
        raise InvalidInput(
            "refresh_token needs authorization_code: only the authorization code grant issues "
            "refresh tokens (client_credentials returns none)",
            code="invalidGrantType",
        )
    if GrantType.AUTHORIZATION_CODE in grants and not redirect_uris:
        raise InvalidInput(
            "a client allowed authorization_code needs at least one redirect URI",
            code="redirectUriRequired",
        )


def _plausible_id(client_id: str) -> bool:
    """Could this be a client id at all (1 to 64 visible characters)? Anything else is not
    looked up: no NUL, control character or megabyte string ever reaches the store."""
    return (
        0 < len(client_id) <= MAX_CLIENT_ID
        and client_id.isprintable()
        and not any(c.isspace() for c in client_id)
    )


def _grants(values: Sequence[str]) -> tuple[GrantType, ...]:
    """Grants named explicitly: at least one (leave the field out for the default)."""
    if not values:
        raise InvalidInput("grantTypes must name at least one grant", code="invalidGrantType")
    return parse_grants(list(values))


def _describe(client: OAuthClient) -> dict[str, object]:
    """Audit-safe description of a client (never the secret or its hash)."""
    return {
        "clientId": client.client_id,
        "name": client.name,
        "public": client.public,
        "redirectUris": list(client.redirect_uris),
        "grantTypes": [g.value for g in client.grant_types],
        "scope": " ".join(client.scopes),
        "serviceUserId": client.service_user_id,
        "disabled": client.disabled_at is not None,
    }


class OAuthClientService:
    """Registry use cases (org admins, the operator) and the lookups the authorization server
    makes (:meth:`authenticate`, :meth:`get_active`)."""

    def __init__(
        self, uow: UnitOfWorkFactory, hasher: SecretHasher, catalog: ScopeCatalog, clock: Clock
    ) -> None:
        self._uow = uow
        self._hasher = hasher
        self._catalog = catalog
        self._clock = clock

    # ------------------------------------------------------------------ register
    def register(
        self,
        actor: Actor,
        org: str,
        *,
        name: str | None,
        redirect_uris: Sequence[str] = (),
        grants: Sequence[str] | None = None,
        scope: str | Sequence[str] | None = None,
        public: bool = False,
    ) -> RegisteredClient:
        """Register a client of ``org``; its secret (confidential clients) is returned once.

        Grants default to authorization_code + refresh_token, scopes to ``vso.profile``. The
        acting token must hold every scope the client may be granted (no escalation)."""
        the_name = check_client_name(name)
        the_grants = _grants(grants) if grants is not None else parse_grants(None)
        uris = check_redirect_uris(list(redirect_uris))
        check_shape(public, the_grants, uris)
        scopes = self._scopes(scope)
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            actor.check_may_hold(scopes, (the_org.id,))
            secret = None if public else new_client_secret()
            client = OAuthClient(
                client_id=new_client_id(),
                org_id=the_org.id,
                name=the_name,
                public=public,
                redirect_uris=uris,
                grant_types=the_grants,
                scopes=scopes,
                created_at=now,
                secret_hash=None if secret is None else self._hasher.hash(secret),
                pepper_id=None if secret is None else self._hasher.current_id,
                created_by=actor.user_id,
            )
            if client.allows_grant(GrantType.CLIENT_CREDENTIALS):
                principal = self._add_principal(uow, actor, the_org, client, active=True)
                client = client.with_changes(service_user_id=principal.id)
            uow.oauth.add_client(client)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.CLIENT_CREATE,
                org_id=the_org.id,
                target_type="oauthClient",
                target_id=client.client_id,
                details=_describe(client),
            )
            uow.commit()
        return RegisteredClient(client, secret)

    # ------------------------------------------------------------------ read
    def list_clients(self, actor: Actor, org: str) -> list[OAuthClient]:
        """The organization's clients, oldest first (never their secrets)."""
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return uow.oauth.clients(the_org.id)

    def get(self, actor: Actor, org: str, client_id: str) -> OAuthClient:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return self._client_in(uow, the_org.id, client_id)

    # ------------------------------------------------------------------ change
    def update(
        self,
        actor: Actor,
        org: str,
        client_id: str,
        *,
        name: str | None = None,
        redirect_uris: Sequence[str] | None = None,
        grants: Sequence[str] | None = None,
        scope: str | Sequence[str] | None = None,
    ) -> OAuthClient:
        """Change name, redirect URIs, grants or scopes (fields left None keep their value);
        the result must satisfy every registration rule and stay within the acting token."""
        if name is None and redirect_uris is None and grants is None and scope is None:
            raise InvalidInput("no field to change", code="nothingToChange")
        the_name = check_client_name(name) if name is not None else None
        uris = check_redirect_uris(list(redirect_uris)) if redirect_uris is not None else None
        the_grants = _grants(grants) if grants is not None else None
        scopes = self._catalog.parse(scope) if scope is not None else None
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            current = self._client_in(uow, the_org.id, client_id)
            updated = current.with_changes(
                name=the_name if the_name is not None else current.name,
                redirect_uris=uris if uris is not None else current.redirect_uris,
                grant_types=the_grants if the_grants is not None else current.grant_types,
                scopes=scopes if scopes is not None else current.scopes,
            )
            check_shape(updated.public, updated.grant_types, updated.redirect_uris)
            actor.check_may_hold(updated.scopes, (the_org.id,))
            updated = self._sync_principal(uow, actor, the_org, updated)
            uow.oauth.update_client(updated)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.CLIENT_UPDATE,
                org_id=the_org.id,
                target_type="oauthClient",
                target_id=current.client_id,
                details={"before": _describe(current), "after": _describe(updated)},
            )
            uow.commit()
        return updated

    def rotate_secret(self, actor: Actor, org: str, client_id: str) -> RegisteredClient:
        """A new secret, returned once; the old one stops working at once, and so do the access
        tokens its service principal obtained with it (client_credentials). A new secret is a
        new grant: the acting token must cover the client's scopes."""
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            current = self._client_in(uow, the_org.id, client_id)
            if current.public:
                raise InvalidInput("a public client has no secret to rotate", code="publicClient")
            actor.check_may_hold(current.scopes, (the_org.id,))
            secret = new_client_secret()
            updated = current.with_changes(
                secret_hash=self._hasher.hash(secret), pepper_id=self._hasher.current_id
            )
            uow.oauth.update_client(updated)
            if current.service_user_id is not None:
                self._cut_principal_tokens(uow, the_org.id, current.service_user_id)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.CLIENT_SECRET_ROTATE,
                org_id=the_org.id,
                target_type="oauthClient",
                target_id=current.client_id,
                details=_describe(current),
            )
            uow.commit()
        return RegisteredClient(updated, secret)

    def disable(self, actor: Actor, org: str, client_id: str) -> OAuthClient:
        """Stop the client: it no longer authenticates, and every token issued to it until now
        dies at once (client watermark); its service principal's membership is disabled."""
        return self._set_enabled(actor, org, client_id, enabled=False)

    def enable(self, actor: Actor, org: str, client_id: str) -> OAuthClient:
        """Let a disabled client authenticate again (tokens cut while disabled stay dead)."""
        return self._set_enabled(actor, org, client_id, enabled=True)

    def _set_enabled(self, actor: Actor, org: str, client_id: str, *, enabled: bool) -> OAuthClient:
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            current = self._client_in(uow, the_org.id, client_id)
            if (current.disabled_at is None) == enabled:
                return current  # already so: idempotent
            if enabled:
                actor.check_may_hold(current.scopes, (the_org.id,))
            updated = current.with_changes(disabled_at=None if enabled else now)
            if not enabled:
                uow.watermarks.raise_to(SubjectType.CLIENT, [current.client_id], _KINDS, now)
                publish(uow, EventType.CLIENT_CHANGED, client_id=current.client_id)
            updated = self._sync_principal(uow, actor, the_org, updated)
            uow.oauth.update_client(updated)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.CLIENT_ENABLE if enabled else AuditEventType.CLIENT_DISABLE,
                org_id=the_org.id,
                target_type="oauthClient",
                target_id=current.client_id,
                details=_describe(updated),
            )
            uow.commit()
        return updated

    def remove(self, actor: Actor, org: str, client_id: str) -> OAuthClient:
        """Delete the client. Every token ever issued to it dies on every node at once (the
        ``removed`` client watermark, raised to the end of time); its service principal's
        membership is disabled for good. Returns the client as it was."""
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            current = self._client_in(uow, the_org.id, client_id)
            uow.oauth.delete_client(current.client_id)
            uow.watermarks.raise_to(SubjectType.CLIENT, [current.client_id], _KINDS, now)
            uow.watermarks.raise_to(SubjectType.CLIENT, [current.client_id], [CLIENT_REMOVED], END_OF_TIME)
            publish(uow, EventType.CLIENT_CHANGED, client_id=current.client_id)
            if current.service_user_id is not None:
                self._set_principal_active(uow, actor, the_org.id, current.service_user_id, active=False)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.CLIENT_DELETE,
                org_id=the_org.id,
                target_type="oauthClient",
                target_id=current.client_id,
                details=_describe(current),
            )
            uow.commit()
        return current

    # ------------------------------------------------------------------ the authorization server
    def authenticate(self, client_id: str, client_secret: str | None) -> OAuthClient | None:
        """The client, if it exists, is enabled and proves itself: a confidential client with
        its secret, a public client with none (an empty secret counts as none). ``None`` for
        anything else (unknown, disabled, wrong or missing secret, a public client sending a
        secret). Raises ``Unavailable`` when the store cannot be read (answer 503, never "no")."""
        client = self.get_active(client_id)
        if client is None:
            return None
        if client.public:
            return None if client_secret else client
        if not client_secret or not verify_secret(self._hasher, client, client_secret):
            return None
        self.upgrade_secret(client, client_secret)
        return client

    def get_active(self, client_id: str, uow: UnitOfWork | None = None) -> OAuthClient | None:
        """The client, or None if unknown or disabled: read through ``uow`` when the caller
        has one open (a token request), else in a read-only unit of work of its own."""
        if not _plausible_id(client_id):
            return None
        if uow is not None:
            client = uow.oauth.get_client(client_id)
        else:
            with reading(self._uow) as own:
                client = own.oauth.get_client(client_id)
        if client is None or client.disabled_at is not None:
            return None
        return client

    def upgrade_secret(self, client: OAuthClient, secret: str) -> None:
        """Re-hash a verified secret stored under a retired pepper with the current one (call
        it with no unit of work open: it commits its own)."""
        if client.pepper_id != self._hasher.current_id:
            self._rehash(client, secret)

    def verify_secret(self, client: OAuthClient, presented: str) -> bool:
        """:func:`verify_secret` with this deployment's peppers."""
        return verify_secret(self._hasher, client, presented)

    def _rehash(self, client: OAuthClient, secret: str) -> None:
        """Move a secret hashed with a retired pepper to the current one (compare-and-set on
        the old hash, so a rotation landing meanwhile is never undone)."""
        try:
            with self._uow() as uow:
                current = uow.oauth.get_client(client.client_id)
                if current is None or current.secret_hash != client.secret_hash:
                    return
                uow.oauth.update_client(
                    current.with_changes(
                        secret_hash=self._hasher.hash(secret), pepper_id=self._hasher.current_id
                    )
                )
                uow.commit()
            log.info("client %s secret re-hashed with pepper %s", client.client_id, self._hasher.current_id)
        except Exception as exc:  # the client still authenticated; it is re-hashed next time
            log.warning("re-hash of client %s secret failed: %s", client.client_id, exc)

    # ------------------------------------------------------------------ helpers
    def _scopes(self, scope: str | Sequence[str] | None) -> tuple[str, ...]:
        if scope is None:
            missing = [s for s in DEFAULT_CLIENT_SCOPES if s not in self._catalog]
            if missing:
                raise InvalidInput(
                    "scope is required (this scope catalog has no vso.profile)", code="invalidScope"
                )
            return DEFAULT_CLIENT_SCOPES
        return self._catalog.parse(scope)

    @staticmethod
    def _client_in(uow: UnitOfWork, org_id: str, client_id: str) -> OAuthClient:
        """The organization's client; one NotFound for unknown ids and other orgs' clients."""
        client = uow.oauth.get_client(client_id) if _plausible_id(client_id) else None
        if client is None or client.org_id != org_id:
            raise NotFound(f"no OAuth client {client_id!r:.80} in this organization", code="clientNotFound")
        return client

    def _add_principal(
        self, uow: UnitOfWork, actor: Actor, org: Organization, client: OAuthClient, *, active: bool
    ) -> User:
        """Create the client's service principal, a member of its organization."""
        upn = service_upn(client.client_id, org)
        if uow.users.by_upn(upn) is not None:  # 128 random bits: only a bug or a forgery gets here
            raise Conflict(f"user {upn} already exists", code="servicePrincipalExists")
        user = User(
            id=new_id(),
            upn=upn,
            display_name=client.name,
            status=UserStatus.ACTIVE,
            risk_level=RiskLevel.NONE,
            identity_source=IdentitySource.SERVICE,
            created_at=self._clock.now(),
        )
        uow.users.add(user)
        status = UserStatus.ACTIVE if active else UserStatus.DISABLED
        uow.users.set_membership(Membership(org.id, user.id, Role.MEMBER, status=status))
        publish(uow, EventType.MEMBERSHIP_CHANGED, user_id=user.id, org_id=org.id)
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.USER_CREATE,
            org_id=org.id,
            target_type="user",
            target_id=user.id,
            details={
                "upn": upn,
                "displayName": user.display_name,
                "identitySource": IdentitySource.SERVICE.value,
                "clientId": client.client_id,
            },
        )
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.MEMBERSHIP_CHANGE,
            org_id=org.id,
            target_type="user",
            target_id=user.id,
            details={"upn": upn, "role": Role.MEMBER.value, "status": status.value},
        )
        return user

    def _sync_principal(
        self, uow: UnitOfWork, actor: Actor, org: Organization, client: OAuthClient
    ) -> OAuthClient:
        """Bring the service principal in line with the client: it exists while the client is
        allowed client_credentials, and its membership is active only while, in addition, the
        client is enabled. Its display name follows the client's name."""
        wanted = client.allows_grant(GrantType.CLIENT_CREDENTIALS)
        active = wanted and client.disabled_at is None
        if client.service_user_id is None:
            if not wanted:
                return client
            principal = self._add_principal(uow, actor, org, client, active=active)
            return client.with_changes(service_user_id=principal.id)
        user = uow.users.get(client.service_user_id)
        if user is not None and user.display_name != client.name:
            uow.users.update(user.with_changes(display_name=client.name))
        self._set_principal_active(uow, actor, org.id, client.service_user_id, active=active)
        return client

    def _set_principal_active(
        self, uow: UnitOfWork, actor: Actor, org_id: str, user_id: str, *, active: bool
    ) -> None:
        """Enable or disable the service principal's membership; disabling cuts its tokens
        (member watermark: enabling it again later brings none of them back)."""
        m = uow.users.membership(org_id, user_id)
        target = UserStatus.ACTIVE if active else UserStatus.DISABLED
        if m is None or m.status is target:
            return
        uow.users.set_membership(m.with_changes(status=target))
        if not active:
            uow.watermarks.raise_to(
                SubjectType.MEMBER, [member_subject(org_id, user_id)], _KINDS, self._clock.now()
            )
        publish(uow, EventType.USER_CHANGED, user_id=user_id)
        user = uow.users.get(user_id)
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.USER_UPDATE if active else AuditEventType.USER_DISABLE,
            org_id=org_id,
            target_type="user",
            target_id=user_id,
            details={
                "upn": user.upn if user else None,
                "status": target.value,
                "previousStatus": m.status.value,
                "reason": "OAuth client service principal follows its client",
            },
        )

    def _cut_principal_tokens(self, uow: UnitOfWork, org_id: str, user_id: str) -> None:
        """End every token the service principal holds now (its member watermark)."""
        uow.watermarks.raise_to(
            SubjectType.MEMBER, [member_subject(org_id, user_id)], _KINDS, self._clock.now()
        )
        publish(uow, EventType.USER_CHANGED, user_id=user_id)
