"""Storage ports. Every adapter (memory, SQLite, PostgreSQL) passes the same contract suite."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.audit_chain import ChainCheckpoint, ChainHead
from tokenwarden.domain.events import InvalidationEvent
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.principals import Invitation, Membership, Organization, User, UserStatus
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.alerts import AlertRepository
from tokenwarden.ports.console import ConsoleRepository
from tokenwarden.ports.lifecycle import (
    JobRepository,
    LifecycleRepository,
    OutboxRepository,
    WebhookRepository,
)
from tokenwarden.ports.mfa import MfaRepository
from tokenwarden.ports.oauth import OAuthRepository
from tokenwarden.ports.reports import ReportRepository
from tokenwarden.ports.rotation import ManagedCredentialRepository, RotationRepository
from tokenwarden.ports.scim import ScimRepository
from tokenwarden.ports.signals import SignalRepository
from tokenwarden.ports.usage import UsageRepository

log = logging.getLogger(__name__)


class OrgRepository(Protocol):
    def add(self, org: Organization) -> None: ...
    def get(self, org_id: str) -> Organization | None: ...
    def by_name(self, name: str) -> Organization | None:
        """Case-insensitive lookup by name."""
        ...

    def all(self) -> list[Organization]: ...


class UserRepository(Protocol):
    def add(self, user: User) -> None: ...
    def get(self, user_id: str) -> User | None: ...
    def by_upn(self, upn: str) -> User | None:
        """Case-insensitive lookup by user principal name."""
        ...

    def update(self, user: User) -> None: ...
    def find(self, org_id: str | None = None, status: UserStatus | None = None) -> list[User]:
        """Users in name order; with ``org_id`` its members, filtered by their membership status
        there; without, every user, filtered by the user's own (operator-level) status."""
        ...

    def set_membership(self, membership: Membership) -> None:
        """Insert or replace a membership: role, status and risk in that organization."""
        ...

    def remove_membership(self, org_id: str, user_id: str) -> bool: ...
    def membership(self, org_id: str, user_id: str) -> Membership | None: ...
    def memberships_of(self, user_id: str) -> list[Membership]: ...
    def count(self) -> int: ...
    def ids_at_risk(self, org_id: str, min_rank_levels: Sequence[str]) -> list[str]:
        """Ids of the organization's members whose risk level *in that organization* is one of
        ``min_rank_levels``."""
        ...


class InvitationRepository(Protocol):
    def add(self, invitation: Invitation) -> None: ...
    def get(self, invitation_id: str) -> Invitation | None: ...
    def update(self, invitation: Invitation) -> None: ...
    def find(self, *, org_id: str | None = None, user_id: str | None = None) -> list[Invitation]:
        """Invitations of an organization and/or to a user, oldest first."""
        ...


class TokenRepository(Protocol):
    def add(self, token: TokenRecord) -> None: ...
    def get(self, authorization_id: str) -> TokenRecord | None: ...
    def by_hash(self, secret_hash: bytes) -> TokenRecord | None: ...
    def update(self, token: TokenRecord) -> None: ...
    def list_for_user(self, user_id: str, kind: TokenKind | None = None) -> list[TokenRecord]: ...
    def count_live(
        self,
        *,
        user_ids: Sequence[str] | None = None,
        org_id: str | None = None,
        kinds: Sequence[str] | None = None,
        issued_before: datetime,
        now: datetime,
    ) -> dict[str, int]:
        """kind -> number of *live* tokens issued before ``issued_before``: unrevoked, unexpired
        and not already cut by a watermark of their owner or organization."""
        ...

    def rehash(self, authorization_id: str, old_hash: bytes, new_hash: bytes, pepper_id: str) -> bool:
        """Replace only the secret hash, and only if it is still ``old_hash`` (compare-and-set)."""
        ...

    def record_usage(self, uses: Sequence[tuple[bytes, datetime, str | None]]) -> None:
        """Set last_used_at/ip of many tokens, found by secret hash, in one statement
        (never moves time backwards)."""
        ...

    def family(self, family_id: str) -> list[TokenRecord]:
        """Every token issued from one OAuth grant (a code, a client-credentials call), oldest first."""
        ...

    def children(self, parent_id: str) -> list[TokenRecord]:
        """The refresh tokens rotated from ``parent_id``."""
        ...

    def mark_rotated(self, authorization_id: str, at: datetime) -> bool:
        """Set rotated_at and revoked_at (reason ``ROTATED``), only if the token is neither rotated
        nor revoked (compare-and-set): of two concurrent refreshes with one token, exactly one wins."""
        ...

    def revoke_family(self, family_id: str, at: datetime, by: str | None, reason: str) -> list[TokenRecord]:
        """Revoke every unrevoked token of a family; returns them as they were (for their hashes)."""
        ...

    # ---- issue 11: browser sessions
    def extend_session(self, secret_hash: bytes, valid_to: datetime, *, before: datetime) -> bool:
        """Move ``valid_to`` of an unrevoked *session* token found by its hash to ``valid_to``,
        only if it is still earlier than ``before`` (compare-and-set: of nodes extending one
        session at once, one writes; a revocation is never undone)."""
        ...


