"""The rotation service (issue 13): managed credentials rotated before they expire, each rotation
a journaled state machine (``domain/rotation.py``) that survives a crash at any step.

One rotation of one credential, every arrow a committed journal step before the next external
action::

    planned ─create─▶ created ─write─▶ stored ─read back, compare, promote─▶ promoted
        ─(overlap window)─ revoke predecessor ─▶ revoked ─notify─▶ done

A failed store write or read-back goes to ``rolling_back``: the write is discarded (so the store
serves the predecessor again), the successor is revoked at once, the predecessor is kept, the
contacts are alerted. The predecessor is revoked only once the successor is stored, verified and
served. A credential's lease keeps two nodes from rotating it at once.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Conflict, DomainError, ExternalServiceError, Forbidden
from tokenwarden.domain.managed import CredentialStatus, ManagedCredential, SourceKind, StoreKind
from tokenwarden.domain.notices import ROTATION_COMPLETED, ROTATION_FAILED
from tokenwarden.domain.rotation import (
    FINAL_STEPS,
    Reason,
    Step,
    check_transition,
    is_due,
    revoke_after,
    successor_display_name,
)
from tokenwarden.ports.lifecycle import OutboxMessage
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.ports.rotation import RotationRecord
from tokenwarden.ports.secrets import SecretMeta, SecretStore
from tokenwarden.ports.token_sources import TokenSource
from tokenwarden.services.common import SYSTEM, Actor, StepUpCheck, audit, reading, require_admin
from tokenwarden.services.notices import address_key, subscribed

SourceFactory = Callable[[ManagedCredential], TokenSource]
StoreFactory = Callable[[StoreKind], SecretStore]
Fingerprint = Callable[[str], bytes]

LEASE = timedelta(minutes=15)  # far longer than one rotation with all its retries
MAX_ERROR = 500
MAX_LISTED = 200  # outcomes kept in a job run's counts
ALERT_AFTER_ATTEMPTS = 3  # a step that keeps failing transiently is alerted on its third try


class RotationResult:
    ROTATED = "rotated"  # done: successor served, predecessor revoked
    PENDING = "pending"  # successor served; the predecessor lives until the overlap window ends
    SKIPPED = "skipped"  # not due
    FAILED = "failed"  # rolled back or refused: the predecessor is kept and still served
    BUSY = "busy"  # another node holds the credential's lease
    WOULD_ROTATE = "would_rotate"  # dry run


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a run did with one credential."""

    credential: str
    org_id: str
    result: str
    detail: str = ""
    rotation_id: str | None = None
    step: str | None = None
    version: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "credential": self.credential,
            "orgId": self.org_id,
            "result": self.result,
            "detail": self.detail,
            "rotationId": self.rotation_id,
            "step": self.step,
            "version": self.version,
        }


@dataclass
class RunReport:
    """One pass over the managed credentials."""

    run_id: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, result: str) -> int:
        return sum(1 for o in self.outcomes if o.result == result)

    @property
    def errors(self) -> list[str]:
        seen: list[str] = []
        for o in self.outcomes:
            if o.result == RotationResult.FAILED and o.detail:
                line = f"{o.credential}: {o.detail}"
                if line not in seen:
                    seen.append(line)
        return seen[:10]

    def counts(self) -> dict[str, Any]:
        """The figures a job run and ``/health`` show."""
        return {
            "rotated": self.count(RotationResult.ROTATED),
            "pending": self.count(RotationResult.PENDING),
            "failed": self.count(RotationResult.FAILED),
            "skipped": self.count(RotationResult.SKIPPED),
            "busy": self.count(RotationResult.BUSY),
            "wouldRotate": self.count(RotationResult.WOULD_ROTATE),
            "errors": self.errors,
            # what was done (or would be): skipped credentials are only counted
            "credentials": [o.as_dict() for o in self.outcomes if o.result != RotationResult.SKIPPED][
                :MAX_LISTED
            ],
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "dryRun": self.dry_run,
            "startedAt": self.started_at.isoformat(),
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
            **self.counts(),
            "credentials": [o.as_dict() for o in self.outcomes],
        }


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, ExternalServiceError) and exc.transient


