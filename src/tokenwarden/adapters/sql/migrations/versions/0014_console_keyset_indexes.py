"""Keyset paging of the console's token pages: the (org_id, [user_id,] key) indexes end in the
id (the tie-breaker, so each serves its order whole and the planner never trades it for
another), and "dormant for N days" gets an index on the last activity (last use, else
creation) — issue 16

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

LAST_ACTIVE = "coalesce(last_used_at, created_at)"  # as tables.py spells ix_tokens_org_last_active


def upgrade() -> None:
    op.create_index("ix_tokens_org_created_id", "tokens", ["org_id", "created_at", "id"], unique=False)
    op.create_index(
        "ix_tokens_org_user_created_id", "tokens", ["org_id", "user_id", "created_at", "id"], unique=False
    )
    op.create_index("ix_tokens_org_valid_to_id", "tokens", ["org_id", "valid_to", "id"], unique=False)
    op.create_index(
        "ix_tokens_org_last_active", "tokens", ["org_id", sa.text(LAST_ACTIVE), "id"], unique=False
    )
    # their prefixes: every query they served, the new ones serve
    op.drop_index("ix_tokens_org_created", table_name="tokens")
    op.drop_index("ix_tokens_org_user_created", table_name="tokens")
    op.drop_index("ix_tokens_org_valid_to", table_name="tokens")


def downgrade() -> None:
    op.create_index("ix_tokens_org_valid_to", "tokens", ["org_id", "valid_to"], unique=False)
    op.create_index("ix_tokens_org_user_created", "tokens", ["org_id", "user_id", "created_at"], unique=False)
    op.create_index("ix_tokens_org_created", "tokens", ["org_id", "created_at"], unique=False)
    op.drop_index("ix_tokens_org_last_active", table_name="tokens")
    op.drop_index("ix_tokens_org_valid_to_id", table_name="tokens")
    op.drop_index("ix_tokens_org_user_created_id", table_name="tokens")
    op.drop_index("ix_tokens_org_created_id", table_name="tokens")
