"""Delivery channels (issue 12): email over SMTP and signed webhooks.

The outbox worker renders a stored message and hands it to a channel after the transaction
that decided it has committed. A channel reports what happened; it never raises for a failed
delivery, so one bad recipient cannot stop a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class EmailMessage:
    """A rendered email: multipart text + HTML. ``message_id`` is stable per outbox row, so a
    receiver can recognise the rare resend after a crash between "250 OK" and our commit."""

    to: str
    subject: str
    text: str
    html: str | None
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)
    inline_images: dict[str, bytes] = field(default_factory=dict)  # content id -> PNG bytes


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """One webhook POST. ``secret`` is the endpoint's Standard Webhooks secret (``whsec_...``)."""

    url: str
    secret: str
    message_id: str
    timestamp: int  # seconds since the epoch, as sent in ``webhook-timestamp``
    body: bytes  # JSON


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one delivery. ``retryable`` failures wait in the outbox and go again;
    others (a refused recipient, a 4xx other than 408/409/425/429) go to the dead letters.
    ``retry_after`` honours a server's ``Retry-After`` (seconds)."""

    ok: bool
    error: str | None = None
    retryable: bool = True
    retry_after: float | None = None


class EmailSender(Protocol):
    def send_batch(
        self, messages: Sequence[EmailMessage], on_result: Callable[[int, SendResult], None] | None = None
    ) -> list[SendResult]:
        """Send over one connection (reused for the whole batch); one result per message, in order.
        ``on_result(index, result)`` is called as soon as each message has its answer, before
        the next is sent (so the caller can record it at once). A server that cannot be
        reached gives every message a retryable failure."""
        ...


class WebhookSender(Protocol):
    def send(self, request: WebhookRequest) -> SendResult:
        """POST the body signed with Standard Webhooks headers (webhook-id, webhook-timestamp,
        webhook-signature: ``v1,<base64 HMAC-SHA256 of id.timestamp.body>``)."""
        ...


class Channels(Protocol):
    """What the outbox worker delivers through (``None``: that channel is not configured)."""

    email: EmailSender | None
    webhook: WebhookSender | None
