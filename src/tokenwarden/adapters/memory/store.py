"""In-memory implementation of every storage port.

A unit of work holds the store's lock for its whole life and keeps an undo journal, so
leaving without commit() restores the previous state exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.clock import SystemClock
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.events import InvalidationEvent
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.principals import (
    Invitation,
    Membership,
    Organization,
    User,
    UserStatus,
    member_subject,
    normalize_upn,
)
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.domain.watermarks import SubjectType, effective_cutoffs, mark_names_for
from tokenwarden.ports.repositories import (
    AuditQuery,
    AuditRepository,
    BreakGlassRepository,
    BreakGlassRequest,
    BulkJob,
    BulkJobItem,
    BulkJobRepository,
    EventRepository,
    InvitationRepository,
    OrgRepository,
    PolicyRepository,
    RuleRepository,
    TokenRepository,
    UpnMatch,
    UserRepository,
    WatermarkRepository,
)
from tokenwarden.ports.signals import (
    ACKED,
    DELIVERED,
    FAILED,
    PENDING,
    Delivery,
    DueQuery,
    SecurityEvent,
    SignalRepository,
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


class MemoryOrgRepository(_Repo):
    def add(self, org: Organization) -> None:
        if org.id in self.s.orgs or self.by_name(org.name) is not None:
            raise Conflict(f"organization {org.name!r} exists")
        _set(self.s.orgs, org.id, org, self.j)

    def get(self, org_id: str) -> Organization | None:
        return self.s.orgs.get(org_id)

    def by_name(self, name: str) -> Organization | None:
        key = name.casefold()
        return next((o for o in self.s.orgs.values() if o.name.casefold() == key), None)

    def all(self) -> list[Organization]:
        return sorted(self.s.orgs.values(), key=lambda o: o.name.casefold())


class MemoryUserRepository(_Repo):
    def add(self, user: User) -> None:
        if user.id in self.s.users or self.by_upn(user.upn) is not None:
            raise Conflict(f"user {user.upn!r} exists")
        _set(self.s.users, user.id, user, self.j)

    def get(self, user_id: str) -> User | None:
        return self.s.users.get(user_id)

    def by_upn(self, upn: str) -> User | None:
        key = normalize_upn(upn)
        return next((u for u in self.s.users.values() if normalize_upn(u.upn) == key), None)

    def update(self, user: User) -> None:
        clash = self.by_upn(user.upn)
        if clash is not None and clash.id != user.id:
            raise Conflict(f"user {user.upn!r} exists")
        if user.id in self.s.users:
            _set(self.s.users, user.id, user, self.j)

    def find(self, org_id: str | None = None, status: UserStatus | None = None) -> list[User]:
        found = []
        for u in self.s.users.values():
            if org_id is None:
                if status is None or u.status is status:
                    found.append(u)
                continue
            m = self.s.memberships.get((org_id, u.id))
            if m is not None and (status is None or m.status is status):
                found.append(u)
        return sorted(found, key=lambda u: normalize_upn(u.upn))

    def set_membership(self, membership: Membership) -> None:
        _set(self.s.memberships, (membership.org_id, membership.user_id), membership, self.j)

    def remove_membership(self, org_id: str, user_id: str) -> bool:
        old = self.s.memberships.pop((org_id, user_id), None)
        if old is None:
            return False
        self.j.append(lambda: self.s.memberships.__setitem__((org_id, user_id), old))
        return True

    def membership(self, org_id: str, user_id: str) -> Membership | None:
        return self.s.memberships.get((org_id, user_id))

    def memberships_of(self, user_id: str) -> list[Membership]:
        return [m for (_, uid), m in self.s.memberships.items() if uid == user_id]

    def count(self) -> int:
        return len(self.s.users)

    def ids_at_risk(self, org_id: str, min_rank_levels: Sequence[str]) -> list[str]:
        return [
            u.id
            for u in self.find(org_id=org_id)
            if self.s.memberships[(org_id, u.id)].risk_level.value in min_rank_levels
        ]


class MemoryInvitationRepository(_Repo):
    def add(self, invitation: Invitation) -> None:
        if invitation.id in self.s.invitations:
            raise Conflict(f"invitation {invitation.id} exists")
        _set(self.s.invitations, invitation.id, invitation, self.j)

    def get(self, invitation_id: str) -> Invitation | None:
        return self.s.invitations.get(invitation_id)

    def update(self, invitation: Invitation) -> None:
        if invitation.id in self.s.invitations:
            _set(self.s.invitations, invitation.id, invitation, self.j)

    def find(self, *, org_id: str | None = None, user_id: str | None = None) -> list[Invitation]:
        found = [
            i
            for i in self.s.invitations.values()
            if (org_id is None or i.org_id == org_id) and (user_id is None or i.user_id == user_id)
        ]
        return sorted(found, key=lambda i: (i.created_at, i.id))


class MemoryTokenRepository(_Repo):
    def add(self, token: TokenRecord) -> None:
        if token.authorization_id in self.s.tokens or token.secret_hash in self.s.token_by_hash:
            raise Conflict("duplicate token")
        _set(self.s.tokens, token.authorization_id, token, self.j)
        _set(self.s.token_by_hash, token.secret_hash, token.authorization_id, self.j)

    def get(self, authorization_id: str) -> TokenRecord | None:
        return self.s.tokens.get(authorization_id)

    def by_hash(self, secret_hash: bytes) -> TokenRecord | None:
        auth_id = self.s.token_by_hash.get(secret_hash)
        return self.s.tokens.get(auth_id) if auth_id else None

    def update(self, token: TokenRecord) -> None:
        old = self.s.tokens.get(token.authorization_id)
        if old is None:
            return
        if old.secret_hash != token.secret_hash:
            del self.s.token_by_hash[old.secret_hash]
            self.j.append(lambda: self.s.token_by_hash.__setitem__(old.secret_hash, old.authorization_id))
            _set(self.s.token_by_hash, token.secret_hash, token.authorization_id, self.j)
        _set(self.s.tokens, token.authorization_id, token, self.j)

    def list_for_user(self, user_id: str, kind: TokenKind | None = None) -> list[TokenRecord]:
        found = [
            t for t in self.s.tokens.values() if t.user_id == user_id and (kind is None or t.kind is kind)
        ]
        return sorted(found, key=lambda t: (t.created_at, t.authorization_id))

    def count_live(
        self,
        *,
        user_ids: Sequence[str] | None = None,
        org_id: str | None = None,
        kinds: Sequence[str] | None = None,
        issued_before: datetime,
        now: datetime,
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.s.tokens.values():
            if (
                t.revoked_at is None
                and t.valid_to > now
                and t.valid_from < issued_before
                and (user_ids is None or t.user_id in user_ids)
                and (org_id is None or t.org_id == org_id)
                and (kinds is None or t.kind.value in kinds)
                and not _cut_by_watermark(self.s, t)
            ):
                counts[t.kind.value] = counts.get(t.kind.value, 0) + 1
        return counts

    def rehash(self, authorization_id: str, old_hash: bytes, new_hash: bytes, pepper_id: str) -> bool:
        current = self.s.tokens.get(authorization_id)
        if current is None or current.secret_hash != old_hash:
            return False
        self.update(replace(current, secret_hash=new_hash, pepper_id=pepper_id))
        return True

    def record_usage(self, uses: Sequence[tuple[bytes, datetime, str | None]]) -> None:
        for secret_hash, at, ip in uses:
            auth_id = self.s.token_by_hash.get(secret_hash)
            old = self.s.tokens.get(auth_id) if auth_id else None
            if old is not None and (old.last_used_at is None or old.last_used_at < at):
                _set(
                    self.s.tokens,
                    old.authorization_id,
                    replace(old, last_used_at=at, last_used_ip=ip),
                    self.j,
                )


class MemoryPolicyRepository(_Repo):
    def get(self, org_id: str) -> OrgPolicy | None:
        return self.s.policies.get(org_id)

    def save(self, policy: OrgPolicy) -> None:
        _set(self.s.policies, policy.org_id, policy, self.j)


class MemoryAuditRepository(_Repo):
    def append(self, entry: AuditEntry) -> None:
        self.s.audit.append(replace(entry, id=len(self.s.audit) + 1))
        self.j.append(lambda: self._pop(self.s.audit))

    def query(self, query: AuditQuery) -> list[AuditEntry]:
        found = [
            e
            for e in self.s.audit
            if (e.id or 0) > query.after_id
            and (query.org_id is None or e.org_id == query.org_id)
            and (query.since is None or e.at >= query.since)
            and (query.until is None or e.at < query.until)
            and (query.actor_id is None or e.actor_id == query.actor_id)
            and (query.target_id is None or e.target_id == query.target_id)
            and (not query.event_types or e.event_type in query.event_types)
            and (query.before_id is None or (e.id or 0) < query.before_id)
        ]
        if query.newest_first:
            found.reverse()
        return found[: query.limit]


class MemoryEventRepository(_Repo):
    def append(self, event: InvalidationEvent) -> None:
        self.s.events.append(replace(event, seq=len(self.s.events) + 1))
        self.j.append(lambda: self._pop(self.s.events))

    def since(self, seq: int, limit: int = 1000) -> list[InvalidationEvent]:
        return self.s.events[seq : seq + limit]

    def latest_seq(self) -> int:
        return len(self.s.events)


class MemoryRuleRepository(_Repo):
    def add(self, rule: RevocationRule) -> None:
        self.s.rules.append(rule)
        self.j.append(lambda: self._pop(self.s.rules))

    def find(self, org_id: str | None = None) -> list[RevocationRule]:
        return [r for r in self.s.rules if org_id is None or r.org_id == org_id]

    def delete(self, rule_id: str) -> bool:
        at = next((i for i, r in enumerate(self.s.rules) if r.id == rule_id), None)
        if at is None:
            return False
        rule = self.s.rules.pop(at)
        self.j.append(lambda: self.s.rules.insert(at, rule))
        return True

    def live_tokens(
        self,
        org_id: str,
        *,
        issued_before: datetime,
        now: datetime,
        issued_after: datetime | None = None,
        kinds: Sequence[str] | None = None,
        user_ids: Sequence[str] | None = None,
    ) -> list[TokenRecord]:
        return [
            t
            for t in self.s.tokens.values()
            if t.org_id == org_id
            and t.revoked_at is None
            and t.valid_to > now
            and t.valid_from < issued_before
            and (issued_after is None or t.valid_from >= issued_after)
            and (kinds is None or t.kind.value in kinds)
            and (user_ids is None or t.user_id in user_ids)
        ]


class MemoryWatermarkRepository(_Repo):
    def raise_to(
        self, subject_type: str, subject_ids: Sequence[str], kinds: Sequence[str], at: datetime
    ) -> None:
        for subject in subject_ids:
            for kind in kinds:
                key = (subject_type, subject, kind)
                current = self.s.watermarks.get(key)
                if current is None or current < at:
                    _set(self.s.watermarks, key, at, self.j)

    def for_subject(self, subject_type: str, subject_id: str) -> dict[str, datetime]:
        return {k: v for (st, s, k), v in self.s.watermarks.items() if st == subject_type and s == subject_id}

    def for_type(self, subject_type: str) -> dict[str, dict[str, datetime]]:
        result: dict[str, dict[str, datetime]] = {}
        for (st, s, k), v in self.s.watermarks.items():
            if st == subject_type:
                result.setdefault(s, {})[k] = v
        return result


class MemoryBreakGlassRepository(_Repo):
    def add(self, request: BreakGlassRequest) -> None:
        _set(self.s.break_glass, request.id, request, self.j)

    def get(self, request_id: str) -> BreakGlassRequest | None:
        return self.s.break_glass.get(request_id)

    def update(self, request: BreakGlassRequest) -> None:
        _set(self.s.break_glass, request.id, request, self.j)

    def find(self, org_id: str) -> list[BreakGlassRequest]:
        return sorted(
            (r for r in self.s.break_glass.values() if r.org_id == org_id), key=lambda r: r.requested_at
        )

    def top_owners(self, org_id: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        return self._top(org_id, now, limit, lambda t: t.user_id)

    def count_live(
        self, org_id: str, *, now: datetime, issued_before: datetime, org_marks: Mapping[str, datetime]
    ) -> dict[str, int]:
        marks: dict[str, dict[str, float]] = {}
        for (st, subject, kind), at in self.s.watermarks.items():
            if st == SubjectType.USER.value:
                key = subject
            elif st == SubjectType.MEMBER.value and subject.startswith(f"{org_id}:"):
                key = subject.split(":", 1)[1]
            else:
                continue
            mine = marks.setdefault(key, {})
            mine[kind] = max(at.timestamp(), mine.get(kind, float("-inf")))
        cutoffs = {user_id: effective_cutoffs(m) for user_id, m in marks.items()}
        counts: dict[str, int] = {}
        for t in self.s.tokens.values():
            if t.org_id != org_id or t.revoked_at is not None or t.valid_to <= now:
                continue
            if t.valid_from >= issued_before:
                continue
            mark = org_marks.get(t.kind.value)
            if mark is not None and t.valid_from < mark:
                continue
            cutoff = cutoffs.get(t.user_id, {}).get(t.kind)
            if cutoff is not None and t.valid_from.timestamp() < cutoff:
                continue
            counts[t.kind.value] = counts.get(t.kind.value, 0) + 1
        return counts

    def top_clients(self, org_id: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        return self._top(org_id, now, limit, lambda t: t.client_id)

    def _top(
        self, org_id: str, now: datetime, limit: int, key: Callable[[TokenRecord], str | None]
    ) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        for t in self.s.tokens.values():
            k = key(t)
            if t.org_id == org_id and t.revoked_at is None and t.valid_to > now and k is not None:
                counts[k] = counts.get(k, 0) + 1
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


class MemoryBulkJobRepository(_Repo):
    def add(self, job: BulkJob, items: Sequence[BulkJobItem]) -> None:
        if job.id in self.s.bulk_jobs:
            raise Conflict(f"bulk job {job.id} exists")
        _set(self.s.bulk_jobs, job.id, job, self.j)
        for item in items:
            _set(self.s.bulk_items, (item.job_id, item.line_no), item, self.j)

    def get(self, job_id: str) -> BulkJob | None:
        return self.s.bulk_jobs.get(job_id)

    def claim(self, job_id: str, at: datetime) -> BulkJob | None:
        job = self.s.bulk_jobs.get(job_id)
        if job is None:
            return None
        status = job.status if job.status == "completed" else "running"
        claimed = replace(job, status=status, updated_at=at)
        _set(self.s.bulk_jobs, job_id, claimed, self.j)
        return claimed

    def set_status(self, job_id: str, status: str, at: datetime) -> None:
        job = self.s.bulk_jobs.get(job_id)
        if job is not None:
            _set(self.s.bulk_jobs, job_id, replace(job, status=status, updated_at=at), self.j)

    def pending(self, job_id: str, limit: int) -> list[BulkJobItem]:
        return [i for i in self.items(job_id) if i.status == "Pending"][:limit]

    def finish_items(self, items: Sequence[BulkJobItem]) -> int:
        changed = 0
        for item in items:
            key = (item.job_id, item.line_no)
            current = self.s.bulk_items.get(key)
            if current is not None and current.status == "Pending":
                done = replace(
                    current,
                    status=item.status,
                    error=item.error,
                    revoked_count=item.revoked_count,
                    processed_at=item.processed_at,
                )
                _set(self.s.bulk_items, key, done, self.j)
                changed += 1
        return changed

    def items(self, job_id: str) -> list[BulkJobItem]:
        return sorted(
            (i for (jid, _), i in self.s.bulk_items.items() if jid == job_id), key=lambda i: i.line_no
        )

    def counts(self, job_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (jid, _), item in self.s.bulk_items.items():
            if jid == job_id:
                counts[item.status] = counts.get(item.status, 0) + 1
        return counts

    def match_upns(self, org_id: str, upn_keys: Sequence[str]) -> dict[str, UpnMatch]:
        wanted = set(upn_keys)
        return {
            normalize_upn(u.upn): UpnMatch(u.id, (org_id, u.id) in self.s.memberships)
            for u in self.s.users.values()
            if normalize_upn(u.upn) in wanted
        }

    def live_tokens_per_user(
        self, user_ids: Sequence[str], kinds: Sequence[str], issued_before: datetime, now: datetime
    ) -> dict[str, int]:
        wanted, kind_set = set(user_ids), set(kinds)
        counts: dict[str, int] = {}
        for t in self.s.tokens.values():
            if (
                t.user_id in wanted
                and t.kind.value in kind_set
                and t.revoked_at is None
                and t.valid_to > now
                and t.valid_from < issued_before
                and not self._cut_by_watermark(t)
            ):
                counts[t.user_id] = counts.get(t.user_id, 0) + 1
        return counts


    def _cut_by_watermark(self, token: TokenRecord) -> bool:
        return _cut_by_watermark(self.s, token)


def _cut_by_watermark(store: MemoryStore, token: TokenRecord) -> bool:
    """A token already dead by a watermark of its owner (global or in its organization) or of
    its organization (not live)."""
    marks = store.watermarks
    member = member_subject(token.org_id, token.user_id)
    own = [marks.get((SubjectType.USER.value, token.user_id, n)) for n in mark_names_for(token.kind)]
    own += [marks.get((SubjectType.MEMBER.value, member, n)) for n in mark_names_for(token.kind)]
    own.append(marks.get((SubjectType.ORG.value, token.org_id, token.kind.value)))
    return any(m is not None and m > token.valid_from for m in own)


class MemoryUnitOfWork:
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

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._journal: list[Undo] = []

    def __enter__(self) -> Self:
        self._store.lock.acquire()
        self._journal = []
        s, j = self._store, self._journal
        self.orgs = MemoryOrgRepository(s, j)
        self.users = MemoryUserRepository(s, j)
        self.tokens = MemoryTokenRepository(s, j)
        self.policies = MemoryPolicyRepository(s, j)
        self.audit = MemoryAuditRepository(s, j)
        self.events = MemoryEventRepository(s, j)
        self.rules = MemoryRuleRepository(s, j)
        self.watermarks = MemoryWatermarkRepository(s, j)
        self.break_glass = MemoryBreakGlassRepository(s, j)
        self.bulk_jobs = MemoryBulkJobRepository(s, j)
        self.signals = MemorySignalRepository(s, j)
        self.invitations = MemoryInvitationRepository(s, j)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for undo in reversed(self._journal):
                undo()
        finally:
            self._journal.clear()
            self._store.lock.release()

    def commit(self) -> None:
        self._journal.clear()


class MemoryDatabase:
    """Factory of in-memory units of work over one shared store."""

    url_for_display = "memory://"

    def __init__(self) -> None:
        self.store = MemoryStore()
        self._clock = SystemClock()

    def __call__(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store)

    reader = __call__

    def upgrade(self) -> None:
        return None

    def is_initialized(self) -> bool:
        return bool(self.store.orgs)

    def ping(self) -> bool:
        return True

    def dispose(self) -> None:
        return None


@dataclass
class SignalTables:
    """The Shared Signals tables of the memory store."""

    events: list[SecurityEvent] = field(default_factory=list)
    keys: dict[str, SigningKey] = field(default_factory=dict)
    streams: dict[str, Stream] = field(default_factory=dict)
    subjects: dict[tuple[str, str], StreamSubject] = field(default_factory=dict)
    deliveries: dict[int, Delivery] = field(default_factory=dict)
    next_delivery_id: list[int] = field(default_factory=lambda: [0])


class MemorySignalRepository(_Repo):
    @property
    def _t(self) -> SignalTables:
        return self.s.signal_tables

    def append_event(self, event: SecurityEvent) -> None:
        self._t.events.append(replace(event, id=len(self._t.events) + 1))
        self.j.append(lambda: self._pop(self._t.events))

    def events_after(self, org_id: str, stream_id: str, after_id: int, limit: int) -> list[SecurityEvent]:
        found = [
            e
            for e in self._t.events[after_id:]
            if e.org_id == org_id and (e.stream_id is None or e.stream_id == stream_id)
        ]
        return found[:limit]

    def latest_event_id(self) -> int:
        return len(self._t.events)

    def add_key(self, key: SigningKey) -> None:
        if key.kid in self._t.keys:
            raise Conflict(f"signing key {key.kid} exists")
        _set(self._t.keys, key.kid, key, self.j)

    def signing_keys(self, alg: str | None = None) -> list[SigningKey]:
        found = [k for k in self._t.keys.values() if k.status == "active" and alg in (None, k.alg)]
        return sorted(found, key=lambda k: (k.created_at, k.kid))

    def add_stream(self, stream: Stream) -> None:
        if stream.stream_id in self._t.streams:
            raise Conflict(f"stream {stream.stream_id} exists")
        _set(self._t.streams, stream.stream_id, stream, self.j)

    def get_stream(self, stream_id: str) -> Stream | None:
        return self._t.streams.get(stream_id)

    def streams(self, org_id: str | None = None) -> list[Stream]:
        found = [s for s in self._t.streams.values() if org_id in (None, s.org_id)]
        return sorted(found, key=lambda s: (s.created_at, s.stream_id))

    def update_stream(self, stream: Stream) -> None:
        current = self._t.streams.get(stream.stream_id)
        if current is not None:
            _set(self._t.streams, stream.stream_id, replace(stream, cursor=current.cursor), self.j)

    def delete_stream(self, stream_id: str) -> bool:
        t = self._t
        for did in [i for i, d in t.deliveries.items() if d.stream_id == stream_id]:
            self._remove(t.deliveries, did)
        for key in [k for k in t.subjects if k[0] == stream_id]:
            self._remove(t.subjects, key)
        if stream_id not in t.streams:
            return False
        self._remove(t.streams, stream_id)
        return True

    def _remove(self, d: dict[Any, Any], key: Any) -> None:
        old = d.pop(key)
        self.j.append(lambda: d.__setitem__(key, old))

    def advance_cursor(self, stream_id: str, old: int, new: int) -> bool:
        current = self._t.streams.get(stream_id)
        if current is None or current.cursor != old:
            return False
        _set(self._t.streams, stream_id, replace(current, cursor=new), self.j)
        return True

    def set_subject(self, subject: StreamSubject) -> None:
        _set(self._t.subjects, (subject.stream_id, subject.subject_key), subject, self.j)

    def subjects(self, stream_id: str) -> list[StreamSubject]:
        return sorted(
            (s for (sid, _), s in self._t.subjects.items() if sid == stream_id), key=lambda s: s.subject_key
        )

    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        t = self._t
        taken = {(d.stream_id, d.event_id) for d in t.deliveries.values()}
        jtis = {d.jti for d in t.deliveries.values()}
        for d in deliveries:
            if (d.stream_id, d.event_id) in taken or d.jti in jtis:
                raise Conflict("deliveries exist already")
            taken.add((d.stream_id, d.event_id))
            jtis.add(d.jti)
        for d in deliveries:
            t.next_delivery_id[0] += 1
            _set(t.deliveries, t.next_delivery_id[0], replace(d, id=t.next_delivery_id[0]), self.j)

    def due(self, query: DueQuery) -> list[Delivery]:
        found = []
        for d in sorted(self._t.deliveries.values(), key=lambda d: d.id):
            stream = self._t.streams.get(d.stream_id)
            if (
                stream is not None
                and d.status in query.statuses
                and d.next_attempt_at is not None
                and d.next_attempt_at <= query.now
                and query.stream_id in (None, d.stream_id)
                and query.method in (None, stream.delivery_method)
                and (not query.enabled_only or stream.status == "enabled")
            ):
                found.append(d)
        return found[: query.limit]

    def claim(
        self,
        delivery_id: int,
        now: datetime,
        *,
        from_statuses: Sequence[str],
        status: str,
        next_attempt_at: datetime | None,
    ) -> bool:
        d = self._t.deliveries.get(delivery_id)
        if d is None or d.status not in from_statuses or d.next_attempt_at is None or d.next_attempt_at > now:
            return False
        claimed = replace(d, status=status, next_attempt_at=next_attempt_at, attempts=d.attempts + 1)
        _set(self._t.deliveries, delivery_id, claimed, self.j)
        return True

    def finish(
        self,
        delivery_id: int,
        *,
        status: str,
        next_attempt_at: datetime | None,
        last_error: str | None = None,
        delivered_at: datetime | None = None,
    ) -> None:
        d = self._t.deliveries.get(delivery_id)
        if d is not None:
            done = replace(
                d,
                status=status,
                next_attempt_at=next_attempt_at,
                last_error=last_error[:512] if last_error else None,
                delivered_at=delivered_at,
            )
            _set(self._t.deliveries, delivery_id, done, self.j)

    def _change(self, stream_id: str, jti: str, statuses: Sequence[str], **changes: Any) -> int:
        for did, d in self._t.deliveries.items():
            if d.stream_id == stream_id and d.jti == jti and d.status in statuses:
                _set(self._t.deliveries, did, replace(d, **changes), self.j)
                return 1
        return 0

    def ack(self, stream_id: str, jtis: Sequence[str], at: datetime) -> int:
        changed = 0
        for jti in dict.fromkeys(jtis):
            d = next((x for x in self._t.deliveries.values() if x.jti == jti), None)
            delivered_at = d.delivered_at if d is not None and d.delivered_at else at
            changed += self._change(
                stream_id,
                jti,
                (PENDING, DELIVERED),
                status=ACKED,
                next_attempt_at=None,
                delivered_at=delivered_at,
            )
        return changed

    def fail(self, stream_id: str, errors: Mapping[str, str], at: datetime) -> int:
        return sum(
            self._change(
                stream_id, jti, (PENDING, DELIVERED), status=FAILED, next_attempt_at=None, last_error=e[:512]
            )
            for jti, e in errors.items()
        )

    def drop_pending(self, stream_id: str, reason: str) -> int:
        changed = 0
        for did, d in list(self._t.deliveries.items()):
            if d.stream_id == stream_id and d.status == PENDING:
                failed = replace(d, status=FAILED, next_attempt_at=None, last_error=reason[:512])
                _set(self._t.deliveries, did, failed, self.j)
                changed += 1
        return changed

    def deliveries(self, stream_id: str) -> list[Delivery]:
        return sorted(
            (d for d in self._t.deliveries.values() if d.stream_id == stream_id), key=lambda d: d.id
        )
