"""Invalidation events: every change that can make a cached token invalid becomes one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    TOKEN_REVOKED = "token.revoked"
    TOKEN_CHANGED = "token.changed"
    USER_CHANGED = "user.changed"  # payload user_id, or user_ids for bulk changes
    ORG_CHANGED = "org.changed"  # organization watermarks moved (break-glass)
    MEMBERSHIP_CHANGED = "membership.changed"
    POLICY_CHANGED = "policy.changed"
    RULE_ADDED = "rule.added"
    RULE_DELETED = "rule.deleted"  # tokens the rule cut are valid again: nodes reload rules
    CLIENT_CHANGED = "client.changed"  # OAuth client watermarks moved (disable, remove): reload them


@dataclass(frozen=True, slots=True)
class InvalidationEvent:
    """An ordered event; ``seq`` is assigned by the store when it is committed."""

    type: EventType
    payload: dict[str, Any] = field(default_factory=dict)
    seq: int = 0


# A bus message must fit PostgreSQL's NOTIFY payload (under 8,000 bytes); longer ones carry only
# the sequence number and the receivers read the events from the database as before.
MAX_ANNOUNCEMENT_BYTES = 7_900
# Events a node may announce before its transaction commits: they only narrow access, name what
# they narrow (hashes), and the announcing node has already authorised them.
INTENT_TYPES = frozenset({EventType.TOKEN_REVOKED})


class AnnouncementKind(StrEnum):
    COMMITTED = "c"  # events up to ``seq`` are committed (the events, when they fit)
    INTENT = "i"  # an authorised revocation about to be committed: refuse its tokens now
    WITHDRAWN = "w"  # that transaction did not commit: forget the intent


@dataclass(frozen=True, slots=True)
class Announcement:
    """What one bus message says.

    ``COMMITTED``: events up to ``seq`` are committed — with the events themselves when they fit,
    so a receiver applies what only narrows access (revoked hashes, owners to re-read) before its
    database read. ``INTENT``: a node has authorised revoking these tokens and is committing it
    (``seq`` 0): receivers refuse them at once, before the commit. ``WITHDRAWN``: that commit
    failed. The events table stays the source of truth: nothing announced admits a token."""

    seq: int
    events: tuple[InvalidationEvent, ...] = ()
    kind: AnnouncementKind = AnnouncementKind.COMMITTED

    def encode(self) -> str | None:
        """The wire text: ``{"seq":N,"events":[[seq,type,payload],...],"kind":"c"}``, or just ``N``
        for committed events that do not fit (or none); ``None`` for an intent that does not fit
        (nothing worth sending)."""
        if self.events:
            text = json.dumps(
                {
                    "seq": self.seq,
                    "events": [[e.seq, e.type.value, e.payload] for e in self.events],
                    "kind": self.kind.value,
                },
                separators=(",", ":"),
            )
            if len(text.encode()) <= MAX_ANNOUNCEMENT_BYTES:
                return text
        if self.kind is not AnnouncementKind.COMMITTED:
            return None
        return str(int(self.seq))

    @classmethod
    def decode(cls, text: str | bytes) -> Announcement | None:
        """Parse wire text (an older node's bare number too); ``None`` for anything malformed.

        Hostile text can at worst name hashes to refuse for a while or owners to re-read:
        nothing here can make a node accept a token (see Validator.apply_announced)."""
        try:
            if isinstance(text, bytes):
                text = text.decode()
            if len(text) > MAX_ANNOUNCEMENT_BYTES * 2:
                return None
            stripped = text.strip()
            if stripped.isascii() and stripped.isdigit():
                return cls(int(stripped))
            data = json.loads(text)
            seq = data["seq"]
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                return None
            events = []
            for item in data.get("events", ()):
                event_seq, kind, payload = item
                if not isinstance(event_seq, int) or not isinstance(payload, dict):
                    return None
                events.append(InvalidationEvent(EventType(kind), payload, event_seq))
            return cls(seq, tuple(events), AnnouncementKind(data.get("kind", "c")))
        except (ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError):
            return None
