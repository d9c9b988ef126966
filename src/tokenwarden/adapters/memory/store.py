"""In-memory implementation of every storage port.

A unit of work holds the store's lock for its whole life and keeps an undo journal, so
leaving without commit() restores the previous state exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.clock import SystemClock
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.events import InvalidationEvent
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.principals import Membership, Organization, User, UserStatus, normalize_upn
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.repositories import (
    AuditQuery,
    AuditRepository,
    BreakGlassRepository,
    BreakGlassRequest,
    EventRepository,
    OrgRepository,
    PolicyRepository,
    RuleRepository,
    TokenRepository,
    UserRepository,
    WatermarkRepository,
)

Undo = Callable[[], None]


@dataclass
class MemoryStore:
    """All tables as dictionaries, guarded by one re-entrant lock."""

    orgs: dict[str, Organization] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    memberships: dict[tuple[str, str], Membership] = field(default_factory=dict)
    tokens: dict[str, TokenRecord] = field(default_factory=dict)
    token_by_hash: dict[bytes, str] = field(default_factory=dict)
    policies: dict[str, OrgPolicy] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    events: list[InvalidationEvent] = field(default_factory=list)
    rules: list[RevocationRule] = field(default_factory=list)
    watermarks: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    break_glass: dict[str, BreakGlassRequest] = field(default_factory=dict)
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
        found = [
            u
            for u in self.s.users.values()
            if (org_id is None or (org_id, u.id) in self.s.memberships)
            and (status is None or u.status is status)
        ]
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
        return [u.id for u in self.find(org_id=org_id) if u.risk_level.value in min_rank_levels]


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
        ]
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
