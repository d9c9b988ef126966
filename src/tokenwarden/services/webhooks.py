"""An organization's webhooks: registered by its admins, signed with Standard Webhooks.

The secret (``whsec_...``) is shown once, at creation or rotation; it is stored sealed under the
pepper (it must be recoverable to sign). A target must be http(s) and public, unless the
operator allow-lists it; link-local and cloud-metadata addresses are refused always.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock, iso_z
from tokenwarden.domain.errors import InvalidInput, NotFound
from tokenwarden.domain.netpolicy import PushAllowList
from tokenwarden.domain.notices import EVENT_TYPES
from tokenwarden.domain.webhook_urls import check_webhook_url, new_webhook_secret
from tokenwarden.ports.lifecycle import Webhook
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.common import Actor, audit, get_org, new_id, reading, require_admin
from tokenwarden.services.signing import SecretBox

MAX_WEBHOOKS_PER_ORG = 20


def webhook_dict(hook: Webhook) -> dict[str, Any]:
    """The public view of a webhook (never its secret)."""
    return {
        "id": hook.id,
        "url": hook.url,
        "events": list(hook.events),
        "description": hook.description,
        "createdAt": iso_z(hook.created_at),
        "enabled": hook.disabled_at is None,
    }


@dataclass(frozen=True, slots=True)
class NewWebhook:
    hook: Webhook
    secret: str  # shown once


class WebhookService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, box: SecretBox, allow: PushAllowList) -> None:
        self._uow = uow
        self._clock = clock
        self._box = box
        self._allow = allow

    def secret_of(self, hook: Webhook) -> str:
        """The plain secret, to sign a delivery."""
        return self._box.open_text(hook.secret.decode(), hook.id)

    def add(
        self, actor: Actor, org: str, url: str, *, events: Sequence[str] = (), description: str | None = None
    ) -> NewWebhook:
        target = check_webhook_url(url, self._allow)
        wanted = tuple(dict.fromkeys(events))
        unknown = sorted(set(wanted) - set(EVENT_TYPES.values()))
        if unknown:
            known = ", ".join(EVENT_TYPES.values())
            raise InvalidInput(
                f"unknown webhook event type(s): {', '.join(unknown)}; known: {known}",
                code="invalidWebhookEvents",
            )
        if description is not None and len(description) > 256:
            raise InvalidInput("description is longer than 256 characters", code="invalidWebhook")
        hook_id = new_id()
        secret = new_webhook_secret()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            if len(uow.webhooks.find(the_org.id)) >= MAX_WEBHOOKS_PER_ORG:
                raise InvalidInput(
                    f"an organization has at most {MAX_WEBHOOKS_PER_ORG} webhooks", code="tooManyWebhooks"
                )
            hook = Webhook(
                id=hook_id,
                org_id=the_org.id,
                url=target,
                secret=self._box.seal_text(secret, hook_id).encode(),
                events=wanted,
                created_at=self._clock.now(),
                created_by=actor.user_id,
                description=description,
            )
            uow.webhooks.add(hook)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.WEBHOOK_CREATE,
                org_id=the_org.id,
                target_type="webhook",
                target_id=hook_id,
                details=webhook_dict(hook),
            )
            uow.commit()
        return NewWebhook(hook, secret)

    def list(self, actor: Actor, org: str) -> list[Webhook]:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return uow.webhooks.find(the_org.id)

    def remove(self, actor: Actor, org: str, hook_id: str) -> None:
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            hook = uow.webhooks.get(hook_id)
            if hook is None or hook.org_id != the_org.id:
                raise NotFound(f"no webhook {hook_id!r:.60} in this organization", code="webhookNotFound")
            uow.webhooks.delete(hook.id)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.WEBHOOK_DELETE,
                org_id=the_org.id,
                target_type="webhook",
                target_id=hook.id,
                details=webhook_dict(hook),
            )
            uow.commit()