class PolicyRepository(Protocol):
    def get(self, org_id: str) -> OrgPolicy | None: ...
    def save(self, policy: OrgPolicy) -> None: ...


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters for the audit log; every field is optional and they combine with AND."""

    org_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    actor_id: str | None = None
    actor_upn: str | None = None  # the UPN the actor used, case-insensitively (sign-in log)
    target_id: str | None = None
    event_types: tuple[str, ...] = ()
    after_id: int = 0
    before_id: int | None = None  # paging cursor for newest-first reads: ids below this one
    newest_first: bool = False
    limit: int = 1000


class AuditRepository(Protocol):
    def append(self, entry: AuditEntry) -> None:
        """Append one entry. There is no update or delete: the log is append-only."""
        ...

    def query(self, query: AuditQuery) -> list[AuditEntry]:
        """Entries matching ``query`` in ascending id order (descending with ``newest_first``)."""
        ...

    # the tamper-evident chain (domain/audit_chain.py)
    def heads(self) -> list[ChainHead]:
        """The newest entry of every chain."""
        ...

    def chain_entries(
        self,
        chain: str,
        *,
        after_id: int = 0,
        limit: int = 5000,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEntry]:
        """Entries of ``chain`` ('' = the installation) with ids above ``after_id``, in id order,
        within [since, until) when given."""
        ...

    def add_checkpoint(self, checkpoint: ChainCheckpoint) -> None: ...

    def checkpoints(
        self, chain: str, *, from_seq: int | None = None, to_seq: int | None = None
    ) -> list[ChainCheckpoint]:
        """Checkpoints of ``chain`` in seq order, within [from_seq, to_seq] when given."""
        ...

    def last_checkpoint(self, chain: str) -> ChainCheckpoint | None: ...


class EventRepository(Protocol):
    def append(self, event: InvalidationEvent) -> None:
        """Append an event inside the current transaction; the store assigns its ``seq``."""
        ...

    def since(self, seq: int, limit: int = 1000) -> list[InvalidationEvent]: ...
    def latest_seq(self) -> int: ...


class RuleRepository(Protocol):
    def add(self, rule: RevocationRule) -> None: ...
    def find(self, org_id: str | None = None) -> list[RevocationRule]: ...

    def delete(self, rule_id: str) -> bool:
        """Remove one rule; False if there is none with that id."""
        ...

    def live_tokens(
        self,
        org_id: str,
        *,
        issued_before: datetime,
        now: datetime,
        issued_after: datetime | None = None,
        kinds: Sequence[str] | None = None,
        user_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[TokenRecord]:
        """Unrevoked, unexpired tokens of ``org_id`` issued in [``issued_after``,
        ``issued_before``), of ``kinds`` and ``user_ids`` when given: a rule's candidates
        (at most ``limit`` of them, when given)."""
        ...


class WatermarkRepository(Protocol):
    def raise_to(
        self, subject_type: str, subject_ids: Sequence[str], kinds: Sequence[str], at: datetime
    ) -> None:
        """Move each (subject, kind) watermark up to ``at`` (never down), set-based."""
        ...

    def for_subject(self, subject_type: str, subject_id: str) -> dict[str, datetime]:
        """kind -> instant for one subject."""
        ...

    def for_type(self, subject_type: str) -> dict[str, dict[str, datetime]]:
        """subject id -> kind -> instant, for every subject of a type (organizations, clients)."""
        ...


@dataclass(frozen=True, slots=True)
class BreakGlassRequest:
    """A pending or finished whole-organization revocation (two-person rule)."""

    id: str
    org_id: str
    requested_by: str | None
    requested_at: datetime
    expires_at: datetime
    status: str  # pending | executed | expired | cancelled
    approved_by: str | None = None
    executed_at: datetime | None = None
    reason: str | None = None


class BreakGlassRepository(Protocol):
    def add(self, request: BreakGlassRequest) -> None: ...
    def get(self, request_id: str) -> BreakGlassRequest | None: ...
    def update(self, request: BreakGlassRequest) -> None: ...
    def find(self, org_id: str) -> list[BreakGlassRequest]: ...

    def top_owners(self, org_id: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        """(user id, live tokens) of the organization, most tokens first."""
        ...

    def count_live(
        self, org_id: str, *, now: datetime, issued_before: datetime, org_marks: Mapping[str, datetime]
    ) -> dict[str, int]:
        """kind -> tokens of the organization that are really live at ``now``: unrevoked,
        unexpired, issued before ``issued_before``, not dead by ``org_marks`` (kind -> instant:
        the organization's watermarks, passed in so a report can use the values from before
        break-glass raised them) nor by their owner's user watermarks (per kind, and the
        Entra ``signInSessions`` / ``refreshTokens`` ones)."""
        ...

    def top_clients(self, org_id: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        """(client id, live tokens) of the organization, most tokens first."""
        ...


@dataclass(frozen=True, slots=True)
class BulkJob:
    """A resumable bulk operation (e.g. revoke the users of a CSV); its items are its rows."""

    id: str
    org_id: str
    type: str
    status: str  # creating (rows still being stored: never runs) | pending | running | completed
    kinds: tuple[str, ...]
    dry_run: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    total: int
    source_name: str | None = None


@dataclass(frozen=True, slots=True)
class BulkJobItem:
    """One input row of a bulk job and its result (status Pending | Success | Failed | Skipped)."""

    job_id: str
    line_no: int
    upn: str
    status: str
    error: str | None = None
    revoked_count: int = 0
    processed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class UpnMatch:
    """A user found by UPN (as stored), and whether it is a member of the organization asked
    about."""

    user_id: str
    is_member: bool
    upn: str


class BulkJobRepository(Protocol):
    def add(self, job: BulkJob, items: Sequence[BulkJobItem]) -> None:
        """Insert a job and the given items in one set-based write; Conflict if the id exists."""
        ...

    def add_items(self, items: Sequence[BulkJobItem]) -> None:
        """Insert more items of existing jobs in one set-based write."""
        ...

    def get(self, job_id: str) -> BulkJob | None: ...

    def claim_creation(self, job_id: str, at: datetime) -> int | None:
        """Lock a job that is still ``creating`` for the rest of this transaction (creators of
        one job take turns) and touch ``updated_at``; return the highest line number stored so
        far (0 for none), or None if there is no such job or it is no longer ``creating``."""
        ...

    def claim(self, job_id: str, at: datetime) -> BulkJob | None:
        """Lock the job for the rest of this transaction (runners of one job take turns), mark
        it running unless it is completed or still creating, touch ``updated_at``; None if
        there is no such job."""
        ...

    def set_status(self, job_id: str, status: str, at: datetime) -> None: ...

    def pending(self, job_id: str, limit: int) -> list[BulkJobItem]:
        """Up to ``limit`` Pending items in line order."""
        ...

    def finish_items(self, items: Sequence[BulkJobItem]) -> int:
        """Store the results of items (status, error, revoked_count, processed_at), only where
        they are still Pending; returns how many changed."""
        ...

    def items(self, job_id: str) -> list[BulkJobItem]:
        """Every item in line order."""
        ...

    def counts(self, job_id: str) -> dict[str, int]:
        """item status -> number of items."""
        ...

    def match_upns(self, org_id: str, upn_keys: Sequence[str]) -> dict[str, UpnMatch]:
        """Normalized UPN -> user and membership in ``org_id``, for many UPNs in one query."""
        ...

    def live_tokens_per_user(
        self,
        user_ids: Sequence[str],
        kinds: Sequence[str],
        issued_before: datetime,
        now: datetime,
        *,
        org_id: str,
    ) -> dict[str, int]:
        """user id -> live tokens *issued in* ``org_id`` of ``kinds`` issued before
        ``issued_before``: unrevoked, unexpired and not cut by a watermark of their owner or
        organization (users without any are left out), in one query."""
        ...


class UnitOfWork(Protocol):
    """One transaction over every repository. Leaving the block without commit() rolls back."""

    orgs: OrgRepository
    users: UserRepository
    tokens: TokenRepository
    policies: PolicyRepository
    audit: AuditRepository
    events: EventRepository
    rules: RuleRepository
    watermarks: WatermarkRepository
    break_glass: BreakGlassRepository
    bulk_jobs: BulkJobRepository
    signals: SignalRepository
    invitations: InvitationRepository
    oauth: OAuthRepository
    reports: ReportRepository  # issue 12: weekly report, policy violations
    # issue 12: lifecycle jobs
    jobs: JobRepository
    outbox: OutboxRepository
    webhooks: WebhookRepository
    lifecycle: LifecycleRepository
    # issue 13: rotation
    managed: ManagedCredentialRepository
    rotations: RotationRepository
    usage: UsageRepository  # issue 14: usage records
    alerts: AlertRepository  # issue 14: security alerts, detection policies
    mfa: MfaRepository  # issue 16: second factors, recovery codes, step-ups
    console: ConsoleRepository  # issue 16: the console's paged queries
    scim: ScimRepository  # issue 17: SCIM provisioning

    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class Database(Protocol):
    """Schema management and health for a storage backend."""

    url_for_display: str

    def __call__(self) -> UnitOfWork:
        """A read-write unit of work."""
        ...

    def reader(self) -> UnitOfWork:
        """A read-only unit of work (never blocks writers)."""
        ...

    def upgrade(self) -> None:
        """Bring the schema to the newest version (idempotent)."""
        ...

    def is_initialized(self) -> bool:
        """True once ``init`` has created the first organization."""
        ...

    def ping(self) -> bool: ...
    def dispose(self) -> None: ...

    def on_commit(self, hook: CommitHook) -> None:
        """Call ``hook(events)`` after every read-write unit of work that committed invalidation
        events (those events, sequence numbers assigned): one hook (the composition root's)
        announces them to the other nodes and to this node's validator."""
        ...

    def on_intent(self, hook: IntentHook) -> None:
        """Call ``hook`` as soon as a revocation event is appended, before its transaction
        commits, and again (withdrawn) if it never does (see :data:`IntentHook`)."""
        ...


CommitHook = Callable[[Sequence[InvalidationEvent]], object]
# ``hook(events, withdrawn)``: called when an event of INTENT_TYPES is appended (``withdrawn``
# False), and again with True if its transaction ends without committing it.
IntentHook = Callable[[Sequence[InvalidationEvent], bool], object]


def run_intent_hooks(
    hooks: Sequence[IntentHook], events: Sequence[InvalidationEvent], *, withdrawn: bool
) -> None:
    """Run intent hooks; a failing one is logged, never raised into the transaction."""
    for hook in hooks:
        try:
            hook(events, withdrawn)
        except Exception:
            log.exception("intent hook %r failed", hook)


def run_hooks(hooks: Sequence[CommitHook], events: Sequence[InvalidationEvent]) -> None:
    """Run commit hooks in order (what every adapter's unit of work does after its commit)."""
    for hook in hooks:
        hook(events)
