"""Second factors: TOTP, recovery codes, step-ups; the org policy "administrators must use MFA";
an index for the console's token pages

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tokenwarden.adapters.sql.tables import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mfa_factors",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("sealed_secret", sa.String(512), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_mfa_factors")),
    )
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", "code_hash", name=op.f("pk_mfa_recovery_codes")),
    )
    op.create_table(
        "mfa_step_ups",
        sa.Column("credential_hash", sa.LargeBinary(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("credential_hash", name=op.f("pk_mfa_step_ups")),
    )
    op.create_index("ix_mfa_step_ups_user", "mfa_step_ups", ["user_id"], unique=False)
    # the console pages tokens of one organization newest first
    op.create_index("ix_tokens_org_created", "tokens", ["org_id", "created_at"], unique=False)
    op.create_index("ix_tokens_org_user_created", "tokens", ["org_id", "user_id", "created_at"], unique=False)
    op.create_index("ix_tokens_org_valid_to", "tokens", ["org_id", "valid_to"], unique=False)
    with op.batch_alter_table("org_policies") as batch:
        batch.add_column(
            sa.Column("admins_require_mfa", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    op.drop_index("ix_tokens_org_valid_to", table_name="tokens")
    op.drop_index("ix_tokens_org_user_created", table_name="tokens")
    op.drop_index("ix_tokens_org_created", table_name="tokens")
    with op.batch_alter_table("org_policies") as batch:
        batch.drop_column("admins_require_mfa")
    op.drop_table("mfa_step_ups")
    op.drop_table("mfa_recovery_codes")
    op.drop_table("mfa_factors")
