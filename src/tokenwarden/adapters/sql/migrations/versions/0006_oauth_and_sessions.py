"""OAuth 2.0 authorization server and browser sessions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

* tokens: family_id (every token issued from one grant), parent_id and rotated_at (refresh
  rotation), user_agent (sessions);
* users: password_hash (argon2id) and password_changed_at;
* signing_keys: retire_after (a rotated key stays published until its tokens have expired);
* oauth_clients, oauth_codes, sign_in_attempts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tokenwarden.adapters.sql.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("family_id", sa.String(36), nullable=True))
        batch_op.add_column(sa.Column("parent_id", sa.String(36), nullable=True))
        batch_op.add_column(sa.Column("rotated_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("user_agent", sa.String(256), nullable=True))
        batch_op.create_index("ix_tokens_family", ["family_id"], unique=False)
        batch_op.create_index("ix_tokens_parent", ["parent_id"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_hash", sa.String(256), nullable=True))
        batch_op.add_column(sa.Column("password_changed_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retire_after", UTCDateTime(), nullable=True))
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("redirect_uris", sa.JSON(), nullable=False),
        sa.Column("grant_types", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(64), nullable=True),
        sa.Column("pepper_id", sa.String(32), nullable=True),
        sa.Column("service_user_id", sa.String(36), nullable=True),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_oauth_clients_org_id_orgs")),
        sa.ForeignKeyConstraint(
            ["service_user_id"], ["users.id"], name=op.f("fk_oauth_clients_service_user_id_users")
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_oauth_clients")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_oauth_clients_secret_hash")),
    )
    op.create_index("ix_oauth_clients_org", "oauth_clients", ["org_id"])
    op.create_table(
        "oauth_codes",
        sa.Column("code_hash", sa.LargeBinary(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=True),
        sa.Column("code_challenge_method", sa.String(16), nullable=True),
        sa.Column("session_id", sa.String(36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_oauth_codes")),
    )
    op.create_index("ix_oauth_codes_expires", "oauth_codes", ["expires_at"])
    op.create_table(
        "sign_in_attempts",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("upn_key", sa.String(256), nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_attempts")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_sign_in_attempts_upn", "sign_in_attempts", ["upn_key", "at"])
    op.create_index("ix_sign_in_attempts_ip", "sign_in_attempts", ["ip", "at"])


def downgrade() -> None:
    op.drop_table("sign_in_attempts")
    op.drop_table("oauth_codes")
    op.drop_index("ix_oauth_clients_org", table_name="oauth_clients")
    op.drop_table("oauth_clients")
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_column("retire_after")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_changed_at")
        batch_op.drop_column("password_hash")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_tokens_parent")
        batch_op.drop_index("ix_tokens_family")
        batch_op.drop_column("user_agent")
        batch_op.drop_column("rotated_at")
        batch_op.drop_column("parent_id")
        batch_op.drop_column("family_id")
