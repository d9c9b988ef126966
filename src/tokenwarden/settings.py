"""All configuration in one object: ``TOKENWARDEN_*`` env vars > TOML file > defaults.

The TOML file is ``$TOKENWARDEN_CONFIG`` or ``./tokenwarden.toml`` when present. Every default
works embedded: SQLite under ``./data``, no other service.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _config_file() -> Path:
    return Path(os.environ.get("TOKENWARDEN_CONFIG", "tokenwarden.toml"))


class Settings(BaseSettings):
    """Every knob tokenwarden has. Secrets (peppers) come from env vars or files, never argv."""

    model_config = SettingsConfigDict(env_prefix="TOKENWARDEN_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default=Path("data"), description="where embedded state lives")
    database_url: str = Field(default="", description="SQLAlchemy URL; default sqlite under data_dir")
    peppers: str | None = Field(
        default=None,
        description="comma-separated id:hexkey pairs, current first (overrides pepper_file)",
    )
    pepper_file: Path | None = Field(
        default=None, description="file of id:hexkey lines; default data_dir/pepper.key"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    server: Literal["uvicorn", "granian"] = Field(
        default="uvicorn", description="the HTTP server `tokenwarden serve` runs (see BENCHMARKS.md)"
    )
    staleness_seconds: float = Field(default=1.0, gt=0, description="max age of the cache view")
    poll_interval_seconds: float = Field(default=0.25, gt=0)
    usage_flush_seconds: float = Field(default=2.0, gt=0)
    usage_last_used_resolution_seconds: float = Field(
        default=60.0,
        ge=0,
        description="a token's last use is written at most once this often (its first use at the next flush)",
    )
    cache_max_entries: int = Field(default=1_000_000, ge=1000)
    negative_cache_max_entries: int = Field(default=100_000, ge=100)
    scope_catalog_file: Path | None = None
    pat_creation_disabled: bool = False
    default_pat_days: int = Field(default=30, ge=1, le=365)
    log_level: str = "info"
    issuer: str | None = Field(
        default=None,
        description="public base URL: the iss of Security Event Tokens; default the request's base URL",
    )
    ssf_push_allow: str = Field(
        default="",
        description=(
            "SSF push targets allowed although loopback, link-local or private: comma-separated "
            "CIDRs, addresses or host names (default none: push goes to public addresses only)"
        ),
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="largest request body (JSON) accepted, checked before it is read: 413 past it",
    )
    max_upload_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1024,
        description="largest body of the CSV upload route (revocations/users-csv): 413 past it",
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="largest total size of a request's headers (names and values): 431 past it",
    )
    # ---- OAuth 2.0 authorization server (issue 11)
    access_token_minutes: int = Field(default=60, ge=1, le=24 * 60, description="JWT access token lifetime")
    refresh_token_days: int = Field(default=90, ge=1, le=3650, description="refresh token lifetime")
    refresh_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="a just-rotated refresh token still refreshes this long (two tabs at once)",
    )
    authorization_code_seconds: int = Field(default=120, ge=10, le=600, description="code lifetime")
    signing_key_rotation_days: int = Field(
        default=30, ge=0, le=3650, description="rotate the access-token signing key this often (0: never)"
    )
    access_token_audience: str | None = Field(
        default=None, description="the aud of access tokens; default the issuer"
    )
    bus_url: str = Field(
        default="auto",
        description=(
            "invalidation bus: auto (PostgreSQL LISTEN/NOTIFY on PostgreSQL, in-process on SQLite), "
            "memory, postgres (the database), a postgresql:// URL, or a redis:// URL"
        ),
    )

    # ---- issue 11: local accounts, sign-in and browser sessions (docs/sessions.md)
    session_idle_days: float = Field(
        default=7.0, gt=0, description="a browser session dies after this long without use (sliding)"
    )
    session_max_days: float = Field(
        default=90.0, gt=0, description="absolute maximum of a browser session from sign-in"
    )
    session_extend_seconds: float = Field(
        default=60.0,
        ge=0,
        description="the sliding window moves (a database write) at most this often per session",
    )
    session_scopes: str = Field(
        default="vso.profile vso.profile_write",
        description="scopes of a session token when it is sent as a Bearer token",
    )
    signin_account_failures: int = Field(
        default=5, ge=1, description="failed sign-ins per account within the window before 429"
    )
    signin_ip_failures: int = Field(
        default=20, ge=1, description="failed sign-ins per client IP within the window before 429"
    )
    signin_window_seconds: int = Field(
        default=900, ge=1, description="the trailing window the sign-in failure limits count in"
    )
    password_min_length: int = Field(default=12, ge=8, le=256)
    argon2_time_cost: int = Field(default=3, ge=1, le=20, description="argon2id iterations")
    argon2_memory_kib: int = Field(default=65536, ge=8, description="argon2id memory per hash (KiB)")
    argon2_parallelism: int = Field(default=4, ge=1, le=64, description="argon2id lanes")
    password_hash_concurrency: int = Field(
        default=4, ge=1, le=256, description="password hashes computed at once per process (memory bound)"
    )
    # ---- issue 12: lifecycle jobs and notifications (docs/notifications.md, docs/jobs.md)
    smtp_host: str | None = Field(default=None, description="SMTP server; unset: email is not sent")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = Field(default=None, description="never logged or shown")
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        default="none", description="none | starttls | tls (implicit TLS, usually port 465)"
    )
    smtp_from: str = Field(default="tokenwarden@localhost", description="From: of every email")
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    webhook_allow: str = Field(
        default="",
        description=(
            "webhook targets allowed although loopback or private: comma-separated CIDRs, addresses "
            "or host names (link-local and cloud metadata addresses are refused even then)"
        ),
    )
    notify_retry_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="first retry of a failed delivery; doubles up to an hour"
    )
    notify_give_up_hours: float = Field(
        default=72.0, gt=0, le=24 * 30, description="a message failing this long goes to the dead letters"
    )
    notify_claim_seconds: float = Field(
        default=300.0, ge=5, le=3600, description="a delivery claimed by a node that died is retried after"
    )
    public_url: str | None = Field(
        default=None, description="base URL printed in messages (how to extend a token); default the issuer"
    )
    scheduler_enabled: bool = Field(default=True, description="run scheduled jobs in `serve`")
    job_schedules: str = Field(
        default="",
        description=(
            "per-job cron expressions (UTC), e.g. 'expiry-notifications=0 8 * * *; weekly-report=0 8 * * 1'; "
            "jobs left out keep their default"
        ),
    )
    job_lease_seconds: float = Field(default=60.0, ge=5, le=3600, description="a dead holder's lease expires")
    expired_notice_days: int = Field(
        default=7, ge=0, le=365, description="tokens that expired this long ago still get their notice"
    )

    # ---- issue 13: rotation and secret stores (docs/rotation.md, docs/secret-stores.md)
    secret_store_keys: SecretStr | None = Field(
        default=None,
        description=(
            "built-in secret store keys: comma-separated id:base64 (32-byte AES-GCM keys), current "
            "first (overrides secret_store_key_file); older keys still open what they sealed"
        ),
    )
    secret_store_key_file: Path | None = Field(
        default=None, description="file of id:base64 lines, current first; default data_dir/secret-store.key"
    )
    secret_wait_max_seconds: float = Field(
        default=60.0, ge=0, le=600, description="longest long-poll of GET /api/v1/secrets/{name}?wait="
    )
    file_store_dir: Path | None = Field(
        default=None, description="directory of the file target; default data_dir/secrets"
    )
    vault_addr: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TOKENWARDEN_VAULT_ADDR", "VAULT_ADDR", "vault_addr"),
        description="Vault / OpenBao address (the standard VAULT_ADDR)",
    )
    vault_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TOKENWARDEN_VAULT_TOKEN", "VAULT_TOKEN", "vault_token"),
        description="Vault token (the standard VAULT_TOKEN); or AppRole below",
    )
    vault_role_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TOKENWARDEN_VAULT_ROLE_ID", "VAULT_ROLE_ID", "vault_role_id"),
        description="AppRole role_id (with vault_secret_id) instead of a token",
    )
    vault_secret_id: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TOKENWARDEN_VAULT_SECRET_ID", "VAULT_SECRET_ID", "vault_secret_id"),
    )
    vault_mount: str = Field(default="secret", description="the KV v2 mount (TOKENWARDEN_VAULT_MOUNT)")
    vault_namespace: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TOKENWARDEN_VAULT_NAMESPACE", "VAULT_NAMESPACE", "vault_namespace"),
    )
    vault_cacert: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("TOKENWARDEN_VAULT_CACERT", "VAULT_CACERT", "vault_cacert"),
    )
    aws_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "TOKENWARDEN_AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            "AWS_ENDPOINT_URL",
            "aws_endpoint_url",
        ),
        description="Secrets Manager endpoint override (tests: a moto server); credentials: boto3's chain",
    )
    aws_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "TOKENWARDEN_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION", "aws_region"
        ),
    )
    azure_keyvault_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "TOKENWARDEN_AZURE_KEYVAULT_URL", "KEY_VAULT_URL", "azure_keyvault_url"
        ),
        description="https://NAME.vault.azure.net; credentials: azure-identity's DefaultAzureCredential",
    )
    azure_keyvault_ca_bundle: Path | None = Field(
        default=None, description="CA bundle to verify the Key Vault endpoint (tests: a loopback server)"
    )
    rotation_batch_size: int = Field(default=10, ge=1, le=1000, description="credentials rotated per batch")
    rotation_batch_pause_seconds: float = Field(
        default=2.0, ge=0, le=600, description="pause between batches (source API rate limits)"
    )
    rotation_retry_attempts: int = Field(default=5, ge=1, le=20, description="tries of a transient failure")
    rotation_retry_max_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="longest single wait between tries (Retry-After included)"
    )
    rotation_http_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    ado_allow: str = Field(
        default="",
        description=(
            "external Azure DevOps servers allowed although loopback or private: comma-separated "
            "CIDRs, addresses or host names (TOKENWARDEN_ADO_ALLOW)"
        ),
    )
    # ---- issue 14: usage records
    usage_recording: bool = Field(
        default=True, description="count every authenticated request per token (usage records)"
    )
    usage_retention_days: int = Field(
        default=90, ge=1, le=3660, description="keep usage records this many days (the usage-retention job)"
    )
    usage_buffer_max: int = Field(
        default=100_000,
        ge=100,
        le=10_000_000,
        description="requests buffered per process between flushes (beyond: dropped and counted)",
    )
    trusted_proxies: str = Field(
        default="",
        description=(
            "CIDRs of reverse proxies whose X-Forwarded-For names the client (comma-separated; "
            "default none: the socket's address is the client)"
        ),
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        for item in value.replace(",", " ").split():
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"TOKENWARDEN_TRUSTED_PROXIES: not a CIDR: {item!r:.60}") from None
        return value

    github_scanning_keys_file: Path | None = Field(
        default=None,
        description=(
            "GitHub's secret-scanning public keys (JSON, as served at "
            "api.github.com/meta/public_keys/secret_scanning); unset: the intake endpoint is off"
        ),
    )
    # ---- issue 14: audit chain checkpoints
    audit_checkpoint_entries: int = Field(
        default=1000,
        ge=1,
        le=10_000_000,
        description="sign an audit chain's head after this many new entries",
    )
    audit_checkpoint_minutes: float = Field(
        default=5.0,
        gt=0,
        le=1440,
        description="...or when any are unsigned and the last checkpoint is this old",
    )
    rotation_lease_seconds: float = Field(
        default=900.0,
        ge=1,
        le=86400,
        description="how long a node holds a credential while rotating it (a killed node's lease runs out)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file())
        return (init_settings, env_settings, toml)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tokenwarden.db').as_posix()}"

    @property
    def resolved_pepper_file(self) -> Path:
        return self.pepper_file or self.data_dir / "pepper.key"
