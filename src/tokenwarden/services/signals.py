"""Emitting security events: the revocation paths call these next to ``publish(...)``.

Each call appends one outbox row (``security_events``) in the caller's transaction, so an
event exists if and only if the change it reports was committed. Fan-out to streams, signing
and delivery happen later (services.ssf). Every event of one transaction shares its ``txn``.

Subjects: a user is ``{"format":"email"}`` when the UPN is an address, else ``iss_sub``. A
whole organization (break-glass, revocation rules) is ONE event with the opaque subject
``org:<org id>`` instead of one per user: a million tokens die with one SET.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from tokenwarden.domain import secevent
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.principals import User
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.repositories import UnitOfWork
from tokenwarden.ports.signals import SecurityEvent
from tokenwarden.services.common import Actor

_txns: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_txn_lock = threading.Lock()


def txn_of(uow: UnitOfWork) -> str:
    """One transaction id per unit of work (RFC 8417 ``txn``)."""
    with _txn_lock:
        txn = _txns.get(uow)
        if txn is None:
            txn = uuid.uuid4().hex
            _txns[uow] = txn
        return txn


def initiated_by(actor: Actor, user_id: str | None = None) -> str:
    """``user`` when people act on their own tokens, else ``admin`` (the operator included)."""
    return "user" if user_id is not None and actor.user_id == user_id else "admin"


def emit(
    uow: UnitOfWork,
    clock: Clock,
    *,
    event_type: str,
    subject: dict[str, Any],
    event: dict[str, Any],
    org_ids: Iterable[str | None],
    stream_id: str | None = None,
) -> None:
    """Append one event per organization (streams belong to organizations)."""
    now = clock.now()
    for org_id in dict.fromkeys(org_ids):
        uow.signals.append_event(
            SecurityEvent(
                event_type=event_type,
                subject=subject,
                event=event,
                org_id=org_id,
                txn=txn_of(uow),
                created_at=now,
                stream_id=stream_id,
            )
        )


def _user_orgs(uow: UnitOfWork, user: User, org_id: str | None) -> list[str]:
    if org_id is not None:
        return [org_id]
    return [m.org_id for m in uow.users.memberships_of(user.id)]


def _token_orgs(uow: UnitOfWork, record: TokenRecord) -> list[str]:
    """Every organization where the token could be used (its own and its targets)."""
    if record.target_orgs is None:
        return [record.org_id, *(m.org_id for m in uow.users.memberships_of(record.user_id))]
    return [record.org_id, *record.target_orgs]


def emit_session_revoked(
    uow: UnitOfWork,
    clock: Clock,
    *,
    user: User,
    org_id: str | None,
    initiating_entity: str,
    reason_admin: str | None,
    session_id: str | None = None,
) -> None:
    """A user's sessions (and refresh/access tokens) died; with ``session_id``, one session.
    ``org_id`` None: every organization the user belongs to."""
    subject = secevent.user_subject(user.upn, user.id)
    if session_id is not None:
        subject = secevent.session_subject(subject, session_id)
    emit(
        uow,
        clock,
        event_type=secevent.SESSION_REVOKED,
        subject=subject,
        event=secevent.common_members(clock.now(), initiating_entity, reason_admin),
        org_ids=_user_orgs(uow, user, org_id),
    )


def emit_sessions_revoked(
    uow: UnitOfWork,
    clock: Clock,
    *,
    users: Sequence[tuple[str, str]],
    org_id: str,
    initiating_entity: str,
    reason_admin: str | None,
) -> None:
    """The sessions of many members of one organization died (a CSV job's chunk): one event
    per user, ``users`` as (upn, user id), appended in one set-based write."""
    now = clock.now()
    event = secevent.common_members(now, initiating_entity, reason_admin)
    txn = txn_of(uow)
    uow.signals.append_events(
        [
            SecurityEvent(
                event_type=secevent.SESSION_REVOKED,
                subject=secevent.user_subject(upn, user_id),
                event=dict(event),
                org_id=org_id,
                txn=txn,
                created_at=now,
            )
            for upn, user_id in users
        ]
    )


def emit_org_session_revoked(
    uow: UnitOfWork, clock: Clock, *, org_id: str, initiating_entity: str, reason_admin: str | None
) -> None:
    """Every session and token of an organization died (break-glass): one event, org subject."""
    emit(
        uow,
        clock,
        event_type=secevent.SESSION_REVOKED,
        subject=secevent.org_subject(org_id),
        event=secevent.common_members(clock.now(), initiating_entity, reason_admin),
        org_ids=[org_id],
    )


def emit_credential_change(
    uow: UnitOfWork,
    clock: Clock,
    *,
    user: User,
    record: TokenRecord,
    change_type: str,
    initiating_entity: str,
    reason_admin: str | None = None,
) -> None:
    """One token was created, revoked or changed. Subject: its owner; ``credential_id`` (a
    tokenwarden extension) is the token's authorizationId, ``friendly_name`` its display name."""
    if change_type not in secevent.CHANGE_TYPES:
        raise ValueError(f"change_type must be one of {sorted(secevent.CHANGE_TYPES)}")
    event = {
        **secevent.common_members(clock.now(), initiating_entity, reason_admin),
        "credential_type": secevent.CREDENTIAL_TYPE,
        "change_type": change_type,
        "friendly_name": record.display_name,
        "credential_id": record.authorization_id,
    }
    emit(
        uow,
        clock,
        event_type=secevent.CREDENTIAL_CHANGE,
        subject=secevent.user_subject(user.upn, user.id),
        event=event,
        org_ids=_token_orgs(uow, record),
    )


def emit_token_revoked(
    uow: UnitOfWork,
    clock: Clock,
    *,
    user: User,
    record: TokenRecord,
    initiating_entity: str,
    reason_admin: str | None = None,
) -> None:
    """A token of any kind was revoked: credential-change for PATs and service tokens,
    session-revoked (complex subject user + session) for sessions, refresh and access tokens."""
    if record.kind in (TokenKind.PAT, TokenKind.SERVICE):
        emit_credential_change(
            uow,
            clock,
            user=user,
            record=record,
            change_type="revoke",
            initiating_entity=initiating_entity,
            reason_admin=reason_admin,
        )
        return
    subject = secevent.session_subject(secevent.user_subject(user.upn, user.id), record.authorization_id)
    emit(
        uow,
        clock,
        event_type=secevent.SESSION_REVOKED,
        subject=subject,
        event=secevent.common_members(clock.now(), initiating_entity, reason_admin),
        org_ids=_token_orgs(uow, record),
    )


def emit_token_claims_change(
    uow: UnitOfWork,
    clock: Clock,
    *,
    user: User,
    record: TokenRecord,
    claims: dict[str, Any],
    initiating_entity: str,
    reason_admin: str | None = None,
) -> None:
    """The claims of a token changed (its scopes): ``claims`` holds the new values."""
    event = {
        **secevent.common_members(clock.now(), initiating_entity, reason_admin),
        "claims": claims,
        "credential_id": record.authorization_id,
    }
    emit(
        uow,
        clock,
        event_type=secevent.TOKEN_CLAIMS_CHANGE,
        subject=secevent.user_subject(user.upn, user.id),
        event=event,
        org_ids=_token_orgs(uow, record),
    )


def emit_org_credential_change(
    uow: UnitOfWork,
    clock: Clock,
    *,
    org_id: str,
    change_type: str,
    initiating_entity: str,
    reason_admin: str | None,
) -> None:
    """Many credentials of an organization changed at once (a revocation rule): one event with
    the organization's opaque subject; ``reason_admin`` says which tokens."""
    event = {
        **secevent.common_members(clock.now(), initiating_entity, reason_admin),
        "credential_type": secevent.CREDENTIAL_TYPE,
        "change_type": change_type,
    }
    emit(
        uow,
        clock,
        event_type=secevent.CREDENTIAL_CHANGE,
        subject=secevent.org_subject(org_id),
        event=event,
        org_ids=[org_id],
    )


def emit_verification(
    uow: UnitOfWork, clock: Clock, *, org_id: str, stream_id: str, state: str | None
) -> None:
    """The SSF verification event, for one stream only."""
    emit(
        uow,
        clock,
        event_type=secevent.VERIFICATION,
        subject={"format": "opaque", "id": stream_id},
        event={"state": state} if state is not None else {},
        org_ids=[org_id],
        stream_id=stream_id,
    )
