"""Usage records

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

token_usage: requests per token, minute, client address, user agent, route area and status
class (issue 14); flushed by every node in batches, pruned by the usage-retention job.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tokenwarden.adapters.sql.tables import AutoId, UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_usage",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("token_id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("bucket", UTCDateTime(), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(256), nullable=False),
        sa.Column("area", sa.String(32), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_usage")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ux_token_usage_key",
        "token_usage",
        ["token_id", "bucket", "ip", "user_agent", "area", "status"],
        unique=True,
    )
    op.create_index("ix_token_usage_org_bucket", "token_usage", ["org_id", "bucket"], unique=False)
    op.create_index("ix_token_usage_bucket", "token_usage", ["bucket"], unique=False)


def downgrade() -> None:
    op.drop_table("token_usage")
