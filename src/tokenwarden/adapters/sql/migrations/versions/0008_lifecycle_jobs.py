"""Lifecycle jobs: scheduler leases and runs, expiry notices, the notification outbox, webhooks

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

* users: email (notices go there; NULL means the UPN) and notify_digest (one message per run);
* org_policies: expiry_warning_days, dormant_revoke_days, security_contact;
* tokens: an index on valid_to (the expiry scans read a window of it);
* token_notices (one row per notice decided for a token: warnings go out exactly once),
  token_watchers, notification_outbox, webhooks, job_state (lease + last slot), job_runs,
  policy_enforcements.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tokenwarden.adapters.sql.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(320), nullable=True))
        batch_op.add_column(
            sa.Column("notify_digest", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("org_policies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expiry_warning_days", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("dormant_revoke_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("security_contact", sa.String(320), nullable=True))
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.create_index("ix_tokens_valid_to", ["valid_to"], unique=False)
    op.create_table(
        "token_notices",
        sa.Column("token_id", sa.String(36), nullable=False),
        sa.Column("notice", sa.String(128), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("valid_to", UTCDateTime(), nullable=True),
        sa.Column("threshold", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("token_id", "notice", name=op.f("pk_token_notices")),
    )
    op.create_table(
        "token_watchers",
        sa.Column("token_id", sa.String(36), nullable=False),
        sa.Column("address_key", sa.String(320), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("added_by", sa.String(36), nullable=True),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["tokens.id"], name=op.f("fk_token_watchers_token_id_tokens")),
        sa.PrimaryKeyConstraint("token_id", "address_key", name=op.f("pk_token_watchers")),
    )
    op.create_table(
        "notification_outbox",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("destination", sa.String(320), nullable=False),
        sa.Column("template", sa.String(48), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(512), nullable=True),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notification_outbox_dedupe_key")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notification_outbox_due", "notification_outbox", ["status", "next_attempt_at"])
    op.create_index("ix_notification_outbox_org", "notification_outbox", ["org_id", "status", "id"])
    op.create_index("ix_notification_outbox_run", "notification_outbox", ["run_id"])
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(256), nullable=True),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_webhooks_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index("ix_webhooks_org", "webhooks", ["org_id"])
    op.create_table(
        "job_state",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("last_slot", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_state")),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("slot", UTCDateTime(), nullable=True),
        sa.Column("org_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
    )
    op.create_index("ix_job_runs_name_started", "job_runs", ["name", "started_at"])
    op.create_table(
        "policy_enforcements",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("grace_until", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("applied_at", UTCDateTime(), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_policy_enforcements_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_enforcements")),
    )
    op.create_index("ix_policy_enforcements_org", "policy_enforcements", ["org_id", "status"])


def downgrade() -> None:
    for name in (
        "policy_enforcements",
        "job_runs",
        "job_state",
        "webhooks",
        "notification_outbox",
        "token_watchers",
        "token_notices",
    ):
        op.drop_table(name)
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_tokens_valid_to")
    with op.batch_alter_table("org_policies", schema=None) as batch_op:
        batch_op.drop_column("security_contact")
        batch_op.drop_column("dormant_revoke_days")
        batch_op.drop_column("expiry_warning_days")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("notify_digest")
        batch_op.drop_column("email")