def failure_backoff(failures: int) -> timedelta:
    """How long the schedule waits after the n-th failure in a row: 5 min doubling, at most 6 h."""
    return min(timedelta(minutes=5) * (1 << min(max(0, failures - 1), 10)), timedelta(hours=6))


@dataclass(frozen=True, slots=True)
class Drive:
    """What one rotation works with: the credential's source and store, who acts, the lease."""

    source: TokenSource
    store: SecretStore
    actor: Actor
    holder: str


class _Skip(Exception):
    def __init__(self, result: str, detail: str) -> None:
        super().__init__(detail)
        self.result = result
        self.detail = detail


class _Halt(Exception):
    """A step could not finish now: the journal keeps its step and the next run goes on."""

    def __init__(self, detail: str, *, alert: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.alert = alert  # tell the contacts now (else after a few failed attempts)


def _no_fresh_factor(uow: UnitOfWork, actor: Actor, org_id: str) -> None:
    raise Forbidden("a fresh second factor cannot be checked here", code="stepUpUnavailable")


class RotationService:
    """Runs rotations. Thread-safe; many nodes may run it at once (leases and the journal's
    unique open rotation keep them apart)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        sources: SourceFactory,
        stores: StoreFactory,
        fingerprint: Fingerprint,
        *,
        node: str | None = None,
        batch_size: int = 10,
        batch_pause: float = 2.0,
        retry_attempts: int = 5,
        retry_max_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        base_url: str | None = None,
        lease: timedelta = LEASE,
    ) -> None:
        self._uow = uow
        self._lease = lease
        self._clock = clock
        # an administrator's browser session rotating from the console: a fresh second factor
        # (wired in bootstrap); closed until then
        self.fresh_factor: StepUpCheck = _no_fresh_factor
        self._sources = sources
        self._stores = stores
        self._fingerprint = fingerprint
        self._node = (node or f"rotation-{uuid.uuid4().hex[:8]}")[:96]
        self._batch_size = max(1, batch_size)
        self._batch_pause = max(0.0, batch_pause)
        self._attempts = max(1, retry_attempts)
        self._retry_max = max(0.0, retry_max_seconds)
        self._sleep = sleep
        self._base_url = base_url

    # ------------------------------------------------------------------ runs
    def run(
        self,
        *,
        org_id: str | None = None,
        dry_run: bool = False,
        trigger: str = "manual",
        run_id: str | None = None,
        actor: Actor = SYSTEM,
        check: Callable[[], None] | None = None,
    ) -> RunReport:
        """Recover unfinished rotations, then rotate every credential that is due, in paced
        batches. ``trigger`` ``schedule`` respects each failing credential's back-off."""
        report = RunReport(run_id or str(uuid.uuid4()), dry_run, self._clock.now())
        with reading(self._uow) as uow:
            credentials = uow.managed.all(org_id)
            open_ids = {r.credential_id for r in uow.rotations.open_all(limit=1_000_000)}
            # a local token's expiry as it stands (shortened, revoked), not as it was put under
            # management; an external one is re-read when its snapshot says it is due
            live_to = {c.id: self._local_valid_to(uow, c) for c in credentials}
        acted = 0
        for cred in credentials:
            if cred.status is CredentialStatus.REMOVED:
                continue
            now = self._clock.now()
            unfinished = cred.id in open_ids
            due = is_due(live_to[cred.id], cred.rotation, now)
            waiting = (
                trigger == "schedule" and cred.next_attempt_at is not None and cred.next_attempt_at > now
            )
            if not unfinished and (not due or waiting):
                detail = "in back-off after a failure" if due else "not due"
                report.outcomes.append(Outcome(cred.name, cred.org_id, RotationResult.SKIPPED, detail))
                continue
            if dry_run:
                detail = "an unfinished rotation would be resumed" if unfinished else "due"
                report.outcomes.append(Outcome(cred.name, cred.org_id, RotationResult.WOULD_ROTATE, detail))
                continue
            if acted and acted % self._batch_size == 0 and self._batch_pause:
                self._sleep(self._batch_pause)  # paced batches: sources and stores have rate limits
            if check is not None:
                check()
            acted += 1
            try:
                outcome = self._rotate(
                    cred, Reason.EXPIRING, trigger=trigger, run_id=report.run_id, actor=actor
                )
            except (DomainError, ValueError) as exc:  # e.g. its store is not configured on this node
                outcome = Outcome(cred.name, cred.org_id, RotationResult.FAILED, _short(exc))
            report.outcomes.append(outcome)
        report.finished_at = self._clock.now()
        return report

    @staticmethod
    def _local_valid_to(uow: UnitOfWork, cred: ManagedCredential) -> datetime | None:
        if cred.source is not SourceKind.LOCAL:
            return cred.valid_to
        record = uow.tokens.get(cred.authorization_id)
        if record is None or record.revoked_at is not None:
            return None  # "due": the rotation finds out and says so
        return record.valid_to if cred.valid_to is None else min(record.valid_to, cred.valid_to)

    def rotate_now(self, actor: Actor, credential: ManagedCredential, *, compromised: bool = True) -> Outcome:
        """Rotate at once whatever the expiry. ``compromised``: the predecessor is revoked the
        moment the successor is served (no overlap) with reason ``compromised``, an unfinished
        rotation's predecessor too, and the contacts are alerted."""
        if actor.token is not None and actor.token.interactive:
            # An administrator signed in in a browser (the session holds only profile scopes):
            # the successor goes to the secret store, never to them, so a fresh second factor
            # stands in for a token that covers it.
            with reading(self._uow) as uow:
                require_admin(uow, actor, credential.org_id)
                self.fresh_factor(uow, actor, credential.org_id)
        else:
            # the successor is as wide as the credential: only a caller whose reach covers it mints it
            actor.check_may_hold(credential.scopes, (credential.org_id,))
        reason = Reason.COMPROMISED if compromised else Reason.FORCED
        trigger = "emergency" if compromised else "manual"
        return self._rotate(credential, reason, trigger=trigger, run_id=None, actor=actor, force=True)

    # ------------------------------------------------------------------ one credential
    def _rotate(
        self,
        cred: ManagedCredential,
        reason: Reason,
        *,
        trigger: str,
        run_id: str | None,
        actor: Actor,
        force: bool = False,
    ) -> Outcome:
        holder = f"{self._node}:{uuid.uuid4().hex[:8]}"
        now = self._clock.now()
        with self._uow() as uow:
            if not uow.managed.try_lease(cred.id, holder, now, now + self._lease):
                return Outcome(cred.name, cred.org_id, RotationResult.BUSY, "another node is rotating it")
            uow.commit()
        try:
            return self._rotate_leased(
                cred.id, reason, trigger=trigger, run_id=run_id, actor=actor, force=force, holder=holder
            )
        finally:
            with self._uow() as uow:
                uow.managed.release(cred.id, holder)
                uow.commit()

    def _rotate_leased(
        self,
        cred_id: str,
        reason: Reason,
        *,
        trigger: str,
        run_id: str | None,
        actor: Actor,
        force: bool,
        holder: str,
    ) -> Outcome:
        with reading(self._uow) as uow:
            cred = uow.managed.get(cred_id)
            record = uow.rotations.open_for(cred_id)
        if cred is None:
            return Outcome("?", "", RotationResult.SKIPPED, "the credential was removed")
        try:  # before anything is journaled: a node without this store or source says so
            source = self._sources(cred)
            store = self._stores(cred.store)
        except DomainError as exc:
            detail = f"its source or store cannot be used on this node: {exc.message}"
            self._not_rotated(cred, detail, actor)
            return Outcome(cred.name, cred.org_id, RotationResult.FAILED, detail)
        try:
            return self._rotate_with(
                cred,
                record,
                source,
                store,
                reason,
                trigger=trigger,
                run_id=run_id,
                actor=actor,
                force=force,
                holder=holder,
            )
        finally:
            close = getattr(source, "close", None)
            if callable(close):
                close()

    def _rotate_with(
        self,
        cred: ManagedCredential,
        record: RotationRecord | None,
        source: TokenSource,
        store: SecretStore,
        reason: Reason,
        *,
        trigger: str,
        run_id: str | None,
        actor: Actor,
        force: bool,
        holder: str,
    ) -> Outcome:
        drive = Drive(source, store, actor, holder)
        if record is not None:  # a crash or a failure left it unfinished: recover first
            if reason is Reason.COMPROMISED and record.reason is not Reason.COMPROMISED:
                # an emergency overrides the unfinished one's overlap window, whatever its step
                record = replace(record, reason=Reason.COMPROMISED, revoke_after=self._clock.now())
                with self._uow() as uow:
                    uow.rotations.save(record)
                    uow.commit()
            record = self._drive(cred, record, drive)
            with reading(self._uow) as uow:
                cred = uow.managed.get(cred.id) or cred
            if record.open or (not force and record.step is Step.DONE):
                return self._outcome(cred, record)
        try:
            refreshed = self._refresh(cred, source, actor, force=force)
        except _Skip as skip:
            return Outcome(cred.name, cred.org_id, skip.result, skip.detail)
        cred = refreshed
        if not force and not is_due(cred.valid_to, cred.rotation, self._clock.now()):
            if record is not None:
                return self._outcome(cred, record)
            return Outcome(cred.name, cred.org_id, RotationResult.SKIPPED, "not due")
        try:
            record = self._plan(cred, reason, trigger=trigger, run_id=run_id, actor=actor)
        except Conflict:
            return Outcome(
                cred.name, cred.org_id, RotationResult.BUSY, "another rotation was journaled meanwhile"
            )
        record = self._drive(cred, record, drive, fresh=True)
        with reading(self._uow) as uow:
            cred = uow.managed.get(cred.id) or cred
        return self._outcome(cred, record)

    def _refresh(
        self, cred: ManagedCredential, source: TokenSource, actor: Actor, *, force: bool
    ) -> ManagedCredential:
        """The credential as its source has it now: a token narrowed or shortened since it was
        put under management gets a successor no wider and is rotated in time; one revoked
        outside rotation is not silently replaced (only ``rotate now`` does that)."""
        try:
            current = source.get(cred.authorization_id)
        except ExternalServiceError as exc:
            detail = f"the source could not be asked about the token in service: {_short(exc)}"
            if not exc.transient:
                self._not_rotated(cred, detail, actor)
            raise _Skip(RotationResult.FAILED, detail) from exc
        if current is None or current.revoked:
            if not force:
                detail = (
                    "the token in service was revoked or deleted outside rotation: nothing was minted; "
                    "`tokenwarden rotate now` replaces it"
                )
                self._not_rotated(cred, detail, actor)
                raise _Skip(RotationResult.FAILED, detail)
            return cred
        scopes = tuple(s for s in current.scopes if s in cred.scopes)
        if not scopes:
            detail = "the token in service no longer holds any of the credential's scopes: nothing was minted"
            self._not_rotated(cred, detail, actor)
            raise _Skip(RotationResult.FAILED, detail)
        if scopes == cred.scopes and current.valid_to == cred.valid_to:
            return cred
        changed = replace(cred, scopes=scopes, valid_to=current.valid_to, updated_at=self._clock.now())
        with self._uow() as uow:
            uow.managed.update(changed)
            uow.commit()
        return changed

    def _not_rotated(self, cred: ManagedCredential, detail: str, actor: Actor) -> None:
        """A credential that could not even start a rotation: failing, audited, alerted (once a
        day: the alert's key is the credential and the date)."""
        now = self._clock.now()
        record = RotationRecord(
            id=f"check-{cred.id}-{now:%Y%m%d}",
            credential_id=cred.id,
            org_id=cred.org_id,
            trigger="check",
            reason=Reason.EXPIRING,
            step=Step.FAILED,
            predecessor_id=cred.authorization_id,
            successor_name="",
            started_at=now,
            updated_at=now,
            error=detail[:MAX_ERROR],
        )
        self._failed(cred, record, actor)

    def _outcome(self, cred: ManagedCredential, record: RotationRecord) -> Outcome:
        if record.step is Step.DONE:
            result, detail = RotationResult.ROTATED, f"now version {cred.version}"
        elif record.step is Step.PROMOTED and record.error is None:
            result = RotationResult.PENDING
            detail = (
                f"successor served; the predecessor is revoked after {record.revoke_after:%Y-%m-%d %H:%M} UTC"
            )
        elif record.open:
            result, detail = RotationResult.FAILED, record.error or f"unfinished at step {record.step}"
        else:
            result, detail = RotationResult.FAILED, record.error or str(record.step)
        return Outcome(cred.name, cred.org_id, result, detail, record.id, record.step.value, cred.version)

    def _plan(
        self, cred: ManagedCredential, reason: Reason, *, trigger: str, run_id: str | None, actor: Actor
    ) -> RotationRecord:
        now = self._clock.now()
        record = RotationRecord(
            id=str(uuid.uuid4()),
            credential_id=cred.id,
            org_id=cred.org_id,
            trigger=trigger,
            reason=reason,
            step=Step.PLANNED,
            predecessor_id=cred.authorization_id,
            successor_name=successor_display_name(cred.display_base, cred.version + 1),
            started_at=now,
            updated_at=now,
            run_id=run_id,
            started_by=actor.user_id,
        )
        with self._uow() as uow:
            uow.rotations.start(record)  # Conflict if another node journaled one meanwhile
            uow.commit()
        return record

    # ------------------------------------------------------------------ the state machine
    def _drive(
        self, cred: ManagedCredential, record: RotationRecord, drive: Drive, *, fresh: bool = False
    ) -> RotationRecord:
        """Advance ``record`` as far as it can go now; return it as journaled."""
        source, store, actor = drive.source, drive.store, drive.actor
        secret: str | None = None
        while record.open:
            if not self._renew(cred.id, drive.holder):
                return record  # the lease was lost (this node stalled): its new holder goes on
            try:
                if record.step is Step.PLANNED:
                    if fresh:
                        record, secret = self._create(cred, record, source)
                    else:
                        record = self._forget_orphans(cred, record, source)
                elif record.step is Step.CREATED:
                    if secret is None:  # crashed between create and store: the secret is gone
                        record = self._to(
                            record,
                            Step.ROLLING_BACK,
                            error="interrupted after the successor was created and before it was "
                            "stored: its secret is lost, so it is revoked",
                        )
                    else:
                        record = self._write(cred, record, store, secret)
                        secret = None  # the store has it; nothing keeps it in memory longer
                elif record.step is Step.STORED:
                    record = self._verify_and_promote(cred, record, store, actor)
                elif record.step is Step.PROMOTED:
                    if record.revoke_after is not None and self._clock.now() < record.revoke_after:
                        return record
                    record = self._revoke_predecessor(cred, record, source)
                elif record.step is Step.REVOKED:
                    record = self._finish(cred, record, actor)
                elif record.step is Step.ROLLING_BACK:
                    record = self._roll_back(cred, record, source, store, actor)
            except _Halt as halt:
                noted = self._note(record, halt.detail)
                if halt.alert or noted.attempts >= ALERT_AFTER_ATTEMPTS:
                    self._failed(cred, noted, actor, finished=False)
                return noted
        return record

    def _renew(self, cred_id: str, holder: str) -> bool:
        """Extend the credential's lease before each step; False if another node took it."""
        now = self._clock.now()
        with self._uow() as uow:
            kept = uow.managed.renew(cred_id, holder, now + self._lease)
            uow.commit()
        return kept

    def _to(self, record: RotationRecord, step: Step, **fields: Any) -> RotationRecord:
        """The record at ``step`` (journaled by the caller's transaction or here)."""
        check_transition(record.step, step)
        now = self._clock.now()
        moved = replace(
            record, step=step, updated_at=now, finished_at=now if step in FINAL_STEPS else None, **fields
        )
        with self._uow() as uow:
            uow.rotations.save(moved)
            uow.commit()
        return moved

    def _note(self, record: RotationRecord, error: str) -> RotationRecord:
        noted = replace(
            record, error=error[:MAX_ERROR], attempts=record.attempts + 1, updated_at=self._clock.now()
        )
        with self._uow() as uow:
            uow.rotations.save(noted)
            uow.commit()
        return noted

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn`` with retries of transient failures: exponential back-off with jitter, or the
        service's ``Retry-After`` when it sent one (both capped)."""
        jitter = wait_random_exponential(multiplier=0.5, max=self._retry_max)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            after = getattr(exc, "retry_after", None)
            if isinstance(after, (int, float)) and after >= 0:
                return float(min(after, self._retry_max))
            return float(jitter(state))

        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait,
            retry=retry_if_exception(_transient),
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(fn)

    def _create(
        self, cred: ManagedCredential, record: RotationRecord, source: TokenSource
    ) -> tuple[RotationRecord, str | None]:
        valid_to = self._clock.now() + timedelta(days=cred.rotation.valid_days)
        try:
            made = source.create(record.successor_name, cred.scopes, valid_to)
        except ExternalServiceError as exc:
            if exc.transient:  # it may or may not exist: the next run looks it up by name
                raise _Halt(
                    f"creating the successor failed ({_short(exc)}); the next run checks for it"
                ) from exc
            failed = self._to(record, Step.FAILED, error=f"the source refused the successor: {_short(exc)}")
            self._failed(cred, failed, SYSTEM)
            return failed, None
        if made.secret is None:
            raise _Halt("the source created the successor but returned no secret")
        created = self._to(
            record,
            Step.CREATED,
            successor_id=made.authorization_id,
            successor_valid_to=made.valid_to,
            successor_fingerprint=self._fingerprint(made.secret),
            error=None,
        )
        return created, made.secret

    def _forget_orphans(
        self, cred: ManagedCredential, record: RotationRecord, source: TokenSource
    ) -> RotationRecord:
        """A rotation journaled as planned that never recorded a successor: any live token with
        its display name is an orphan whose secret nobody has — revoke it."""
        try:
            found = source.find_by_display_name(record.successor_name)
            for token in found:
                if token.authorization_id != record.predecessor_id:
                    source.revoke(token.authorization_id, reason="rotation rolled back")
        except ExternalServiceError as exc:
            raise _Halt(f"looking for an unrecorded successor failed: {_short(exc)}") from exc
        return self._to(
            record,
            Step.ROLLING_BACK,
            error=f"interrupted before the successor was recorded ({len(found)} orphan(s) revoked)",
        )

    def _write(
        self, cred: ManagedCredential, record: RotationRecord, store: SecretStore, secret: str
    ) -> RotationRecord:
        meta = SecretMeta(
            expires_at=record.successor_valid_to,
            tags={
                "managed-by": "tokenwarden",
                "created": self._clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "source": cred.source.value,
                "credential": cred.name[:128],
                "version": str(cred.version + 1),
            },
        )
        try:
            version = self._retry("write", lambda: store.write(cred.secret_name, secret, meta))
        except ExternalServiceError as exc:
            return self._to(
                record, Step.ROLLING_BACK, error=f"the {store.kind} store refused the write: {_short(exc)}"
            )
        return self._to(record, Step.STORED, store_version=str(version), error=None)

    def _verify_and_promote(
        self, cred: ManagedCredential, record: RotationRecord, store: SecretStore, actor: Actor
    ) -> RotationRecord:
        version = record.store_version or ""
        try:
            stored = self._retry("read back", lambda: store.read(cred.secret_name, version))
        except ExternalServiceError as exc:
            if exc.transient:
                raise _Halt(f"reading the stored successor back failed: {_short(exc)}") from exc
            return self._to(
                record, Step.ROLLING_BACK, error=f"reading the stored successor back failed: {_short(exc)}"
            )
        expected = record.successor_fingerprint or b""
        if stored is None or not hmac.compare_digest(self._fingerprint(stored.value), expected):
            what = "is missing" if stored is None else "does not match the successor"
            return self._to(
                record, Step.ROLLING_BACK, error=f"the {store.kind} store's version {version} {what}"
            )
        try:
            self._retry("promote", lambda: store.promote(cred.secret_name, version))
        except ExternalServiceError as exc:
            raise _Halt(f"promoting the stored successor failed: {_short(exc)}") from exc
        now = self._clock.now()
        promoted = replace(
            record,
            step=Step.PROMOTED,
            updated_at=now,
            revoke_after=record.revoke_after or revoke_after(now, cred.rotation, record.reason),
            error=None,
        )
        check_transition(record.step, Step.PROMOTED)
        with self._uow() as uow:
            current = uow.managed.get(cred.id) or cred
            uow.managed.update(
                replace(
                    current,
                    authorization_id=record.successor_id or current.authorization_id,
                    valid_to=record.successor_valid_to,
                    version=current.version + 1,
                    status=CredentialStatus.ACTIVE,
                    failures=0,
                    last_error=None,
                    next_attempt_at=None,
                    last_rotated_at=now,
                    updated_at=now,
                )
            )
            uow.rotations.save(promoted)
            uow.commit()
        return promoted

    def _revoke_predecessor(
        self, cred: ManagedCredential, record: RotationRecord, source: TokenSource
    ) -> RotationRecord:
        reason = "compromised" if record.reason is Reason.COMPROMISED else "rotated"
        try:
            if not source.revoke(record.predecessor_id, reason=reason):
                # "already revoked or unknown": make sure it is not live under another spelling
                still = source.get(record.predecessor_id)
                if still is not None and not still.revoked:
                    raise _Halt("the source did not revoke the predecessor and it is still live", alert=True)
        except ExternalServiceError as exc:
            raise _Halt(
                f"revoking the predecessor failed: {_short(exc)}; it is still live", alert=not exc.transient
            ) from exc
        return self._to(record, Step.REVOKED, error=None)

    def _finish(self, cred: ManagedCredential, record: RotationRecord, actor: Actor) -> RotationRecord:
        now = self._clock.now()
        done = replace(record, step=Step.DONE, updated_at=now, finished_at=now, error=None)
        check_transition(record.step, Step.DONE)
        with self._uow() as uow:
            current = uow.managed.get(cred.id) or cred
            uow.rotations.save(done)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.ROTATION_COMPLETE,
                org_id=cred.org_id,
                target_type="managedCredential",
                target_id=cred.id,
                details=self._details(current, done),
            )
            self._alert(uow, current, done, ROTATION_COMPLETED)
            uow.commit()
        return done

    def _roll_back(
        self,
        cred: ManagedCredential,
        record: RotationRecord,
        source: TokenSource,
        store: SecretStore,
        actor: Actor,
    ) -> RotationRecord:
        try:
            version = record.store_version or self._unjournaled_write(cred, record, store)
            if version is not None:
                self._retry("discard", lambda: store.discard(cred.secret_name, version))
            if record.successor_id is not None and not source.revoke(
                record.successor_id, reason="rotation rolled back"
            ):
                still = source.get(record.successor_id)
                if still is not None and not still.revoked:
                    raise _Halt(f"{record.error}; the source did not revoke the successor", alert=True)
        except ExternalServiceError as exc:
            raise _Halt(f"{record.error}; rolling back failed: {_short(exc)}", alert=True) from exc
        rolled = self._to(record, Step.ROLLED_BACK)
        self._failed(cred, rolled, actor)
        return rolled

    def _unjournaled_write(
        self, cred: ManagedCredential, record: RotationRecord, store: SecretStore
    ) -> str | None:
        """A crash between the store's write and its journal entry leaves a version the journal
        does not name; where writes are served at once (not staged) it must be undone too, or
        the store would serve the revoked successor. Found by the successor's fingerprint."""
        if record.successor_fingerprint is None:
            return None
        current = self._retry("read", lambda: store.read(cred.secret_name))
        if current is not None and hmac.compare_digest(
            self._fingerprint(current.value), record.successor_fingerprint
        ):
            return str(current.version)
        return None

    def _failed(
        self, cred: ManagedCredential, record: RotationRecord, actor: Actor, *, finished: bool = True
    ) -> None:
        """Count the failure on the credential, audit it and alert its contacts (once per
        rotation and step: the outbox's dedupe key)."""
        now = self._clock.now()
        with self._uow() as uow:
            current = uow.managed.get(cred.id) or cred
            failures = current.failures + 1
            failing = replace(
                current,
                status=CredentialStatus.FAILING,
                failures=failures,
                last_error=record.error,
                next_attempt_at=now + failure_backoff(failures),
                updated_at=now,
            )
            uow.managed.update(failing)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.ROTATION_FAIL,
                org_id=cred.org_id,
                target_type="managedCredential",
                target_id=cred.id,
                details={**self._details(failing, record), "finished": finished},
            )
            self._alert(uow, failing, record, ROTATION_FAILED)
            uow.commit()

    # ------------------------------------------------------------------ alerts
    @staticmethod
    def _details(cred: ManagedCredential, record: RotationRecord) -> dict[str, Any]:
        return {
            "credential": cred.name,
            "rotationId": record.id,
            "step": record.step.value,
            "reason": record.reason.value,
            "trigger": record.trigger,
            "predecessorId": record.predecessor_id,
            "successorId": record.successor_id,
            "store": cred.store.value,
            "secretName": cred.store_secret_name,
            "version": cred.version,
            "error": record.error,
        }

    def _alert(self, uow: UnitOfWork, cred: ManagedCredential, record: RotationRecord, template: str) -> None:
        org = uow.orgs.get(cred.org_id)
        policy = uow.policies.get(cred.org_id)
        payload = {
            "org": {"id": cred.org_id, "name": org.name if org else cred.org_id},
            "baseUrl": self._base_url,
            "credential": {
                "name": cred.name,
                "store": cred.store.value,
                "secretName": cred.store_secret_name,
                "source": cred.source.value,
                "version": cred.version,
                "validTo": cred.valid_to.isoformat() if cred.valid_to else None,
                "authorizationId": cred.authorization_id,
            },
            "rotation": {
                "id": record.id,
                "step": record.step.value,
                "reason": record.reason.value,
                "trigger": record.trigger,
                "predecessorId": record.predecessor_id,
                "successorId": record.successor_id,
                "error": record.error,
                "predecessorLive": record.step is not Step.DONE,
            },
        }
        recipients = list(cred.contacts)
        security = policy.security_contact if policy else None
        # the security contact hears failures and every emergency rotation
        if (
            security
            and (template == ROTATION_FAILED or record.reason is Reason.COMPROMISED)
            and security.casefold() not in {c.casefold() for c in recipients}
        ):
            recipients.append(security)
        now = self._clock.now()
        prefix = f"rotation:{record.id}:{template}:{record.step.value}"

        def message(channel: str, destination: str, key: str) -> OutboxMessage:
            return OutboxMessage(
                dedupe_key=f"{prefix}:{key}"[:255],
                channel=channel,
                destination=destination,
                template=template,
                payload=payload,
                created_at=now,
                next_attempt_at=now,
                org_id=cred.org_id,
                run_id=record.run_id,
            )

        messages = [message("email", a, address_key(a)) for a in recipients]
        messages += [message("webhook", h, f"hook:{h}") for h in subscribed(uow, cred.org_id, template)]
        if messages:
            uow.outbox.enqueue(messages)
