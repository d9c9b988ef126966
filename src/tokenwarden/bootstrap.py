"""Composition root: settings -> adapters -> services. The only module that wires adapters."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tokenwarden.adapters.bus.memory import MemoryBus
from tokenwarden.adapters.notify.smtp import SmtpEmailSender
from tokenwarden.adapters.notify.webhook import HttpWebhookSender
from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.domain.clock import Clock, SystemClock
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.events import Announcement, AnnouncementKind, InvalidationEvent
from tokenwarden.domain.hashing import Pepper, SecretHasher
from tokenwarden.domain.managed import ManagedCredential, SourceKind, StoreKind
from tokenwarden.domain.netpolicy import PushAllowList
from tokenwarden.domain.policies import GlobalPolicy
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.sessions import SessionWindow
from tokenwarden.jobs.background import BackgroundSync
from tokenwarden.jobs.lifecycle import LifecycleWorker
from tokenwarden.jobs.ssf_delivery import SsfDeliveryWorker
from tokenwarden.ports.bus import InvalidationBus
from tokenwarden.ports.repositories import Database, UnitOfWorkFactory
from tokenwarden.ports.secrets import SecretStore
from tokenwarden.ports.token_sources import TokenSource
from tokenwarden.services.access_tokens import AccessTokenMinter, JwtVerifier
from tokenwarden.services.accounts import CHALLENGE_INFO, AccountService, ThrottlePolicy
from tokenwarden.services.audit_chain import AuditChainService, CheckpointPolicy
from tokenwarden.services.audit_log import AuditService
from tokenwarden.services.break_glass import BreakGlassService
from tokenwarden.services.bulk_revoke import BulkRevokeService
from tokenwarden.services.console import ConsoleService
from tokenwarden.services.detection import DetectionService
from tokenwarden.services.directory import DirectoryService
from tokenwarden.services.dormancy import DormancyJob
from tokenwarden.services.expiry import ExpiryNotifier
from tokenwarden.services.job_runner import JobRunner, JobSpec, parse_schedules
from tokenwarden.services.jobs_admin import JobsAdmin
from tokenwarden.services.leak_intake import LeakIntake
from tokenwarden.services.lifecycle_jobs import (
    AUDIT_CHECKPOINT_JOB,
    DEFAULT_SCHEDULES,
    DORMANT_TOKENS,
    EXPIRY_NOTIFICATIONS,
    POLICY_ENFORCEMENT,
    ROTATION_JOB,
    USAGE_RETENTION_JOB,
    WEBHOOK_SECRET_INFO,
    WEEKLY_REPORT,
    delivering,
)
from tokenwarden.services.local_source import LocalPatSource
from tokenwarden.services.managed import ManagedCredentialService, ado_credential_aad
from tokenwarden.services.mfa import MfaService
from tokenwarden.services.notifications import NotificationAdmin
from tokenwarden.services.oauth.introspection import Introspector
from tokenwarden.services.oauth.server import OAuthServer, OAuthSettings
from tokenwarden.services.oauth_clients import OAuthClientService
from tokenwarden.services.offboarding import OffboardingService
from tokenwarden.services.outbox_delivery import Backoff, OutboxDelivery
from tokenwarden.services.passwords import PasswordHashing
from tokenwarden.services.pats import PatService
from tokenwarden.services.policies import PolicyService
from tokenwarden.services.policy_check import PolicyCheckService
from tokenwarden.services.policy_enforcement import PolicyEnforcementJob, PolicyEnforcementService
from tokenwarden.services.revocation import RevocationService
from tokenwarden.services.rotation import RotationService
from tokenwarden.services.rules import RuleService
from tokenwarden.services.scim.service import ScimService
from tokenwarden.services.sessions import SessionService
from tokenwarden.services.signing import AUTH_HEADER_INFO, ES256, SecretBox, SigningKeys
from tokenwarden.services.ssf import SsfService
from tokenwarden.services.token_care import TokenCareService
from tokenwarden.services.usage import UsageRecorder, UsageService
from tokenwarden.services.validation import Validator
from tokenwarden.services.webhooks import WebhookService
from tokenwarden.services.weekly_report import WeeklyReportService, run_weekly_report
from tokenwarden.settings import Settings


@dataclass
class Container:
    """Everything a process needs, wired once."""

    settings: Settings
    database: Database
    uow: UnitOfWorkFactory
    clock: Clock
    catalog: ScopeCatalog
    hasher: SecretHasher
    validator: Validator
    pats: PatService
    directory: DirectoryService
    policies: PolicyService
    audit: AuditService
    audit_chain: AuditChainService
    usage: UsageService  # issue 14: usage records
    detection: DetectionService  # issue 14: compromise detection, alerts
    leak_intake: LeakIntake  # issue 14: GitHub secret scanning
    rules: RuleService
    revocation: RevocationService
    break_glass: BreakGlassService
    bulk_revoke: BulkRevokeService
    ssf: SsfService
    keys: SigningKeys
    oauth: OAuthServer
    introspector: Introspector
    # issue 11 (part 2): the OAuth client registry
    clients: OAuthClientService
    # ---- issue 11 part 1: local accounts, sign-in, browser sessions
    accounts: AccountService
    sessions: SessionService
    mfa: MfaService  # issue 16: second factors and step-up
    console: ConsoleService  # issue 16: the admin console's reads
    # ---- issue 12: lifecycle jobs and notifications
    jobs: JobRunner
    delivery: OutboxDelivery
    webhooks: WebhookService
    notifications: NotificationAdmin
    jobs_admin: JobsAdmin
    # ----
    # ---- issue 12 (wt-lifecycle): policy enforcement, owner self-service
    enforcement: PolicyEnforcementService
    token_care: TokenCareService
    # ----
    # issue 12: policy violations and the weekly report
    policy_check: PolicyCheckService
    weekly_report: WeeklyReportService
    # issue 13: rotation into secret stores
    managed: ManagedCredentialService
    rotation: RotationService
    stores: SecretStores
    offboarding: OffboardingService  # issue 17: leavers
    scim: ScimService  # issue 17: SCIM 2.0 provisioning
    bus: InvalidationBus = field(default_factory=MemoryBus)
    background: BackgroundSync | None = field(default=None)
    ssf_worker: SsfDeliveryWorker | None = field(default=None)
    lifecycle_worker: LifecycleWorker | None = field(default=None)

    def start_background(self) -> None:
        """Start event sync and usage flushing (servers only)."""
        if self.background is None:
            self.background = BackgroundSync(
                self.validator,
                self.uow,
                poll_interval=self.settings.poll_interval_seconds,
                flush_interval=self.settings.usage_flush_seconds,
                usage=self.usage,
            )
        self.validator.sync()
        validator, background = self.validator, self.background

        def on_announcement(announcement: Announcement) -> None:
            # what narrows access applies now, on the bus thread; the events-table read that
            # confirms it (and applies everything else) runs on the sync thread
            validator.apply_announced(announcement.events, announcement.kind)
            if announcement.seq > validator.seq:
                background.nudge()

        self.bus.subscribe(on_announcement)
        self.bus.start()
        self.background.start()
        if self.ssf_worker is None:
            self.ssf_worker = SsfDeliveryWorker(self.ssf)
        self.ssf_worker.start()
        if self.lifecycle_worker is None:
            self.lifecycle_worker = LifecycleWorker(
                self.jobs, self.delivery, self.clock, scheduler=self.settings.scheduler_enabled
            )
        self.lifecycle_worker.start()

    def close(self) -> None:
        if self.lifecycle_worker is not None:
            self.lifecycle_worker.stop()
        if self.ssf_worker is not None:
            self.ssf_worker.stop()
        if self.background is not None:
            self.background.stop()
        self.bus.close()
        self.database.dispose()


def load_peppers(settings: Settings, *, create: bool = False) -> SecretHasher:
    """Peppers from ``TOKENWARDEN_PEPPERS`` or the pepper file (created 0600 when ``create``)."""
    text = settings.peppers
    path = settings.resolved_pepper_file
    if text is None:
        if not path.exists():
            if not create:
                raise InvalidInput(
                    f"no pepper: set TOKENWARDEN_PEPPERS or create {path} (tokenwarden init does)",
                    code="pepperMissing",
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"p1:{secrets.token_hex(32)}\n")
        text = path.read_text(encoding="utf-8")
    return SecretHasher(_parse_peppers(text))


def _parse_peppers(text: str) -> list[Pepper]:
    peppers = []
    for item in text.replace(",", "\n").splitlines():
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        pid, sep, hexkey = item.partition(":")
        try:
            key = bytes.fromhex(hexkey.strip())
        except ValueError:
            key = b""
        if not sep or not key:
            raise InvalidInput("peppers are id:hexkey pairs (e.g. p1:<64 hex digits>)", code="invalidPepper")
        peppers.append(Pepper(pid.strip(), key))
    return peppers


def make_bus(settings: Settings) -> InvalidationBus:
    """The invalidation bus named by ``settings.bus_url`` (see Settings.bus_url)."""
    url = settings.bus_url.strip()
    db_url = settings.resolved_database_url
    if url == "auto":
        url = "postgres" if db_url.startswith("postgresql") else "memory"
    if url == "memory":
        return MemoryBus()
    if url == "postgres":
        if not db_url.startswith("postgresql"):
            raise InvalidInput("bus_url=postgres needs a PostgreSQL database_url", code="invalidSetting")
        from tokenwarden.adapters.bus.postgres import PostgresBus  # imported only when used

        return PostgresBus(db_url)
    if url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        from tokenwarden.adapters.bus.postgres import PostgresBus

        return PostgresBus(url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from tokenwarden.adapters.bus.redis import RedisBus

        return RedisBus(url)
    raise InvalidInput(
        f"unsupported bus_url {url!r}: auto, memory, postgres, postgresql://... or redis://...",
        code="invalidSetting",
    )


def load_catalog(settings: Settings) -> ScopeCatalog:
    if settings.scope_catalog_file is not None:
        return ScopeCatalog.from_toml(Path(settings.scope_catalog_file))
    return ScopeCatalog.default()


def build(
    settings: Settings | None = None, *, create_pepper: bool = False, clock: Clock | None = None
) -> Container:
    """Wire a container from settings (the database must exist: call ``upgrade`` first)."""
    settings = settings or Settings()
    database = SqlDatabase(settings.resolved_database_url)
    return wire(settings, database, load_peppers(settings, create=create_pepper), clock=clock)


def wire(
    settings: Settings, database: Database, hasher: SecretHasher, *, clock: Clock | None = None
) -> Container:
    """Assemble services over an already-built database adapter (also used by tests/bench)."""
    clock = clock or SystemClock()
    catalog = load_catalog(settings)
    uow: UnitOfWorkFactory = database
    reader = database.reader
    keys = SigningKeys(
        uow,
        hasher,
        clock,
        reader=reader,
        rotate_every={  # access-token keys; a retired one stays published until its tokens expire
            ES256: (
                timedelta(days=settings.signing_key_rotation_days),
                timedelta(minutes=settings.access_token_minutes + 5),
            )
        }
        if settings.signing_key_rotation_days
        else None,
    )
    clients = OAuthClientService(uow, hasher, catalog, clock)  # issue 11 (part 2): the client registry
    validator = Validator(
        reader,
        uow,
        hasher,
        catalog,
        staleness_seconds=settings.staleness_seconds,
        max_entries=settings.cache_max_entries,
        negative_max_entries=settings.negative_cache_max_entries,
        jwt_verifier=JwtVerifier(keys),
        usage_resolution_seconds=settings.usage_last_used_resolution_seconds,
    )
    bus = make_bus(settings)

    def announce(events: Sequence[InvalidationEvent]) -> None:
        """After a local commit of invalidation events: tell every other node first — the
        events themselves, so they refuse at once without reading the database — then apply
        them here (read-your-writes). The one after-commit mechanism (``Database.on_commit``)."""
        bus.publish(Announcement(max(e.seq for e in events), tuple(events)))
        validator.apply_announced(events)
        validator.sync()

    def announce_intent(events: Sequence[InvalidationEvent], withdrawn: bool) -> None:
        """An authorised revocation was appended (or its transaction failed): every node —
        this one too — refuses its tokens now, not after the commit (``Database.on_intent``)."""
        kind = AnnouncementKind.WITHDRAWN if withdrawn else AnnouncementKind.INTENT
        bus.publish(Announcement(0, tuple(events), kind))
        validator.apply_announced(events, kind)

    database.on_commit(announce)
    database.on_intent(announce_intent)

    pats = PatService(
        uow,
        hasher,
        catalog,
        clock,
        GlobalPolicy(pat_creation_disabled=settings.pat_creation_disabled),
        default_days=settings.default_pat_days,
    )
    # ---- issue 11 part 1: local accounts, sign-in, browser sessions
    sessions = SessionService(
        uow,
        hasher,
        clock,
        catalog,
        SessionWindow(
            idle=timedelta(days=settings.session_idle_days),
            absolute=timedelta(days=settings.session_max_days),
            extend_every=timedelta(seconds=settings.session_extend_seconds),
        ),
        catalog.parse(settings.session_scopes),
    )
    mfa = MfaService(uow, clock, hasher)
    accounts = AccountService(
        uow,
        clock,
        PasswordHashing(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            concurrency=settings.password_hash_concurrency,
        ),
        sessions,
        ThrottlePolicy(
            account_failures=settings.signin_account_failures,
            ip_failures=settings.signin_ip_failures,
            window=timedelta(seconds=settings.signin_window_seconds),
        ),
        min_password_length=settings.password_min_length,
        mfa=mfa,
        challenge_box=SecretBox(hasher, CHALLENGE_INFO),
    )
    # ---- issue 13: rotation into secret stores
    stores = SecretStores(settings, database)
    rotation = wire_rotation(settings, uow, clock, pats, hasher, stores)
    # ---- issue 14: the tamper-evident audit chain's checkpoints
    audit_chain = AuditChainService(
        uow,
        keys,
        clock,
        CheckpointPolicy(
            entries=settings.audit_checkpoint_entries,
            max_age=timedelta(minutes=settings.audit_checkpoint_minutes),
        ),
    )
    # ---- issue 14: usage records
    usage = UsageService(
        uow,
        clock,
        UsageRecorder(settings.usage_buffer_max, enabled=settings.usage_recording),
        retention_days=settings.usage_retention_days,
    )
    detection = DetectionService(uow, clock, rotation)
    usage.detector = detection.detect
    # ---- issue 12: lifecycle jobs and notifications
    jobs, delivery, webhooks = wire_lifecycle(
        settings, uow, clock, catalog, hasher, rotation, audit_chain, usage
    )
    # ---- issue 17: offboarding and SCIM provisioning
    offboarding = OffboardingService(uow, clock, rotation)
    # ----
    container = Container(
        mfa=mfa,
        console=ConsoleService(uow, clock, catalog),
        managed=ManagedCredentialService(
            uow,
            clock,
            stores,
            SecretBox(hasher, ADO_CREDENTIAL_INFO),
            lambda u, o, c: ado_source(settings, u, o, c),
        ),
        rotation=rotation,
        stores=stores,
        offboarding=offboarding,
        scim=ScimService(uow, clock, hasher, offboarding),
        jobs=jobs,
        delivery=delivery,
        webhooks=webhooks,
        notifications=NotificationAdmin(uow, clock),
        jobs_admin=JobsAdmin(jobs, uow, clock),
        accounts=accounts,
        sessions=sessions,
        bus=bus,
        settings=settings,
        database=database,
        uow=uow,
        clock=clock,
        catalog=catalog,
        hasher=hasher,
        validator=validator,
        pats=pats,
        directory=DirectoryService(uow, clock, pats),
        policies=PolicyService(uow, clock),
        policy_check=PolicyCheckService(uow, clock, catalog),
        weekly_report=WeeklyReportService(uow, clock, catalog),
        audit=AuditService(uow),
        audit_chain=audit_chain,
        usage=usage,
        detection=detection,
        leak_intake=LeakIntake(uow, hasher, detection, settings.github_scanning_keys_file),
        rules=RuleService(uow, catalog, clock),
        revocation=RevocationService(uow, hasher, clock, catalog),
        break_glass=BreakGlassService(uow, clock, pats),
        ssf=SsfService(
            uow,
            keys,
            SecretBox(hasher, AUTH_HEADER_INFO),
            clock,
            reader=reader,
            push_allow=PushAllowList.parse(settings.ssf_push_allow),
        ),
        # SQLite has one writer at a time: a CSV job leaves the lock free between its chunks.
        bulk_revoke=BulkRevokeService(uow, clock, yield_ratio=1.0 if _single_writer(database) else 0.0),
        keys=keys,
        introspector=Introspector(validator, clients, settings.issuer),
        oauth=OAuthServer(
            uow,
            validator,
            hasher,
            AccessTokenMinter(keys),
            catalog,
            clock,
            clients,
            OAuthSettings(
                access_token_seconds=settings.access_token_minutes * 60,
                refresh_token_days=settings.refresh_token_days,
                refresh_grace_seconds=settings.refresh_grace_seconds,
                code_seconds=settings.authorization_code_seconds,
                audience=settings.access_token_audience,
            ),
        ),
        # issue 11 (part 2): the OAuth client registry
        clients=clients,
        # issue 12 (wt-lifecycle)
        enforcement=PolicyEnforcementService(
            uow, clock, catalog, base_url=settings.public_url or settings.issuer
        ),
        token_care=TokenCareService(uow, clock, pats),
    )
    # issue 16: break-glass, policy changes and bulk revocation need a fresh second factor
    for service in (
        container.break_glass,
        container.policies,
        container.bulk_revoke,
        container.revocation,
        container.rules,
        container.pats,  # revoking several PATs at once
    ):
        service.step_up = mfa.require_step_up
    container.pats.fresh_factor = mfa.require_fresh_factor  # one's own PAT from the console
    container.rotation.fresh_factor = mfa.require_fresh_factor  # Rotate now from the console
    return container


def wire_lifecycle(
    settings: Settings,
    uow: UnitOfWorkFactory,
    clock: Clock,
    catalog: ScopeCatalog,
    hasher: SecretHasher,
    rotation: RotationService | None = None,
    audit_chain: AuditChainService | None = None,
    usage: UsageService | None = None,
) -> tuple[JobRunner, OutboxDelivery, WebhookService]:
    """The scheduled side: channels from the SMTP/webhook settings, the outbox worker, the jobs."""
    allow = PushAllowList.parse(settings.webhook_allow)
    webhooks = WebhookService(uow, clock, SecretBox(hasher, WEBHOOK_SECRET_INFO), allow)
    email = (
        SmtpEmailSender(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            security=settings.smtp_security,
            sender=settings.smtp_from,
            timeout=settings.smtp_timeout_seconds,
        )
        if settings.smtp_host
        else None
    )
    node = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    delivery = OutboxDelivery(
        uow,
        clock,
        email=email,
        webhook=HttpWebhookSender(settings.webhook_timeout_seconds, allow),
        webhooks=webhooks,
        node=node,
        claim_seconds=settings.notify_claim_seconds,
        backoff=Backoff(
            base=timedelta(seconds=settings.notify_retry_seconds),
            max_age=timedelta(hours=settings.notify_give_up_hours),
        ),
    )
    base_url = settings.public_url or settings.issuer
    glob = GlobalPolicy(pat_creation_disabled=settings.pat_creation_disabled)
    expiry = ExpiryNotifier(
        uow,
        clock,
        catalog,
        glob,
        expired_lookback=timedelta(days=settings.expired_notice_days),
        base_url=base_url,
    )
    bodies = {
        EXPIRY_NOTIFICATIONS: (
            "warn owners, watchers and the security contact before tokens expire; record expiry",
            expiry.run,
        ),
        DORMANT_TOKENS: (
            "warn about, then revoke, tokens unused past the organization's dormancy limit",
            DormancyJob(uow, clock, catalog, base_url=base_url).run,
        ),
        POLICY_ENFORCEMENT: (
            "apply policy enforcements whose grace period has ended",
            PolicyEnforcementJob(uow, clock, catalog, base_url=base_url).run,
        ),
        WEEKLY_REPORT: (
            "the weekly report to each organization's administrators",
            lambda ctx: run_weekly_report(
                uow, clock, catalog, org_id=ctx.org_id, base_url=base_url, run_id=ctx.run_id, check=ctx.check
            ),
        ),
    }
    if rotation is not None:
        bodies[ROTATION_JOB] = (
            "rotate managed credentials before they expire; finish rotations a crash or an overlap left open",
            lambda ctx: rotation.run(
                org_id=ctx.org_id, trigger=ctx.trigger, run_id=ctx.run_id, check=ctx.check
            ).counts(),
        )
    if audit_chain is not None:
        bodies[AUDIT_CHECKPOINT_JOB] = (
            "sign the head of every audit chain that grew since its last checkpoint",
            lambda ctx: audit_chain.run_job(),
        )
    if usage is not None:
        bodies[USAGE_RETENTION_JOB] = (
            f"delete usage records older than {usage.retention_days} days",
            lambda ctx: {"deleted": usage.prune(), "retentionDays": usage.retention_days},
        )
    schedules = parse_schedules(settings.job_schedules, list(bodies))
    specs = [
        JobSpec(name, text, delivering(body, delivery, uow), schedules.get(name, DEFAULT_SCHEDULES[name]))
        for name, (text, body) in bodies.items()
    ]
    jobs = JobRunner(uow, clock, specs, node=node, lease_seconds=settings.job_lease_seconds)
    return jobs, delivery, webhooks


ADO_CREDENTIAL_INFO = b"tokenwarden managed credential: external source credential"


class SecretStores:
    """The secret stores this node is configured for, built on first use (one per kind)."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._database = database
        self._built: dict[StoreKind, SecretStore] = {}
        self._lock = threading.Lock()

    def __call__(self, kind: StoreKind) -> SecretStore:
        with self._lock:
            store = self._built.get(kind)
            if store is None:
                store = self._built[kind] = self._build(kind)
            return store

    def rekey_builtin(self) -> int:
        """Re-seal the built-in store's versions under its current key; how many changed."""
        from tokenwarden.adapters.secrets.builtin import BuiltinSecretStore

        store = self(StoreKind.BUILTIN)
        assert isinstance(store, BuiltinSecretStore)  # noqa: S101 - _build makes one
        return store.rekey()

    def _build(self, kind: StoreKind) -> SecretStore:
        # Each store's client library is imported when that store is first used: a CLI command
        # that never rotates does not pay for boto3, hvac or the Azure SDK at start-up.
        s = self._settings
        timeout = s.rotation_http_timeout_seconds
        if kind is StoreKind.BUILTIN:
            if not isinstance(self._database, SqlDatabase):
                raise InvalidInput(
                    "the built-in secret store needs a SQL database", code="storeNotConfigured"
                )
            from tokenwarden.adapters.secrets.builtin import BuiltinSecretStore
            from tokenwarden.adapters.secrets.keyring import load_keyring

            keys = s.secret_store_keys.get_secret_value() if s.secret_store_keys else None
            keyring = load_keyring(keys, s.secret_store_key_file or s.data_dir / "secret-store.key")
            return BuiltinSecretStore(self._database.engine, keyring)
        if kind is StoreKind.FILE:
            from tokenwarden.adapters.secrets.file import FileSecretStore

            return FileSecretStore(s.file_store_dir or s.data_dir / "secrets")
        if kind is StoreKind.VAULT:
            if not s.vault_addr:
                raise InvalidInput(
                    "the vault store is not configured: set VAULT_ADDR and VAULT_TOKEN (or "
                    "VAULT_ROLE_ID and VAULT_SECRET_ID)",
                    code="storeNotConfigured",
                )
            from tokenwarden.adapters.secrets.vault import VaultSecretStore

            return VaultSecretStore(
                s.vault_addr,
                token=s.vault_token.get_secret_value() if s.vault_token else None,
                role_id=s.vault_role_id,
                secret_id=s.vault_secret_id.get_secret_value() if s.vault_secret_id else None,
                mount=s.vault_mount,
                namespace=s.vault_namespace,
                verify=str(s.vault_cacert) if s.vault_cacert else True,
                timeout=timeout,
            )
        if kind is StoreKind.AWS:
            from tokenwarden.adapters.secrets.aws import AwsSecretStore

            return AwsSecretStore(region=s.aws_region, endpoint_url=s.aws_endpoint_url)
        if kind is StoreKind.AZURE_KEYVAULT:
            if not s.azure_keyvault_url:
                raise InvalidInput(
                    "the azure-keyvault store is not configured: set KEY_VAULT_URL (and azure-identity's "
                    "AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET or a managed identity)",
                    code="storeNotConfigured",
                )
            from tokenwarden.adapters.secrets.azure_keyvault import AzureKeyVaultSecretStore

            return AzureKeyVaultSecretStore(
                s.azure_keyvault_url,
                ca_bundle=str(s.azure_keyvault_ca_bundle) if s.azure_keyvault_ca_bundle else None,
                timeout=timeout,
            )
        raise InvalidInput(f"unknown secret store {kind!r}", code="invalidStore")  # pragma: no cover


