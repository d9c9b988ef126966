"""Policies applied to tokens that already exist (issue 12): ``policy enforce --grace DAYS``.

A policy is checked when a PAT is created or changed; tightening it later leaves older PATs as
they were. An enforcement tells the owner of every live PAT issued in the organization that
breaks today's policy what will happen and when (a ``policy-violation`` notice), then, once the
grace period has passed (the ``policy-enforcement`` job, or at once with grace 0):

* a PAT whose lifetime is too long gets ``validTo`` = max(validFrom + maxLifetimeDays, end of
  grace) when that is earlier than its current ``validTo`` (``Token.PatUpdateEvent``);
* a full-scope (``app_token``) PAT where the policy forbids them is revoked by the system
  (reason ``policy``, ``Token.PatSystemRevokeEvent``).

The policy is read again when the grace ends: a token that complies by then (the administrator
relaxed the policy, the owner narrowed or shortened it) is left alone. Only tokens the
enforcement told are changed. Tokens issued in other organizations are not touched, even where
they are valid here: each organization governs its own tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock, iso_z
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.events import EventType
from tokenwarden.domain.notices import POLICY_ENFORCED, POLICY_VIOLATION
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.scopes import FULL_ACCESS, ScopeCatalog
from tokenwarden.domain.tokens import RevokedBy, TokenKind, TokenRecord
from tokenwarden.ports.lifecycle import PolicyEnforcement
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import SYSTEM, Actor, audit, get_org, new_id, publish, reading, require_admin
from tokenwarden.services.effective import EffectiveView
from tokenwarden.services.job_runner import JobContext
from tokenwarden.services.notices import Notice, NoticeWriter, token_entry
from tokenwarden.services.pats import revoke_record

JOB_NAME: Final = "policy-enforcement"
MAX_GRACE_DAYS: Final = 90
POLICY_REASON: Final = "policy"
PENDING, APPLIED = "pending", "applied"
_FAR: Final = timedelta(days=1)  # "unused since tomorrow": the idle scan then lists every live token


@dataclass(frozen=True, slots=True)
class Violation:
    code: str  # lifetime | fullScope
    message: str
    fix: str


def _violations(policy: OrgPolicy, token: TokenRecord) -> list[Violation]:
    """How a token breaks the organization's policy today. The same two rules as the policy
    listing (lifetime, full scope), kept private here so this module stands alone."""
    found = []
    if token.valid_to - token.valid_from > timedelta(days=policy.max_lifetime_days):
        found.append(
            Violation(
                "lifetime",
                f"its lifetime exceeds the organization's maximum of {policy.max_lifetime_days} days",
                f"shorten validTo to {iso_z(token.valid_from + timedelta(days=policy.max_lifetime_days))} "
                "or earlier",
            )
        )
    if policy.restrict_full_scope and FULL_ACCESS in token.scopes:
        found.append(
            Violation(
                "fullScope",
                "it has full access (app_token), which the organization no longer allows",
                "create a token with the narrower scopes it needs, then revoke this one",
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an enforcement does (or did) to one token: ``valid_to`` set means shortened."""

    revoke: bool
    valid_to: datetime | None

    def describe(self, *, future: bool) -> str:
        if self.revoke:
            return "will be revoked" if future else "revoked"
        verb = "will be shortened" if future else "shortened"
        return f"validTo {verb} to {iso_z(self.valid_to)}"


def outcome(policy: OrgPolicy, token: TokenRecord, grace_until: datetime) -> Outcome | None:
    """What the enforcement does to ``token`` under ``policy`` (None: nothing)."""
    codes = {v.code for v in _violations(policy, token)}
    if "fullScope" in codes:
        return Outcome(True, None)
    if "lifetime" in codes:
        target = max(token.valid_from + timedelta(days=policy.max_lifetime_days), grace_until)
        if target < token.valid_to:
            return Outcome(False, target)
    return None


def check_grace(grace_days: int) -> int:
    whole = isinstance(grace_days, int) and not isinstance(grace_days, bool)
    if not whole or not 0 <= grace_days <= MAX_GRACE_DAYS:
        raise InvalidInput(
            f"graceDays must be a whole number of days between 0 and {MAX_GRACE_DAYS}", code="invalidGrace"
        )
    return grace_days


