"""Offboarding finds the leaver's token watches by address, not by scanning every live PAT of
the organization: an index on token_watchers.address_key — issue 17

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_token_watchers_address_key", "token_watchers", ["address_key"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_token_watchers_address_key", table_name="token_watchers")
