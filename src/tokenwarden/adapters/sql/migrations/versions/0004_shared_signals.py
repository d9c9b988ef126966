"""shared signals: security event outbox, signing keys, SSF streams, subjects and deliveries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tokenwarden.adapters.sql.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC_DT = tokenwarden.adapters.sql.tables.UTCDateTime
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "security_events",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("created_at", UTC_DT(), nullable=False),
        sa.Column("event_type", sa.String(length=256), nullable=False),
        sa.Column("subject", sa.JSON(), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=True),
        sa.Column("txn", sa.String(length=64), nullable=False),
        sa.Column("stream_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_events")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_security_events_org_id", "security_events", ["org_id", "id"], unique=False)
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=128), nullable=False),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("private_key", sa.LargeBinary(), nullable=False),
        sa.Column("pepper_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTC_DT(), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    op.create_table(
        "ssf_streams",
        sa.Column("stream_id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("iss", sa.String(length=512), nullable=False),
        sa.Column("aud", sa.JSON(), nullable=False),
        sa.Column("events_requested", sa.JSON(), nullable=False),
        sa.Column("delivery_method", sa.String(length=64), nullable=False),
        sa.Column("endpoint_url", sa.Text(), nullable=True),
        sa.Column("authorization_header", sa.Text(), nullable=True),
        sa.Column("description", sa.String(length=512), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=512), nullable=True),
        sa.Column("min_verification_interval", sa.Integer(), nullable=True),
        sa.Column("inactivity_timeout", sa.Integer(), nullable=True),
        sa.Column("cursor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTC_DT(), nullable=False),
        sa.Column("updated_at", UTC_DT(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_ssf_streams_org_id_orgs")),
        sa.PrimaryKeyConstraint("stream_id", name=op.f("pk_ssf_streams")),
    )
    op.create_index("ix_ssf_streams_org", "ssf_streams", ["org_id"], unique=False)
    op.create_table(
        "ssf_deliveries",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("stream_id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("set_jws", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", UTC_DT(), nullable=False),
        sa.Column("next_attempt_at", UTC_DT(), nullable=True),
        sa.Column("delivered_at", UTC_DT(), nullable=True),
        sa.Column("last_error", sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(
            ["stream_id"], ["ssf_streams.stream_id"], name=op.f("fk_ssf_deliveries_stream_id_ssf_streams")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ssf_deliveries")),
        sa.UniqueConstraint("jti", name=op.f("uq_ssf_deliveries_jti")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_ssf_deliveries_due", "ssf_deliveries", ["status", "next_attempt_at"], unique=False)
    op.create_index("ix_ssf_deliveries_stream", "ssf_deliveries", ["stream_id", "status", "id"], unique=False)
    op.create_index(
        "ux_ssf_deliveries_stream_event", "ssf_deliveries", ["stream_id", "event_id"], unique=True
    )
    op.create_table(
        "ssf_subjects",
        sa.Column("stream_id", sa.String(length=36), nullable=False),
        sa.Column("subject_key", sa.String(length=512), nullable=False),
        sa.Column("subject", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=True),
        sa.Column("updated_at", UTC_DT(), nullable=False),
        sa.ForeignKeyConstraint(
            ["stream_id"], ["ssf_streams.stream_id"], name=op.f("fk_ssf_subjects_stream_id_ssf_streams")
        ),
        sa.PrimaryKeyConstraint("stream_id", "subject_key", name=op.f("pk_ssf_subjects")),
    )


def downgrade() -> None:
    op.drop_table("ssf_subjects")
    op.drop_index("ux_ssf_deliveries_stream_event", table_name="ssf_deliveries")
    op.drop_index("ix_ssf_deliveries_stream", table_name="ssf_deliveries")
    op.drop_index("ix_ssf_deliveries_due", table_name="ssf_deliveries")
    op.drop_table("ssf_deliveries")
    op.drop_index("ix_ssf_streams_org", table_name="ssf_streams")
    op.drop_table("ssf_streams")
    op.drop_table("signing_keys")
    op.drop_index("ix_security_events_org_id", table_name="security_events")
    op.drop_table("security_events")