def ado_source(settings: Settings, url: str, org: str, credential: str) -> TokenSource:
    """A PAT Lifecycle API client for one external Azure DevOps-compatible organization."""
    from tokenwarden.adapters.providers.ado import AdoPatSource

    return AdoPatSource(
        url,
        org,
        credential,
        timeout=settings.rotation_http_timeout_seconds,
        retry_attempts=settings.rotation_retry_attempts,
        retry_max_seconds=settings.rotation_retry_max_seconds,
        allow=PushAllowList.parse(settings.ado_allow),
    )


def wire_rotation(
    settings: Settings,
    uow: UnitOfWorkFactory,
    clock: Clock,
    pats: PatService,
    hasher: SecretHasher,
    stores: Callable[[StoreKind], SecretStore],
    *,
    sources: Callable[[ManagedCredential], TokenSource] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> RotationService:
    """The rotation service: local PATs through PatService, external ones through the ADO client."""
    box = SecretBox(hasher, ADO_CREDENTIAL_INFO)

    def source_for(cred: ManagedCredential) -> TokenSource:
        if cred.source is SourceKind.LOCAL:
            return LocalPatSource(pats, uow, clock, org_id=cred.org_id, user_id=cred.user_id or "")
        with uow() as u:
            sealed = u.managed.sealed_ado_credential(cred.id)
        if sealed is None or not cred.ado_url or not cred.ado_org:
            raise InvalidInput(f"{cred.name} has no Azure DevOps credential", code="missingCredential")
        credential = box.open_text(sealed, ado_credential_aad(cred.id))
        return ado_source(settings, cred.ado_url, cred.ado_org, credential)

    return RotationService(
        uow,
        clock,
        sources or source_for,
        stores,
        hasher.hash,
        batch_size=settings.rotation_batch_size,
        batch_pause=settings.rotation_batch_pause_seconds,
        retry_attempts=settings.rotation_retry_attempts,
        retry_max_seconds=settings.rotation_retry_max_seconds,
        base_url=settings.public_url or settings.issuer,
        sleep=sleep or time.sleep,
        lease=timedelta(seconds=settings.rotation_lease_seconds),
    )


def _single_writer(database: Database) -> bool:
    """Does the database let one writer in at a time (SQLite), others waiting on a busy timeout?"""
    return isinstance(database, SqlDatabase) and database.engine.dialect.name == "sqlite"


def memory_container(settings: Settings | None = None, *, clock: Clock | None = None) -> Container:
    """An in-memory container (unit tests, benchmarks)."""
    from tokenwarden.adapters.memory.store import MemoryDatabase

    hasher = SecretHasher([Pepper("p1", secrets.token_bytes(32))])
    return wire(settings or Settings(), MemoryDatabase(), hasher, clock=clock)


def database_for(settings: Settings) -> Database:
    """Just the database adapter (status checks that must not need a pepper)."""
    return SqlDatabase(settings.resolved_database_url)
