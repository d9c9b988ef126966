"""Lifecycle tables in memory (issue 12): jobs, outbox, webhooks, notices, watchers, enforcements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from tokenwarden.adapters.memory._base import LifecycleTables, _Repo, _set
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.principals import User
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.lifecycle import JobLease, JobRun, OutboxMessage, PolicyEnforcement, Webhook


class _LifecycleRepo(_Repo):
    @property
    def _t(self) -> LifecycleTables:
        return self.s.lifecycle_tables


class MemoryJobRepository(_LifecycleRepo):
    def try_lease(self, name: str, holder: str, run_id: str, now: datetime, until: datetime) -> bool:
        cur = self._t.leases.get(name) or JobLease(name, None, None, None, None)
        if cur.holder is not None and cur.lease_until is not None and cur.lease_until >= now:
            return False
        _set(self._t.leases, name, replace(cur, holder=holder, lease_until=until, run_id=run_id), self.j)
        return True

    def renew(self, name: str, holder: str, until: datetime) -> bool:
        cur = self._t.leases.get(name)
        if cur is None or cur.holder != holder:
            return False
        _set(self._t.leases, name, replace(cur, lease_until=until), self.j)
        return True

    def release(self, name: str, holder: str, *, slot: datetime | None = None) -> None:
        cur = self._t.leases.get(name)
        if cur is None or cur.holder != holder:
            return
        done = replace(cur, holder=None, lease_until=None, run_id=None)
        _set(self._t.leases, name, done if slot is None else replace(done, last_slot=slot), self.j)

    def lease(self, name: str) -> JobLease | None:
        return self._t.leases.get(name)

    def start_run(self, run: JobRun) -> None:
        if run.id in self._t.runs:
            raise Conflict(f"job run {run.id} exists")
        _set(self._t.runs, run.id, run, self.j)

    def finish_run(
        self, run_id: str, *, status: str, at: datetime, counts: dict[str, Any], error: str | None
    ) -> None:
        cur = self._t.runs.get(run_id)
        if cur is not None:
            _set(
                self._t.runs,
                run_id,
                replace(cur, status=status, finished_at=at, counts=counts, error=error),
                self.j,
            )

    def runs(self, name: str | None = None, limit: int = 20) -> list[JobRun]:
        found = [r for r in self._t.runs.values() if name is None or r.name == name]
        found.sort(key=lambda r: (r.started_at, r.id), reverse=True)
        return found[:limit]

    def interrupt(self, name: str, except_run: str, at: datetime) -> int:
        stale = [
            r
            for r in self._t.runs.values()
            if r.name == name and r.status == "running" and r.id != except_run
        ]
        for r in stale:
            _set(
                self._t.runs,
                r.id,
                replace(r, status="interrupted", finished_at=at, error="its node stopped before it finished"),
                self.j,
            )
        return len(stale)


def _due(m: OutboxMessage, now: datetime) -> bool:
    if m.status == "pending":
        return m.next_attempt_at <= now
    return m.status == "sending" and m.claimed_until is not None and m.claimed_until < now


class MemoryOutboxRepository(_LifecycleRepo):
    def enqueue(self, messages: Sequence[OutboxMessage]) -> int:
        added = 0
        for m in messages:
            if m.dedupe_key in self._t.outbox_keys:
                continue
            self._t.next_outbox_id[0] += 1
            mid = self._t.next_outbox_id[0]
            _set(self._t.outbox, mid, replace(m, id=mid), self.j)
            _set(self._t.outbox_keys, m.dedupe_key, mid, self.j)
            added += 1
        return added

    def claim_due(
        self,
        now: datetime,
        until: datetime,
        claimer: str,
        limit: int,
        channels: Sequence[str] | None = None,
    ) -> list[OutboxMessage]:
        wanted = [
            m for m in self._t.outbox.values() if _due(m, now) and (channels is None or m.channel in channels)
        ]
        due = sorted(wanted, key=lambda m: m.id or 0)[:limit]
        claimed = [replace(m, status="sending", claimed_by=claimer, claimed_until=until) for m in due]
        for m in claimed:
            _set(self._t.outbox, m.id or 0, m, self.j)
        return claimed

    def _held(self, message_id: int, claimer: str) -> OutboxMessage | None:
        m = self._t.outbox.get(message_id)
        return m if m is not None and m.status == "sending" and m.claimed_by == claimer else None

    def mark_sent(self, message_id: int, claimer: str, at: datetime) -> bool:
        m = self._held(message_id, claimer)
        if m is None:
            return False
        sent = replace(
            m, status="sent", sent_at=at, attempts=m.attempts + 1, claimed_until=None, last_error=None
        )
        _set(self._t.outbox, message_id, sent, self.j)
        return True

    def mark_failed(
        self, message_id: int, claimer: str, error: str, *, retry_at: datetime | None, at: datetime
    ) -> bool:
        m = self._held(message_id, claimer)
        if m is None:
            return False
        failed = replace(
            m,
            attempts=m.attempts + 1,
            last_error=error[:512],
            claimed_until=None,
            status="dead" if retry_at is None else "pending",
            next_attempt_at=retry_at or m.next_attempt_at,
        )
        _set(self._t.outbox, message_id, failed, self.j)
        return True

    def get(self, message_id: int) -> OutboxMessage | None:
        return self._t.outbox.get(message_id)

    def find(
        self,
        *,
        org_id: str | None = None,
        status: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[OutboxMessage]:
        found = [
            m
            for m in self._t.outbox.values()
            if (org_id is None or m.org_id == org_id)
            and (status is None or m.status == status)
            and (run_id is None or m.run_id == run_id)
        ]
        return sorted(found, key=lambda m: m.id or 0, reverse=True)[:limit]

    def recent_errors(self, *, org_id: str | None = None, limit: int = 5) -> list[str]:
        found: list[str] = []
        for m in self._t.outbox.values():
            ok = m.status in ("pending", "dead") and m.last_error and (org_id is None or m.org_id == org_id)
            if ok and m.last_error not in found:
                found.append(m.last_error or "")
        return found[:limit]

    def replay(self, message_id: int, at: datetime) -> bool:
        m = self._t.outbox.get(message_id)
        if m is None or m.status != "dead":
            return False
        again = replace(
            m, status="pending", attempts=0, next_attempt_at=at, claimed_by=None, claimed_until=None
        )
        _set(self._t.outbox, message_id, again, self.j)
        return True

    def counts(
        self, *, org_id: str | None = None, run_id: str | None = None, channel: str | None = None
    ) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self._t.outbox.values():
            if (
                (org_id is None or m.org_id == org_id)
                and (run_id is None or m.run_id == run_id)
                and (channel is None or m.channel == channel)
            ):
                out[m.status] = out.get(m.status, 0) + 1
        return out


class MemoryWebhookRepository(_LifecycleRepo):
    def add(self, hook: Webhook) -> None:
        if hook.id in self._t.webhooks:
            raise Conflict(f"webhook {hook.id} exists")
        _set(self._t.webhooks, hook.id, hook, self.j)

    def get(self, hook_id: str) -> Webhook | None:
        return self._t.webhooks.get(hook_id)

    def find(self, org_id: str) -> list[Webhook]:
        return sorted(
            (h for h in self._t.webhooks.values() if h.org_id == org_id), key=lambda h: h.created_at
        )

    def update(self, hook: Webhook) -> None:
        if hook.id in self._t.webhooks:
            _set(self._t.webhooks, hook.id, hook, self.j)

    def delete(self, hook_id: str) -> bool:
        if hook_id not in self._t.webhooks:
            return False
        old = self._t.webhooks.pop(hook_id)
        self.j.append(lambda: self._t.webhooks.__setitem__(hook_id, old))
        return True


class MemoryLifecycleRepository(_LifecycleRepo):
    def claim_notices(
        self,
        keys: Sequence[tuple[str, str]],
        at: datetime,
        marks: Mapping[tuple[str, str], tuple[datetime, int]] | None = None,
    ) -> set[tuple[str, str]]:
        won: set[tuple[str, str]] = set()
        for key in dict.fromkeys(keys):
            if key not in self._t.notices:
                _set(self._t.notices, key, at, self.j)
                if marks and key in marks:
                    _set(self._t.notice_marks, key, marks[key], self.j)
                won.add(key)
        return won

    def due_expiry(
        self,
        kinds: Sequence[TokenKind],
        *,
        now: datetime,
        thresholds: Sequence[int],
        org_ids: Sequence[str] | None = None,
        exclude_org_ids: Sequence[str] = (),
        expired_since: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 1000,
    ) -> list[TokenRecord]:
        told: dict[tuple[str, datetime], set[int]] = {}
        for (tid, _notice), (valid_to, threshold) in self._t.notice_marks.items():
            told.setdefault((tid, valid_to), set()).add(threshold)
        days = sorted(set(thresholds))

        def due(tok: TokenRecord) -> bool:
            marks = told.get((tok.authorization_id, tok.valid_to), set())
            if expired_since is not None:
                return expired_since <= tok.valid_to <= now and 0 not in marks
            if not days or not now < tok.valid_to <= now + timedelta(days=days[-1]):
                return False
            current = next(d for d in days if tok.valid_to <= now + timedelta(days=d))
            return not any(0 < m <= current for m in marks)

        found = [
            tok
            for tok in self.s.tokens.values()
            if tok.kind in kinds
            and tok.revoked_at is None
            and (org_ids is None or tok.org_id in org_ids)
            and tok.org_id not in exclude_org_ids
            and (after is None or (tok.valid_to, tok.authorization_id) > after)
            and due(tok)
        ]
        return sorted(found, key=lambda tok: (tok.valid_to, tok.authorization_id))[:limit]

    def notices_of(self, token_ids: Sequence[str]) -> dict[str, dict[str, datetime]]:
        wanted = set(token_ids)
        out: dict[str, dict[str, datetime]] = {}
        for (tid, notice), at in self._t.notices.items():
            if tid in wanted:
                out.setdefault(tid, {})[notice] = at
        return out

    def expiring(
        self,
        kinds: Sequence[TokenKind],
        *,
        start: datetime,
        end: datetime,
        after: tuple[datetime, str] | None = None,
        limit: int = 1000,
    ) -> list[TokenRecord]:
        found = [
            tok
            for tok in self.s.tokens.values()
            if tok.kind in kinds
            and tok.revoked_at is None
            and start <= tok.valid_to < end
            and (after is None or (tok.valid_to, tok.authorization_id) > after)
        ]
        return sorted(found, key=lambda tok: (tok.valid_to, tok.authorization_id))[:limit]

    def expiring_ids(
        self,
        kinds: Sequence[TokenKind],
        *,
        start: datetime,
        end: datetime,
        after: tuple[datetime, str] | None = None,
        limit: int = 1000,
    ) -> list[tuple[datetime, str, str]]:
        found = self.expiring(kinds, start=start, end=end, after=after, limit=limit)
        return [(tok.valid_to, tok.authorization_id, tok.org_id) for tok in found]

    def owners(self, user_ids: Sequence[str]) -> dict[str, User]:
        return {u: self.s.users[u] for u in dict.fromkeys(user_ids) if u in self.s.users}

    def records(self, token_ids: Sequence[str]) -> list[TokenRecord]:
        return [self.s.tokens[i] for i in dict.fromkeys(token_ids) if i in self.s.tokens]

    def idle(
        self,
        org_id: str,
        kinds: Sequence[TokenKind],
        *,
        unused_since: datetime,
        now: datetime,
        after: str | None = None,
        limit: int = 1000,
    ) -> list[TokenRecord]:
        found = [
            tok
            for tok in self.s.tokens.values()
            if tok.org_id == org_id
            and tok.kind in kinds
            and tok.revoked_at is None
            and tok.valid_to > now
            and (tok.last_used_at or tok.created_at) < unused_since
            and (after is None or tok.authorization_id > after)
        ]
        return sorted(found, key=lambda tok: tok.authorization_id)[:limit]

    def add_watcher(self, token_id: str, address: str, added_by: str | None, at: datetime) -> bool:
        key = (token_id, address.lower())
        if key in self._t.watchers:
            return False
        _set(self._t.watchers, key, address, self.j)
        return True

    def remove_watcher(self, token_id: str, address: str) -> bool:
        key = (token_id, address.lower())
        if key not in self._t.watchers:
            return False
        old = self._t.watchers.pop(key)
        self.j.append(lambda: self._t.watchers.__setitem__(key, old))
        return True

    def watchers(self, token_ids: Sequence[str]) -> dict[str, list[str]]:
        wanted = set(token_ids)
        out: dict[str, list[str]] = {}
        for (tid, _key), address in sorted(self._t.watchers.items()):
            if tid in wanted:
                out.setdefault(tid, []).append(address)
        return out

    def watched_by(self, org_id: str, addresses: Sequence[str], now: datetime) -> list[tuple[str, str, str]]:
        keys = {a.lower() for a in addresses}
        found: list[tuple[str, str, str]] = []
        for (tid, key), address in sorted(self._t.watchers.items()):
            tok = self.s.tokens.get(tid)
            if (
                key in keys
                and tok is not None
                and tok.org_id == org_id
                and tok.kind is TokenKind.PAT
                and tok.revoked_at is None
                and tok.valid_to > now
            ):
                found.append((tid, tok.user_id, address))
        return found

    def add_enforcement(self, enforcement: PolicyEnforcement) -> None:
        if enforcement.id in self._t.enforcements:
            raise Conflict(f"enforcement {enforcement.id} exists")
        _set(self._t.enforcements, enforcement.id, enforcement, self.j)

    def enforcements(self, org_id: str | None = None, status: str | None = None) -> list[PolicyEnforcement]:
        found = [
            e
            for e in self._t.enforcements.values()
            if (org_id is None or e.org_id == org_id) and (status is None or e.status == status)
        ]
        return sorted(found, key=lambda e: (e.created_at, e.id))

    def update_enforcement(self, enforcement: PolicyEnforcement) -> None:
        if enforcement.id in self._t.enforcements:
            _set(self._t.enforcements, enforcement.id, enforcement, self.j)
