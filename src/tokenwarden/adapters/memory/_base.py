"""The in-memory tables, the undo journal and the base of every in-memory repository."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.audit_chain import ChainCheckpoint, ChainHead
from tokenwarden.domain.events import InvalidationEvent
from tokenwarden.domain.managed import ManagedCredential
from tokenwarden.domain.oauth import AuthorizationCode, OAuthClient
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.principals import (
    Invitation,
    Membership,
    Organization,
    User,
    member_subject,
)
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.domain.usage import UsageCount
from tokenwarden.domain.watermarks import CLIENT_REMOVED, SubjectType, mark_names_for
from tokenwarden.ports.alerts import Alert, StoredPolicy
from tokenwarden.ports.lifecycle import JobLease, JobRun, OutboxMessage, PolicyEnforcement, Webhook
from tokenwarden.ports.mfa import MfaFactor
from tokenwarden.ports.repositories import (
    BreakGlassRequest,
    BulkJob,
    BulkJobItem,
)
from tokenwarden.ports.rotation import RotationRecord
from tokenwarden.ports.scim import ScimConfig, ScimGroupRecord, ScimUserRecord
from tokenwarden.ports.signals import (
    Delivery,
    SecurityEvent,
    SigningKey,
    Stream,
    StreamSubject,
)

Undo = Callable[[], None]


@dataclass
class MemoryStore:
    """All tables as dictionaries, guarded by one re-entrant lock."""

    orgs: dict[str, Organization] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    memberships: dict[tuple[str, str], Membership] = field(default_factory=dict)
    invitations: dict[str, Invitation] = field(default_factory=dict)
    tokens: dict[str, TokenRecord] = field(default_factory=dict)
    token_by_hash: dict[bytes, str] = field(default_factory=dict)
    policies: dict[str, OrgPolicy] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    events: list[InvalidationEvent] = field(default_factory=list)
    rules: list[RevocationRule] = field(default_factory=list)
    watermarks: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    break_glass: dict[str, BreakGlassRequest] = field(default_factory=dict)
    bulk_jobs: dict[str, BulkJob] = field(default_factory=dict)
    bulk_items: dict[tuple[str, int], BulkJobItem] = field(default_factory=dict)
    signal_tables: SignalTables = field(default_factory=lambda: SignalTables())
    oauth_tables: OAuthTables = field(default_factory=lambda: OAuthTables())
    lifecycle_tables: LifecycleTables = field(default_factory=lambda: LifecycleTables())
    rotation_tables: RotationTables = field(default_factory=lambda: RotationTables())
    audit_heads: dict[str, ChainHead] = field(default_factory=dict)
    audit_checkpoints: list[ChainCheckpoint] = field(default_factory=list)
    usage: dict[tuple[str, datetime, str, str, str, str], UsageCount] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)
    detection_policies: dict[str, StoredPolicy] = field(default_factory=dict)
    mfa_factors: dict[str, MfaFactor] = field(default_factory=dict)
    mfa_codes: dict[tuple[str, bytes], datetime | None] = field(default_factory=dict)  # -> used at
    mfa_step_ups: dict[bytes, tuple[str, datetime]] = field(default_factory=dict)  # credential -> (user, at)
    scim_config: dict[str, ScimConfig] = field(default_factory=dict)  # issue 17
    scim_users: dict[str, ScimUserRecord] = field(default_factory=dict)
    scim_groups: dict[str, ScimGroupRecord] = field(default_factory=dict)
    scim_members: dict[str, list[str]] = field(default_factory=dict)  # group id -> member ids, in order
    lock: threading.RLock = field(default_factory=threading.RLock)


K = TypeVar("K")


V = TypeVar("V")


def _set(d: dict[K, V], key: K, value: V, journal: list[Undo]) -> None:
    if key in d:
        old = d[key]
        journal.append(lambda: d.__setitem__(key, old))
    else:
        journal.append(lambda: _discard(d, key))
    d[key] = value


def _discard(d: dict[K, V], key: K) -> None:
    d.pop(key, None)


class _Repo:
    def __init__(self, store: MemoryStore, journal: list[Undo]) -> None:
        self.s = store
        self.j = journal

    @staticmethod
    def _pop(items: list[Any]) -> None:
        items.pop()


def _cut_by_watermark(store: MemoryStore, token: TokenRecord) -> bool:
    """A token already dead by a watermark of its owner (global or in its organization) or of
    its organization or its OAuth client (not live)."""
    marks = store.watermarks
    member = member_subject(token.org_id, token.user_id)
    own = [marks.get((SubjectType.USER.value, token.user_id, n)) for n in mark_names_for(token.kind)]
    own += [marks.get((SubjectType.MEMBER.value, member, n)) for n in mark_names_for(token.kind)]
    own.append(marks.get((SubjectType.ORG.value, token.org_id, token.kind.value)))
    if token.client_id is not None:  # its OAuth client disabled (per kind) or removed
        own.append(marks.get((SubjectType.CLIENT.value, token.client_id, token.kind.value)))
        own.append(marks.get((SubjectType.CLIENT.value, token.client_id, CLIENT_REMOVED)))
    return any(m is not None and m > token.valid_from for m in own)


@dataclass
class OAuthTables:
    clients: dict[str, OAuthClient] = field(default_factory=dict)
    codes: dict[bytes, AuthorizationCode] = field(default_factory=dict)
    passwords: dict[str, tuple[str | None, datetime]] = field(default_factory=dict)
    attempts: list[tuple[str, str | None, datetime, bool]] = field(default_factory=list)


@dataclass
class SignalTables:
    """The Shared Signals tables of the memory store."""

    events: list[SecurityEvent] = field(default_factory=list)
    keys: dict[str, SigningKey] = field(default_factory=dict)
    streams: dict[str, Stream] = field(default_factory=dict)
    subjects: dict[tuple[str, str], StreamSubject] = field(default_factory=dict)
    deliveries: dict[int, Delivery] = field(default_factory=dict)
    next_delivery_id: list[int] = field(default_factory=lambda: [0])


@dataclass
class LifecycleTables:
    """The lifecycle tables of the memory store (issue 12)."""

    leases: dict[str, JobLease] = field(default_factory=dict)
    runs: dict[str, JobRun] = field(default_factory=dict)
    outbox: dict[int, OutboxMessage] = field(default_factory=dict)
    outbox_keys: dict[str, int] = field(default_factory=dict)
    next_outbox_id: list[int] = field(default_factory=lambda: [0])
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    notices: dict[tuple[str, str], datetime] = field(default_factory=dict)
    notice_marks: dict[tuple[str, str], tuple[datetime, int]] = field(default_factory=dict)
    watchers: dict[tuple[str, str], str] = field(default_factory=dict)  # (token, key) -> address
    enforcements: dict[str, PolicyEnforcement] = field(default_factory=dict)


@dataclass
class RotationTables:
    """Managed credentials (with their lease and sealed ADO credential) and the journal (issue 13)."""

    credentials: dict[str, ManagedCredential] = field(default_factory=dict)
    leases: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    sealed: dict[str, str] = field(default_factory=dict)
    rotations: dict[str, RotationRecord] = field(default_factory=dict)
