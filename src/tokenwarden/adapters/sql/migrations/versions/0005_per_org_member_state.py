"""tenancy: status, risk and watermarks per (user, organization); invitations

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Until now a user's status, risk and watermarks were global, so one organization's administrator
could disable or revoke a user in another. This moves that state onto the membership:

* memberships get status, risk_level, risk_state, risk_updated_at, copied from the user;
* every user watermark becomes a member watermark in each organization the user belongs to
  (nothing that was revoked comes back);
* the users' own status and risk are reset to active/none (they are now the operator's only).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A member subject is "<org id>:<user id>" (73 characters).
    with op.batch_alter_table("watermarks", schema=None) as batch_op:
        batch_op.alter_column("subject_id", type_=sa.String(80), existing_type=sa.String(64))
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="active"))
        batch_op.add_column(sa.Column("risk_level", sa.String(16), nullable=False, server_default="none"))
        batch_op.add_column(sa.Column("risk_state", sa.String(32), nullable=False, server_default="none"))
        batch_op.add_column(sa.Column("risk_updated_at", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_memberships_org_risk", ["org_id", "risk_level"], unique=False)
    op.execute(
        "UPDATE memberships SET "
        "status = (SELECT u.status FROM users u WHERE u.id = memberships.user_id), "
        "risk_level = (SELECT u.risk_level FROM users u WHERE u.id = memberships.user_id), "
        "risk_state = (SELECT u.risk_state FROM users u WHERE u.id = memberships.user_id), "
        "risk_updated_at = (SELECT u.risk_updated_at FROM users u WHERE u.id = memberships.user_id)"
    )
    op.execute(
        "INSERT INTO watermarks (subject_type, subject_id, kind, valid_from) "
        "SELECT 'member', m.org_id || ':' || m.user_id, w.kind, w.valid_from "
        "FROM watermarks w JOIN memberships m ON m.user_id = w.subject_id "
        "WHERE w.subject_type = 'user'"
    )
    op.execute("DELETE FROM watermarks WHERE subject_type = 'user'")
    op.execute("UPDATE users SET status = 'active' WHERE status = 'disabled'")
    op.execute("UPDATE users SET risk_level = 'none', risk_state = 'none', risk_updated_at = NULL")
    op.create_table(
        "invitations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("org_id", sa.String(36), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("invited_by", sa.String(36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_invitations_user_status", "invitations", ["user_id", "status"])
    op.create_index("ix_invitations_org", "invitations", ["org_id"])


def downgrade() -> None:
    op.drop_index("ix_invitations_org", table_name="invitations")
    op.drop_index("ix_invitations_user_status", table_name="invitations")
    op.drop_table("invitations")
    op.execute("DELETE FROM watermarks WHERE subject_type = 'member'")
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_index("ix_memberships_org_risk")
        batch_op.drop_column("risk_updated_at")
        batch_op.drop_column("risk_state")
        batch_op.drop_column("risk_level")
        batch_op.drop_column("status")
