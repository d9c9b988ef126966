"""Lifecycle tables (issue 12): job leases and runs, the notification outbox, webhooks, token
notices and watchers, policy enforcements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, delete, exists, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import ColumnElement

from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.repositories._rows import _insert_unique, _token, _user
from tokenwarden.domain.principals import User
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.lifecycle import JobLease, JobRun, OutboxMessage, PolicyEnforcement, Webhook

_CHUNK = 500  # rows per statement (SQLite's bound-parameter limit leaves room for ~30 columns)


def _upsert(conn: Connection) -> Any:
    """The dialect's INSERT that knows ON CONFLICT (PostgreSQL and SQLite spell it alike)."""
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def _insert_ignoring_conflicts(
    conn: Connection, table: Any, rows: list[dict[str, Any]], key: list[str]
) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; the number of rows inserted (counted by RETURNING:
    the drivers' rowcount is not reliable for a multi-row insert that skipped some)."""
    return len(_insert_returning(conn, table, rows, key, [table.c[key[0]]]))


def _insert_returning(
    conn: Connection, table: Any, rows: list[dict[str, Any]], key: list[str], returning: list[Any]
) -> list[Any]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING, as one executemany: SQLAlchemy batches it into
    cached multi-row statements ("insertmanyvalues"), so 10,000 rows cost a few round trips
    and no per-call statement compilation. Returns the rows actually inserted."""
    if not rows:
        return []
    stmt = _upsert(conn)(table).on_conflict_do_nothing(index_elements=key).returning(*returning)
    if len(rows) == 1:
        return list(conn.execute(stmt.values(rows[0])).all())
    return list(conn.execute(stmt, rows).all())


# ---------------------------------------------------------------- jobs
def _run(row: Row[Any]) -> JobRun:
    return JobRun(
        id=row.id,
        name=row.name,
        trigger=row.trigger,
        node=row.node,
        started_at=row.started_at,
        status=row.status,
        finished_at=row.finished_at,
        counts=dict(row.counts or {}),
        error=row.error,
        slot=row.slot,
        org_id=row.org_id,
    )


class SqlJobRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def try_lease(self, name: str, holder: str, run_id: str, now: datetime, until: datetime) -> bool:
        s = t.job_state.c
        _insert_ignoring_conflicts(self._c, t.job_state, [{"name": name}], ["name"])
        taken = self._c.execute(
            update(t.job_state)
            .where(s.name == name, or_(s.holder.is_(None), s.lease_until.is_(None), s.lease_until < now))
            .values(holder=holder, lease_until=until, run_id=run_id)
        ).rowcount
        return bool(taken)

    def renew(self, name: str, holder: str, until: datetime) -> bool:
        s = t.job_state.c
        return bool(
            self._c.execute(
                update(t.job_state).where(s.name == name, s.holder == holder).values(lease_until=until)
            ).rowcount
        )

    def release(self, name: str, holder: str, *, slot: datetime | None = None) -> None:
        s = t.job_state.c
        values: dict[str, Any] = {"holder": None, "lease_until": None, "run_id": None}
        if slot is not None:
            values["last_slot"] = slot
        self._c.execute(update(t.job_state).where(s.name == name, s.holder == holder).values(**values))

    def lease(self, name: str) -> JobLease | None:
        row = self._c.execute(select(t.job_state).where(t.job_state.c.name == name)).first()
        if row is None:
            return None
        return JobLease(row.name, row.holder, row.lease_until, row.run_id, row.last_slot)

    def start_run(self, run: JobRun) -> None:
        _insert_unique(
            self._c,
            t.job_runs,
            {
                "id": run.id,
                "name": run.name,
                "trigger": run.trigger,
                "node": run.node,
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "status": run.status,
                "counts": run.counts,
                "error": run.error,
                "slot": run.slot,
                "org_id": run.org_id,
            },
            f"job run {run.id} exists",
        )

    def finish_run(
        self, run_id: str, *, status: str, at: datetime, counts: dict[str, Any], error: str | None
    ) -> None:
        self._c.execute(
            update(t.job_runs)
            .where(t.job_runs.c.id == run_id)
            .values(status=status, finished_at=at, counts=counts, error=error)
        )

    def runs(self, name: str | None = None, limit: int = 20) -> list[JobRun]:
        q = select(t.job_runs)
        if name is not None:
            q = q.where(t.job_runs.c.name == name)
        q = q.order_by(t.job_runs.c.started_at.desc(), t.job_runs.c.id.desc()).limit(limit)
        return [_run(r) for r in self._c.execute(q)]

    def interrupt(self, name: str, except_run: str, at: datetime) -> int:
        r = t.job_runs.c
        return int(
            self._c.execute(
                update(t.job_runs)
                .where(r.name == name, r.status == "running", r.id != except_run)
                .values(status="interrupted", finished_at=at, error="its node stopped before it finished")
            ).rowcount
        )


# ---------------------------------------------------------------- outbox
def _message(row: Row[Any]) -> OutboxMessage:
    return OutboxMessage(
        id=row.id,
        dedupe_key=row.dedupe_key,
        org_id=row.org_id,
        channel=row.channel,
        destination=row.destination,
        template=row.template,
        payload=dict(row.payload),
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        claimed_by=row.claimed_by,
        claimed_until=row.claimed_until,
        sent_at=row.sent_at,
        last_error=row.last_error,
        run_id=row.run_id,
    )


class SqlOutboxRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def enqueue(self, messages: Sequence[OutboxMessage]) -> int:
        rows = [
            {
                "dedupe_key": m.dedupe_key,
                "org_id": m.org_id,
                "channel": m.channel,
                "destination": m.destination,
                "template": m.template,
                "payload": m.payload,
                "status": m.status,
                "attempts": m.attempts,
                "created_at": m.created_at,
                "next_attempt_at": m.next_attempt_at,
                "run_id": m.run_id,
            }
            for m in messages
        ]
        return _insert_ignoring_conflicts(self._c, t.notification_outbox, rows, ["dedupe_key"])

    def claim_due(
        self,
        now: datetime,
        until: datetime,
        claimer: str,
        limit: int,
        channels: Sequence[str] | None = None,
    ) -> list[OutboxMessage]:
        o = t.notification_outbox.c
        due = or_(
            and_(o.status == "pending", o.next_attempt_at <= now),
            and_(o.status == "sending", o.claimed_until < now),
        )
        if channels is not None:
            due = and_(due, o.channel.in_(list(channels)))
        ids = [r[0] for r in self._c.execute(select(o.id).where(due).order_by(o.id).limit(limit))]
        if not ids:
            return []
        # compare-and-set: a racing claimer that got a row first makes our WHERE miss it
        self._c.execute(
            update(t.notification_outbox)
            .where(o.id.in_(ids), due)
            .values(status="sending", claimed_by=claimer, claimed_until=until)
        )
        rows = self._c.execute(
            select(t.notification_outbox).where(o.id.in_(ids), o.claimed_by == claimer, o.status == "sending")
        )
        return sorted((_message(r) for r in rows), key=lambda m: m.id or 0)

    def mark_sent(self, message_id: int, claimer: str, at: datetime) -> bool:
        o = t.notification_outbox.c
        return bool(
            self._c.execute(
                update(t.notification_outbox)
                .where(o.id == message_id, o.claimed_by == claimer, o.status == "sending")
                .values(
                    status="sent", sent_at=at, attempts=o.attempts + 1, claimed_until=None, last_error=None
                )
            ).rowcount
        )

    def mark_failed(
        self, message_id: int, claimer: str, error: str, *, retry_at: datetime | None, at: datetime
    ) -> bool:
        o = t.notification_outbox.c
        values: dict[str, Any] = {
            "attempts": o.attempts + 1,
            "last_error": error[:512],
            "claimed_until": None,
            "status": "dead" if retry_at is None else "pending",
        }
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        return bool(
            self._c.execute(
                update(t.notification_outbox)
                .where(o.id == message_id, o.claimed_by == claimer, o.status == "sending")
                .values(**values)
            ).rowcount
        )

    def get(self, message_id: int) -> OutboxMessage | None:
        row = self._c.execute(
            select(t.notification_outbox).where(t.notification_outbox.c.id == message_id)
        ).first()
        return _message(row) if row else None

    def find(
        self,
        *,
        org_id: str | None = None,
        status: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[OutboxMessage]:
        o = t.notification_outbox.c
        q = select(t.notification_outbox)
        if org_id is not None:
            q = q.where(o.org_id == org_id)
        if status is not None:
            q = q.where(o.status == status)
        if run_id is not None:
            q = q.where(o.run_id == run_id)
        return [_message(r) for r in self._c.execute(q.order_by(o.id.desc()).limit(limit))]

    def recent_errors(self, *, org_id: str | None = None, limit: int = 5) -> list[str]:
        o = t.notification_outbox.c
        q = select(o.last_error).where(o.status.in_(["pending", "dead"]), o.last_error.is_not(None))
        if org_id is not None:
            q = q.where(o.org_id == org_id)
        found: list[str] = []
        for (error,) in self._c.execute(q.limit(200)):
            if error not in found:
                found.append(error)
                if len(found) == limit:
                    break
        return found

    def replay(self, message_id: int, at: datetime) -> bool:
        o = t.notification_outbox.c
        return bool(
            self._c.execute(
                update(t.notification_outbox)
                .where(o.id == message_id, o.status == "dead")
                .values(status="pending", attempts=0, next_attempt_at=at, claimed_by=None, claimed_until=None)
            ).rowcount
        )

    def counts(
        self, *, org_id: str | None = None, run_id: str | None = None, channel: str | None = None
    ) -> dict[str, int]:
        o = t.notification_outbox.c
        q = select(o.status, func.count()).group_by(o.status)
        if org_id is not None:
            q = q.where(o.org_id == org_id)
        if run_id is not None:
            q = q.where(o.run_id == run_id)
        if channel is not None:
            q = q.where(o.channel == channel)
        return {status: int(n) for status, n in self._c.execute(q)}


# ---------------------------------------------------------------- webhooks
def _hook(row: Row[Any]) -> Webhook:
    return Webhook(
        id=row.id,
        org_id=row.org_id,
        url=row.url,
        secret=bytes(row.secret),
        events=tuple(row.events),
        created_at=row.created_at,
        created_by=row.created_by,
        description=row.description,
        disabled_at=row.disabled_at,
    )


def _hook_values(hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "org_id": hook.org_id,
        "url": hook.url,
        "secret": hook.secret,
        "events": list(hook.events),
        "created_at": hook.created_at,
        "created_by": hook.created_by,
        "description": hook.description,
        "disabled_at": hook.disabled_at,
    }


class SqlWebhookRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, hook: Webhook) -> None:
        _insert_unique(self._c, t.webhooks, _hook_values(hook), f"webhook {hook.id} exists")

    def get(self, hook_id: str) -> Webhook | None:
        row = self._c.execute(select(t.webhooks).where(t.webhooks.c.id == hook_id)).first()
        return _hook(row) if row else None

    def find(self, org_id: str) -> list[Webhook]:
        w = t.webhooks.c
        return [
            _hook(r)
            for r in self._c.execute(select(t.webhooks).where(w.org_id == org_id).order_by(w.created_at))
        ]

    def update(self, hook: Webhook) -> None:
        values = _hook_values(hook)
        del values["id"]
        self._c.execute(update(t.webhooks).where(t.webhooks.c.id == hook.id).values(**values))

    def delete(self, hook_id: str) -> bool:
        return bool(self._c.execute(delete(t.webhooks).where(t.webhooks.c.id == hook_id)).rowcount)


# ---------------------------------------------------------------- token lifecycle
def _enforcement(row: Row[Any]) -> PolicyEnforcement:
    return PolicyEnforcement(
        id=row.id,
        org_id=row.org_id,
        created_at=row.created_at,
        grace_until=row.grace_until,
        status=row.status,
        created_by=row.created_by,
        applied_at=row.applied_at,
        counts=dict(row.counts or {}),
    )


class SqlLifecycleRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def claim_notices(
        self,
        keys: Sequence[tuple[str, str]],
        at: datetime,
        marks: Mapping[tuple[str, str], tuple[datetime, int]] | None = None,
    ) -> set[tuple[str, str]]:
        marks = marks or {}
        rows = []
        for tid, notice in dict.fromkeys(keys):
            valid_to, threshold = marks.get((tid, notice), (None, None))
            rows.append(
                {"token_id": tid, "notice": notice, "at": at, "valid_to": valid_to, "threshold": threshold}
            )
        n = t.token_notices.c
        # RETURNING after DO NOTHING yields exactly the rows this statement inserted: a pair
        # another transaction recorded first (committed, or waited for) is not ours
        inserted = _insert_returning(
            self._c, t.token_notices, rows, ["token_id", "notice"], [n.token_id, n.notice]
        )
        won = {(r.token_id, r.notice) for r in inserted}
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
        c, n = t.tokens.c, t.token_notices.c
        same = and_(n.token_id == c.id, n.valid_to == c.valid_to)
        where: list[ColumnElement[bool]] = [c.kind.in_([k.value for k in kinds]), c.revoked_at.is_(None)]
        if expired_since is not None:
            where += [c.valid_to >= expired_since, c.valid_to <= now, ~exists().where(same, n.threshold == 0)]
        else:
            days = sorted(set(thresholds))
            if not days:
                return []
            current = case(*((c.valid_to <= now + timedelta(days=d), d) for d in days))
            where += [
                c.valid_to > now,
                c.valid_to <= now + timedelta(days=days[-1]),
                ~exists().where(same, n.threshold > 0, n.threshold <= current),
            ]
        if org_ids is not None:
            where.append(c.org_id.in_(list(org_ids)))
        if exclude_org_ids:
            where.append(c.org_id.not_in(list(exclude_org_ids)))
        if after is not None:
            where.append(or_(c.valid_to > after[0], and_(c.valid_to == after[0], c.id > after[1])))
        q = select(t.tokens).where(*where).order_by(c.valid_to, c.id).limit(limit)
        return [_token(r) for r in self._c.execute(q)]

    def notices_of(self, token_ids: Sequence[str]) -> dict[str, dict[str, datetime]]:
        n = t.token_notices.c
        out: dict[str, dict[str, datetime]] = {}
        ids = list(dict.fromkeys(token_ids))
        for start in range(0, len(ids), _CHUNK):
            for r in self._c.execute(
                select(t.token_notices).where(n.token_id.in_(ids[start : start + _CHUNK]))
            ):
                out.setdefault(r.token_id, {})[r.notice] = r.at
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
        c = t.tokens.c
        q = select(t.tokens).where(
            c.valid_to >= start,
            c.valid_to < end,
            c.revoked_at.is_(None),
            c.kind.in_([k.value for k in kinds]),
        )
        if after is not None:
            q = q.where(or_(c.valid_to > after[0], and_(c.valid_to == after[0], c.id > after[1])))
        q = q.order_by(c.valid_to, c.id).limit(limit)
        return [_token(r) for r in self._c.execute(q)]

    def expiring_ids(
        self,
        kinds: Sequence[TokenKind],
        *,
        start: datetime,
        end: datetime,
        after: tuple[datetime, str] | None = None,
        limit: int = 1000,
    ) -> list[tuple[datetime, str, str]]:
        c = t.tokens.c
        q = select(c.valid_to, c.id, c.org_id).where(
            c.valid_to >= start,
            c.valid_to < end,
            c.revoked_at.is_(None),
            c.kind.in_([k.value for k in kinds]),
        )
        if after is not None:
            q = q.where(or_(c.valid_to > after[0], and_(c.valid_to == after[0], c.id > after[1])))
        return [(r[0], r[1], r[2]) for r in self._c.execute(q.order_by(c.valid_to, c.id).limit(limit))]

    def owners(self, user_ids: Sequence[str]) -> dict[str, User]:
        ids = list(dict.fromkeys(user_ids))
        out: dict[str, User] = {}
        for start in range(0, len(ids), _CHUNK):
            for r in self._c.execute(select(t.users).where(t.users.c.id.in_(ids[start : start + _CHUNK]))):
                out[r.id] = _user(r)
        return out

    def records(self, token_ids: Sequence[str]) -> list[TokenRecord]:
        ids = list(dict.fromkeys(token_ids))
        out: list[TokenRecord] = []
        for start in range(0, len(ids), _CHUNK):
            out += [
                _token(r)
                for r in self._c.execute(
                    select(t.tokens).where(t.tokens.c.id.in_(ids[start : start + _CHUNK]))
                )
            ]
        return out

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
        c = t.tokens.c
        q = select(t.tokens).where(
            c.org_id == org_id,
            c.kind.in_([k.value for k in kinds]),
            c.revoked_at.is_(None),
            c.valid_to > now,
            func.coalesce(c.last_used_at, c.created_at) < unused_since,
        )
        if after is not None:
            q = q.where(c.id > after)
        return [_token(r) for r in self._c.execute(q.order_by(c.id).limit(limit))]

    def add_watcher(self, token_id: str, address: str, added_by: str | None, at: datetime) -> bool:
        row = {
            "token_id": token_id,
            "address_key": address.lower(),
            "address": address,
            "added_by": added_by,
            "added_at": at,
        }
        return bool(_insert_ignoring_conflicts(self._c, t.token_watchers, [row], ["token_id", "address_key"]))

    def remove_watcher(self, token_id: str, address: str) -> bool:
        w = t.token_watchers.c
        return bool(
            self._c.execute(
                delete(t.token_watchers).where(w.token_id == token_id, w.address_key == address.lower())
            ).rowcount
        )

    def watchers(self, token_ids: Sequence[str]) -> dict[str, list[str]]:
        w = t.token_watchers.c
        out: dict[str, list[str]] = {}
        ids = list(dict.fromkeys(token_ids))
        for start in range(0, len(ids), _CHUNK):
            q = select(w.token_id, w.address).where(w.token_id.in_(ids[start : start + _CHUNK]))
            for r in self._c.execute(q.order_by(w.token_id, w.address_key)):
                out.setdefault(r.token_id, []).append(r.address)
        return out

    def watched_by(self, org_id: str, addresses: Sequence[str], now: datetime) -> list[tuple[str, str, str]]:
        w, c = t.token_watchers.c, t.tokens.c
        keys = sorted({a.lower() for a in addresses})
        if not keys:
            return []
        q = (
            select(w.token_id, c.user_id, w.address)
            .join(t.tokens, c.id == w.token_id)
            .where(
                w.address_key.in_(keys),
                c.org_id == org_id,
                c.kind == TokenKind.PAT.value,
                c.revoked_at.is_(None),
                c.valid_to > now,
            )
            .order_by(w.token_id, w.address_key)
        )
        return [(r.token_id, r.user_id, r.address) for r in self._c.execute(q)]

    def add_enforcement(self, enforcement: PolicyEnforcement) -> None:
        self._c.execute(
            insert(t.policy_enforcements).values(
                id=enforcement.id,
                org_id=enforcement.org_id,
                created_by=enforcement.created_by,
                created_at=enforcement.created_at,
                grace_until=enforcement.grace_until,
                status=enforcement.status,
                applied_at=enforcement.applied_at,
                counts=enforcement.counts,
            )
        )

    def enforcements(self, org_id: str | None = None, status: str | None = None) -> list[PolicyEnforcement]:
        e = t.policy_enforcements.c
        q = select(t.policy_enforcements)
        if org_id is not None:
            q = q.where(e.org_id == org_id)
        if status is not None:
            q = q.where(e.status == status)
        return [_enforcement(r) for r in self._c.execute(q.order_by(e.created_at, e.id))]

    def update_enforcement(self, enforcement: PolicyEnforcement) -> None:
        self._c.execute(
            update(t.policy_enforcements)
            .where(t.policy_enforcements.c.id == enforcement.id)
            .values(status=enforcement.status, applied_at=enforcement.applied_at, counts=enforcement.counts)
        )