def enforcement_json(e: PolicyEnforcement) -> dict[str, Any]:
    return {
        "id": e.id,
        "orgId": e.org_id,
        "createdAt": iso_z(e.created_at),
        "createdBy": e.created_by,
        "graceUntil": iso_z(e.grace_until),
        "status": e.status,
        "appliedAt": iso_z(e.applied_at),
        "counts": e.counts,
    }


def notice_key(enforcement_id: str) -> str:
    return f"policy:{enforcement_id}"


def enforced_key(enforcement_id: str) -> str:
    return f"policy-enforced:{enforcement_id}"


class _Engine:
    """Shared by the command and the job: pages over an organization's live PATs."""

    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock, catalog: ScopeCatalog, base_url: str | None, chunk: int
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._catalog = catalog
        self._base_url = base_url
        self._chunk = chunk

    def _page(self, uow: UnitOfWork, org_id: str, now: datetime, after: str | None) -> list[TokenRecord]:
        """One page of the organization's live PATs, by id (unrevoked, unexpired)."""
        return uow.lifecycle.idle(
            org_id, (TokenKind.PAT,), unused_since=now + _FAR, now=now, after=after, limit=self._chunk
        )

    def notify(self, uow: UnitOfWork, e: PolicyEnforcement, now: datetime, run_id: str | None) -> int:
        """Enqueue the ``policy-violation`` notices; returns how many tokens were told."""
        policy = uow.policies.get(e.org_id) or OrgPolicy(e.org_id)
        writer = NoticeWriter(uow, now, run_id=run_id, base_url=self._base_url)
        told, after = 0, None
        while True:
            page = self._page(uow, e.org_id, now, after)
            if not page:
                return told
            after = page[-1].authorization_id
            view = EffectiveView(uow, self._catalog)
            notices = []
            for record in page:
                if view.one(record).revoked_at is not None:
                    continue
                what = outcome(policy, record, e.grace_until)
                if what is None:
                    continue
                entry = token_entry(
                    record,
                    writer.user(record.user_id),
                    now,
                    violations=[v.message for v in _violations(policy, record)],
                    fixes=[v.fix for v in _violations(policy, record)],
                    graceUntil=iso_z(e.grace_until),
                    action=what.describe(future=True),
                    enforcementId=e.id,
                )
                notices.append(Notice(record, notice_key(e.id), entry))
            told += writer.write(POLICY_VIOLATION, notices).notices
            if len(page) < self._chunk:
                return told

    def apply(
        self, e: PolicyEnforcement, run_id: str | None, check: Callable[[], None] | None = None
    ) -> PolicyEnforcement:
        """Apply a pending enforcement whose grace has ended, page by page (each page its own
        transaction; repeating a page changes nothing), then mark it applied."""
        counts = {"tokens": int(e.counts.get("tokens", 0)), "shortened": 0, "revoked": 0, "unchanged": 0}
        after: str | None = None
        while True:
            if check is not None:
                check()
            now = self._clock.now()
            with self._uow() as uow:
                page = self._page(uow, e.org_id, now, after)
                if page:
                    after = page[-1].authorization_id
                    for key, n in self._apply_page(uow, e, now, page, run_id).items():
                        counts[key] += n
                    uow.commit()
            if len(page) < self._chunk:
                break
        with self._uow() as uow:
            done = PolicyEnforcement(
                e.id, e.org_id, e.created_at, e.grace_until, APPLIED, e.created_by, self._clock.now(), counts
            )
            uow.lifecycle.update_enforcement(done)
            uow.commit()
        return done

    def _apply_page(
        self,
        uow: UnitOfWork,
        e: PolicyEnforcement,
        now: datetime,
        page: list[TokenRecord],
        run_id: str | None,
    ) -> dict[str, int]:
        policy = uow.policies.get(e.org_id) or OrgPolicy(e.org_id)  # today's policy, not the one told
        told = uow.lifecycle.notices_of([r.authorization_id for r in page])
        view = EffectiveView(uow, self._catalog)
        writer = NoticeWriter(uow, now, run_id=run_id, base_url=self._base_url)
        counts = {"shortened": 0, "revoked": 0, "unchanged": 0}
        notices: list[Notice] = []
        revoked_hashes: list[str] = []
        for record in page:
            if notice_key(e.id) not in told.get(record.authorization_id, {}):
                continue  # not told by this enforcement: never changed by it
            if view.one(record).revoked_at is not None:
                continue
            what = outcome(policy, record, e.grace_until)
            if what is None:
                counts["unchanged"] += 1
                continue
            violations = [v.message for v in _violations(policy, record)]
            if what.revoke:
                changed = revoke_record(
                    uow,
                    self._clock,
                    SYSTEM,
                    record,
                    reason=POLICY_REASON,
                    revoked_by=RevokedBy.SYSTEM.value,
                    event_type=AuditEventType.PAT_SYSTEM_REVOKE,
                    initiating_entity="policy",
                    details={"enforcementId": e.id, "violations": violations},
                    publish_event=False,
                )
                revoked_hashes.append(record.secret_hash.hex())
                counts["revoked"] += 1
            else:
                changed = record.with_changes(valid_to=what.valid_to)
                uow.tokens.update(changed)
                publish(uow, EventType.TOKEN_CHANGED, hashes=[record.secret_hash.hex()])
                audit(
                    uow,
                    self._clock,
                    SYSTEM,
                    AuditEventType.PAT_UPDATE,
                    org_id=record.org_id,
                    target_type=record.kind.value,
                    target_id=record.authorization_id,
                    details={
                        "reason": POLICY_REASON,
                        "enforcementId": e.id,
                        "violations": violations,
                        "before": {"validTo": iso_z(record.valid_to)},
                        "after": {"validTo": iso_z(changed.valid_to)},
                    },
                )
                counts["shortened"] += 1
            entry = token_entry(
                changed,
                writer.user(record.user_id),
                now,
                violations=violations,
                graceUntil=iso_z(e.grace_until),
                action=what.describe(future=False),
                reason=POLICY_REASON,
                enforcementId=e.id,
            )
            notices.append(Notice(changed, enforced_key(e.id), entry))
        if revoked_hashes:
            publish(uow, EventType.TOKEN_REVOKED, hashes=revoked_hashes)
        writer.write(POLICY_ENFORCED, notices)
        return counts


