"""Token notices into the outbox: decided once, addressed to everyone who should hear.

A notice (an expiry warning at 7 days, "expired", "dormant", a policy change) is *claimed* for a
token in the transaction that writes its messages: ``token_notices`` has one row per (token,
notice) ever decided, so a second run, a second node or a run after a crash finds it taken and
sends nothing. Recipients: the owner (email, defaulting to the UPN), the token's watchers, the
organization's security contact (always one digest per run) and the organization's webhooks.
An owner who chose the digest gets one message per run listing all their tokens.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.notices import EVENT_TYPES
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.principals import User
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.ports.lifecycle import OutboxMessage
from tokenwarden.ports.repositories import UnitOfWork

OWNER, WATCHER, SECURITY_CONTACT = "owner", "watcher", "securityContact"


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice for one token: ``key`` names it uniquely for that token (e.g.
    ``expiry:7:2026-12-31T08:00:00Z`` — a new validTo re-arms the warnings); ``entry`` is the
    token's part of the message payload (see services/messages.py)."""

    token: TokenRecord
    key: str
    entry: dict[str, Any]
    mark: tuple[datetime, int] | None = None  # expiry notices: (validTo, threshold; 0 = expired)


@dataclass(frozen=True, slots=True)
class Enqueued:
    fresh: list[Notice]  # the notices this transaction decided (the others were decided before)
    messages: int  # outbox rows written

    @property
    def notices(self) -> int:
        return len(self.fresh)


def subscribed(uow: UnitOfWork, org_id: str, template: str) -> list[str]:
    """Ids of the organization's enabled webhooks that take this template's event type
    (a webhook with no event list takes them all)."""
    event = EVENT_TYPES.get(template)
    return [
        h.id
        for h in uow.webhooks.find(org_id)
        if h.disabled_at is None and (not h.events or (event is not None and event in h.events))
    ]


