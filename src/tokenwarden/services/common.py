"""Shared service vocabulary: who is acting, and how an action is audited."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Forbidden, InvalidInput, NotFound
from tokenwarden.domain.events import EventType, InvalidationEvent
from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.domain.principals import Membership, Organization, Role, User
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.ports.repositories import UnitOfWork


@dataclass(frozen=True, slots=True)
class TokenReach:
    """What the token an actor acts through may do: its scopes (implications expanded) and the
    organizations it is valid for (``None``: every organization of its owner); ``key`` (its keyed
    secret hash) finds its record where a use case must know more (a break-glass recovery token);
    ``interactive`` says it is the browser session of a signed-in user (set only where the session
    cookie is validated, ``http.web.session``), never a token presented as a bearer."""

    scopes: frozenset[str]
    orgs: tuple[str, ...] | None
    key: bytes | None = field(default=None, repr=False)
    interactive: bool = False

    def reaches(self, org_id: str) -> bool:
        return self.orgs is None or org_id in self.orgs

    def covers(self, scopes: Iterable[str], orgs: tuple[str, ...] | None) -> bool:
        """Could this token hold a token with ``scopes`` (literal) valid for ``orgs``?"""
        if not all(s in self.scopes for s in scopes):
            return False
        if self.orgs is None:
            return True
        return orgs is not None and set(orgs) <= set(self.orgs)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs an action: a user (through a token, whose reach bounds what they may do)
    or the local operator (CLI)."""

    user_id: str | None
    upn: str | None
    ip: str | None = None
    token: TokenReach | None = None
    user_agent: str | None = None  # recorded in the audit log (bounded: MAX_AUDIT_USER_AGENT)

    @property
    def is_operator(self) -> bool:
        return self.user_id is None

    def reaches(self, org_id: str) -> bool:
        """May this actor act in ``org_id`` at all (its token is valid there)?"""
        return self.token is None or self.token.reaches(org_id)

    def check_may_hold(self, scopes: Iterable[str], orgs: tuple[str, ...] | None) -> None:
        """No token mints or widens a token beyond itself: raise Forbidden unless the acting
        token covers ``scopes`` and ``orgs``."""
        if self.token is None or self.token.covers(scopes, orgs):
            return
        wanted = sorted(s for s in scopes if s not in self.token.scopes)
        if wanted:
            raise Forbidden(
                f"this token cannot grant scopes it does not hold: {', '.join(wanted)}",
                code="scopeEscalation",
            )
        raise Forbidden(
            "this token cannot grant access to organizations it is not valid for", code="scopeEscalation"
        )


MAX_AUDIT_USER_AGENT = 256
OPERATOR = Actor(user_id=None, upn="operator@localhost")
SYSTEM = Actor(user_id=None, upn="tokenwarden-system")  # scheduled jobs (expiry, dormancy, policy)


def reading(uow: Callable[[], UnitOfWork]) -> UnitOfWork:
    """A read-only unit of work when the factory offers one (``Database.reader``): on SQLite it
    reads a snapshot without taking the write lock that read-write units of work take up front."""
    reader = getattr(uow, "reader", None)
    return reader() if callable(reader) else uow()


def new_id() -> str:
    return str(uuid.uuid4())


def parse_uuid(value: str, what: str = "id", code: str = "invalidAuthorizationId") -> str:
    """Canonical lower-case UUID string, or InvalidInput naming ``what``."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidInput(f"{what} must be a UUID, got {value!r:.60}", code=code) from exc


def is_ascii_digits(text: str) -> bool:
    """True for a non-empty run of 0-9 (``str.isdigit`` also accepts '²' and other digits)."""
    return text.isascii() and text.isdigit()


def audit(
    uow: UnitOfWork,
    clock: Clock,
    actor: Actor,
    event_type: str,
    *,
    org_id: str | None,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Append an audit entry inside the caller's transaction. Never pass a secret in details."""
    uow.audit.append(
        AuditEntry(
            at=clock.now(),
            event_type=event_type,
            org_id=org_id,
            actor_id=actor.user_id,
            actor_upn=actor.upn,
            target_type=target_type,
            target_id=target_id,
            ip=actor.ip,
            details=details or {},
            user_agent=actor.user_agent[:MAX_AUDIT_USER_AGENT] if actor.user_agent else None,
        )
    )


