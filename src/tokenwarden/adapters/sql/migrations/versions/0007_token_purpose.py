"""tokens: purpose (a break-glass recovery token is marked as one)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

A break-glass recovery token may not start or approve another break-glass, nor outlive its 24
hours; it was recognisable only by its display name, which its holder can change. Existing
unrevoked PATs named "break-glass recovery" (the name every recovery token was issued with) are
marked; they expire within a day of their break-glass anyway.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose", sa.String(32), nullable=True))
    op.execute(
        "UPDATE tokens SET purpose = 'break-glass-recovery' "
        "WHERE kind = 'pat' AND display_name = 'break-glass recovery' AND revoked_at IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_column("purpose")
