"""Transactions over the SQL repositories, and schema management."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from sqlalchemy import Connection, Engine, func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError

from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.engine import display_url, make_engine
from tokenwarden.adapters.sql.errors import kind_of, translate
from tokenwarden.adapters.sql.repositories import (
    SqlAuditRepository,
    SqlBreakGlassRepository,
    SqlBulkJobRepository,
    SqlEventRepository,
    SqlInvitationRepository,
    SqlOAuthRepository,
    SqlOrgRepository,
    SqlPolicyRepository,
    SqlReportRepository,
    SqlRuleRepository,
    SqlSignalRepository,
    SqlTokenRepository,
    SqlUserRepository,
    SqlWatermarkRepository,
)
from tokenwarden.adapters.sql.repositories.alerts import SqlAlertRepository
from tokenwarden.adapters.sql.repositories.console import SqlConsoleRepository
from tokenwarden.adapters.sql.repositories.lifecycle import (
    SqlJobRepository,
    SqlLifecycleRepository,
    SqlOutboxRepository,
    SqlWebhookRepository,
)
from tokenwarden.adapters.sql.repositories.mfa import SqlMfaRepository
from tokenwarden.adapters.sql.repositories.rotation import (
    SqlManagedCredentialRepository,
    SqlRotationRepository,
)
from tokenwarden.adapters.sql.repositories.scim import SqlScimRepository
from tokenwarden.adapters.sql.repositories.usage import SqlUsageRepository
from tokenwarden.domain.errors import Unavailable
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
from tokenwarden.ports.signals import SignalRepository
from tokenwarden.ports.usage import UsageRepository

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision (tests check it against the migrations directory). Stale, it
# only makes ``upgrade`` run alembic, which then finds nothing to do.
SCHEMA_HEAD = "0016"
WRITE_LOCK_SECONDS = 30.0  # = SQLite's busy timeout (engine.py)


class SqlUnitOfWork:
    """One connection, one transaction; repositories share it."""

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
        self,
        engine: Engine,
        *,
        readonly: bool = False,
        hooks: Sequence[CommitHook] = (),
        intent_hooks: Sequence[IntentHook] = (),
        write_lock: threading.RLock | None = None,
    ) -> None:
        self._engine = engine
        self._readonly = readonly
        self._hooks = hooks
        self._intent_hooks = intent_hooks
        self._announce: list[InvalidationEvent] = []
        self._conn: Connection | None = None
        self._write_lock = None if readonly else write_lock
        self._locked = False

    def __enter__(self) -> Self:
        if self._write_lock is not None:
            # SQLite has one writer at a time: queue here, not in BEGIN IMMEDIATE, so a waiting
            # writer holds no pooled connection (a writer needing a second one for a read would
            # otherwise find the pool empty) and is woken when the lock frees, not by SQLite's
            # busy handler sleeping up to 100 ms per try. Same bound as the busy timeout.
            if not self._write_lock.acquire(timeout=WRITE_LOCK_SECONDS):
                raise Unavailable("database unavailable: timed out waiting to write")
            self._locked = True
        try:
            conn = self._engine.connect()
            if self._readonly:
                conn = conn.execution_options(tw_readonly=True)
            conn.begin()
        except SQLAlchemyError as exc:
            self._unlock()
            raise (translate(exc) or Unavailable(f"database unavailable: {type(exc).__name__}")) from exc
        except BaseException:
            self._unlock()
            raise
        self._conn = conn
        self.orgs = SqlOrgRepository(conn)
        self.users = SqlUserRepository(conn)
        self.tokens = SqlTokenRepository(conn)
        self.policies = SqlPolicyRepository(conn)
        self.audit = self._audit = SqlAuditRepository(conn)
        self.events = self._events = SqlEventRepository(conn, self._intent_hooks)
        self.rules = SqlRuleRepository(conn)
        self.watermarks = SqlWatermarkRepository(conn)
        self.break_glass = SqlBreakGlassRepository(conn)
        self.bulk_jobs = SqlBulkJobRepository(conn)
        self.signals = self._signals = SqlSignalRepository(conn)
        self.invitations = SqlInvitationRepository(conn)
        self.oauth = SqlOAuthRepository(conn)
        self.reports = SqlReportRepository(conn)
        self.jobs = SqlJobRepository(conn)
        self.outbox = SqlOutboxRepository(conn)
        self.webhooks = SqlWebhookRepository(conn)
        self.lifecycle = SqlLifecycleRepository(conn)
        self.managed = SqlManagedCredentialRepository(conn)
        self.rotations = SqlRotationRepository(conn)
        self.usage = SqlUsageRepository(conn)
        self.alerts = SqlAlertRepository(conn)
        self.mfa = SqlMfaRepository(conn)
        self.scim = SqlScimRepository(conn)
        self.console = SqlConsoleRepository(conn)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        # A dead connection can neither roll back nor close cleanly: it is discarded either way,
        # and the error that matters is the one the work raised.
        with contextlib.suppress(SQLAlchemyError, OSError):
            if conn.in_transaction():
                conn.rollback()
        with contextlib.suppress(SQLAlchemyError, OSError):
            conn.close()
        self._unlock()
        if self._events.intents:  # announced before a commit that did not come: take them back
            intents, self._events.intents = self._events.intents, []
            run_intent_hooks(self._intent_hooks, intents, withdrawn=True)
        announce, self._announce = self._announce, []
        if announce:  # committed: tell the other nodes and this one, whatever happened afterwards
            run_hooks(self._hooks, announce)
        # The one place driver errors become domain errors (adapters/sql/errors.py).
        if exc is not None and (translated := translate(exc)) is not None:
            raise translated from exc

    def _unlock(self) -> None:
        if self._locked and self._write_lock is not None:
            self._locked = False
            self._write_lock.release()

    def commit(self) -> None:
        """Commit; once the unit of work ends, the database's commit hooks announce the
        invalidation events this transaction appended (one mechanism for every service)."""
        if self._conn is None:
            raise RuntimeError("commit() outside a unit of work")
        try:  # chained now: if the audit cannot be written, nothing commits (Vault's rule)
            self._audit.flush()
        except SQLAlchemyError as exc:
            log.error("the audit log could not be written; the change is rolled back", exc_info=True)
            raise Unavailable(
                f"the audit log could not be written ({kind_of(exc)}): the change was not made"
            ) from exc
        if self._events.pending or self._signals.pending:
            self._events.lock_order()  # one lock for both: ids follow commit order (see there)
            self._signals.flush()
            self._events.flush()  # written last: see SqlEventRepository
        self._conn.commit()  # a failure surfaces through __exit__, which translates it
        self._announce.extend(self._events.committed())


class SqlDatabase:
    """A SQLAlchemy-backed store: unit-of-work factory, migrations and health."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.url_for_display = display_url(url)
        self.engine = make_engine(url)
        self._hooks: list[CommitHook] = []
        self._intent_hooks: list[IntentHook] = []
        # One writer at a time per process on SQLite (see SqlUnitOfWork.__enter__).
        self._write_lock = threading.RLock() if self.engine.dialect.name == "sqlite" else None

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(
            self.engine, hooks=self._hooks, intent_hooks=self._intent_hooks, write_lock=self._write_lock
        )

    def on_commit(self, hook: CommitHook) -> None:
        """Call ``hook(events)`` after every unit of work that committed invalidation events."""
        self._hooks.append(hook)

    def on_intent(self, hook: IntentHook) -> None:
        """Call ``hook`` when a revocation is appended, and if it is then not committed."""
        self._intent_hooks.append(hook)

    def reader(self) -> SqlUnitOfWork:
        """A read-only unit of work (never takes SQLite's write lock)."""
        return SqlUnitOfWork(self.engine, readonly=True)

    def alembic_config(self) -> Config:
        from alembic.config import Config  # imported only to migrate: CLI start-up stays light

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    def upgrade(self) -> None:
        """Migrate to the newest schema; one read when it is there already (every CLI command
        and server start calls this, and loading alembic costs a third of a CLI start)."""
        if self.schema_version() == SCHEMA_HEAD:
            return
        from alembic import command

        with self.engine.connect() as conn:
            cfg = self.alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            if conn.in_transaction():
                conn.commit()

    def schema_version(self) -> str | None:
        """The applied migration (alembic's version table), ``None`` before the first one."""
        try:
            with self.engine.connect() as conn:
                if not inspect(conn).has_table("alembic_version"):
                    return None
                version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                conn.rollback()
        except SQLAlchemyError:
            return None
        return None if version is None else str(version)

    def is_initialized(self) -> bool:
        try:
            with self.engine.connect() as conn:
                if not inspect(conn).has_table("orgs"):
                    return False
                count = conn.execute(select(func.count()).select_from(t.orgs)).scalar_one()
                conn.rollback()
                return bool(count)
        except SQLAlchemyError:
            return False

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                conn.rollback()
            return True
        except SQLAlchemyError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()
