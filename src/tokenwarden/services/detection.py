"""Compromise detection and automatic response (issue 14).

After each usage flush the node hands the counts it wrote to :meth:`DetectionService.detect`:
for every token in them it reads the usage table (all nodes' counts), evaluates the
organization's rules (domain/detection.py) and raises alerts — at most one open alert per token
and rule. In the same transaction as the alert, the organization's responses for its level
happen: the token is revoked (reason ``compromised``, announced to every node), the owner's risk
raised, the security contact and webhooks notified; managed credentials that served the token
are rotated right after. Every response is audited with the alert's id.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock, iso_z
from tokenwarden.domain.detection import (
    BASELINE_WINDOW,
    BURST_WINDOW,
    MIN_BASELINE_MINUTES,
    Action,
    Activity,
    DetectionPolicy,
    Finding,
    Level,
    Rule,
    evaluate,
)
from tokenwarden.domain.errors import Conflict, DomainError, InvalidInput, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.notices import SECURITY_ALERT
from tokenwarden.domain.principals import RiskLevel, RiskState, UserStatus
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.domain.usage import UsageCount
from tokenwarden.ports.alerts import ACKNOWLEDGED, CLOSED, OPEN, STATUSES, Alert, AlertQuery, StoredPolicy
from tokenwarden.ports.lifecycle import OutboxMessage
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import SYSTEM, Actor, audit, get_org, publish, reading, require_admin
from tokenwarden.services.notices import address_key, subscribed
from tokenwarden.services.signals import emit_token_revoked

log = logging.getLogger(__name__)
COMPROMISED: Final = "compromised"
POLICY_CACHE_SECONDS: Final = 5.0
MAX_LIST: Final = 1000
RULE_NAMES: Final[dict[str, str]] = {
    Rule.UNKNOWN_NETWORK: "Unknown network",
    Rule.OUTSIDE_HOURS: "Outside working hours",
    Rule.DORMANT: "Dormant token active again",
    Rule.HIGH_FREQUENCY: "High request rate",
    Rule.FORBIDDEN_BURST: "Burst of 403s (scope probing)",
    Rule.OWNER_INACTIVE: "Used after the owner was disabled or left",
    Rule.LEAKED: "Token leaked (reported by secret scanning)",
}


@dataclass(frozen=True, slots=True)
class Raised:
    alert: Alert
    rotate: tuple[str, ...]  # managed credential ids to rotate after the commit


def alert_json(a: Alert) -> dict[str, Any]:
    """The wire and ``--json`` shape of an alert."""
    return {
        "id": a.id,
        "orgId": a.org_id,
        "tokenId": a.token_id,
        "userId": a.user_id,
        "rule": a.rule,
        "ruleName": RULE_NAMES.get(a.rule, a.rule),
        "level": a.level,
        "status": a.status,
        "message": a.message,
        "evidence": a.evidence,
        "occurrences": a.occurrences,
        "responses": list(a.responses),
        "createdAt": iso_z(a.created_at),
        "updatedAt": iso_z(a.updated_at),
        "closedBy": a.closed_by,
        "note": a.note,
    }


class DetectionService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, rotation: Any | None = None) -> None:
        self._uow = uow
        self._clock = clock
        self._rotation = rotation  # RotationService: rotate_now(actor, credential)
        self._policies: dict[str, tuple[float, DetectionPolicy]] = {}
        self._lock = threading.Lock()
        self.raised = 0

    # ------------------------------------------------------------------ policy
    def policy_of(self, org_id: str) -> DetectionPolicy:
        cached = self._policies.get(org_id)
        if cached is not None and time.monotonic() - cached[0] < POLICY_CACHE_SECONDS:
            return cached[1]
        with reading(self._uow) as uow:
            stored = uow.alerts.policy(org_id)
        try:
            policy = DetectionPolicy.from_json(stored.data) if stored else DetectionPolicy()
        except InvalidInput as exc:  # a policy that no longer validates: defaults, loudly
            log.warning("detection policy of %s is invalid (%s): using the defaults", org_id, exc.message)
            policy = DetectionPolicy()
        self._policies[org_id] = (time.monotonic(), policy)
        return policy

    def get_policy(self, actor: Actor, org: str) -> DetectionPolicy:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
        self._policies.pop(the_org.id, None)
        return self.policy_of(the_org.id)

    def set_policy(self, actor: Actor, org: str, changes: object) -> DetectionPolicy:
        """Apply a partial JSON policy (validated whole before anything changes; audited)."""
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            stored = uow.alerts.policy(the_org.id)
            current = DetectionPolicy.from_json(stored.data) if stored else DetectionPolicy()
            updated = DetectionPolicy.from_json(changes, current)
            uow.alerts.set_policy(StoredPolicy(the_org.id, updated.to_json(), self._clock.now()))
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.DETECTION_POLICY_UPDATE,
                org_id=the_org.id,
                target_type="organization",
                target_id=the_org.id,
                details={"changes": changes if isinstance(changes, dict) else {}},
            )
            uow.commit()
        self._policies.pop(the_org.id, None)
        return updated

    # ------------------------------------------------------------------ detection
    def detect(self, counts: list[UsageCount]) -> list[Alert]:
        """Evaluate every token in a flush's ``counts``; returns the alerts raised."""
        by_token: dict[str, list[UsageCount]] = defaultdict(list)
        for c in counts:
            by_token[c.token_id].append(c)
        raised: list[Alert] = []
        with self._lock:
            for token_id, mine in by_token.items():
                try:
                    raised += self._detect_token(token_id, mine)
                except DomainError as exc:
                    log.warning("detection for token %s failed: %s", token_id, exc.message)
        self.raised += len(raised)
        return raised

    def _detect_token(self, token_id: str, mine: list[UsageCount]) -> list[Alert]:
        policy = self.policy_of(mine[0].org_id)
        if not policy.enabled:
            return []
        now = self._clock.now()
        minutes = sorted({c.bucket for c in mine})
        with reading(self._uow) as uow:
            record = uow.tokens.get(token_id)
            if record is None:
                return []
            owner = uow.users.get(record.user_id)
            member = uow.users.membership(record.org_id, record.user_id)
            stats = uow.usage.stats(
                token_id, minutes, baseline_since=now - BASELINE_WINDOW, burst_since=now - BURST_WINDOW
            )
        owner_active = (
            owner is not None
            and owner.status is UserStatus.ACTIVE
            and member is not None
            and member.status is UserStatus.ACTIVE
        )
        networks: dict[str, int] = defaultdict(int)
        statuses: dict[str, int] = defaultdict(int)
        for c in mine:
            networks[c.network] += c.count
            statuses[c.status] += c.count
        prior = stats.prior_use
        if record.last_used_at is not None and record.last_used_at < minutes[0]:
            prior = record.last_used_at if prior is None else max(prior, record.last_used_at)
        busiest = max(stats.minute_totals.items(), key=lambda kv: kv[1], default=None)
        baseline = (
            stats.baseline_requests / stats.baseline_minutes
            if stats.baseline_minutes >= MIN_BASELINE_MINUTES
            else None
        )
        activity = Activity(
            token_id=token_id,
            created_at=record.created_at,
            owner_active=owner_active,
            first_used=stats.first_used,
            prior_use=prior,
            batch_minutes=tuple(minutes),
            batch_networks=dict(networks),
            network_first_seen=stats.network_first_seen,
            busiest_minute=busiest,
            baseline_per_minute=baseline,
            forbidden_recent=stats.forbidden_recent,
            statuses=dict(statuses),
        )
        out = []
        for finding in evaluate(policy, activity):
            done = self._raise(record, finding, policy)
            if done is not None:
                out.append(done.alert)
                self._rotate(done)
        return out

    def report_leak(self, token_id: str, message: str, evidence: dict[str, Any]) -> Alert | None:
        """A token found in public (secret scanning): revoked at once whatever the policy, its
        owner and the security contact told; the level's other responses apply too. None when
        the token is unknown or already has an open leak alert."""
        with reading(self._uow) as uow:
            record = uow.tokens.get(token_id)
        if record is None:
            return None
        policy = self.policy_of(record.org_id)
        level = policy.level_of(Rule.LEAKED)
        forced = (Action.NOTIFY, Action.REVOKE, *policy.responses.get(level, ()))
        responses = {**policy.responses, level: tuple(dict.fromkeys(forced))}
        done = self._raise(
            record, Finding(Rule.LEAKED, level, message, evidence), policy, responses, tell_owner=True
        )
        if done is None:
            return None
        self._rotate(done)
        self.raised += 1
        return done.alert

    def _raise(
        self,
        record: TokenRecord,
        finding: Finding,
        policy: DetectionPolicy,
        responses: dict[Level, tuple[Action, ...]] | None = None,
        *,
        tell_owner: bool = False,
    ) -> Raised | None:
        now = self._clock.now()
        actions = (responses or policy.responses).get(finding.level, (Action.NOTIFY,))
        alert = Alert(
            id=str(uuid.uuid4()),
            org_id=record.org_id,
            token_id=record.authorization_id,
            user_id=record.user_id,
            rule=finding.rule.value,
            level=finding.level.value,
            message=finding.message[:512],
            evidence=finding.evidence,
            created_at=now,
            updated_at=now,
        )
        rotate: tuple[str, ...] = ()
        with self._uow() as uow:
            if uow.alerts.raise_alert(alert) is None:  # an alert for this token and rule is open
                uow.commit()
                return None
            done: list[str] = []
            owner = uow.users.get(record.user_id)
            upn = owner.upn if owner else record.user_id
            audit(
                uow,
                self._clock,
                SYSTEM,
                AuditEventType.ALERT_RAISE,
                org_id=record.org_id,
                target_type=record.kind.value,
                target_id=record.authorization_id,
                details={"alertId": alert.id, "rule": alert.rule, "level": alert.level, "owner": upn},
            )
            if Action.REVOKE in actions and self._revoke(uow, record, alert, now):
                done.append(Action.REVOKE.value)
            if Action.RAISE_RISK in actions and self._raise_risk(uow, record, alert, now):
                done.append(Action.RAISE_RISK.value)
            if Action.ROTATE in actions:
                rotate = tuple(c.id for c in uow.managed.by_authorization(record.authorization_id))
                if rotate:
                    done.append(Action.ROTATE.value)
            alert = alert.with_changes(responses=tuple(done))
            uow.alerts.update(alert)
            if Action.NOTIFY in actions:
                self._notify(uow, record, alert, upn, owner=upn if tell_owner and owner else None)
            uow.commit()
        return Raised(alert, rotate)

    def _revoke(self, uow: UnitOfWork, record: TokenRecord, alert: Alert, now: datetime) -> bool:
        current = uow.tokens.get(record.authorization_id)
        if current is None or current.revoked_at is not None:
            return False
        revoked = current.with_changes(
            revoked_at=now, revoked_by="tokenwarden-detection", revoke_reason=COMPROMISED
        )
        uow.tokens.update(revoked)
        publish(uow, EventType.TOKEN_REVOKED, hashes=[current.secret_hash.hex()])
        owner = uow.users.get(current.user_id)
        if owner is not None:
            emit_token_revoked(
                uow,
                self._clock,
                user=owner,
                record=revoked,
                initiating_entity="system",
                reason_admin=COMPROMISED,
            )
        audit(
            uow,
            self._clock,
            SYSTEM,
            AuditEventType.PAT_SYSTEM_REVOKE,
            org_id=current.org_id,
            target_type=current.kind.value,
            target_id=current.authorization_id,
            details={"reason": COMPROMISED, "alertId": alert.id, "rule": alert.rule},
        )
        return True

    def _raise_risk(self, uow: UnitOfWork, record: TokenRecord, alert: Alert, now: datetime) -> bool:
        member = uow.users.membership(record.org_id, record.user_id)
        if member is None or member.risk_level is RiskLevel.HIGH:
            return False
        uow.users.set_membership(
            member.with_changes(risk_level=RiskLevel.HIGH, risk_state=RiskState.AT_RISK, risk_updated_at=now)
        )
        publish(uow, EventType.USER_CHANGED, user_id=record.user_id)
        audit(
            uow,
            self._clock,
            SYSTEM,
            AuditEventType.USER_RISK_CHANGE,
            org_id=record.org_id,
            target_type="user",
            target_id=record.user_id,
            details={
                "riskLevel": RiskLevel.HIGH.value,
                "riskState": RiskState.AT_RISK.value,
                "previousRiskLevel": member.risk_level.value,
                "alertId": alert.id,
            },
        )
        return True

    def _notify(
        self, uow: UnitOfWork, record: TokenRecord, alert: Alert, upn: str, owner: str | None = None
    ) -> None:
        org = uow.orgs.get(record.org_id)
        policy = uow.policies.get(record.org_id)
        contact = policy.security_contact if policy else None
        payload = {
            "org": {"id": record.org_id, "name": org.name if org else record.org_id},
            "alert": alert_json(alert),
            "token": {
                "id": record.authorization_id,
                "kind": record.kind.value,
                "displayName": record.display_name,
                "owner": upn,
            },
        }
        now = self._clock.now()

        def message(channel: str, destination: str, key: str) -> OutboxMessage:
            return OutboxMessage(
                dedupe_key=f"alert:{alert.id}:{key}"[:255],
                channel=channel,
                destination=destination,
                template=SECURITY_ALERT,
                payload=payload,
                created_at=now,
                next_attempt_at=now,
                org_id=record.org_id,
            )

        recipients = [a for a in dict.fromkeys([contact, owner]) if a]
        messages = [message("email", a, address_key(a)) for a in recipients]
        messages += [
            message("webhook", h, f"hook:{h}") for h in subscribed(uow, record.org_id, SECURITY_ALERT)
        ]
        if messages:
            uow.outbox.enqueue(messages)

    def _rotate(self, done: Raised) -> None:
        if not done.rotate or self._rotation is None:
            return
        for credential_id in done.rotate:
            with reading(self._uow) as uow:
                credential = uow.managed.get(credential_id)
            if credential is None:
                continue
            try:
                self._rotation.rotate_now(SYSTEM, credential, compromised=True)
            except Exception as exc:  # recorded by the rotation journal; the alert stands
                log.warning("rotation of %s after alert %s failed: %s", credential.name, done.alert.id, exc)

    # ------------------------------------------------------------------ reading, acknowledging
    def find(
        self,
        actor: Actor,
        org: str,
        *,
        statuses: tuple[str, ...] = (OPEN, ACKNOWLEDGED),
        token_id: str | None = None,
        rule: str | None = None,
        level: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        for s in statuses:
            if s not in STATUSES:
                raise InvalidInput(f"unknown alert status {s!r:.20}; valid: {', '.join(STATUSES)}")
        if rule is not None and rule not in {r.value for r in Rule}:
            raise InvalidInput(f"unknown rule {rule!r:.40}; valid: {', '.join(r.value for r in Rule)}")
        if level is not None and level not in ("high", "medium", "low"):
            raise InvalidInput(f"unknown level {level!r:.20}; valid: high, medium, low")
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST}")
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return uow.alerts.find(AlertQuery(the_org.id, statuses, token_id, rule, level, limit))

    def set_status(
        self, actor: Actor, org: str, alert_id: str, status: str, note: str | None = None
    ) -> Alert:
        """Acknowledge or close an alert (a closed alert stays closed; audited)."""
        if status not in (ACKNOWLEDGED, CLOSED):
            raise InvalidInput("status must be acknowledged or closed")
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            alert = uow.alerts.get(alert_id[:64])
            if alert is None or alert.org_id != the_org.id:
                raise NotFound(f"alert {alert_id!r:.64} not found", code="alertNotFound")
            if alert.status == CLOSED:
                raise Conflict("the alert is closed", code="alertClosed")
            if alert.status == status:
                return alert
            updated = alert.with_changes(
                status=status,
                updated_at=self._clock.now(),
                closed_by=(actor.upn or "operator") if status == CLOSED else alert.closed_by,
                note=(note or alert.note or None) and (note or alert.note or "")[:1024],
            )
            uow.alerts.update(updated)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.ALERT_ACKNOWLEDGE if status == ACKNOWLEDGED else AuditEventType.ALERT_CLOSE,
                org_id=the_org.id,
                target_type="alert",
                target_id=alert.id,
                details={"tokenId": alert.token_id, "rule": alert.rule, "level": alert.level, "note": note},
            )
            uow.commit()
        return updated

    def counts(self) -> list[tuple[str, str, str, int]]:
        """(rule, level, status, count) over every organization (for /metrics)."""
        with reading(self._uow) as uow:
            rows = uow.alerts.counts()
        folded: dict[tuple[str, str, str], int] = defaultdict(int)
        for r in rows:
            folded[(r.rule, r.level, r.status)] += r.count
        return [(r, lv, s, n) for (r, lv, s), n in sorted(folded.items())]
