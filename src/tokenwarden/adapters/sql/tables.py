"""SQLAlchemy Core tables (the schema Alembic migrates)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


# BIGINT autoincrement primary keys need INTEGER on SQLite to alias the rowid.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

orgs = Table(
    "orgs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("name_key", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("upn", String(256), nullable=False),
    Column("upn_key", String(256), nullable=False, unique=True),
    Column("display_name", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("risk_level", String(16), nullable=False),
    Column("identity_source", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("risk_state", String(32), nullable=False, server_default="none"),
    Column("risk_updated_at", UTCDateTime(), nullable=True),
    Column("password_hash", String(256), nullable=True),
    Column("password_changed_at", UTCDateTime(), nullable=True),
    Column("email", String(320), nullable=True),  # issue 12: where notices go (default: the UPN)
    Column("notify_digest", Boolean(), nullable=False, server_default=false()),
    Index("ix_users_risk_level", "risk_level"),
)

memberships = Table(
    "memberships",
    metadata,
    Column("org_id", String(36), ForeignKey("orgs.id"), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id"), primary_key=True),
    Column("role", String(16), nullable=False),
    # The state one organization keeps about a member (the tenancy rule: per user and org).
    Column("status", String(16), nullable=False, server_default="active"),
    Column("risk_level", String(16), nullable=False, server_default="none"),
    Column("risk_state", String(32), nullable=False, server_default="none"),
    Column("risk_updated_at", UTCDateTime(), nullable=True),
    Index("ix_memberships_user_id", "user_id"),
    Index("ix_memberships_org_risk", "org_id", "risk_level"),
)

invitations = Table(
    "invitations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("org_id", String(36), ForeignKey("orgs.id"), nullable=False),
    Column("user_id", String(36), ForeignKey("users.id"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("invited_by", String(36), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("decided_at", UTCDateTime(), nullable=True),
    Index("ix_invitations_user_status", "user_id", "status"),
    Index("ix_invitations_org", "org_id"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("user_id", String(36), ForeignKey("users.id"), nullable=False),
    Column("org_id", String(36), ForeignKey("orgs.id"), nullable=False),
    Column("display_name", String(256), nullable=False),
    Column("scopes", Text(), nullable=False),
    Column("target_orgs", Text(), nullable=True),
    Column("secret_hash", LargeBinary(64), nullable=False, unique=True),
    Column("pepper_id", String(32), nullable=False),
    Column("valid_from", UTCDateTime(), nullable=False),
    Column("valid_to", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("revoked_by", String(36), nullable=True),
    Column("revoke_reason", String(512), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("last_used_ip", String(64), nullable=True),
    Column("client_id", String(64), nullable=True),
    Column("family_id", String(36), nullable=True),
    Column("parent_id", String(36), nullable=True),
    Column("rotated_at", UTCDateTime(), nullable=True),
    Column("user_agent", String(256), nullable=True),
    Column("purpose", String(32), nullable=True),
    Index("ix_tokens_user_kind", "user_id", "kind"),
    Index("ix_tokens_valid_to", "valid_to"),  # issue 12: the expiry scans
    Index("ix_tokens_family", "family_id"),
    Index("ix_tokens_parent", "parent_id"),
    Index("ix_tokens_org_kind", "org_id", "kind"),
    Index("ix_tokens_created_at", "created_at"),
    # issue 16: the console's token pages, keyset-paged by (key, id): newest first, a member's
    # tokens, "expiring within N days" (and the dashboard), "dormant for N days" (last activity:
    # the last use, else the creation; the expression index is ix_tokens_org_last_active below)
    Index("ix_tokens_org_created_id", "org_id", "created_at", "id"),
    Index("ix_tokens_org_user_created_id", "org_id", "user_id", "created_at", "id"),
    Index("ix_tokens_org_valid_to_id", "org_id", "valid_to", "id"),
)
Index(
    "ix_tokens_org_last_active",
    tokens.c.org_id,
    func.coalesce(tokens.c.last_used_at, tokens.c.created_at),
    tokens.c.id,
)

org_policies = Table(
    "org_policies",
    metadata,
    Column("org_id", String(36), ForeignKey("orgs.id"), primary_key=True),
    Column("max_lifetime_days", Integer(), nullable=False),
    Column("restrict_full_scope", Boolean(), nullable=False),
    Column("restrict_creation", Boolean(), nullable=False),
    Column("creation_allowlist", JSON(), nullable=False),
    Column("require_external_identity", Boolean(), nullable=False),
    Column("disable_pat_creation", Boolean(), nullable=False),
    Column("break_glass_two_person", Boolean(), nullable=False, server_default=false()),
    Column("break_glass_approval_minutes", Integer(), nullable=False, server_default="30"),
    # issue 12: lifecycle (NULL warning days: the default thresholds)
    Column("expiry_warning_days", JSON(), nullable=True),
    Column("dormant_revoke_days", Integer(), nullable=True),
    Column("security_contact", String(320), nullable=True),
    # issue 16: administrators must sign in with a second factor
    Column("admins_require_mfa", Boolean(), nullable=False, server_default=false()),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("org_id", String(36), nullable=True),
    Column("actor_id", String(36), nullable=True),
    Column("actor_upn", String(256), nullable=True),
    Column("target_type", String(32), nullable=False),
    Column("target_id", String(256), nullable=False),
    Column("ip", String(64), nullable=True),
    Column("details", JSON(), nullable=False),
    # issue 14: who called (user agent) and the entry's place in its organization's hash chain
    Column("user_agent", String(256), nullable=True),
    Column("chain_seq", BigInteger(), nullable=True),
    Column("prev_hash", String(64), nullable=True),
    Column("entry_hash", String(64), nullable=True),
    Index("ix_audit_log_org_at", "org_id", "at"),
    Index("ix_audit_log_actor", "actor_id"),
    Index("ix_audit_log_target", "target_id"),
    Index("ix_audit_log_org_id_id", "org_id", "id"),
    sqlite_autoincrement=True,
)

# issue 14: requests per token, minute, client, area and status class (domain/usage.py)
token_usage = Table(
    "token_usage",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("token_id", String(36), nullable=False),
    Column("org_id", String(36), nullable=False),
    Column("bucket", UTCDateTime(), nullable=False),
    Column("day", String(10), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("network", String(64), nullable=False),
    Column("user_agent", String(256), nullable=False),
    Column("area", String(32), nullable=False),
    Column("status", String(8), nullable=False),
    Column("count", BigInteger(), nullable=False),
    Index("ux_token_usage_key", "token_id", "bucket", "ip", "user_agent", "area", "status", unique=True),
    Index("ix_token_usage_org_bucket", "org_id", "bucket"),
    Index("ix_token_usage_bucket", "bucket"),
    sqlite_autoincrement=True,
)

# issue 14: security alerts (one not closed per token and rule: open_key) and detection policies
alerts = Table(
    "alerts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("org_id", String(36), nullable=False),
    Column("token_id", String(36), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("rule", String(32), nullable=False),
    Column("level", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("open_key", String(80), nullable=True, unique=True),
    Column("message", String(512), nullable=False),
    Column("evidence", JSON(), nullable=False),
    Column("occurrences", BigInteger(), nullable=False),
    Column("responses", JSON(), nullable=False),
    Column("closed_by", String(256), nullable=True),
    Column("note", String(1024), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_alerts_org_created", "org_id", "created_at"),
    Index("ix_alerts_token", "token_id"),
)

detection_policies = Table(
    "detection_policies",
    metadata,
    Column("org_id", String(36), primary_key=True),
    Column("data", JSON(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# issue 16: TOTP factors (the seed sealed, the last accepted step), recovery codes (keyed hashes)
# and step-ups (a credential's keyed hash -> when it last proved the second factor)
mfa_factors = Table(
    "mfa_factors",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("sealed_secret", String(512), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("confirmed_at", UTCDateTime(), nullable=True),
    Column("last_step", BigInteger(), nullable=False),
)

mfa_recovery_codes = Table(
    "mfa_recovery_codes",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("code_hash", LargeBinary(64), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
)

mfa_step_ups = Table(
    "mfa_step_ups",
    metadata,
    Column("credential_hash", LargeBinary(64), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_mfa_step_ups_user", "user_id"),
)

# The newest entry of each chain ('' = the installation's): appenders lock their chain's row, so
# entries of one organization are chained in commit order.
audit_chain_heads = Table(
    "audit_chain_heads",
    metadata,
    Column("chain", String(36), primary_key=True),
    Column("seq", BigInteger(), nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

# Signed statements "entry seq of chain has hash h" (compact JWS, Ed25519).
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("chain", String(36), nullable=False),
    Column("seq", BigInteger(), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("kid", String(128), nullable=False),
    Column("signature", Text(), nullable=False),
    Index("ix_audit_checkpoints_chain_seq", "chain", "seq"),
    sqlite_autoincrement=True,
)

events = Table(
    "events",
    metadata,
    Column("seq", AutoId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("type", String(32), nullable=False),
    Column("payload", JSON(), nullable=False),
    sqlite_autoincrement=True,
)

revocation_rules = Table(
    "revocation_rules",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("org_id", String(36), ForeignKey("orgs.id"), nullable=False),
    Column("scopes", Text(), nullable=False),
    Column("created_before", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(36), nullable=True),
    Column("created_after", UTCDateTime(), nullable=True),
    Column("kinds", Text(), nullable=True),
    Column("user_ids", Text(), nullable=True),
    Column("match_implied", Boolean(), nullable=False, server_default=false()),
    Index("ix_revocation_rules_org", "org_id"),
)

watermarks = Table(
    "watermarks",
    metadata,
    Column("subject_type", String(16), primary_key=True),
    Column("subject_id", String(80), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("valid_from", UTCDateTime(), nullable=False),
)

break_glass_requests = Table(
    "break_glass_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("org_id", String(36), ForeignKey("orgs.id"), nullable=False),
    Column("requested_by", String(36), nullable=True),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("approved_by", String(36), nullable=True),
    Column("executed_at", UTCDateTime(), nullable=True),
    Column("reason", String(512), nullable=True),
    Index("ix_break_glass_org", "org_id"),
)

bulk_jobs = Table(
    "bulk_jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("org_id", String(36), ForeignKey("orgs.id"), nullable=False),
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("kinds", Text(), nullable=False),
    Column("dry_run", Boolean(), nullable=False),
    Column("created_by", String(36), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("total", Integer(), nullable=False),
    Column("source_name", String(256), nullable=True),
)

bulk_job_items = Table(
    "bulk_job_items",
    metadata,
    Column("job_id", String(64), ForeignKey("bulk_jobs.id"), primary_key=True),
    Column("line_no", Integer(), primary_key=True),
    Column("upn", String(512), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text(), nullable=True),
    Column("revoked_count", Integer(), nullable=False, server_default="0"),
    Column("processed_at", UTCDateTime(), nullable=True),
    Index("ix_bulk_job_items_job_status", "job_id", "status", "line_no"),
)

# ---------------------------------------------------------------- Shared Signals (SSF / CAEP)
security_events = Table(
    "security_events",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("event_type", String(256), nullable=False),
    Column("subject", JSON(), nullable=False),
    Column("event", JSON(), nullable=False),
    Column("org_id", String(36), nullable=True),
    Column("txn", String(64), nullable=False),
    Column("stream_id", String(36), nullable=True),
    Index("ix_security_events_org_id", "org_id", "id"),
    sqlite_autoincrement=True,
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(128), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("public_jwk", JSON(), nullable=False),
    Column("private_key", LargeBinary(), nullable=False),
    Column("pepper_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("retire_after", UTCDateTime(), nullable=True),
)

ssf_streams = Table(
    "ssf_streams",
    metadata,
    Column("stream_id", String(36), primary_key=True),
    Column("org_id", String(36), ForeignKey("orgs.id"), nullable=False),
    Column("iss", String(512), nullable=False),
    Column("aud", JSON(), nullable=False),
    Column("events_requested", JSON(), nullable=False),
    Column("delivery_method", String(64), nullable=False),
    Column("endpoint_url", Text(), nullable=True),
    Column("authorization_header", Text(), nullable=True),
    Column("description", String(512), nullable=True),
    Column("status", String(16), nullable=False),
    Column("status_reason", String(512), nullable=True),
    Column("min_verification_interval", Integer(), nullable=True),
    Column("inactivity_timeout", Integer(), nullable=True),
    Column("cursor", BigInteger(), nullable=False, server_default="0"),
    Column("created_by", String(36), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_ssf_streams_org", "org_id"),
)

ssf_subjects = Table(
    "ssf_subjects",
    metadata,
    Column("stream_id", String(36), ForeignKey("ssf_streams.stream_id"), primary_key=True),
    Column("subject_key", String(512), primary_key=True),
    Column("subject", JSON(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("verified", Boolean(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

ssf_deliveries = Table(
    "ssf_deliveries",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("stream_id", String(36), ForeignKey("ssf_streams.stream_id"), nullable=False),
    Column("event_id", BigInteger(), nullable=False),
    Column("jti", String(64), nullable=False, unique=True),
    Column("set_jws", Text(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("delivered_at", UTCDateTime(), nullable=True),
    Column("last_error", String(512), nullable=True),
    Index("ux_ssf_deliveries_stream_event", "stream_id", "event_id", unique=True),
    Index("ix_ssf_deliveries_due", "status", "next_attempt_at"),
    Index("ix_ssf_deliveries_stream", "stream_id", "status", "id"),
    sqlite_autoincrement=True,
)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("org_id", String(36), ForeignKey("orgs.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("public", Boolean(), nullable=False),
    Column("redirect_uris", JSON(), nullable=False),
    Column("grant_types", JSON(), nullable=False),
    Column("scopes", JSON(), nullable=False),
    Column("secret_hash", LargeBinary(64), nullable=True, unique=True),
    Column("pepper_id", String(32), nullable=True),
    Column("service_user_id", String(36), ForeignKey("users.id"), nullable=True),
    Column("created_by", String(36), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("disabled_at", UTCDateTime(), nullable=True),
    Index("ix_oauth_clients_org", "org_id"),
)

oauth_codes = Table(
    "oauth_codes",
    metadata,
    Column("code_hash", LargeBinary(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("org_id", String(36), nullable=False),
    Column("redirect_uri", Text(), nullable=False),
    Column("scope", Text(), nullable=False),
    Column("family_id", String(36), nullable=False),
    Column("code_challenge", String(128), nullable=True),
    Column("code_challenge_method", String(16), nullable=True),
    Column("session_id", String(36), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    Index("ix_oauth_codes_expires", "expires_at"),
)

sign_in_attempts = Table(
    "sign_in_attempts",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("upn_key", String(256), nullable=False),
    Column("ip", String(64), nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("success", Boolean(), nullable=False),
    Index("ix_sign_in_attempts_upn", "upn_key", "at"),
    Index("ix_sign_in_attempts_ip", "ip", "at"),
    sqlite_autoincrement=True,
)

# ---------------------------------------------------------------- issue 12: lifecycle jobs
token_notices = Table(  # one row per (token, notice) ever decided: the "exactly once" of warnings
    "token_notices",
    metadata,
    Column("token_id", String(36), primary_key=True),
    Column("notice", String(128), primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    # expiry notices: the validTo they were for and the threshold (0: "expired"), so a scan can
    # skip tokens already told in SQL (an extended token has another validTo: it is due again)
    Column("valid_to", UTCDateTime(), nullable=True),
    Column("threshold", Integer(), nullable=True),
)

token_watchers = Table(
    "token_watchers",
    metadata,
    Column("token_id", String(36), ForeignKey("tokens.id"), primary_key=True),
    Column("address_key", String(320), primary_key=True),
    Column("address", String(320), nullable=False),
    Column("added_by", String(36), nullable=True),
    Column("added_at", UTCDateTime(), nullable=False),
    Index("ix_token_watchers_address_key", "address_key"),  # issue 17: a leaver's watches
)

notification_outbox = Table(
    "notification_outbox",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(255), nullable=False, unique=True),
    Column("org_id", String(36), nullable=True),
    Column("channel", String(16), nullable=False),
    Column("destination", String(320), nullable=False),
    Column("template", String(48), nullable=False),
    Column("payload", JSON(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", UTCDateTime(), nullable=True),
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("last_error", String(512), nullable=True),
    Column("run_id", String(36), nullable=True),
    Index("ix_notification_outbox_due", "status", "next_attempt_at"),
    Index("ix_notification_outbox_org", "org_id", "status", "id"),
    Index("ix_notification_outbox_run", "run_id"),
    sqlite_autoincrement=True,
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("org_id", String(36), ForeignKey("orgs.id"), nullable=False),
    Column("url", Text(), nullable=False),
    Column("secret", LargeBinary(), nullable=False),  # sealed by SecretBox under the pepper
    Column("events", JSON(), nullable=False),
    Column("description", String(256), nullable=True),
    Column("created_by", String(36), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("disabled_at", UTCDateTime(), nullable=True),
    Index("ix_webhooks_org", "org_id"),
)

job_state = Table(  # the lease of each job (one holder at a time) and its last scheduled slot
    "job_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("run_id", String(36), nullable=True),
    Column("last_slot", UTCDateTime(), nullable=True),
)

job_runs = Table(
    "job_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("node", String(128), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("status", String(16), nullable=False),
    Column("counts", JSON(), nullable=False),
    Column("error", Text(), nullable=True),
    Column("slot", UTCDateTime(), nullable=True),
    Column("org_id", String(36), nullable=True),
    Index("ix_job_runs_name_started", "name", "started_at"),
)

policy_enforcements = Table(
    "policy_enforcements",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("org_id", String(36), ForeignKey("orgs.id"), nullable=False),
    Column("created_by", String(36), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("grace_until", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),  # pending | applied | cancelled
    Column("applied_at", UTCDateTime(), nullable=True),
    Column("counts", JSON(), nullable=False),
    Index("ix_policy_enforcements_org", "org_id", "status"),
)

# ---------------------------------------------------------------- issue 13: rotation, secret stores
managed_credentials = Table(  # a credential bound to a destination: rotated before it expires
    "managed_credentials",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("org_id", String(36), ForeignKey("orgs.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("name_key", String(128), nullable=False),  # casefolded: names are unique per org
    Column("source", String(16), nullable=False),  # local | ado
    Column("user_id", String(36), nullable=True),  # the owner (local source)
    Column("authorization_id", String(64), nullable=False),  # the credential in service now
    Column("display_base", String(256), nullable=False),  # display name without the -vN suffix
    Column("scopes", JSON(), nullable=False),
    Column("valid_to", UTCDateTime(), nullable=True),  # of the credential in service
    Column("ado_url", Text(), nullable=True),
    Column("ado_org", String(256), nullable=True),
    Column("ado_credential", Text(), nullable=True),  # sealed (SecretBox), never shown
    Column("store", String(32), nullable=False),  # builtin | vault | aws | azure-keyvault | file
    Column("secret_name", String(512), nullable=False),  # the logical name asked for
    Column("store_secret_name", String(512), nullable=False),  # sanitised, as the store has it
    Column("threshold_days", Integer(), nullable=False),
    Column("valid_days", Integer(), nullable=False),
    Column("overlap_minutes", Integer(), nullable=False),
    Column("contacts", JSON(), nullable=False),
    Column("version", Integer(), nullable=False),  # rotations done (the -vN of the display name)
    Column("status", String(16), nullable=False),  # active | failing | removed
    Column("lease_holder", String(128), nullable=True),  # a rotation in progress holds it
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("failures", Integer(), nullable=False, server_default="0"),
    Column("last_error", Text(), nullable=True),
    Column("last_rotated_at", UTCDateTime(), nullable=True),
    Column("next_attempt_at", UTCDateTime(), nullable=True),  # after a failure: not before
    Column("created_by", String(36), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("uq_managed_credentials_org_name", "org_id", "name_key", unique=True),
    Index("uq_managed_credentials_store_name", "store", "store_secret_name", unique=True),
    Index("ix_managed_credentials_due", "status", "valid_to"),
)

rotations = Table(  # the journal: one row per rotation attempt, each step committed before the next
    "rotations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("credential_id", String(36), nullable=False),  # no FK: history outlives `managed remove`
    Column("org_id", String(36), nullable=False),
    Column("trigger", String(16), nullable=False),  # schedule | manual | emergency
    Column("reason", String(32), nullable=False),  # expiring | forced | compromised
    Column("step", String(24), nullable=False),
    Column("open", Boolean(), nullable=True),  # True while unfinished, NULL after: one open per credential
    Column("predecessor_id", String(64), nullable=False),
    Column("successor_name", String(256), nullable=False),
    Column("successor_id", String(64), nullable=True),
    Column("successor_valid_to", UTCDateTime(), nullable=True),
    Column("successor_fingerprint", LargeBinary(), nullable=True),  # keyed hash, never the secret
    Column("store_version", String(128), nullable=True),
    Column("revoke_after", UTCDateTime(), nullable=True),  # the overlap window ends
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("error", Text(), nullable=True),
    Column("run_id", String(36), nullable=True),
    Column("started_by", String(36), nullable=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Index("uq_rotations_open", "credential_id", "open", unique=True),
    Index("ix_rotations_credential", "credential_id", "started_at"),
    Index("ix_rotations_org_started", "org_id", "started_at"),
)

secret_heads = Table(  # the built-in store: which version of each secret is served
    "secret_heads",
    metadata,
    Column("name", String(512), primary_key=True),
    Column("current_version", Integer(), nullable=True),
    Column("latest_version", Integer(), nullable=False),  # versions are numbered 1, 2, ...
    Column("updated_at", UTCDateTime(), nullable=False),
)

secret_versions = Table(  # the built-in store's versions, AES-GCM sealed under a named key
    "secret_versions",
    metadata,
    Column("name", String(512), primary_key=True),
    Column("version", Integer(), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("sealed", LargeBinary(), nullable=False),  # nonce + ciphertext + tag; AAD = name/version
    Column("content_type", String(128), nullable=True),
    Column("tags", JSON(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("stage", String(16), nullable=False),  # pending | current | previous | old | discarded
)

# ---- issue 17: SCIM 2.0 provisioning
scim_config = Table(
    "scim_config",
    metadata,
    Column("org_id", String(36), primary_key=True),
    Column("principal_id", String(36), nullable=True),  # the provisioning tokens' service principal
    Column("admin_group", String(256), nullable=True),  # display name or externalId
)

scim_users = Table(
    "scim_users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("org_id", String(36), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("user_name_key", String(256), nullable=False),
    Column("external_id", String(256), nullable=True),
    Column("display_name_key", String(256), nullable=True),
    Column("active", Boolean(), nullable=False),
    Column("document", Text(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("owns_identity", Boolean(), nullable=False),
    Column("admin_by_group", Boolean(), nullable=False),
    Index("uq_scim_users_org_user_name", "org_id", "user_name_key", unique=True),
    Index("uq_scim_users_org_user", "org_id", "user_id", unique=True),
    Index("ix_scim_users_org_external", "org_id", "external_id"),
    Index("ix_scim_users_org_display", "org_id", "display_name_key"),
    Index("ix_scim_users_org_created", "org_id", "created_at", "id"),
)

scim_groups = Table(
    "scim_groups",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("org_id", String(36), nullable=False),
    Column("display_name_key", String(256), nullable=False),
    Column("external_id", String(256), nullable=True),
    Column("document", Text(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("uq_scim_groups_org_display", "org_id", "display_name_key", unique=True),
    Index("ix_scim_groups_org_external", "org_id", "external_id"),
    Index("ix_scim_groups_org_created", "org_id", "created_at", "id"),
)

scim_group_members = Table(
    "scim_group_members",
    metadata,
    Column("group_id", String(36), primary_key=True),
    Column("member_id", String(36), primary_key=True),
    Column("org_id", String(36), nullable=False),
    Column("position", Integer(), nullable=False),
    Index("ix_scim_group_members_member", "org_id", "member_id"),
)