def publish(uow: UnitOfWork, event_type: EventType, **payload: Any) -> None:
    """Record an invalidation event in the caller's transaction."""
    uow.events.append(InvalidationEvent(event_type, payload))


def get_org(uow: UnitOfWork, name_or_id: str) -> Organization:
    org = uow.orgs.by_name(name_or_id) or uow.orgs.get(name_or_id)
    if org is None:
        raise NotFound(f"organization {name_or_id!r} not found", code="organizationNotFound")
    return org


def get_user(uow: UnitOfWork, upn_or_id: str) -> User:
    user = uow.users.by_upn(upn_or_id) or uow.users.get(upn_or_id)
    if user is None:
        raise NotFound(f"user {upn_or_id!r} not found", code="userNotFound")
    return user


def user_by_id(uow: UnitOfWork, user_id: str) -> User:
    """:func:`get_user` for a stored id (one read, where a UPN is never meant)."""
    user = uow.users.get(user_id)
    if user is None:
        raise NotFound(f"user {user_id!r} not found", code="userNotFound")
    return user


def token_reaches(uow: UnitOfWork, record: TokenRecord, org_id: str) -> bool:
    """Is ``record`` an organization's business: issued there, or usable there?"""
    if record.org_id == org_id:
        return True
    if record.target_orgs is None:  # all of the owner's organizations
        return uow.users.membership(org_id, record.user_id) is not None
    return org_id in record.target_orgs


StepUpCheck = Callable[[UnitOfWork, Actor, str], None]
"""Raise Forbidden unless the actor may do a step-up-protected action in the organization now
(services.mfa.MfaService.require_step_up); wired by bootstrap."""


def no_step_up(uow: UnitOfWork, actor: Actor, org_id: str) -> None:
    """The default :data:`StepUpCheck`: nothing required (a container without MFA wired)."""
    return None


def require_admin(uow: UnitOfWork, actor: Actor, org_id: str) -> None:
    """Raise Forbidden unless the actor is an active administrator of ``org_id`` acting through
    a token valid there (the operator always is)."""
    if actor.is_operator:
        return
    if not actor.reaches(org_id):
        raise Forbidden("this token is not valid for this organization", code="accessDenied")
    m = uow.users.membership(org_id, actor.user_id or "")
    if m is None or m.role is not Role.ADMIN or not m.is_active:
        raise Forbidden("organization administrators only", code="accessDenied")


def require_member(uow: UnitOfWork, actor: Actor, org_id: str) -> Membership:
    """The actor's active membership of ``org_id`` (reached by its token), else Forbidden."""
    if not actor.reaches(org_id):
        raise Forbidden("this token is not valid for this organization", code="accessDenied")
    m = uow.users.membership(org_id, actor.user_id or "")
    if m is None or not m.is_active:
        raise Forbidden("not a member of this organization", code="accessDenied")
    return m


def member_of(uow: UnitOfWork, org_id: str, upn_or_id: str) -> tuple[User, Membership]:
    """A member of ``org_id`` by UPN or id; NotFound (the same answer) for anyone else, so an
    organization learns nothing about identities outside it."""
    user = uow.users.by_upn(upn_or_id) or uow.users.get(upn_or_id)
    m = uow.users.membership(org_id, user.id) if user is not None else None
    if user is None or m is None:
        raise NotFound(f"user {upn_or_id!r:.80} is not a member of this organization", code="userNotFound")
    return user, m


def token_by_secret(uow: UnitOfWork, hasher: SecretHasher, secret: str) -> TokenRecord | None:
    """The token record of a presented secret of any kind: the current pepper first, then the
    retired ones (a token not yet re-hashed since a pepper rotation)."""
    record = uow.tokens.by_hash(hasher.hash(secret))
    for pepper in hasher.older():
        if record is not None:
            break
        record = uow.tokens.by_hash(hasher.hash_with(pepper, secret))
    return record
