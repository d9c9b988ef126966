"""Security alerts and detection policies

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

alerts: what the detection rules raised (issue 14); open_key is unique while an alert is not
closed, so a token has at most one open alert per rule. detection_policies: per organization.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tokenwarden.adapters.sql.tables import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("token_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("open_key", sa.String(80), nullable=True),
        sa.Column("message", sa.String(512), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("occurrences", sa.BigInteger(), nullable=False),
        sa.Column("responses", sa.JSON(), nullable=False),
        sa.Column("closed_by", sa.String(256), nullable=True),
        sa.Column("note", sa.String(1024), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("open_key", name=op.f("uq_alerts_open_key")),
    )
    op.create_index("ix_alerts_org_created", "alerts", ["org_id", "created_at"], unique=False)
    op.create_index("ix_alerts_token", "alerts", ["token_id"], unique=False)
    op.create_table(
        "detection_policies",
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_detection_policies")),
    )


def downgrade() -> None:
    op.drop_table("detection_policies")
    op.drop_table("alerts")
