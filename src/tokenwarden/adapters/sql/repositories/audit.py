"""The append-only, hash-chained audit log.

Entries appended in a transaction are chained and written when it commits (:meth:`flush`,
called by the unit of work just before COMMIT, so a failure to write them aborts the change
they describe). Each chain's head row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL;
SQLite writers are serialized already), heads in sorted order so two transactions touching the
same organizations cannot deadlock; entries of one chain therefore get consecutive seqs in
commit order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tokenwarden.adapters.sql import tables as t
from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.audit_chain import GENESIS, ChainCheckpoint, ChainHead, chain_of, seal
from tokenwarden.ports.repositories import AuditQuery


def _entry(r: Row[Any]) -> AuditEntry:
    return AuditEntry(
        id=r.id,
        at=r.at,
        event_type=r.event_type,
        org_id=r.org_id,
        actor_id=r.actor_id,
        actor_upn=r.actor_upn,
        target_type=r.target_type,
        target_id=r.target_id,
        ip=r.ip,
        details=dict(r.details or {}),
        user_agent=r.user_agent,
        chain_seq=r.chain_seq,
        prev_hash=r.prev_hash,
        hash=r.entry_hash,
    )


def _checkpoint(r: Row[Any]) -> ChainCheckpoint:
    return ChainCheckpoint(
        id=r.id, chain=r.chain, seq=r.seq, hash=r.entry_hash, at=r.at, kid=r.kid, signature=r.signature
    )


class SqlAuditRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn
        self._pending: list[AuditEntry] = []

    def append(self, entry: AuditEntry) -> None:
        self._pending.append(entry)

    def flush(self) -> None:
        """Chain and write the entries appended in this transaction."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        # Lock every chain's head first, in sorted order (no deadlock between two transactions
        # touching the same organizations), then write in append order (ids follow it).
        heads = {chain: self._lock_head(chain) for chain in sorted({chain_of(e.org_id) for e in pending})}
        rows = []
        for entry in pending:
            chain = chain_of(entry.org_id)
            seq, prev = heads[chain]
            sealed = seal(entry, seq + 1, prev)
            heads[chain] = (seq + 1, sealed.hash or "")
            rows.append(_row(sealed))
        self._c.execute(insert(t.audit_log), rows)
        for chain, (seq, hash_) in heads.items():
            self._c.execute(
                update(t.audit_chain_heads)
                .where(t.audit_chain_heads.c.chain == chain)
                .values(seq=seq, entry_hash=hash_)
            )

    def _lock_head(self, chain: str) -> tuple[int, str]:
        h = t.audit_chain_heads.c
        stmt = select(h.seq, h.entry_hash).where(h.chain == chain).with_for_update()
        found = self._c.execute(stmt).first()
        if found is None:
            dialect = postgresql if self._c.dialect.name == "postgresql" else sqlite
            self._c.execute(
                dialect.insert(t.audit_chain_heads)
                .values(chain=chain, seq=0, entry_hash=GENESIS)
                .on_conflict_do_nothing(index_elements=["chain"])
            )
            found = self._c.execute(stmt).one()
        return int(found.seq), str(found.entry_hash)

    def query(self, query: AuditQuery) -> list[AuditEntry]:
        self.flush()
        c = t.audit_log.c
        stmt = select(t.audit_log).where(c.id > query.after_id)
        if query.org_id is not None:
            stmt = stmt.where(c.org_id == query.org_id)
        if query.since is not None:
            stmt = stmt.where(c.at >= query.since)
        if query.until is not None:
            stmt = stmt.where(c.at < query.until)
        if query.actor_id is not None:
            stmt = stmt.where(c.actor_id == query.actor_id)
        if query.actor_upn is not None:
            stmt = stmt.where(func.lower(c.actor_upn) == query.actor_upn.lower())
        if query.target_id is not None:
            stmt = stmt.where(c.target_id == query.target_id)
        if query.event_types:
            stmt = stmt.where(c.event_type.in_(query.event_types))
        if query.before_id is not None:
            stmt = stmt.where(c.id < query.before_id)
        order = c.id.desc() if query.newest_first else c.id
        return [_entry(r) for r in self._c.execute(stmt.order_by(order).limit(query.limit))]

    # ------------------------------------------------------------------ the chain
    def heads(self) -> list[ChainHead]:
        self.flush()
        h = t.audit_chain_heads.c
        rows = self._c.execute(select(t.audit_chain_heads).order_by(h.chain))
        return [ChainHead(chain=r.chain, seq=r.seq, hash=r.entry_hash) for r in rows]

    def chain_entries(
        self,
        chain: str,
        *,
        after_id: int = 0,
        limit: int = 5000,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEntry]:
        self.flush()
        c = t.audit_log.c
        where = c.org_id.is_(None) if chain == "" else c.org_id == chain
        stmt = select(t.audit_log).where(where, c.id > after_id)
        if since is not None:
            stmt = stmt.where(c.at >= since)
        if until is not None:
            stmt = stmt.where(c.at < until)
        stmt = stmt.order_by(c.id).limit(limit)
        return [_entry(r) for r in self._c.execute(stmt)]

    def add_checkpoint(self, checkpoint: ChainCheckpoint) -> None:
        self._c.execute(
            insert(t.audit_checkpoints).values(
                chain=checkpoint.chain,
                seq=checkpoint.seq,
                entry_hash=checkpoint.hash,
                at=checkpoint.at,
                kid=checkpoint.kid,
                signature=checkpoint.signature,
            )
        )

    def checkpoints(
        self, chain: str, *, from_seq: int | None = None, to_seq: int | None = None
    ) -> list[ChainCheckpoint]:
        c = t.audit_checkpoints.c
        stmt = select(t.audit_checkpoints).where(c.chain == chain)
        if from_seq is not None:
            stmt = stmt.where(c.seq >= from_seq)
        if to_seq is not None:
            stmt = stmt.where(c.seq <= to_seq)
        return [_checkpoint(r) for r in self._c.execute(stmt.order_by(c.seq, c.id))]

    def last_checkpoint(self, chain: str) -> ChainCheckpoint | None:
        c = t.audit_checkpoints.c
        row = self._c.execute(
            select(t.audit_checkpoints).where(c.chain == chain).order_by(c.seq.desc(), c.id.desc()).limit(1)
        ).first()
        return _checkpoint(row) if row is not None else None


def _row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "at": entry.at,
        "event_type": entry.event_type,
        "org_id": entry.org_id,
        "actor_id": entry.actor_id,
        "actor_upn": entry.actor_upn,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "ip": entry.ip,
        "details": entry.details,
        "user_agent": entry.user_agent,
        "chain_seq": entry.chain_seq,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.hash,
    }