class PolicyEnforcementService:
    """``enforce`` (administrators of the organization, or the operator) and the list."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        catalog: ScopeCatalog,
        *,
        base_url: str | None = None,
        chunk: int = 1000,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._engine = _Engine(uow, clock, catalog, base_url, chunk)

    def enforce(self, actor: Actor, org: str, grace_days: int) -> PolicyEnforcement:
        """Tell the owner of every live PAT that breaks today's policy; the tokens change when
        the grace ends (at once with 0 days). Audited ``Policy.EnforcementEvent``."""
        grace = check_grace(grace_days)
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            pending = PolicyEnforcement(
                id=new_id(),
                org_id=the_org.id,
                created_at=now,
                grace_until=now + timedelta(days=grace),
                status=PENDING,
                created_by=actor.user_id or actor.upn,
            )
            told = self._engine.notify(uow, pending, now, run_id=None)
            enforcement = PolicyEnforcement(
                pending.id,
                pending.org_id,
                pending.created_at,
                pending.grace_until,
                PENDING,
                pending.created_by,
                counts={"tokens": told},
            )
            uow.lifecycle.add_enforcement(enforcement)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.POLICY_ENFORCE,
                org_id=the_org.id,
                target_type="policy",
                target_id=enforcement.id,
                details={"graceDays": grace, "graceUntil": iso_z(enforcement.grace_until), "tokens": told},
            )
            uow.commit()
        if grace == 0:
            return self._engine.apply(enforcement, run_id=None)
        return enforcement

    def enforcements(self, actor: Actor, org: str) -> list[PolicyEnforcement]:
        """The organization's enforcements, oldest first (administrators)."""
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return uow.lifecycle.enforcements(the_org.id)


class PolicyEnforcementJob:
    """Job body of ``policy-enforcement``: applies every pending enforcement whose grace has
    ended (of ``ctx.org_id`` only, when the run is limited to one organization)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        catalog: ScopeCatalog,
        *,
        base_url: str | None = None,
        chunk: int = 1000,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._engine = _Engine(uow, clock, catalog, base_url, chunk)

    def run(self, ctx: JobContext) -> dict[str, Any]:
        now = self._clock.now()
        with reading(self._uow) as uow:
            due = [e for e in uow.lifecycle.enforcements(ctx.org_id, PENDING) if e.grace_until <= now]
        counts = {"enforcements": 0, "shortened": 0, "revoked": 0, "unchanged": 0}
        for e in due:
            done = self._engine.apply(e, ctx.run_id, ctx.check)
            counts["enforcements"] += 1
            for key in ("shortened", "revoked", "unchanged"):
                counts[key] += int(done.counts.get(key, 0))
        return counts
