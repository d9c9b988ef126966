"""The invalidation bus: tells every node "new events are committed" — and what they were.

The events table stays the source of truth. A message carries the newest sequence number and,
when they fit, the committed events themselves (:class:`Announcement`): a receiver applies at
once what can only narrow access (a revoked hash, an owner to re-read), then reads the events
table from its last applied sequence as before. A lost message therefore costs latency (the
poll catches up), never correctness, and a forged one can at worst refuse a valid token until
the next read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tokenwarden.domain.events import Announcement

Listener = Callable[[Announcement], None]


class InvalidationBus(Protocol):
    name: str

    def publish(self, announcement: Announcement) -> None:
        """Send ``announcement`` to every node (best effort; never raises). One whose text is
        ``None`` (an intent too big for one message) is not sent."""
        ...

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(announcement)`` for every message, from any process on the bus.

        Listeners run on the bus's own thread and must be quick and thread-safe.
        """
        ...

    def start(self) -> None:
        """Connect and start delivering (idempotent)."""
        ...

    def close(self) -> None:
        """Stop delivering and release connections (idempotent)."""
        ...

    def healthy(self) -> bool:
        """True while the bus connection is believed to be up."""
        ...
