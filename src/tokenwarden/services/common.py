"""Shared service vocabulary: who is acting, and how an action is audited."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Forbidden, InvalidInput, NotFound
from tokenwarden.domain.events import EventType, InvalidationEvent
from tokenwarden.domain.principals import Organization, Role, User
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.ports.repositories import UnitOfWork


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs an action: a user (through a token) or the local operator (CLI)."""

    user_id: str | None
    upn: str | None
    ip: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.user_id is None


OPERATOR = Actor(user_id=None, upn="operator@localhost")


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


def token_reaches(uow: UnitOfWork, record: TokenRecord, org_id: str) -> bool:
    """Is ``record`` an organization's business: issued there, or usable there?"""
    if record.org_id == org_id:
        return True
    if record.target_orgs is None:  # all of the owner's organizations
        return uow.users.membership(org_id, record.user_id) is not None
    return org_id in record.target_orgs


def require_admin(uow: UnitOfWork, actor: Actor, org_id: str) -> None:
    """Raise Forbidden unless the actor administers ``org_id`` (the operator always does)."""
    if actor.is_operator:
        return
    m = uow.users.membership(org_id, actor.user_id or "")
    if m is None or m.role is not Role.ADMIN:
        raise Forbidden("organization administrators only", code="accessDenied")
