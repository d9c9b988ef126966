"""Rotation: managed credentials, the rotation journal, the built-in secret store

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

* managed_credentials: a credential (a local PAT or one on an external Azure DevOps-compatible
  server) bound to a secret store and name, with its rotation settings and a lease;
* rotations: the journal of every rotation, one committed step at a time (``open`` is TRUE
  while unfinished and NULL after, so a unique index allows one open rotation per credential);
* secret_heads + secret_versions: the built-in store (AES-GCM sealed versions).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tokenwarden.adapters.sql.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "managed_credentials",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("name_key", sa.String(128), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=True),
        sa.Column("authorization_id", sa.String(64), nullable=False),
        sa.Column("display_base", sa.String(256), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("valid_to", UTCDateTime(), nullable=True),
        sa.Column("ado_url", sa.Text(), nullable=True),
        sa.Column("ado_org", sa.String(256), nullable=True),
        sa.Column("ado_credential", sa.Text(), nullable=True),
        sa.Column("store", sa.String(32), nullable=False),
        sa.Column("secret_name", sa.String(512), nullable=False),
        sa.Column("store_secret_name", sa.String(512), nullable=False),
        sa.Column("threshold_days", sa.Integer(), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=False),
        sa.Column("overlap_minutes", sa.Integer(), nullable=False),
        sa.Column("contacts", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lease_holder", sa.String(128), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_rotated_at", UTCDateTime(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_managed_credentials_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_managed_credentials")),
    )
    op.create_index(
        "uq_managed_credentials_org_name", "managed_credentials", ["org_id", "name_key"], unique=True
    )
    op.create_index(
        "uq_managed_credentials_store_name",
        "managed_credentials",
        ["store", "store_secret_name"],
        unique=True,
    )
    op.create_index("ix_managed_credentials_due", "managed_credentials", ["status", "valid_to"])
    op.create_table(
        "rotations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("credential_id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("step", sa.String(24), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=True),
        sa.Column("predecessor_id", sa.String(64), nullable=False),
        sa.Column("successor_name", sa.String(256), nullable=False),
        sa.Column("successor_id", sa.String(64), nullable=True),
        sa.Column("successor_valid_to", UTCDateTime(), nullable=True),
        sa.Column("successor_fingerprint", sa.LargeBinary(), nullable=True),
        sa.Column("store_version", sa.String(128), nullable=True),
        sa.Column("revoke_after", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("started_by", sa.String(36), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rotations")),
    )
    op.create_index("uq_rotations_open", "rotations", ["credential_id", "open"], unique=True)
    op.create_index("ix_rotations_credential", "rotations", ["credential_id", "started_at"])
    op.create_index("ix_rotations_org_started", "rotations", ["org_id", "started_at"])
    op.create_table(
        "secret_heads",
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=True),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_secret_heads")),
    )
    op.create_table(
        "secret_versions",
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_secret_versions")),
    )


def downgrade() -> None:
    op.drop_table("secret_versions")
    op.drop_table("secret_heads")
    op.drop_index("ix_rotations_org_started", table_name="rotations")
    op.drop_index("ix_rotations_credential", table_name="rotations")
    op.drop_index("uq_rotations_open", table_name="rotations")
    op.drop_table("rotations")
    op.drop_index("ix_managed_credentials_due", table_name="managed_credentials")
    op.drop_index("uq_managed_credentials_store_name", table_name="managed_credentials")
    op.drop_index("uq_managed_credentials_org_name", table_name="managed_credentials")
    op.drop_table("managed_credentials")
