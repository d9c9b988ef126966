"""The tamper-evident audit chain

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

* audit_log gains user_agent and its place in its organization's hash chain (chain_seq,
  prev_hash, entry_hash); existing rows are chained here, in id order, per organization;
* audit_chain_heads: the newest entry of each chain (appenders lock it);
* audit_checkpoints: signed (Ed25519) statements of a chain's hash at a seq, append-only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

from tokenwarden.adapters.sql.tables import AutoId, UTCDateTime
from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.audit_chain import GENESIS, chain_of, seal

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_agent", sa.String(256), nullable=True))
        batch_op.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("entry_hash", sa.String(64), nullable=True))
        batch_op.create_index("ix_audit_log_org_id_id", ["org_id", "id"], unique=False)
    op.create_table(
        "audit_chain_heads",
        sa.Column("chain", sa.String(36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_audit_chain_heads")),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("chain", sa.String(36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kid", sa.String(128), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_checkpoints_chain_seq", "audit_checkpoints", ["chain", "seq"], unique=False)
    _chain_existing_rows()
    _append_only("audit_checkpoints")


def downgrade() -> None:
    op.drop_index("ix_audit_checkpoints_chain_seq", table_name="audit_checkpoints")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_chain_heads")
    with _triggers_off(), op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_org_id_id")
        batch_op.drop_column("entry_hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("chain_seq")
        batch_op.drop_column("user_agent")


@contextmanager
def _triggers_off() -> Iterator[None]:
    """The append-only triggers of 0001 refuse UPDATE: lift them for the migration only."""
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{verb}")
    yield
    if postgres:
        op.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )


def _chain_existing_rows() -> None:
    bind = op.get_bind()
    log = sa.table(
        "audit_log",
        sa.column("id", sa.BigInteger()),
        sa.column("at", UTCDateTime()),
        sa.column("event_type", sa.String()),
        sa.column("org_id", sa.String()),
        sa.column("actor_id", sa.String()),
        sa.column("actor_upn", sa.String()),
        sa.column("target_type", sa.String()),
        sa.column("target_id", sa.String()),
        sa.column("ip", sa.String()),
        sa.column("details", sa.JSON()),
        sa.column("chain_seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String()),
        sa.column("entry_hash", sa.String()),
    )
    heads: dict[str, tuple[int, str]] = {}
    last_id = 0
    with _triggers_off():
        while True:
            rows = bind.execute(sa.select(log).where(log.c.id > last_id).order_by(log.c.id).limit(2000)).all()
            if not rows:
                break
            for r in rows:
                entry = AuditEntry(
                    at=r.at,
                    event_type=r.event_type,
                    org_id=r.org_id,
                    actor_id=r.actor_id,
                    actor_upn=r.actor_upn,
                    target_type=r.target_type,
                    target_id=r.target_id,
                    ip=r.ip,
                    details=dict(r.details or {}),
                )
                chain = chain_of(r.org_id)
                seq, prev = heads.get(chain, (0, GENESIS))
                sealed = seal(entry, seq + 1, prev)
                bind.execute(
                    sa.update(log)
                    .where(log.c.id == r.id)
                    .values(
                        details=sealed.details,
                        chain_seq=sealed.chain_seq,
                        prev_hash=sealed.prev_hash,
                        entry_hash=sealed.hash,
                    )
                )
                heads[chain] = (seq + 1, sealed.hash or "")
                last_id = r.id
    head_table = sa.table(
        "audit_chain_heads", sa.column("chain", sa.String()), sa.column("seq"), sa.column("entry_hash")
    )
    for chain, (seq, hash_) in heads.items():
        bind.execute(sa.insert(head_table).values(chain=chain, seq=seq, entry_hash=hash_))


def _append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION tw_audit_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