def address_key(address: str) -> str:
    """A short, stable stand-in for an address inside dedupe keys (which are at most 255 long)."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()[:24]


def token_entry(record: TokenRecord, owner: User | None, now: datetime, **extra: Any) -> dict[str, Any]:
    """The payload entry every token template expects (never a secret or its hash)."""
    entry: dict[str, Any] = {
        "id": record.authorization_id,
        "displayName": record.display_name,
        "kind": record.kind.value,
        "scopes": list(record.scopes),
        "validTo": iso_z(record.valid_to),
        "daysLeft": max(0, int((record.valid_to - now).total_seconds() // 86400)),
        "threshold": None,
        "managedByRotation": False,  # a managed credential's token in service (issue 13)
        "renewalBlocked": None,
        "owner": owner.upn if owner else None,
        "lastUsedAt": iso_z(record.last_used_at),
        "revokeAt": None,
        "reason": None,
        "violations": [],
        "graceUntil": None,
        "action": None,
    }
    entry.update(extra)
    return entry


class NoticeWriter:
    """Claims notices and writes their outbox messages inside the caller's unit of work."""

    def __init__(self, uow: UnitOfWork, now: datetime, *, run_id: str | None, base_url: str | None) -> None:
        self._uow = uow
        self._now = now
        self._run_id = run_id
        self._base_url = base_url
        self._users: dict[str, User | None] = {}
        self._orgs: dict[str, dict[str, str]] = {}
        self._policies: dict[str, OrgPolicy] = {}
        self._hook_ids: dict[tuple[str, str], list[str]] = {}

    def preload(self, user_ids: Sequence[str]) -> None:
        """Load many owners in one query (a page of tokens) before :meth:`user` is asked."""
        missing = [u for u in dict.fromkeys(user_ids) if u not in self._users]
        if missing:
            found = self._uow.lifecycle.owners(missing)
            for u in missing:
                self._users[u] = found.get(u)

    def user(self, user_id: str) -> User | None:
        if user_id not in self._users:
            self._users[user_id] = self._uow.users.get(user_id)
        return self._users[user_id]

    def policy(self, org_id: str) -> OrgPolicy:
        if org_id not in self._policies:
            self._policies[org_id] = self._uow.policies.get(org_id) or OrgPolicy(org_id=org_id)
        return self._policies[org_id]

    def _org(self, org_id: str) -> dict[str, str]:
        if org_id not in self._orgs:
            org = self._uow.orgs.get(org_id)
            self._orgs[org_id] = {"id": org_id, "name": org.name if org else org_id}
        return self._orgs[org_id]

    def write(self, template: str, notices: Sequence[Notice]) -> Enqueued:
        """Claim each (token, key); for the ones this transaction won, enqueue the messages."""
        if not notices:
            return Enqueued([], 0)
        marks = {(n.token.authorization_id, n.key): n.mark for n in notices if n.mark is not None}
        won = self._uow.lifecycle.claim_notices(
            [(n.token.authorization_id, n.key) for n in notices], self._now, marks
        )
        fresh = [n for n in notices if (n.token.authorization_id, n.key) in won]
        if not fresh:
            return Enqueued([], 0)
        self.preload([n.token.user_id for n in fresh])
        watchers = self._uow.lifecycle.watchers([n.token.authorization_id for n in fresh])
        single: list[OutboxMessage] = []
        digests: dict[tuple[str, str, str], list[Notice]] = defaultdict(list)  # (org, address, role)
        owners: dict[tuple[str, str, str], User | None] = {}
        for n in fresh:
            tok = n.token
            owner = self.user(tok.user_id)
            told: set[str] = set()
            recipients: list[tuple[str, str, bool]] = []  # address, role, digest
            if owner is not None:
                recipients.append((owner.notify_address, OWNER, owner.notify_digest))
            recipients += [(a, WATCHER, False) for a in watchers.get(tok.authorization_id, [])]
            contact = self.policy(tok.org_id).security_contact
            if contact:
                recipients.append((contact, SECURITY_CONTACT, True))
            for address, role, digest in recipients:
                if address.lower() in told:
                    continue
                told.add(address.lower())
                if digest:
                    group = (tok.org_id, address, role)
                    digests[group].append(n)
                    owners[group] = owner if role == OWNER else None
                    continue
                single.append(
                    self._message(
                        template,
                        f"{template}:{tok.authorization_id}:{n.key}:email:{address_key(address)}",
                        tok.org_id,
                        "email",
                        address,
                        self._payload(tok.org_id, address, role, owner, [n.entry], digest=False),
                    )
                )
            for hook in self._hooks(tok.org_id, template):
                single.append(
                    self._message(
                        template,
                        f"{template}:{tok.authorization_id}:{n.key}:webhook:{hook}",
                        tok.org_id,
                        "webhook",
                        hook,
                        self._payload(tok.org_id, None, None, owner, [n.entry], digest=False),
                    )
                )
        for (org_id, address, role), items in digests.items():
            owner = owners[(org_id, address, role)]
            # one digest per run and address: the claimed notices make sure no token repeats
            first = min(f"{i.token.authorization_id}:{i.key}" for i in items)
            single.append(
                self._message(
                    template,
                    f"{template}:digest:{self._run_id or first}:{org_id}:{address_key(address)}",
                    org_id,
                    "email",
                    address,
                    self._payload(org_id, address, role, owner, [i.entry for i in items], digest=True),
                )
            )
        written = self._uow.outbox.enqueue(single)
        return Enqueued(fresh, written)

    def _hooks(self, org_id: str, template: str) -> list[str]:
        key = (org_id, template)
        if key not in self._hook_ids:
            self._hook_ids[key] = subscribed(self._uow, org_id, template)
        return self._hook_ids[key]

    def _payload(
        self,
        org_id: str,
        address: str | None,
        role: str | None,
        owner: User | None,
        entries: list[dict[str, Any]],
        *,
        digest: bool,
    ) -> dict[str, Any]:
        return {
            "org": self._org(org_id),
            "recipient": {"address": address, "role": role} if address else None,
            "owner": {"upn": owner.upn, "displayName": owner.display_name} if owner else None,
            "digest": digest,
            "baseUrl": self._base_url,
            "tokens": entries,
        }

    def _message(
        self, template: str, key: str, org_id: str, channel: str, destination: str, payload: dict[str, Any]
    ) -> OutboxMessage:
        return OutboxMessage(
            dedupe_key=key[:255],
            channel=channel,
            destination=destination,
            template=template,
            payload=payload,
            created_at=self._now,
            next_attempt_at=self._now,
            org_id=org_id,
            run_id=self._run_id,
        )
