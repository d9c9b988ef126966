"""SCIM 2.0 provisioning: each organization's provisioned users and groups (the documents the
identity provider wrote), group members and the organization's SCIM settings — issue 17

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tokenwarden.adapters.sql.tables import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scim_config",
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("principal_id", sa.String(36), nullable=True),
        sa.Column("admin_group", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_scim_config")),
    )
    op.create_table(
        "scim_users",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("user_name_key", sa.String(256), nullable=False),
        sa.Column("external_id", sa.String(256), nullable=True),
        sa.Column("display_name_key", sa.String(256), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("owns_identity", sa.Boolean(), nullable=False),
        sa.Column("admin_by_group", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_users")),
    )
    op.create_index("uq_scim_users_org_user_name", "scim_users", ["org_id", "user_name_key"], unique=True)
    op.create_index("uq_scim_users_org_user", "scim_users", ["org_id", "user_id"], unique=True)
    op.create_index("ix_scim_users_org_external", "scim_users", ["org_id", "external_id"], unique=False)
    op.create_index("ix_scim_users_org_display", "scim_users", ["org_id", "display_name_key"], unique=False)
    op.create_index("ix_scim_users_org_created", "scim_users", ["org_id", "created_at", "id"], unique=False)
    op.create_table(
        "scim_groups",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("display_name_key", sa.String(256), nullable=False),
        sa.Column("external_id", sa.String(256), nullable=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_groups")),
    )
    op.create_index("uq_scim_groups_org_display", "scim_groups", ["org_id", "display_name_key"], unique=True)
    op.create_index("ix_scim_groups_org_external", "scim_groups", ["org_id", "external_id"], unique=False)
    op.create_index("ix_scim_groups_org_created", "scim_groups", ["org_id", "created_at", "id"], unique=False)
    op.create_table(
        "scim_group_members",
        sa.Column("group_id", sa.String(36), nullable=False),
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "member_id", name=op.f("pk_scim_group_members")),
    )
    op.create_index(
        "ix_scim_group_members_member", "scim_group_members", ["org_id", "member_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("scim_group_members")
    op.drop_table("scim_groups")
    op.drop_table("scim_users")
    op.drop_table("scim_config")
