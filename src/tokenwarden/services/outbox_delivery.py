"""Deliver the notification outbox: after commit, at least once, recorded message by message.

A worker claims due messages (``sending`` until a deadline, so two workers never hold one),
renders each, hands it to its channel and records the answer right away. A failed delivery
waits with exponential backoff and jitter (a server's ``Retry-After`` honoured) and goes to the
dead letters only when the channel refused it for good or it kept failing past ``max_age``: a
channel that is down for hours loses nothing. A crash between a server's "250 OK" and our
record is the one case of a resend; the Message-ID / webhook-id is stable per message, so a
receiver can tell.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tokenwarden.domain.clock import Clock
from tokenwarden.ports.lifecycle import OutboxMessage
from tokenwarden.ports.notify import EmailMessage, EmailSender, SendResult, WebhookRequest, WebhookSender
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.common import reading
from tokenwarden.services.messages import email_for, webhook_body
from tokenwarden.services.webhooks import WebhookService

log = logging.getLogger(__name__)
_random = secrets.SystemRandom()


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    waiting_for_channel: int = 0  # a channel that is not configured: left pending
    errors: list[str] = field(default_factory=list)  # a few distinct errors, for the operator

    def add_error(self, error: str) -> None:
        if error not in self.errors and len(self.errors) < 5:
            self.errors.append(error)

    def merge(self, other: DeliveryReport) -> None:
        self.sent += other.sent
        self.retrying += other.retrying
        self.dead += other.dead
        self.waiting_for_channel += other.waiting_for_channel
        for e in other.errors:
            self.add_error(e)

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "retrying": self.retrying,
            "dead": self.dead,
            "waitingForChannel": self.waiting_for_channel,
            "errors": list(self.errors),
        }


@dataclass(frozen=True, slots=True)
class Backoff:
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    max_age: timedelta = timedelta(days=3)

    def next_attempt(
        self, message: OutboxMessage, now: datetime, retry_after: float | None
    ) -> datetime | None:
        """When to try again, or None: past ``max_age`` the message goes to the dead letters."""
        if now - message.created_at >= self.max_age:
            return None
        delay = min(self.cap.total_seconds(), self.base.total_seconds() * 2 ** min(message.attempts, 20))
        delay *= _random.uniform(0.5, 1.0)  # jitter: a fleet of retries does not come back at once
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap.total_seconds()))
        return now + timedelta(seconds=delay)


class OutboxDelivery:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        email: EmailSender | None,
        webhook: WebhookSender | None,
        webhooks: WebhookService,
        node: str,
        batch: int = 200,
        claim_seconds: float = 300.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._email = email
        self._webhook = webhook
        self._webhooks = webhooks
        self._node = node
        self._batch = batch
        self._claim = timedelta(seconds=claim_seconds)
        self._backoff = backoff or Backoff()

    @property
    def channels(self) -> list[str]:
        """The channels this node can deliver through; messages of others wait (an operator
        may configure SMTP later: nothing is lost meanwhile)."""
        return [name for name, sender in (("email", self._email), ("webhook", self._webhook)) if sender]

    def deliver_due(
        self, *, max_batches: int | None = None, stop: Callable[[], bool] | None = None
    ) -> DeliveryReport:
        """Deliver what is due now, batch after batch, until nothing is due (or ``stop()``)."""
        report = DeliveryReport()
        batches = 0
        while max_batches is None or batches < max_batches:
            if stop is not None and stop():
                break
            claimer = f"{self._node}:{secrets.token_hex(4)}"
            now = self._clock.now()
            with self._uow() as uow:
                claimed = uow.outbox.claim_due(now, now + self._claim, claimer, self._batch, self.channels)
                uow.commit()
            if not claimed:
                break
            batches += 1
            report.merge(self._deliver(claimed, claimer))
            if len(claimed) < self._batch:
                break
        return report

    def _deliver(self, claimed: list[OutboxMessage], claimer: str) -> DeliveryReport:
        report = DeliveryReport()
        emails = [m for m in claimed if m.channel == "email"]
        hooks = [m for m in claimed if m.channel == "webhook"]
        other = [m for m in claimed if m.channel not in ("email", "webhook")]
        for m in other:
            self._record(
                m, claimer, SendResult(False, f"unknown channel {m.channel!r}", retryable=False), report
            )
        if emails:
            self._deliver_emails(emails, claimer, report)
        for m in hooks:
            self._record(m, claimer, self._send_webhook(m), report)
        return report

    def _deliver_emails(self, emails: list[OutboxMessage], claimer: str, report: DeliveryReport) -> None:
        if self._email is None:  # not claimed when unconfigured (``channels``); defensive
            for m in emails:
                self._postpone(m, claimer, "email is not configured (TOKENWARDEN_SMTP_HOST)", report)
            return
        rendered: list[EmailMessage] = []
        ready: list[OutboxMessage] = []
        for m in emails:
            try:
                rendered.append(email_for(m.destination, m.template, m.payload, message_id=_message_id(m)))
                ready.append(m)
            except Exception as exc:  # a payload the templates cannot render: never retried
                self._record(
                    m, claimer, SendResult(False, f"cannot render: {exc}"[:300], retryable=False), report
                )
        if not rendered:
            return

        def on_result(index: int, result: SendResult) -> None:
            self._record(ready[index], claimer, result, report)

        self._email.send_batch(rendered, on_result)

    def _send_webhook(self, m: OutboxMessage) -> SendResult:
        if self._webhook is None:
            return SendResult(False, "webhooks are not available on this node", retryable=True)
        with reading(self._uow) as uow:
            hook = uow.webhooks.get(m.destination)
        if hook is None or hook.disabled_at is not None:
            return SendResult(False, "the webhook was removed or disabled", retryable=False)
        body = webhook_body(m.template, m.payload, message_id=_message_id(m), created_at=m.created_at)
        request = WebhookRequest(
            url=hook.url,
            secret=self._webhooks.secret_of(hook),
            message_id=_message_id(m),
            timestamp=int(self._clock.now().timestamp()),
            body=body,
        )
        return self._webhook.send(request)

    def _postpone(self, m: OutboxMessage, claimer: str, error: str, report: DeliveryReport) -> None:
        now = self._clock.now()
        with self._uow() as uow:
            uow.outbox.mark_failed(m.id or 0, claimer, error, retry_at=now + self._backoff.cap, at=now)
            uow.commit()
        report.waiting_for_channel += 1
        report.add_error(error)

    def _record(self, m: OutboxMessage, claimer: str, result: SendResult, report: DeliveryReport) -> None:
        now = self._clock.now()
        with self._uow() as uow:
            if result.ok:
                uow.outbox.mark_sent(m.id or 0, claimer, now)
                report.sent += 1
            else:
                error = result.error or "delivery failed"
                retry = self._backoff.next_attempt(m, now, result.retry_after) if result.retryable else None
                uow.outbox.mark_failed(m.id or 0, claimer, error, retry_at=retry, at=now)
                if retry is None:
                    report.dead += 1
                    log.warning(
                        "notification %s to a %s went to the dead letters: %s", m.id, m.channel, error
                    )
                else:
                    report.retrying += 1
                report.add_error(error)
            uow.commit()


def _message_id(m: OutboxMessage) -> str:
    """Stable per outbox row: the Message-ID of its email, the webhook-id of its POST."""
    return f"msg_{m.id}_{hashlib.sha256(m.dedupe_key.encode()).hexdigest()[:16]}"
