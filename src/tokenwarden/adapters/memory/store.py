"""In-memory implementation of every storage port: the unit of work and the database.

A unit of work holds the store's lock for its whole life and keeps an undo journal, so
leaving without commit() restores the previous state exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Self

from tokenwarden.adapters.memory._base import MemoryStore, Undo
from tokenwarden.adapters.memory.alerts import MemoryAlertRepository
from tokenwarden.adapters.memory.audit import MemoryAuditRepository
from tokenwarden.adapters.memory.break_glass import MemoryBreakGlassRepository
from tokenwarden.adapters.memory.bulk_jobs import MemoryBulkJobRepository
from tokenwarden.adapters.memory.console import MemoryConsoleRepository
from tokenwarden.adapters.memory.directory import (
    MemoryInvitationRepository,
    MemoryOrgRepository,
    MemoryUserRepository,
)
from tokenwarden.adapters.memory.events import MemoryEventRepository
from tokenwarden.adapters.memory.lifecycle import (
    MemoryJobRepository,
    MemoryLifecycleRepository,
    MemoryOutboxRepository,
    MemoryWebhookRepository,
)
from tokenwarden.adapters.memory.mfa import MemoryMfaRepository
from tokenwarden.adapters.memory.oauth import MemoryOAuthRepository
from tokenwarden.adapters.memory.policies import MemoryPolicyRepository
from tokenwarden.adapters.memory.reports import MemoryReportRepository
from tokenwarden.adapters.memory.rotation import (
    MemoryManagedCredentialRepository,
    MemoryRotationRepository,
)
from tokenwarden.adapters.memory.rules import MemoryRuleRepository
from tokenwarden.adapters.memory.scim import MemoryScimRepository
from tokenwarden.adapters.memory.signals import MemorySignalRepository
from tokenwarden.adapters.memory.tokens import MemoryTokenRepository
from tokenwarden.adapters.memory.usage import MemoryUsageRepository
from tokenwarden.adapters.memory.watermarks import MemoryWatermarkRepository
from tokenwarden.domain.clock import SystemClock
from tokenwarden.domain.events import InvalidationEvent
from tokenwarden.ports.alerts import AlertRepository
from tokenwarden.ports.console import ConsoleRepository
from tokenwarden.ports.lifecycle import (
    JobRepository,
    LifecycleRepository,
    OutboxRepository,
    WebhookRepository,
)
from tokenwarden.ports.mfa import MfaRepository
from tokenwarden.ports.oauth import OAuthRepository
from tokenwarden.ports.reports import ReportRepository
from tokenwarden.ports.repositories import (
    AuditRepository,
    BreakGlassRepository,
    BulkJobRepository,
    CommitHook,
    EventRepository,
    IntentHook,
    InvitationRepository,
    OrgRepository,
    PolicyRepository,
    RuleRepository,
    TokenRepository,
    UserRepository,
    WatermarkRepository,
    run_hooks,
    run_intent_hooks,
)
from tokenwarden.ports.rotation import ManagedCredentialRepository, RotationRepository
from tokenwarden.ports.scim import ScimRepository
from tokenwarden.ports.signals import (
    SignalRepository,
)
from tokenwarden.ports.usage import UsageRepository


class MemoryUnitOfWork:
    orgs: OrgRepository
    users: UserRepository
    tokens: TokenRepository
    policies: PolicyRepository
    audit: AuditRepository
    events: EventRepository
    rules: RuleRepository
    watermarks: WatermarkRepository
    break_glass: BreakGlassRepository
    bulk_jobs: BulkJobRepository
    signals: SignalRepository
    invitations: InvitationRepository
    oauth: OAuthRepository
    reports: ReportRepository
    jobs: JobRepository
    outbox: OutboxRepository
    webhooks: WebhookRepository
    lifecycle: LifecycleRepository
    managed: ManagedCredentialRepository
    rotations: RotationRepository
    usage: UsageRepository
    alerts: AlertRepository
    mfa: MfaRepository
    scim: ScimRepository
    console: ConsoleRepository

    def __init__(
        self, store: MemoryStore, hooks: Sequence[CommitHook] = (), intent_hooks: Sequence[IntentHook] = ()
    ) -> None:
        self._intent_hooks = intent_hooks
        self._store = store
        self._hooks = hooks
        self._announce: list[InvalidationEvent] = []
        self._journal: list[Undo] = []

    def __enter__(self) -> Self:
        self._store.lock.acquire()
        self._journal = []
        s, j = self._store, self._journal
        self.orgs = MemoryOrgRepository(s, j)
        self.users = MemoryUserRepository(s, j)
        self.tokens = MemoryTokenRepository(s, j)
        self.policies = MemoryPolicyRepository(s, j)
        self.audit = MemoryAuditRepository(s, j)
        self.events = self._events = MemoryEventRepository(s, j, self._intent_hooks)
        self.rules = MemoryRuleRepository(s, j)
        self.watermarks = MemoryWatermarkRepository(s, j)
        self.break_glass = MemoryBreakGlassRepository(s, j)
        self.bulk_jobs = MemoryBulkJobRepository(s, j)
        self.signals = MemorySignalRepository(s, j)
        self.invitations = MemoryInvitationRepository(s, j)
        self.oauth = MemoryOAuthRepository(s, j)
        self.reports = MemoryReportRepository(s, j)
        self.jobs = MemoryJobRepository(s, j)
        self.outbox = MemoryOutboxRepository(s, j)
        self.webhooks = MemoryWebhookRepository(s, j)
        self.lifecycle = MemoryLifecycleRepository(s, j)
        self.managed = MemoryManagedCredentialRepository(s, j)
        self.rotations = MemoryRotationRepository(s, j)
        self.usage = MemoryUsageRepository(s, j)
        self.alerts = MemoryAlertRepository(s, j)
        self.mfa = MemoryMfaRepository(s, j)
        self.scim = MemoryScimRepository(s, j)
        self.console = MemoryConsoleRepository(s, j)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for undo in reversed(self._journal):
                undo()
        finally:
            self._journal.clear()
            self._store.lock.release()
        if self._events.intents:  # announced before a commit that did not come: take them back
            intents, self._events.intents = self._events.intents, []
            run_intent_hooks(self._intent_hooks, intents, withdrawn=True)
        announce, self._announce = self._announce, []
        if announce:
            run_hooks(self._hooks, announce)

    def commit(self) -> None:
        self._journal.clear()
        if self._events.appended:
            self._announce.extend(self._events.written)
            self._events.appended = 0
            self._events.written = []
            self._events.intents = []


class MemoryDatabase:
    """Factory of in-memory units of work over one shared store."""

    url_for_display = "memory://"

    def __init__(self) -> None:
        self.store = MemoryStore()
        self._clock = SystemClock()
        self._hooks: list[CommitHook] = []
        self._intent_hooks: list[IntentHook] = []

    def __call__(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store, self._hooks, self._intent_hooks)

    reader = __call__

    def on_commit(self, hook: CommitHook) -> None:
        """Call ``hook(events)`` after every unit of work that committed invalidation events."""
        self._hooks.append(hook)

    def on_intent(self, hook: IntentHook) -> None:
        """Call ``hook`` when a revocation is appended, and if it is then not committed."""
        self._intent_hooks.append(hook)

    def upgrade(self) -> None:
        return None

    def is_initialized(self) -> bool:
        return bool(self.store.orgs)

    def ping(self) -> bool:
        return True

    def dispose(self) -> None:
        return None
